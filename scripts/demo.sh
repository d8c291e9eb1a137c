#!/usr/bin/env bash
# The main job, end to end: set up, replay a real clip from a rosbag into the tracker node running the shipped
# model, and report how well it tracked.
set -euo pipefail

echo "scripts/demo.sh: not yet available: needs the node (issue 7), the trained model (issue 6)" \
     "and the bag tools (issue 8)." >&2
echo "Meanwhile: scripts/setup.sh sets up the environment and scripts/test.sh runs the tests." >&2
exit 2
