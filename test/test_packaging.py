"""Packaging facts ROS users and the set-up script rely on: valid package.xml files with the real dependencies,
what rosdep/colcon discover from the documented paths, the console scripts, and the pins that keep torch a CPU build
and cv2 provided once."""

from __future__ import annotations

import ast
import re

import pytest
from ros_helpers import REPO_ROOT

EXPECTED_CONSOLE_SCRIPTS = {
    "siammixer_tracker": "siammixer_ros.ros.node:main",
    "siammixer_tracker_lifecycle": "siammixer_ros.ros.node:main_lifecycle",
    "siammixer-model-info": "siammixer_ros.tools.model_info:main",
    "siammixer-export": "siammixer_ros.model.export:main",
    "siammixer-bench-network": "siammixer_ros.tools.bench_network:main",
    "siammixer-bench-tracker": "siammixer_ros.tools.bench_tracker:main",
    "siammixer-eval": "siammixer_ros.eval.cli:main",
    "siammixer-train": "siammixer_ros.train.cli:main",
    "siammixer-make-bag": "siammixer_ros.bag.make_bag:main",
    "siammixer-eval-bag": "siammixer_ros.bag.eval_bag:main",
    "siammixer-live-eval": "siammixer_ros.bag.live_eval:main",
    "siammixer-bench-node": "siammixer_ros.tools.bench_node:main",
    "siammixer-tune-tracker": "siammixer_ros.tools.tune_tracker:main",
    "siammixer-quantize": "siammixer_ros.tools.quantize:main",
    "siammixer-bench-quantization": "siammixer_ros.tools.bench_quantization:main",
}


def setup_keywords() -> dict[str, ast.AST]:
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup":
            return {keyword.arg: keyword.value for keyword in node.keywords if keyword.arg}
    raise AssertionError("setup.py does not call setup()")


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_console_scripts_are_exactly_the_documented_ones() -> None:
    entry_points = ast.literal_eval(setup_keywords()["entry_points"])
    declared = dict(item.replace(" ", "").split("=") for item in entry_points["console_scripts"])
    assert declared == EXPECTED_CONSOLE_SCRIPTS


def test_train_extra_pins_torch_exactly_and_lock_file_allows_only_the_cpu_build() -> None:
    extras = ast.literal_eval(setup_keywords()["extras_require"])
    assert "torch==2.13.0" in extras["train"]
    assert [r for r in sum(extras.values(), []) if r.startswith("torch")] == ["torch==2.13.0"]
    assert "opencv-python-headless" not in ast.literal_eval(setup_keywords()["install_requires"])
    assert constraint_pins()["torch"] == "2.13.0+cpu"
    assert constraint_pins()["onnxruntime"] == "1.31.1"


def test_both_opencv_variants_are_pinned_to_one_version() -> None:
    pins = constraint_pins()
    assert pins["opencv-python-headless"] == pins["opencv-contrib-python-headless"]


def test_package_xml_files_are_valid_format_3_with_the_real_dependencies() -> None:
    catkin_pkg_package = pytest.importorskip("catkin_pkg.package", reason="catkin_pkg is installed by scripts/setup.sh")
    package = catkin_pkg_package.parse_package(str(REPO_ROOT / "package.xml"))
    package.validate()
    assert package.package_format == 3 and package.get_build_type() == "ament_python"
    run_dependencies = {d.name for d in package.exec_depends + package.build_export_depends}
    for needed in ("rclpy", "sensor_msgs", "vision_msgs", "std_srvs", "diagnostic_msgs", "geometry_msgs", "cv_bridge",
                   "siammixer_interfaces", "python3-numpy", "python3-opencv", "python3-onnxruntime-pip"):
        assert needed in run_dependencies, f"package.xml does not depend on {needed}"
    setup_version = ast.literal_eval(setup_keywords()["version"])
    assert package.version == setup_version, "package.xml and setup.py versions differ"

    interfaces = catkin_pkg_package.parse_package(str(REPO_ROOT / "interfaces" / "siammixer_interfaces"))
    interfaces.validate()
    assert interfaces.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in [group.name for group in interfaces.member_of_groups]


def test_documented_workspace_paths_find_exactly_the_two_packages() -> None:
    # rosdep --from-paths and colcon --base-paths src/siammixer_ros src/siammixer_ros/interfaces (README).
    packages_module = pytest.importorskip("catkin_pkg.packages", reason="catkin_pkg is installed by scripts/setup.sh")
    found_root = {pkg.name for pkg in packages_module.find_packages(str(REPO_ROOT)).values()}
    found_interfaces = {pkg.name for pkg in packages_module.find_packages(str(REPO_ROOT / "interfaces")).values()}
    assert found_root == {"siammixer_ros"}
    # The vision_msgs fallback must stay invisible in a ROS workspace (COLCON_IGNORE): the distro provides it.
    assert found_interfaces == {"siammixer_interfaces"}
    assert (REPO_ROOT / "interfaces" / "vision_msgs_fallback" / "COLCON_IGNORE").is_file()
