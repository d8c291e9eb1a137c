#!/usr/bin/env bash
# Set up the environment with all extras (scripts/setup.sh --extras train,eval) and run the test suite with pytest.
# Usage: scripts/test.sh [pytest arguments...]   e.g. scripts/test.sh test/test_ros_environment.py -x
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SIAMMIXER_VENV:-$REPO/.venv}

"$REPO/scripts/setup.sh" --extras train,eval

# Same clean, localhost-only ROS environment as the set-up (a sourced /opt/ros would shadow the venv's packages).
unset PYTHONPATH AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH LD_LIBRARY_PATH ROS_DISTRO || true
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE=$REPO/config/fastdds_localhost.xml

cd "$REPO"
status=0
"$VENV/bin/python" -m pytest "$@" || status=$?
if [[ $status == 5 ]]; then
    echo "test.sh: pytest collected no tests (exit code 5); that is a failure here" >&2
    exit 1
fi
exit "$status"
