#!/usr/bin/env bash
# The main job, end to end: set up, make a rosbag from the shipped clip (demo/vtest_clip.mp4, OpenCV's vtest
# sample, see demo/ATTRIBUTION.md), replay it at the camera's rate into the tracker node running the shipped model,
# and report how well it tracked (success AUC live and offline, fps, latency, dropped frames, memory).
# Writes results/demo/ (bag, live/ with the node's recorded output and reports, an annotated video and a contact
# sheet).
#
# Usage: scripts/demo.sh [--distro kilted|jazzy] [--model PATH] [--rate R] [--out DIR] [--no-offline]
#                       [--node-param NAME:=VALUE ...]
#   --distro jazzy   run with ROS 2 Jazzy in .venv-jazzy/ (default: Kilted in .venv/; docs/distros.md)
#   --model  defaults to models/siammixer_s.onnx (the shipped model); the demo stops with a clear message
#            when it is missing.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/ros_env.sh
source "$REPO/scripts/ros_env.sh"
take_distro_option "$@"
VENV=$(distro_venv "$REPO" "$DISTRO")

"$REPO/scripts/setup.sh" --distro "$DISTRO"

# Same clean, localhost-only ROS environment as the set-up (a sourced /opt/ros would shadow the venv's packages).
clean_ros_environment "$REPO"

cd "$REPO"
exec "$VENV/bin/python" -m siammixer_ros.bag.demo ${OTHER_ARGS[@]+"${OTHER_ARGS[@]}"}
