#!/usr/bin/env bash
# Set up the environment with all extras (scripts/setup.sh --extras train,eval) and run the test suite with pytest.
# Usage: scripts/test.sh [--distro kilted|jazzy] [pytest arguments...]   e.g. scripts/test.sh test/test_ros_environment.py -x
#   --distro jazzy   set up and test with ROS 2 Jazzy in .venv-jazzy/ (default: Kilted in .venv/; docs/distros.md)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/ros_env.sh
source "$REPO/scripts/ros_env.sh"
take_distro_option "$@"
VENV=$(distro_venv "$REPO" "$DISTRO")

"$REPO/scripts/setup.sh" --distro "$DISTRO" --extras train,eval

# Same clean, localhost-only ROS environment as the set-up (a sourced /opt/ros would shadow the venv's packages).
clean_ros_environment "$REPO"

cd "$REPO"
status=0
"$VENV/bin/python" -m pytest ${OTHER_ARGS[@]+"${OTHER_ARGS[@]}"} || status=$?
if [[ $status == 5 ]]; then
    echo "test.sh: pytest collected no tests (exit code 5); that is a failure here" >&2
    exit 1
fi
exit "$status"
