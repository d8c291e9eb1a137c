#!/usr/bin/env bash
# The main job, end to end: set up, make a rosbag from the shipped clip (demo/vtest_clip.mp4, OpenCV's vtest
# sample, see demo/ATTRIBUTION.md), replay it at the camera's rate into the tracker node running the shipped model,
# and report how well it tracked (success AUC live and offline, fps, latency, dropped frames, memory).
# Writes results/demo/ (bag, live/ with the node's recorded output and reports, an annotated video and a contact
# sheet).
#
# Usage: scripts/demo.sh [--model PATH] [--rate R] [--out DIR] [--no-offline] [--node-param NAME:=VALUE ...]
#   --model  defaults to models/siammixer_xs.onnx (the shipped model); the demo stops with a clear message
#            when it is missing.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SIAMMIXER_VENV:-$REPO/.venv}

"$REPO/scripts/setup.sh"

# Same clean, localhost-only ROS environment as the set-up (a sourced /opt/ros would shadow the venv's packages).
unset PYTHONPATH AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH LD_LIBRARY_PATH ROS_DISTRO || true
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE=$REPO/config/fastdds_localhost.xml

cd "$REPO"
exec "$VENV/bin/python" -m siammixer_ros.bag.demo "$@"
