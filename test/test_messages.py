"""The node's message builders (siammixer_ros.ros.messages) without rclpy: plain objects, rosbags messages, and
the TrackerStatus codes against the interface definition."""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from siammixer_ros.core.tracker import TrackState
from siammixer_ros.ros import messages

REPO = Path(__file__).resolve().parents[1]


def plain(msgtype: str, **fields):
    """A MessageFactory of plain objects that remember their type."""
    return SimpleNamespace(msgtype=msgtype, **fields)


def test_detection_is_center_based_and_converts_back_to_the_top_left_box():
    header = SimpleNamespace(stamp=SimpleNamespace(sec=5, nanosec=7), frame_id="cam")
    detection = messages.detection_2d(plain, header, (10, 20, 31, 40), "car", "3", 0.75)
    assert detection.msgtype == "vision_msgs/msg/Detection2D" and detection.header is header and detection.id == "3"
    assert (detection.bbox.center.position.x, detection.bbox.center.position.y) == (25.5, 40.0)
    assert (detection.bbox.size_x, detection.bbox.size_y, detection.bbox.center.theta) == (31.0, 40.0, 0.0)
    (hypothesis,) = detection.results
    assert (hypothesis.hypothesis.class_id, hypothesis.hypothesis.score) == ("car", 0.75)
    assert hypothesis.pose.pose.orientation.w == 1.0 and len(hypothesis.pose.covariance) == 36
    assert messages.detection_to_box(detection) == (10.0, 20.0, 31.0, 40.0)
    assert messages.detection_score(detection) == 0.75
    assert math.isnan(messages.detection_score(SimpleNamespace(results=[])))


def test_the_same_builder_writes_rosbags_messages_that_serialise():
    from siammixer_ros.bag.convert import bag_message, detection_message
    from siammixer_ros.bag.msgtypes import DETECTION_2D, typestore

    detection = detection_message((10.0, 20.0, 30.0, 40.0), 1_500_000_000, "cam", "car", "seq", 0.5)
    store = typestore()
    decoded = store.deserialize_cdr(store.serialize_cdr(detection, DETECTION_2D), DETECTION_2D)
    assert messages.detection_to_box(decoded) == (10.0, 20.0, 30.0, 40.0) and decoded.id == "seq"
    assert messages.stamp_to_ns(decoded.header.stamp) == 1_500_000_000
    assert messages.stamp_to_ns(messages.time_message(bag_message, 12_000_000_005)) == 12_000_000_005


def test_status_codes_are_the_tracker_status_constants():
    text = (REPO / "interfaces" / "siammixer_interfaces" / "msg" / "TrackerStatus.msg").read_text()
    constants = {name: int(value) for name, value in re.findall(r"^uint8 (\w+)=(\d+)", text, re.MULTILINE)}
    assert {messages.state_name(state): code for state, code in messages.STATUS_CODES.items()} == constants
    assert set(messages.STATUS_CODES) == {None, *TrackState}


def test_tracker_status_fields():
    status = messages.tracker_status(plain, "HEADER", TrackState.LOST, float("nan"), 4, "car", None, 29.5, 12.25,
                                     100, 7)
    assert (status.msgtype, status.header, status.state, status.score) == (
        "siammixer_interfaces/msg/TrackerStatus", "HEADER", 3, 0.0)
    assert (status.x, status.y, status.width, status.height) == (0.0, 0.0, 0.0, 0.0)
    assert (status.track_id, status.label, status.fps, status.processing_ms) == (4, "car", 29.5, 12.25)
    assert (status.frames_processed, status.dropped_frames) == (100, 7)
    assert (status.psr, status.reason) == (0.0, "")  # no PSR given: 0
    uncertain = messages.tracker_status(plain, "H", TrackState.UNCERTAIN, 0.4, 4, "car", (1, 2, 3, 4), 29.5, 12.0,
                                        100, 7, psr=3.5, reason="PSR 3.5 < tracker.tracking_psr 4")
    assert (uncertain.state, uncertain.psr, uncertain.reason) == (2, 3.5, "PSR 3.5 < tracker.tracking_psr 4")
    idle = messages.tracker_status(plain, "H", None, 0.5, 0, "", (1, 2, 3, 4), 0.0, 0.0, 0, 0)
    assert idle.state == 0 and (idle.x, idle.y, idle.width, idle.height, idle.score) == (1.0, 2.0, 3.0, 4.0, 0.5)


def test_set_target_response():
    response = messages.fill_set_target_response(plain, SimpleNamespace(), True, "tracking target 2", 2,
                                                 3_000_000_001, (1, 2, 3, 4))
    assert (response.success, response.message, response.track_id) == (True, "tracking target 2", 2)
    assert (response.frame_stamp.sec, response.frame_stamp.nanosec) == (3, 1)
    assert (response.used_x, response.used_y, response.used_width, response.used_height) == (1.0, 2.0, 3.0, 4.0)


def test_stamps():
    assert messages.stamp_to_ns(SimpleNamespace(sec=2, nanosec=5)) == 2_000_000_005
    assert messages.format_stamp(2_000_000_005) == "2.000000005"


def test_rclpy_message_names_the_missing_package():
    with pytest.raises(ImportError, match="no_such_pkg"):
        messages.rclpy_message("no_such_pkg/msg/Thing")
