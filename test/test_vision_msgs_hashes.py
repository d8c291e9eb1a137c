"""vision_msgs type hashes equal upstream's (ROS 2 Humble+ vision_msgs 4.x), so our messages interoperate with a real
ROS install: checked in the generated type descriptions and in what rclpy announces on the wire."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ros_helpers import RosTestNode, requires_rclpy, unique_namespace

from siammixer_ros.bag.msgtypes import UPSTREAM_RIHS01

pytestmark = requires_rclpy


@pytest.mark.parametrize("type_name", sorted(UPSTREAM_RIHS01))
def test_type_description_hash_matches_upstream(type_name: str) -> None:
    from ament_index_python.packages import get_package_share_directory

    description = Path(get_package_share_directory("vision_msgs")) / "msg" / f"{type_name}.json"
    assert description.is_file(), f"{description} missing: vision_msgs was not built/installed"
    hash_string = json.loads(description.read_text())["type_hashes"][0]["hash_string"]
    assert hash_string == UPSTREAM_RIHS01[type_name], f"vision_msgs/{type_name} differs from upstream"


def test_hashes_announced_by_rclpy_match_upstream(ros_node: RosTestNode) -> None:
    import vision_msgs.msg

    namespace = unique_namespace("hash")
    announced = {}
    for type_name in UPSTREAM_RIHS01:
        topic = f"{namespace}/{type_name.lower()}"
        ros_node.node.create_publisher(getattr(vision_msgs.msg, type_name), topic, 1)
        infos = ros_node.wait_until(
            lambda topic=topic: ros_node.node.get_publishers_info_by_topic(topic), 10.0, f"publisher info of {topic}"
        )
        announced[type_name] = str(infos[0].topic_type_hash)
    assert announced == UPSTREAM_RIHS01


# The project's own interfaces, as built by scripts/setup.sh: the same hashes on Kilted and Jazzy (CI runs this file on
# both), so nodes built against either distribution talk to each other. A change of the .msg/.srv text changes them
# on purpose: update these together with the interface, knowing that deployed nodes will no longer match.
PROJECT_TYPE_HASHES = {
    "msg/TrackerStatus": "RIHS01_16bac3e336e29a8db91b8cbaba924afe96e0e3d409d37bf6e7ab07165a8eeb74",
    "srv/SetTarget": "RIHS01_971cf1e6dfa511ba5d61f50101d5d552c96572421e6942007cad4f29d3f5d9b8",
}


@pytest.mark.parametrize("type_path", sorted(PROJECT_TYPE_HASHES))
def test_project_interface_hashes_are_the_same_on_every_distribution(type_path: str) -> None:
    from ament_index_python.packages import get_package_share_directory

    description = Path(get_package_share_directory("siammixer_interfaces")) / f"{type_path}.json"
    assert description.is_file(), f"{description} missing: siammixer_interfaces was not built/installed"
    hash_string = json.loads(description.read_text())["type_hashes"][0]["hash_string"]
    assert hash_string == PROJECT_TYPE_HASHES[type_path]
