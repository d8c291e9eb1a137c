# Sourced by scripts/setup.sh, test.sh and demo.sh (not run): the ROS 2 distribution option and the clean,
# localhost-only ROS environment they all run with.

# The distributions setup.sh can install from PyPI wheels; the first is the default.
ROS_DISTROS=(kilted jazzy)

# take_distro_option ARGS...: sets DISTRO from `--distro NAME` / `--distro=NAME` (default kilted) and
# OTHER_ARGS to the remaining arguments, in order; exits with status 2 on an unknown distribution.
take_distro_option() {
    DISTRO=${ROS_DISTROS[0]}
    OTHER_ARGS=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --distro) DISTRO=${2:-}; shift $(( $# > 1 ? 2 : 1 )) ;;
            --distro=*) DISTRO=${1#--distro=}; shift ;;
            *) OTHER_ARGS+=("$1"); shift ;;
        esac
    done
    if [[ ! " ${ROS_DISTROS[*]} " == *" $DISTRO "* ]]; then
        echo "$(basename "$0"): unknown --distro '$DISTRO' (known: ${ROS_DISTROS[*]})" >&2
        exit 2
    fi
}

# distro_venv REPO DISTRO: the venv folder of a distribution, unless SIAMMIXER_VENV names one. Kilted keeps .venv;
# every other distribution gets its own folder (.venv-jazzy), so the two never mix.
distro_venv() {
    if [[ -n ${SIAMMIXER_VENV:-} ]]; then
        echo "$SIAMMIXER_VENV"
    elif [[ $2 == "${ROS_DISTROS[0]}" ]]; then
        echo "$1/.venv"
    else
        echo "$1/.venv-$2"
    fi
}

# clean_ros_environment REPO: a sourced ROS distribution (/opt/ros/...) would mix its Python 3.10/3.12 packages
# and libraries into the venv's wheels, so its variables go; DDS discovery stays on this machine; the project's
# Fast DDS profile is named in both variables, since Fast DDS 3.x (Kilted) reads FASTDDS_DEFAULT_PROFILES_FILE and
# Fast DDS 2.x (Jazzy) only FASTRTPS_DEFAULT_PROFILES_FILE.
clean_ros_environment() {
    unset PYTHONPATH AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH LD_LIBRARY_PATH ROS_DISTRO || true
    export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
    export FASTDDS_DEFAULT_PROFILES_FILE=$1/config/fastdds_localhost.xml
    export FASTRTPS_DEFAULT_PROFILES_FILE=$1/config/fastdds_localhost.xml
}
