#!/usr/bin/env bash
# One command from a fresh clone to a working ROS 2 environment (no ROS installation needed):
#   .venv/  with ROS 2 Kilted from PyPI wheels, ONNX Runtime, OpenCV, numpy, rosbags, pytest, ruff,
#           vision_msgs (built from interfaces/vision_msgs_fallback only where it is not importable),
#           siammixer_interfaces (built with cmake against the wheels) and siammixer_ros (editable install).
#
# Usage: scripts/setup.sh [--distro kilted|jazzy] [--extras train,eval] [--verbose]
#   --distro jazzy   ROS 2 Jazzy (LTS) wheels instead of Kilted, in their own venv .venv-jazzy/ (docs/distros.md)
#   --extras train   torch==2.13.0 (CPU wheel only), onnx, onnxscript, matplotlib, tqdm
#   --extras eval    openvino, matplotlib, tqdm, and opencv-contrib-python-headless instead of opencv-python-headless
# Idempotent and quiet: every step is skipped when its stamp (hash of its inputs) is present; output goes to
# .venv/.setup/setup.log and is shown only when a step fails. Prints one summary line with timings.
# Environment: SIAMMIXER_PYTHON (interpreter, default python3.11), SIAMMIXER_VENV (default <repo>/.venv, or
# <repo>/.venv-<distro> for a distribution other than Kilted).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/ros_env.sh
source "$REPO/scripts/ros_env.sh"
REQ=$REPO/requirements
EXTRAS=""
VERBOSE=0

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
take_distro_option "$@"
VENV=$(distro_venv "$REPO" "$DISTRO")
set -- ${OTHER_ARGS[@]+"${OTHER_ARGS[@]}"}
while [[ $# -gt 0 ]]; do
    case "$1" in
        --extras) EXTRAS=${2:-}; shift 2 ;;
        --extras=*) EXTRAS=${1#--extras=}; shift ;;
        --verbose|-v) VERBOSE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "setup.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
WANT_TRAIN=0; WANT_EVAL=0
IFS=',' read -r -a extras_list <<< "$EXTRAS"
for extra in "${extras_list[@]}"; do
    case "$extra" in
        train) WANT_TRAIN=1 ;;
        eval) WANT_EVAL=1 ;;
        "") ;;
        *) echo "setup.sh: unknown extra '$extra' (known: train, eval)" >&2; exit 2 ;;
    esac
done

# Set up and run with a clean, localhost-only ROS environment (scripts/ros_env.sh says why).
clean_ros_environment "$REPO"
unset PIP_REQUIRE_VIRTUALENV || true
export PIP_DISABLE_PIP_VERSION_CHECK=1

T0=$(date +%s.%N)
SUMMARY=()
STATE=$VENV/.setup
LOG=$(mktemp -t siammixer-setup.XXXXXX.log)

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# run_step NAME COMMAND...: runs quietly, logs, records the time; on failure shows the log's tail and exits.
run_step() {
    local name=$1; shift
    local start; start=$(date +%s.%N)
    echo "=== $name: $*" >> "$LOG"
    if [[ $VERBOSE == 1 ]]; then
        if ! "$@" 2>&1 | tee -a "$LOG"; then fail "$name"; fi
    elif ! "$@" >> "$LOG" 2>&1; then
        fail "$name"
    fi
    SUMMARY+=("$name $(elapsed "$start")s")
}
fail() {
    if [[ -n ${BG_PID:-} ]]; then wait "$BG_PID" || true; cat "$BG_LOG" >> "$LOG"; fi
    echo "setup.sh: step '$1' FAILED. Last lines of the log ($LOG):" >&2
    # pip warns about the machine's missing file:// extra indexes; those lines are noise, not the failure.
    grep -v "is ignored: it is neither a file nor a directory" "$LOG" | tail -n 40 >&2
    exit 1
}
skip() { SUMMARY+=("$1 skipped"); }

# hash_inputs FILE_OR_STRING...: short hash of file contents (names included) and literal strings.
hash_inputs() {
    local item
    for item in "$@"; do
        if [[ -f $item ]]; then echo "file ${item#"$REPO"/}"; cat "$item"; else echo "str $item"; fi
    done | sha256sum | cut -c1-16
}
stamp_ok() { [[ -f $STATE/stamps/$1 && $(cat "$STATE/stamps/$1") == "$2" ]]; }
stamp_set() { mkdir -p "$STATE/stamps"; echo "$2" > "$STATE/stamps/$1"; }

# ---------------------------------------------------------------- interpreter + venv
PYTHON=${SIAMMIXER_PYTHON:-}
if [[ -z $PYTHON ]]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" > /dev/null \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2> /dev/null; then
            PYTHON=$candidate; break
        fi
    done
fi
if [[ -z $PYTHON ]]; then
    echo "setup.sh: needs Python 3.11 (the ROS 2 Kilted and Jazzy wheels on PyPI are built for CPython 3.11);" \
         "install python3.11 or set SIAMMIXER_PYTHON=/path/to/python3.11" >&2
    exit 1
fi
# One distribution per venv: the Kilted and Jazzy wheels share package names (ros-rclpy, ...) at other versions.
# The venv records its distribution; one made before distributions could be chosen has no record and is Kilted.
if [[ ! -x $VENV/bin/python ]]; then
    run_step venv "$PYTHON" -m venv "$VENV"
    mkdir -p "$STATE"
    echo "$DISTRO" > "$STATE/distro"
else
    skip venv
fi
mkdir -p "$STATE"
VENV_DISTRO=$(cat "$STATE/distro" 2> /dev/null || echo kilted)
if [[ $VENV_DISTRO != "$DISTRO" ]]; then
    echo "setup.sh: $VENV holds ROS 2 $VENV_DISTRO, not $DISTRO; unset SIAMMIXER_VENV or point it at another" \
         "folder" >&2
    exit 2
fi
VPY=$VENV/bin/python
export PATH=$VENV/bin:$PATH

# ---------------------------------------------------------------- Python packages (pinned)
# Exactly one cv2 provider: the contrib build once eval is (or was) wanted, else the plain headless build;
# both are pinned to the same version in constraints.txt (checked here).
cv_pin() { grep -i "^$1==" "$REQ/constraints.txt" | head -n 1 | cut -d= -f3; }
CV_VERSION=$(cv_pin opencv-python-headless)
if [[ -z $CV_VERSION || $CV_VERSION != "$(cv_pin opencv-contrib-python-headless)" ]]; then
    echo "setup.sh: requirements/constraints.txt must pin opencv-python-headless and" \
         "opencv-contrib-python-headless to the same version" >&2
    exit 1
fi
CV_PACKAGE=opencv-python-headless
if [[ $WANT_EVAL == 1 || -f $STATE/opencv-contrib ]]; then CV_PACKAGE=opencv-contrib-python-headless; fi

# Kilted: ros.txt with the lock constraints.txt. Jazzy: ros-jazzy.txt, locked by constraints.txt less its ros-*
# pins (Kilted's versions of the same names) plus constraints-jazzy.txt.
if [[ $DISTRO == kilted ]]; then
    ROS_REQUIREMENTS=$REQ/ros.txt
    LOCK_INPUTS=("$REQ/constraints.txt")
    CONSTRAINTS=$REQ/constraints.txt
else
    ROS_REQUIREMENTS=$REQ/ros-$DISTRO.txt
    LOCK_INPUTS=("$REQ/constraints.txt" "$REQ/constraints-$DISTRO.txt")
    CONSTRAINTS=$STATE/constraints-$DISTRO.txt
    { grep -v '^ros-' "$REQ/constraints.txt"; cat "$REQ/constraints-$DISTRO.txt"; } > "$CONSTRAINTS"
fi
BASE_FILES=("$ROS_REQUIREMENTS" "$REQ/base.txt" "$REQ/test.txt")
EXTRA_FILES=()
[[ $WANT_TRAIN == 1 ]] && EXTRA_FILES+=("$REQ/train.txt")
[[ $WANT_EVAL == 1 ]] && EXTRA_FILES+=("$REQ/eval.txt")
BASE_KEY=$(hash_inputs "$("$VPY" -VV)" "$CV_PACKAGE" "${LOCK_INPUTS[@]}" "${BASE_FILES[@]}")
EXTRAS_KEY=$(hash_inputs "$BASE_KEY" "${EXTRA_FILES[@]}")

# pip_install REQUIREMENT_FILE...: install with the lock file as constraints (pip from the venv; no byte-compiling
# of thousands of files up front: Python compiles what is imported, on first import).
pip_install() {
    local args=() f
    for f in "$@"; do args+=(-r "$f"); done
    # torch comes ONLY as the pinned CPU wheel (constraints: torch==2.13.0+cpu): from /opt/wheels where it lies on
    # disk, else from PyTorch's CPU index. PyPI's own torch 2.13.0 is the multi-GB CUDA build and cannot match.
    if [[ -d /opt/wheels ]]; then
        args+=(--find-links /opt/wheels)
    elif [[ $WANT_TRAIN == 1 ]]; then
        args+=(--extra-index-url https://download.pytorch.org/whl/cpu)
    fi
    "$VPY" -m pip install --quiet --no-compile -c "$CONSTRAINTS" "${args[@]}"
}

pip_install_base() {
    # Replace the cv2 provider only when the other one is installed (they share the cv2 folder).
    local other=opencv-contrib-python-headless
    [[ $CV_PACKAGE == opencv-contrib-python-headless ]] && other=opencv-python-headless
    if "$VPY" -m pip show -q "$other" > /dev/null 2>&1; then
        "$VPY" -m pip uninstall -y opencv-python-headless opencv-contrib-python-headless
    fi
    local cv_requirement=$STATE/opencv-requirement.txt
    echo "$CV_PACKAGE" > "$cv_requirement"
    pip_install "${BASE_FILES[@]}" "$cv_requirement"
    if [[ $CV_PACKAGE == opencv-contrib-python-headless ]]; then touch "$STATE/opencv-contrib"; fi
}

fix_cmake_paths() {
    # The wheels' exported CMake files hard-code the wheel build machine's Python and numpy include directories.
    "$VPY" "$REPO/scripts/fix_cmake_paths.py" "$VENV"
}

if stamp_ok pip-base "$BASE_KEY"; then
    skip pip-base
else
    run_step pip-base pip_install_base
    run_step cmake-paths fix_cmake_paths
    stamp_set pip-base "$BASE_KEY"
fi

# The extras (torch, openvino, ...: mostly unpacking large wheels) install in the background while the interface
# packages compile; they add packages only (same pins), nothing the rosidl generators use changes.
BG_PID=""
if [[ ${#EXTRA_FILES[@]} -gt 0 ]]; then
    if stamp_ok "pip-extras-t$WANT_TRAIN-e$WANT_EVAL" "$EXTRAS_KEY"; then
        skip pip-extras
    else
        BG_LOG=$LOG.extras
        BG_START=$(date +%s.%N)
        ( pip_install "${EXTRA_FILES[@]}" > "$BG_LOG" 2>&1 ) &
        BG_PID=$!
    fi
fi
finish_background() {
    [[ -z $BG_PID ]] && return 0
    local status=0
    wait "$BG_PID" || status=$?
    BG_PID=""
    { echo "=== pip-extras: ${EXTRA_FILES[*]}"; cat "$BG_LOG"; } >> "$LOG"
    rm -f "$BG_LOG"
    [[ $status == 0 ]] || fail pip-extras
    SUMMARY+=("pip-extras(parallel) $(elapsed "$BG_START")s")
    stamp_set "pip-extras-t$WANT_TRAIN-e$WANT_EVAL" "$EXTRAS_KEY"
}

# ---------------------------------------------------------------- interface packages (cmake + rosidl)
ensure_compilers() {
    if command -v cmake > /dev/null && command -v g++ > /dev/null && command -v make > /dev/null; then return 0; fi
    local sudo=""
    [[ $(id -u) != 0 ]] && sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq cmake g++ make > /dev/null
}

# build_interfaces NAME SOURCE_DIR: configure, build and install one ament_cmake package into the venv.
build_interfaces() {
    local name=$1 src=$2
    local build=$VENV/build/$name
    mkdir -p "$build"
    AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV cmake -S "$src" -B "$build" \
        -DBUILD_TESTING=OFF \
        -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$VPY"
    AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV cmake --build "$build" -j "$(nproc)"
    cmake --install "$build"
}

interface_step() {
    local name=$1 src=$2
    local key files=()
    mapfile -t files < <(find "$src" -type f | LC_ALL=C sort)
    key=$(hash_inputs "$BASE_KEY" "$src" "${files[@]}")
    if stamp_ok "iface-$name" "$key"; then skip "$name"; return; fi
    if [[ $name == vision_msgs && ! -f $STATE/stamps/iface-$name ]] \
        && "$VPY" -c 'import vision_msgs.msg' > /dev/null 2>&1; then
        skip "$name(provided)"
        return
    fi
    if [[ -z ${COMPILERS_CHECKED:-} ]]; then run_step compilers ensure_compilers; COMPILERS_CHECKED=1; fi
    run_step "$name" build_interfaces "$name" "$src"
    stamp_set "iface-$name" "$key"
}
interface_step vision_msgs "$REPO/interfaces/vision_msgs_fallback/vision_msgs"
interface_step siammixer_interfaces "$REPO/interfaces/siammixer_interfaces"
finish_background

# ---------------------------------------------------------------- siammixer_ros itself
# Editable install: code changes need no re-run. setuptools' editable mode skips data_files, so the share/ layout
# that colcon would install is made here, with symlinks like `colcon build --symlink-install`: launch/, config/,
# models/ and package.xml link to the working tree, plus the ament index marker.
install_package() {
    "$VPY" -m pip install --quiet --no-deps --no-build-isolation -e "$REPO"
    local share=$VENV/share/siammixer_ros item
    mkdir -p "$share" "$VENV/share/ament_index/resource_index/packages"
    cp "$REPO/resource/siammixer_ros" "$VENV/share/ament_index/resource_index/packages/siammixer_ros"
    for item in launch config models package.xml; do
        rm -rf "${share:?}/$item"
        ln -s "$REPO/$item" "$share/$item"
    done
    # `ros2 run`/launch look for executables in lib/<package>: mirror the console scripts there, as colcon does.
    mkdir -p "$VENV/lib/siammixer_ros"
    "$VPY" - "$VENV" <<'PY'
import importlib.metadata as md
import os
import sys

lib = os.path.join(sys.argv[1], "lib", "siammixer_ros")
for entry in md.distribution("siammixer_ros").entry_points.select(group="console_scripts"):
    link = os.path.join(lib, entry.name)
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(os.path.join("..", "..", "bin", entry.name), link)
PY
    # Every interpreter of this venv starts with AMENT_PREFIX_PATH including the venv (ament_index lookups such as
    # get_package_share_directory need it; there is no setup.bash to source) and, unless already set, with
    # localhost-only DDS discovery and the fast-discovery profile. Export ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET to
    # talk to other machines. The profile goes into both variables (Fast DDS 3.x reads FASTDDS_..., 2.x only
    # FASTRTPS_...); a profile the user named in either one is kept and used for both.
    "$VPY" - "$REPO/config/fastdds_localhost.xml" <<'PY'
import site
import sys

profile = sys.argv[1]
names = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
line = (
    "import os, sys; "
    "_p = [x for x in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if x and x != sys.prefix]; "
    "os.environ['AMENT_PREFIX_PATH'] = os.pathsep.join([sys.prefix] + _p); del _p; "
    "os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST'); "
    # site.addpackage exec()s this line inside a function: comprehensions see site's globals (os), not _f.
    f"_f = os.environ.get({names[0]!r}) or os.environ.get({names[1]!r}) "
    f"or ({profile!r} if os.path.exists({profile!r}) else ''); "
    f"_f and os.environ.update(dict.fromkeys([n for n in {names!r} if not os.environ.get(n)], _f)); del _f\n"
)
with open(f"{site.getsitepackages()[0]}/siammixer_ros_env.pth", "w") as pth:
    pth.write("# Written by scripts/setup.sh: ROS environment defaults for this venv (see there).\n" + line)
PY
}
PKG_INPUTS=("$REPO/scripts/setup.sh" "$REPO/setup.py" "$REPO/setup.cfg" "$REPO/package.xml" "$REPO/resource/siammixer_ros")
PKG_KEY=$(hash_inputs "$BASE_KEY" "$REPO" "${PKG_INPUTS[@]}")
if stamp_ok siammixer_ros "$PKG_KEY"; then
    skip siammixer_ros
else
    run_step siammixer_ros install_package
    stamp_set siammixer_ros "$PKG_KEY"
fi

# ---------------------------------------------------------------- check (always: cheap, and catches a broken venv)
check_environment() {
    "$VPY" - <<'PY'
import os

import cv2  # noqa: F401
import numpy  # noqa: F401
import onnxruntime  # noqa: F401
import rclpy  # noqa: F401  (loads the ROS 2 libraries)
from ament_index_python.packages import get_package_share_directory
from siammixer_interfaces.srv import SetTarget  # noqa: F401
from vision_msgs.msg import Detection2DArray  # noqa: F401

share = get_package_share_directory("siammixer_ros")
for sub in ("launch", "config", "package.xml"):
    assert os.path.exists(os.path.join(share, sub)), f"{share}/{sub} missing"

# Nothing may have pulled a torch other than the CPU build, or a second cv2 provider.
import importlib.metadata as md
import sys

names = {d.metadata["Name"].lower() for d in md.distributions()}
providers = sorted(names & {"opencv-python", "opencv-python-headless", "opencv-contrib-python",
                            "opencv-contrib-python-headless"})
if len(providers) != 1:
    sys.exit(f"expected exactly one OpenCV distribution, found {providers}")
if "torch" in names and md.version("torch") != "2.13.0+cpu":
    sys.exit(f"torch {md.version('torch')} installed; only 2.13.0+cpu is allowed")
PY
}
run_step check check_environment

cp "$LOG" "$STATE/setup.log"
rm -f "$LOG"
extras_note=${EXTRAS:-none}
echo "setup.sh: ready in $(elapsed "$T0")s ($(IFS=,; echo "${SUMMARY[*]}" | sed 's/,/, /g')) distro=$DISTRO" \
     "extras=$extras_note venv=$VENV"
