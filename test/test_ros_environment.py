"""The ROS 2 environment is real: separate processes exchange sensor_msgs/Image, vision_msgs/Detection2DArray and
call the project's SetTarget service over DDS (on this machine only), and nodes stop cleanly on SIGTERM."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import pytest
from ros_helpers import (
    DISCOVERY_TIMEOUT_S,
    PROCESS_START_TIMEOUT_S,
    ChildProcess,
    ProcessLauncher,
    RosTestNode,
    requires_rclpy,
    unique_namespace,
)

HERE = Path(__file__).resolve().parent
pytestmark = requires_rclpy


def test_processes_get_localhost_discovery(ros_env: dict[str, str]) -> None:
    # Discovery must never leave this machine; the profile makes it fast.
    assert ros_env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    # Fast DDS 3.x (Kilted) reads the first name, 2.x (Jazzy) only the second: both must name the profile.
    for variable in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
        assert Path(ros_env[variable]).is_file() and ros_env[variable] == os.environ[variable]


@pytest.fixture
def peer(ros_processes: ProcessLauncher) -> tuple[str, ChildProcess]:
    namespace = unique_namespace("env")
    process = ros_processes.start_python_script(HERE / "ros_peer.py", "--namespace", namespace)
    process.wait_for_output(r"READY")
    return namespace, process


def test_image_in_detections_out_between_processes(ros_node: RosTestNode, peer: tuple[str, ChildProcess]) -> None:
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    namespace, _process = peer
    received = ros_node.collect(Detection2DArray, f"{namespace}/detections")
    publisher = ros_node.node.create_publisher(Image, f"{namespace}/image", 10)
    ros_node.wait_for_subscribers(publisher)
    ros_node.wait_until(
        lambda: ros_node.node.count_publishers(f"{namespace}/detections") > 0, what="the peer's detections publisher"
    )

    width, height = 7, 5
    pixels = bytes((3 * i + 1) % 256 for i in range(width * height * 3))
    image = Image(height=height, width=width, encoding="bgr8", step=width * 3, data=pixels)
    image.header.frame_id = "camera_optical"
    image.header.stamp.sec, image.header.stamp.nanosec = 1234, 5678

    def published_and_answered() -> bool:
        # Re-publish until answered: the first message can race the peer's reader matching our writer.
        if not received:
            publisher.publish(image)
        return bool(received)

    ros_node.wait_until(published_and_answered, DISCOVERY_TIMEOUT_S, "a Detection2DArray answering our Image")
    detections = received[0]
    assert (detections.header.stamp.sec, detections.header.stamp.nanosec) == (1234, 5678)
    assert len(detections.detections) == 1
    detection = detections.detections[0]
    assert detection.id == "camera_optical"
    assert (detection.bbox.size_x, detection.bbox.size_y) == (7.0, 5.0)
    assert (detection.bbox.center.position.x, detection.bbox.center.position.y) == (3.5, 2.5)
    assert detection.results[0].hypothesis.class_id == f"sum={sum(pixels)}"


def test_set_target_service_between_processes(ros_node: RosTestNode, peer: tuple[str, ChildProcess]) -> None:
    from siammixer_interfaces.srv import SetTarget

    namespace, _process = peer
    client = ros_node.node.create_client(SetTarget, f"{namespace}/set_target")

    request = SetTarget.Request(x=10.0, y=20.0, width=30.0, height=40.0, label="car")
    request.stamp.sec = 42
    response = ros_node.call_service(client, request)
    assert response.success, response.message
    assert response.track_id == 1
    assert response.frame_stamp.sec == 42
    assert (response.used_x, response.used_y, response.used_width, response.used_height) == (10.0, 20.0, 30.0, 40.0)
    assert "car" in response.message

    rejected = ros_node.call_service(client, SetTarget.Request(x=10.0, y=20.0, width=0.0, height=40.0))
    assert not rejected.success
    assert rejected.track_id == 0
    assert "zero or negative size" in rejected.message

    not_a_number = ros_node.call_service(client, SetTarget.Request(x=math.nan, y=0.0, width=5.0, height=5.0))
    assert not not_a_number.success
    assert "not a finite number" in not_a_number.message


def test_node_process_stops_cleanly_on_sigterm(ros_processes: ProcessLauncher) -> None:
    process = ros_processes.start_python_script(HERE / "ros_peer.py", "--namespace", unique_namespace("stop"))
    process.wait_for_output(r"READY")
    exit_code = process.terminate()
    assert exit_code == 0, f"peer exited with {exit_code} on SIGTERM; output:\n{process.output()}"


def test_a_child_that_crashes_in_native_code_shows_where(ros_processes: ProcessLauncher) -> None:
    # A node that segfaults at start-up must leave more than its exit code in the test's failure message.
    code = "import ctypes\n\ndef read_address_zero():\n    ctypes.string_at(0)\n\nread_address_zero()\n"
    process = ros_processes.start_python_code(code, name="crashing_child")
    exit_code = process.popen.wait(PROCESS_START_TIMEOUT_S)
    assert exit_code == -signal.SIGSEGV, process.output()
    assert "Fatal Python error: Segmentation fault" in process.output()
    assert "read_address_zero" in process.output()


def test_interface_types_are_what_rqt_and_the_node_rely_on() -> None:
    from siammixer_interfaces.msg import TrackerStatus
    from siammixer_interfaces.srv import SetTarget

    # rqt's Service Caller can type float64 fields; the stamp defaults to zero (= newest frame).
    fields = SetTarget.Request.get_fields_and_field_types()
    assert {name: fields[name] for name in ("x", "y", "width", "height")} == dict.fromkeys(
        ("x", "y", "width", "height"), "double"
    )
    assert fields["stamp"] == "builtin_interfaces/Time" and fields["label"] == "string"
    assert SetTarget.Request().stamp.sec == 0 and SetTarget.Request().stamp.nanosec == 0
    response_fields = SetTarget.Response.get_fields_and_field_types()
    assert response_fields["success"] == "boolean" and response_fields["message"] == "string"
    assert [TrackerStatus.IDLE, TrackerStatus.TRACKING, TrackerStatus.UNCERTAIN, TrackerStatus.LOST] == [0, 1, 2, 3]
    status_fields = TrackerStatus.get_fields_and_field_types()
    for name in ("header", "state", "score", "track_id", "x", "y", "width", "height", "fps", "dropped_frames"):
        assert name in status_fields
