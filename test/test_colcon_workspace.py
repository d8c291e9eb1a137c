"""The ROS 2 workspace path of the README, for real: colcon (from PyPI) builds siammixer_interfaces and
siammixer_ros in a temporary workspace with the README's --base-paths; then, with nothing sourced but what colcon
installed, the node and the service type import from the install space and the installed node starts on its
installed default model and stops cleanly on SIGTERM.

The underlay stands in for /opt/ros: a fresh venv with requirements/ros.txt, base.txt and OpenCV (not the
project's packages; an overlay on the dev venv would resolve the package share to the venv) plus colcon.txt.
vision_msgs is not on PyPI: interfaces/vision_msgs_fallback/vision_msgs is named as a third --base-paths entry,
as a machine without ros-$ROS_DISTRO-vision-msgs would have to. Takes 2-3 minutes (mostly vision_msgs' build).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from ros_helpers import PROCESS_START_TIMEOUT_S, TERMINATE_TIMEOUT_S, ProcessLauncher

from siammixer_ros.core.model_file import SHIPPED_MODEL_NAMES

REPO = Path(__file__).resolve().parents[1]
REQ = REPO / "requirements"
FALLBACK = "interfaces/vision_msgs_fallback/vision_msgs"

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("python3.11", "cmake", "g++", "git")),
    reason="needs python3.11, cmake, g++ and git (scripts/setup.sh installs cmake and g++)")


def readme_base_paths() -> list[str]:
    """The --base-paths of the README's `colcon build` line, e.g. ['src/siammixer_ros', ...]."""
    match = re.search(r"^colcon build --base-paths (.+)$", (REPO / "README.md").read_text(), re.MULTILINE)
    assert match, "README.md has no `colcon build --base-paths ...` line"
    return shlex.split(match.group(1).split("#")[0])


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> str:
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args[:4])} ... failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def clean_env(underlay: Path) -> dict[str, str]:
    """No ROS, no project venv: the underlay's bin on PATH and its prefix as the ament/CMake prefix (what sourcing
    /opt/ros/$ROS_DISTRO/setup.bash would give), DDS discovery on this machine only."""
    return {"HOME": os.environ.get("HOME", "/root"), "PATH": f"{underlay / 'bin'}:/usr/bin:/bin",
            "LANG": "C.UTF-8", "AMENT_PREFIX_PATH": str(underlay), "CMAKE_PREFIX_PATH": str(underlay),
            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "FASTDDS_DEFAULT_PROFILES_FILE": str(REPO / "config" / "fastdds_localhost.xml")}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("colcon")
    underlay = root / "underlay"
    env = clean_env(underlay)
    run(["python3.11", "-m", "venv", str(underlay)], env, root, 120)
    run([str(underlay / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "-c",
         str(REQ / "constraints.txt"), "-r", str(REQ / "ros.txt"), "-r", str(REQ / "base.txt"), "-r",
         str(REQ / "colcon.txt"), "opencv-python-headless"], env, root, 900)
    run([str(underlay / "bin" / "python"), str(REPO / "scripts" / "fix_cmake_paths.py"), str(underlay)], env, root, 60)

    # `git clone <this repository> src/siammixer_ros`, of the working tree as it is (uncommitted changes included).
    source = root / "ws" / "src" / "siammixer_ros"
    files = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], dict(os.environ), REPO, 60)
    for name in filter(None, files.split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)

    base_paths = readme_base_paths()
    assert base_paths == ["src/siammixer_ros", "src/siammixer_ros/interfaces"]
    run(["colcon", "build", "--base-paths", *base_paths, f"src/siammixer_ros/{FALLBACK}",
         "--cmake-args", "-DBUILD_TESTING=OFF"], env, root / "ws", 1200)
    return root / "ws", env


def in_install_space(ws: Path, command: str) -> list[str]:
    """bash -c 'source install/setup.bash && COMMAND' in the clean environment."""
    return ["bash", "-c", f"source {ws / 'install' / 'setup.bash'} && {command}"]


def test_the_node_and_the_service_type_import_from_the_install_space(workspace):
    ws, env = workspace
    code = """
from ament_index_python.packages import get_package_share_directory
from siammixer_interfaces.msg import TrackerStatus
from siammixer_interfaces.srv import SetTarget
from vision_msgs.msg import Detection2D
import siammixer_interfaces, siammixer_ros.ros.node as node
for kind in (SetTarget, TrackerStatus, Detection2D):
    kind.__class__.__import_type_support__()  # loads the generated C libraries (needs LD_LIBRARY_PATH)
print(node.__file__); print(siammixer_interfaces.__file__)
print(get_package_share_directory("siammixer_ros")); print(node.default_model_path())
"""
    out = run(in_install_space(ws, f"python -c {shlex.quote(code)}"), env, ws, 120).split()
    install = str(ws / "install")
    assert all(line.startswith(install) for line in out), out
    node_file, interfaces_file, share, model = out
    assert node_file.endswith("siammixer_ros/ros/node.py") and "siammixer_interfaces" in interfaces_file
    assert share == f"{install}/siammixer_ros/share/siammixer_ros"
    assert Path(model).is_file() and (Path(share) / "launch" / "tracker.launch.py").is_file()
    assert (Path(share) / "config" / "tracker.yaml").is_file()


def test_the_installed_node_starts_on_its_default_model_and_stops_on_sigterm(workspace):
    ws, env = workspace
    launcher = ProcessLauncher(env, cwd=ws)
    namespace = f"/colcon_{os.getpid()}"
    # ament_python installs console scripts to lib/<package> (where `ros2 run` looks), not on PATH.
    script = ws / "install" / "siammixer_ros" / "lib" / "siammixer_ros" / "siammixer_tracker"
    process = launcher.start(in_install_space(ws, f"exec {script} --ros-args -r __ns:={namespace}"),
                             name="installed_tracker")
    try:
        process.wait_for_output(r"tracking on /", timeout=PROCESS_START_TIMEOUT_S)
        installed_model = ws / "install" / "siammixer_ros" / "share" / "siammixer_ros" / "models"
        assert f"{installed_model / SHIPPED_MODEL_NAMES['float']}" in process.output()
        os.kill(process.pid, signal.SIGTERM)
        process.popen.wait(TERMINATE_TIMEOUT_S)
        assert process.popen.returncode == 0 and "Traceback" not in process.output(), process.output()
    finally:
        launcher.stop_all()
