"""ament_python build of siammixer_ros: used by colcon on a ROS 2 machine and by pip in scripts/setup.sh.

install_requires lists only what ROS machines cannot get from apt under the same name (onnxruntime, via the rosdep
pip key python3-onnxruntime-pip) plus numpy/PyYAML, whose apt packages carry pip metadata. OpenCV is deliberately
NOT declared: on a ROS machine it comes from apt (python3-opencv, which has no pip metadata, so declaring
opencv-python-headless would make pip pull a second, conflicting cv2); in the project venv scripts/setup.sh installs
exactly one cv2 provider from requirements/constraints.txt.
"""

import os

from setuptools import find_packages, setup

package_name = "siammixer_ros"


def share_tree(directory: str) -> list[tuple[str, list[str]]]:
    """data_files entries that install every file under `directory` into share/siammixer_ros/<directory>."""
    entries = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        paths = [os.path.join(root, name) for name in sorted(files) if not name.startswith(".")]
        if paths:
            entries.append((os.path.join("share", package_name, root), paths))
    return entries


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=[package_name, package_name + ".*"]),
    # The training recipes and the mined pair lists travel with the package (siammixer-train --config <installed path>).
    package_data={package_name + ".train": ["configs/*.yaml", "pseudo_tracks.json", "hard_negatives.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        *share_tree("launch"),
        *share_tree("config"),
        *share_tree("models"),
    ],
    python_requires=">=3.10",
    install_requires=["numpy", "onnxruntime", "PyYAML"],
    extras_require={
        # Exact pin: the only allowed torch is the 2.13.0 CPU build; anything else pulls a multi-GB CUDA build.
        "train": ["torch==2.13.0", "onnx", "onnxscript", "tqdm", "matplotlib"],
        "eval": ["matplotlib", "tqdm", "openvino"],
        "bag": ["rosbags"],
        "test": ["pytest", "ruff"],
    },
    zip_safe=True,
    maintainer="siammixer_ros maintainers",
    maintainer_email="siammixer@example.com",
    description="SiamMixer single-object tracker as a ROS 2 node (ONNX Runtime, vision_msgs).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "siammixer_tracker = siammixer_ros.ros.node:main",
            "siammixer_tracker_lifecycle = siammixer_ros.ros.node:main_lifecycle",
            "siammixer-model-info = siammixer_ros.tools.model_info:main",
            "siammixer-export = siammixer_ros.model.export:main",
            "siammixer-bench-network = siammixer_ros.tools.bench_network:main",
            "siammixer-bench-tracker = siammixer_ros.tools.bench_tracker:main",
            "siammixer-eval = siammixer_ros.eval.cli:main",
            "siammixer-train = siammixer_ros.train.cli:main",
            "siammixer-make-bag = siammixer_ros.bag.make_bag:main",
            "siammixer-eval-bag = siammixer_ros.bag.eval_bag:main",
            "siammixer-live-eval = siammixer_ros.bag.live_eval:main",
            "siammixer-bench-node = siammixer_ros.tools.bench_node:main",
            "siammixer-tune-tracker = siammixer_ros.tools.tune_tracker:main",
            "siammixer-quantize = siammixer_ros.tools.quantize:main",
            "siammixer-bench-quantization = siammixer_ros.tools.bench_quantization:main",
        ],
    },
)
