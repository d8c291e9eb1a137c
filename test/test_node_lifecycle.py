"""The lifecycle variant of the tracker node (siammixer_tracker_lifecycle) as a real ROS 2 process, driven through
its lifecycle services as `ros2 lifecycle set` / a launch system's lifecycle manager would: unconfigured it has no
model and no camera subscription; configure loads the model and offers the services; activate subscribes and
tracks; deactivate frees the subscription and pauses; cleanup frees the model; configure works again."""

from __future__ import annotations

import time

import pytest
from ros_helpers import DISCOVERY_TIMEOUT_S, RosTestNode, requires_rclpy, unique_namespace, wait_until

pytestmark = requires_rclpy

NODE = "siammixer_tracker"
SIZE = (320, 240)
BOXES = [(50.0 + 5 * i, 40.0 + 3 * i, 56.0, 44.0) for i in range(20)]


def test_lifecycle_transitions_load_subscribe_pause_and_free(ros_node: RosTestNode, ros_processes) -> None:
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from sensor_msgs.msg import Image
    from siammixer_interfaces.srv import SetTarget
    from vision_msgs.msg import Detection2D

    from siammixer_ros.ros.image_conversion import fill_image_msg
    from siammixer_ros.testing.ncc_model import ncc_model_path
    from siammixer_ros.testing.synthetic import render_sequence

    frames = render_sequence(BOXES, size=SIZE, seed=5, blob=10.0).frames
    namespace = unique_namespace("lifecycle")
    prefix = f"{namespace}/{NODE}"
    process = ros_processes.start_python_module(
        "siammixer_ros.ros.node", "--lifecycle", "--ros-args", "-r", f"__ns:={namespace}",
        "-r", f"image:={namespace}/camera/image", "-p", f"model_path:={ncc_model_path(8)}",
        "-p", "diagnostics.period:=0.3", name="tracker_lifecycle")
    process.wait_for_output("unconfigured: configure loads the model")

    node = ros_node.node
    change_state = node.create_client(ChangeState, f"{prefix}/change_state")
    get_state = node.create_client(GetState, f"{prefix}/get_state")
    set_target = node.create_client(SetTarget, f"{prefix}/set_target")
    image_pub = node.create_publisher(Image, f"{namespace}/camera/image", 10)
    detections = ros_node.collect(Detection2D, f"{prefix}/detection")

    def state() -> str:
        return ros_node.call_service(get_state, GetState.Request()).current_state.label

    def transition(transition_id: int) -> None:
        response = ros_node.call_service(change_state, ChangeState.Request(transition=Transition(id=transition_id)))
        assert response.success, f"transition {transition_id} failed; node output:\n{process.output()}"

    def publish(i: int) -> None:
        msg = fill_image_msg(Image(), frames[i])
        msg.header.stamp.sec, msg.header.stamp.nanosec = 2000, i * 10_000_000
        msg.header.frame_id = "camera"
        image_pub.publish(msg)

    def set_target_on(i: int):
        request = SetTarget.Request(x=BOXES[i][0], y=BOXES[i][1], width=BOXES[i][2], height=BOXES[i][3])
        return ros_node.call_service(set_target, request)

    # Unconfigured: no model, no services of the tracker, nobody reads the camera.
    assert state() == "unconfigured"
    assert not set_target.wait_for_service(timeout_sec=1.0)
    assert image_pub.get_subscription_count() == 0

    # Configure: the model is loaded and set_target answers, but the node does not read the camera yet.
    transition(Transition.TRANSITION_CONFIGURE)
    assert state() == "inactive"
    assert "configured: model" in process.output()
    refused = set_target_on(0)
    assert not refused.success and "not active" in refused.message
    time.sleep(1.0)
    assert image_pub.get_subscription_count() == 0

    # Activate: it subscribes and tracks.
    transition(Transition.TRANSITION_ACTIVATE)
    assert state() == "active"
    ros_node.wait_for_subscribers(image_pub)

    def track_from(first: int, last: int) -> None:
        deadline = time.monotonic() + DISCOVERY_TIMEOUT_S
        response = None
        while response is None or not response.success:  # until the node has a frame
            assert time.monotonic() < deadline, f"set_target kept failing: {response}"
            publish(first)
            time.sleep(0.2)
            response = set_target_on(first)
        for i in range(first + 1, last + 1):
            publish(i)
            time.sleep(0.08)
        wait_until(lambda: any(d.header.stamp.nanosec >= (last - 2) * 10_000_000 and
                               d.header.stamp.nanosec <= last * 10_000_000 for d in detections),
                   DISCOVERY_TIMEOUT_S, f"detections of frames up to {last}")

    track_from(0, 6)

    # Deactivate: the subscription is freed and tracking pauses (set_target refused, no detections).
    transition(Transition.TRANSITION_DEACTIVATE)
    assert state() == "inactive"
    wait_until(lambda: image_pub.get_subscription_count() == 0, DISCOVERY_TIMEOUT_S, "the subscription to go")
    publish(7)
    time.sleep(0.5)
    assert not [d for d in detections if d.header.stamp.nanosec == 7 * 10_000_000], "tracked while inactive"
    assert "not active" in set_target_on(7).message

    # Activate again: tracking resumes.
    transition(Transition.TRANSITION_ACTIVATE)
    ros_node.wait_for_subscribers(image_pub)
    track_from(8, 12)

    # Deactivate and clean up: the model and the tracker's services are freed.
    transition(Transition.TRANSITION_DEACTIVATE)
    transition(Transition.TRANSITION_CLEANUP)
    assert state() == "unconfigured"
    assert "unconfigured: model freed" in process.output()
    wait_until(lambda: not set_target.service_is_ready(), DISCOVERY_TIMEOUT_S, "set_target to disappear")

    # Configure and activate once more (the model is loaded again), then shut down through the lifecycle.
    transition(Transition.TRANSITION_CONFIGURE)
    transition(Transition.TRANSITION_ACTIVATE)
    ros_node.wait_for_subscribers(image_pub)
    track_from(13, 17)
    transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert ros_node.call_service(get_state, GetState.Request()).current_state.id == State.PRIMARY_STATE_FINALIZED
    assert "Traceback" not in process.output()


def test_lifecycle_configure_fails_cleanly_on_a_missing_model(ros_node: RosTestNode, ros_processes) -> None:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    namespace = unique_namespace("lifecycle_bad")
    prefix = f"{namespace}/{NODE}"
    process = ros_processes.start_python_module(
        "siammixer_ros.ros.node", "--lifecycle", "--ros-args", "-r", f"__ns:={namespace}",
        "-p", "model_path:=/nonexistent/model.onnx", name="tracker_lifecycle_bad")
    process.wait_for_output("unconfigured: configure loads the model")
    change_state = ros_node.node.create_client(ChangeState, f"{prefix}/change_state")
    response = ros_node.call_service(change_state, ChangeState.Request(
        transition=Transition(id=Transition.TRANSITION_CONFIGURE)))
    assert not response.success
    assert "cannot configure: model file not found: /nonexistent/model.onnx" in process.output()
    get_state = ros_node.node.create_client(GetState, f"{prefix}/get_state")
    assert ros_node.call_service(get_state, GetState.Request()).current_state.label == "unconfigured"
    assert process.poll() is None, "the node must keep running, unconfigured"
    if "Traceback" in process.output():
        pytest.fail(process.output())
