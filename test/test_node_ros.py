"""The siammixer_tracker node as a real ROS 2 process (rclpy), driven from this test process as a user would:
publish synthetic camera frames, choose the target with ~/set_target or rqt-style clicks, and check the
vision_msgs detections, the diagnostics, the parameter checks and the dropping of frames that arrive while
the node is busy. The node runs the real pipeline on the NCC test model (no trained model needed).

The tests share one node process but not state: each sets the track it needs and uses its own image stamps
(stamp_of(i) for frame indices no other test uses), so they pass in any order and alone."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ros_helpers import (
    DISCOVERY_TIMEOUT_S,
    TERMINATE_TIMEOUT_S,
    ProcessLauncher,
    RosTestNode,
    apply_ros_environment,
    requires_rclpy,
    ros_environment,
    unique_namespace,
    wait_until,
)

from siammixer_ros.core.model_file import SHIPPED_MODEL_NAMES

pytestmark = requires_rclpy

SIZE = (320, 240)
# The target moves 5 px right and 3 px down per frame: 40 frames stay inside the image.
BOXES = [(50.0 + 5 * i, 40.0 + 3 * i, 56.0, 44.0) for i in range(40)]
NODE = "siammixer_tracker"
STAMP_BASE_S = 1000


def stamp_of(i: int):
    from builtin_interfaces.msg import Time

    return Time(sec=STAMP_BASE_S + i // 100, nanosec=(i % 100) * 10_000_000)


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


@pytest.fixture(scope="module")
def model_path():
    from siammixer_ros.testing.ncc_model import ncc_model_path

    return ncc_model_path(8)


@pytest.fixture(scope="module")
def frames():
    from siammixer_ros.testing.synthetic import render_sequence

    return render_sequence(BOXES, size=SIZE, seed=5, blob=10.0).frames


@pytest.fixture(scope="module")
def client():
    apply_ros_environment()
    node = RosTestNode("node_test_client")
    yield node
    node.close()


@pytest.fixture(scope="module")
def launcher():
    processes = ProcessLauncher(ros_environment())
    yield processes
    processes.stop_all()


def start_tracker(launcher: ProcessLauncher, model_path, namespace: str, *params: str, name: str = "tracker"):
    args = ["--ros-args", "-r", f"__ns:={namespace}", "-r", f"image:={namespace}/camera/image",
            "-p", f"model_path:={model_path}", "-p", "execution_mode:=whole", "-p", "diagnostics.period:=0.3",
            "-p", f"diagnostics.hardware_id:={namespace}", "-p", "target_label:=drone"]
    for param in params:
        args += ["-p", param]
    process = launcher.start_python_module("siammixer_ros.ros.node", *args, name=name)
    process.wait_for_output(r"tracking on /")
    return process


class TrackerClient:
    """Publishers, subscriptions and service clients for one tracker node in ``namespace``."""

    def __init__(self, client: RosTestNode, namespace: str, compressed: bool = False) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import Point
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image
        from siammixer_interfaces.msg import TrackerStatus
        from siammixer_interfaces.srv import SetTarget
        from std_srvs.srv import Trigger
        from vision_msgs.msg import Detection2D, Detection2DArray

        node = client.node
        self.client = client
        self.namespace = namespace
        self.compressed = compressed
        prefix = f"{namespace}/{NODE}"
        topic = f"{namespace}/camera/image" + ("/compressed" if compressed else "")
        self.image_pub = node.create_publisher(CompressedImage if compressed else Image, topic, 10)
        self.click_pub = node.create_publisher(Point, f"{namespace}/camera/image_mouse_left", 10)
        self.detections = client.collect(Detection2D, f"{prefix}/detection")
        self.arrays = client.collect(Detection2DArray, f"{prefix}/detections")
        self.statuses = client.collect(TrackerStatus, f"{prefix}/status")
        self.debug_images = client.collect(Image, f"{prefix}/debug_image", qos_profile_sensor_data)
        self.diagnostics = []
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.set_target_client = node.create_client(SetTarget, f"{prefix}/set_target")
        self.stop_client = node.create_client(Trigger, f"{prefix}/stop")
        self._set_target_type = SetTarget
        self._trigger_type = Trigger
        self._set_parameters_client = None
        client.wait_for_subscribers(self.image_pub)

    def _on_diagnostics(self, msg) -> None:
        mine = [s for s in msg.status if s.hardware_id == self.namespace]
        if mine:
            self.diagnostics.append(mine)

    def message(self, frame: np.ndarray, i: int, encoding: str = "bgr8"):
        from sensor_msgs.msg import CompressedImage, Image

        from siammixer_ros.ros.image_conversion import encode_compressed, fill_image_msg

        if self.compressed:
            msg = CompressedImage(format="bgr8; jpeg compressed bgr8", data=encode_compressed(frame, "jpeg", 95))
        else:
            msg = fill_image_msg(Image(), frame)
            msg.encoding = encoding
        msg.header.stamp = stamp_of(i)
        msg.header.frame_id = "camera"
        return msg

    def publish(self, frame: np.ndarray, i: int, encoding: str = "bgr8") -> None:
        self.image_pub.publish(self.message(frame, i, encoding))

    def status_for(self, i: int):
        wanted = stamp_ns(stamp_of(i))
        return next((s for s in self.statuses if stamp_ns(s.header.stamp) == wanted), None)

    def detection_for(self, i: int):
        wanted = stamp_ns(stamp_of(i))
        return next((d for d in self.detections if stamp_ns(d.header.stamp) == wanted), None)

    def array_for(self, i: int):
        wanted = stamp_ns(stamp_of(i))
        return next((a for a in self.arrays if stamp_ns(a.header.stamp) == wanted), None)

    def publish_until_processed(self, frame: np.ndarray, i: int, encoding: str = "bgr8") -> None:
        """Publish frame i (again, best effort) until the node reports it processed (a status with its stamp; the
        node publishes one for a frame it could not convert, too)."""
        deadline = time.monotonic() + DISCOVERY_TIMEOUT_S
        while self.status_for(i) is None:
            if time.monotonic() > deadline:
                pytest.fail(f"the node did not process frame {i} within {DISCOVERY_TIMEOUT_S:.0f} s")
            self.publish(frame, i, encoding)
            time.sleep(0.05)

    def set_target(self, box, stamp=None, label: str = ""):
        request = self._set_target_type.Request(x=float(box[0]), y=float(box[1]), width=float(box[2]),
                                                height=float(box[3]), label=label)
        if stamp is not None:
            request.stamp = stamp
        return self.client.call_service(self.set_target_client, request)

    def stop(self):
        return self.client.call_service(self.stop_client, self._trigger_type.Request())

    def set_parameter(self, name: str, value):
        """Set one parameter of the tracker node through its set_parameters service; returns the result."""
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters

        if self._set_parameters_client is None:
            self._set_parameters_client = self.client.node.create_client(
                SetParameters, f"{self.namespace}/{NODE}/set_parameters")
        if isinstance(value, float):
            pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        elif isinstance(value, int):
            pv = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
        else:
            pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        request = SetParameters.Request(parameters=[Parameter(name=name, value=pv)])
        return self.client.call_service(self._set_parameters_client, request).results[0]

    def frame_counts(self, settle_s: float = 1.0) -> tuple[int, int, int]:
        """(frames received, tracked, dropped) from a diagnostics report made after ``settle_s`` s of quiet."""
        time.sleep(settle_s)
        reports = len(self.diagnostics)
        wait_until(lambda: len(self.diagnostics) > reports, DISCOVERY_TIMEOUT_S, "a new diagnostics report")
        rates = self.latest_diagnostics()[f"{NODE}: rates"][2]
        return int(rates["frames received"]), int(rates["frames processed"]), int(rates["dropped frames"])

    def frames_missed(self) -> int:
        """Frames the node counted as missed before its callback (stamp gaps), from the latest diagnostics."""
        return int(self.latest_diagnostics()[f"{NODE}: rates"][2]["frames missed before the node"])

    def latest_diagnostics(self) -> dict[str, tuple[int, str, dict[str, str]]]:
        from siammixer_ros.ros.diagnostics import level_from_msg

        statuses = self.diagnostics[-1]
        return {s.name: (level_from_msg(s.level), s.message, {kv.key: kv.value for kv in s.values}) for s in statuses}


def centre_error(detection, truth) -> float:
    cx, cy = truth[0] + truth[2] / 2, truth[1] + truth[3] / 2
    return math.hypot(detection.bbox.center.position.x - cx, detection.bbox.center.position.y - cy)


@pytest.fixture(scope="module")
def raw(client, launcher, model_path):
    namespace = unique_namespace("tracker")
    process = start_tracker(launcher, model_path, namespace)
    tracker = TrackerClient(client, namespace)
    tracker.process = process
    return tracker


def start_tracking(tracker: TrackerClient, frames, frame: int, stamp: int) -> None:
    """Set the target on frames[frame], published with stamp_of(stamp) (a stamp no other test uses)."""
    tracker.publish_until_processed(frames[frame], stamp)
    response = tracker.set_target(BOXES[frame])
    assert response.success and stamp_ns(response.frame_stamp) == stamp_ns(stamp_of(stamp)), response.message


# -- a node of its own: before any image, and stopping it ------------------------------------------------------
def test_set_target_before_any_image_is_refused(client, launcher, model_path):
    namespace = unique_namespace("fresh")
    start_tracker(launcher, model_path, namespace, name="tracker_fresh")
    response = TrackerClient(client, namespace).set_target(BOXES[0])
    assert not response.success and "no image received yet" in response.message and response.track_id == 0


def test_sigterm_stops_a_tracking_node_cleanly(client, launcher, model_path, frames):
    namespace = unique_namespace("sigterm")
    # Diagnostics ten times a second: SIGTERM often lands under the timer's publish, which once ended the node
    # with a traceback (the signal handler invalidates the context while the callback runs).
    process = start_tracker(launcher, model_path, namespace, "diagnostics.period:=0.1", name="tracker_sigterm")
    tracker = TrackerClient(client, namespace)
    start_tracking(tracker, frames, 0, 0)
    tracker.publish(frames[1], 1)  # SIGTERM while frames arrive and the processing thread runs
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.popen.wait(TERMINATE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the node did not exit within {TERMINATE_TIMEOUT_S:.0f} s of SIGTERM:\n{process.output()}")
    output = process.output()
    assert process.popen.returncode == 0, output
    for sign_of_a_dirty_exit in ("Traceback", "terminate called", "Aborted", "core dumped"):
        assert sign_of_a_dirty_exit not in output, output


def test_detections_follow_the_target_with_the_image_stamps(raw, frames):
    raw.publish_until_processed(frames[0], 0)
    response = raw.set_target(BOXES[0])
    assert response.success, response.message
    assert response.track_id >= 1 and stamp_ns(response.frame_stamp) == stamp_ns(stamp_of(0))
    assert (response.used_x, response.used_y, response.used_width, response.used_height) == BOXES[0]
    # Frame 1 until tracked: the first update of a fresh node warms onnxruntime up (hundreds of ms on a loaded
    # machine, during which the frames after it would be dropped: 3 of 11 tracked at load 9).
    raw.publish_until_processed(frames[1], 1)
    for i in range(2, 12):
        raw.publish(frames[i], i)
        time.sleep(0.1)  # 10 Hz: slower than tracking even at load 9 (40-60 ms a frame; at 16 Hz 5 of 11 were tracked)
    wait_until(lambda: raw.detection_for(11), DISCOVERY_TIMEOUT_S, "the detection of frame 11")
    followed = [(i, raw.detection_for(i)) for i in range(1, 12) if raw.detection_for(i) is not None]
    assert len(followed) >= 6  # best-effort transport at 10 Hz: nearly all arrive
    for i, detection in followed:
        assert detection.header.frame_id == "camera"
        assert detection.id == str(response.track_id)
        assert detection.results[0].hypothesis.class_id == "drone"  # the target_label parameter
        assert 0.5 < detection.results[0].hypothesis.score <= 1.0
        assert abs(detection.bbox.size_x - BOXES[i][2]) < 8 and abs(detection.bbox.size_y - BOXES[i][3]) < 8
        assert centre_error(detection, BOXES[i]) < 4.0, f"frame {i}"
    # The array comes on its own topic: it may arrive after the Detection2D.
    array = wait_until(lambda: raw.array_for(11), DISCOVERY_TIMEOUT_S, "the detection array of frame 11")
    assert len(array.detections) == 1 and array.detections[0].id == str(response.track_id)
    status = wait_until(lambda: raw.status_for(11), DISCOVERY_TIMEOUT_S, "the status of frame 11")
    assert status.state == 1  # TRACKING


@pytest.mark.parametrize("box,reason", [
    ((10.0, 10.0, 0.0, 20.0), "zero or negative width"),
    ((1000.0, 900.0, 20.0, 20.0), "outside the 320x240 image"),
    ((float("nan"), 10.0, 20.0, 20.0), "NaN"),
])
def test_bad_boxes_get_success_false_with_the_reason(raw, frames, box, reason):
    raw.publish_until_processed(frames[0], 5000)  # an image to refuse the box on
    response = raw.set_target(box)
    assert not response.success and reason in response.message and response.track_id == 0


def test_unbuffered_stamp_is_refused_with_the_reason(raw, frames):
    from builtin_interfaces.msg import Time

    raw.publish_until_processed(frames[0], 5000)
    response = raw.set_target(BOXES[0], stamp=Time(sec=5, nanosec=0))
    assert not response.success and "no longer buffered" in response.message


def test_bad_images_are_skipped_and_the_node_keeps_tracking(raw, frames):
    start_tracking(raw, frames, 11, 3011)
    # Each frame until the node has taken it: sent 100 ms apart, a CPU-starved node could skip a bad frame unseen.
    raw.publish_until_processed(frames[12], 3012, encoding="yuv422")  # wrong encoding
    raw.publish_until_processed(frames[13], 3013, encoding="32FC1")
    # A frame claiming 5000x5000 pixels (over max_image_pixels, 4096 x 4096): refused by its size, never read.
    huge = raw.message(frames[12], 3015)
    huge.width = huge.height = 5000
    huge.step = 15000
    deadline = time.monotonic() + DISCOVERY_TIMEOUT_S
    while raw.status_for(3015) is None:
        assert time.monotonic() < deadline, "the node did not take the oversized frame"
        raw.image_pub.publish(huge)
        time.sleep(0.05)
    raw.publish_until_processed(frames[14], 3014)
    wait_until(lambda: raw.detection_for(3014), DISCOVERY_TIMEOUT_S, "the detection of frame 14")
    assert raw.detection_for(3012) is None and raw.detection_for(3013) is None and raw.detection_for(3015) is None
    assert centre_error(raw.detection_for(3014), BOXES[14]) < 6.0
    assert raw.process.poll() is None
    assert "unsupported image encoding" in raw.process.output()
    wait_until(lambda: "too large: 5000x5000 = 25000000 pixels > max_image_pixels 16777216" in
               raw.latest_diagnostics()[f"{NODE}: tracking"][2]["last error"], DISCOVERY_TIMEOUT_S,
               "the oversized frame's reason in the diagnostics")


def test_diagnostics_carry_the_documented_keys(raw, frames):
    start_tracking(raw, frames, 11, 4011)
    raw.publish(frames[12], 4012, encoding="yuv422")  # two bad frames, counted
    time.sleep(0.1)
    raw.publish(frames[13], 4013, encoding="32FC1")
    time.sleep(0.1)
    raw.publish_until_processed(frames[14], 4014)
    reports = len(raw.diagnostics)

    def complete() -> bool:
        if len(raw.diagnostics) <= reports or f"{NODE}: latency" not in raw.latest_diagnostics():
            return False
        latest = raw.latest_diagnostics()
        return latest[f"{NODE}: latency"][2].get("end_to_end p95 ms") != "nan" and \
            int(latest[f"{NODE}: rates"][2].get("bad frames", 0)) >= 2

    wait_until(complete, DISCOVERY_TIMEOUT_S, "diagnostics with latencies and the bad frames counted")
    diagnostics = raw.latest_diagnostics()
    assert set(diagnostics) == {f"{NODE}: tracking", f"{NODE}: latency", f"{NODE}: rates",
                                f"{NODE}: model and resources"}
    _, _, latency = diagnostics[f"{NODE}: latency"]
    for stage in ("crop", "inference_search", "inference_head", "postprocess", "end_to_end"):
        for stat in ("median", "p95"):
            assert float(latency[f"{stage} {stat} ms"]) >= 0.0
    level, _, rates = diagnostics[f"{NODE}: rates"]
    for key in ("input rate hz", "output rate hz", "dropped frames", "drop rate", "frames received", "bad frames",
                "frames missed before the node", "frames not processed", "stamps backwards", "expected rate hz"):
        assert key in rates
    _, _, resources = diagnostics[f"{NODE}: model and resources"]
    assert int(resources["rss bytes"]) > 10_000_000 and int(resources["peak rss bytes"]) >= int(resources["rss bytes"])
    assert resources["providers"] == "CPUExecutionProvider" and resources["execution mode"] == "whole"
    assert "model weight bytes" in resources and "feature map peak bytes" in resources
    level, message, tracking = diagnostics[f"{NODE}: tracking"]
    assert tracking["state"] == "TRACKING" and 0.0 < float(tracking["score"]) <= 1.0 and level == 0


def test_stamped_selection_uses_the_frame_with_that_stamp(raw, frames):
    raw.stop()
    for i in range(15, 27):
        raw.publish(frames[i], i)
        time.sleep(0.03)
    wait_until(lambda: raw.status_for(26), DISCOVERY_TIMEOUT_S, "the status of frame 26")
    if raw.status_for(17) is None:
        pytest.skip("frame 17 was lost by the best-effort transport")
    # The operator drew the box on frame 17; the video is at frame 26.
    response = raw.set_target(BOXES[17], stamp=stamp_of(17))
    assert response.success, response.message
    assert stamp_ns(response.frame_stamp) == stamp_ns(stamp_of(17)) and "caught up" in response.message
    raw.publish(frames[27], 27)
    wait_until(lambda: raw.detection_for(27), DISCOVERY_TIMEOUT_S, "the detection of frame 27")
    assert centre_error(raw.detection_for(27), BOXES[27]) < 5.0


def test_two_clicks_in_rqt_image_view_select_the_target(raw, frames):
    from geometry_msgs.msg import Point

    raw.stop()
    raw.publish_until_processed(frames[28], 28)
    x, y, w, h = BOXES[28]
    raw.click_pub.publish(Point(x=x + w, y=y + h, z=0.0))  # any two opposite corners
    time.sleep(0.1)
    raw.click_pub.publish(Point(x=x, y=y, z=0.0))
    wait_until(lambda: "click selection" in raw.process.output(), DISCOVERY_TIMEOUT_S, "the click selection")
    raw.publish(frames[29], 29)
    wait_until(lambda: raw.detection_for(29), DISCOVERY_TIMEOUT_S, "the detection of frame 29")
    assert centre_error(raw.detection_for(29), BOXES[29]) < 5.0


def test_a_burst_faster_than_processing_is_dropped_not_queued(raw, frames):
    # Make tracking slow for real: 9 search scales, 32x response upsampling (tracker.* apply to the next target).
    assert raw.set_parameter("tracker.scale_num", 9).successful
    assert raw.set_parameter("tracker.response_up", 32).successful
    try:
        start_tracking(raw, frames, 30, 30)
    finally:  # the defaults again for the next target, whatever happens
        assert raw.set_parameter("tracker.scale_num", 3).successful
        assert raw.set_parameter("tracker.response_up", 16).successful
    # The camera's rate: frames missing between stamps are counted against its period (10 ms).
    assert raw.set_parameter("expected_rate_hz", 100.0).successful
    try:
        for k in range(3):  # warm up: the first inferences of a new batch size are slow
            raw.publish_until_processed(frames[31 + k], 900 + k)
        raw.publish_until_processed(frames[31], 999)  # the stamp just before the burst's
        counts_before = raw.frame_counts()
        missed_before = raw.frames_missed()
        # 72 frames 10 ms apart (100 Hz), much faster than tracking (~25-50 ms a frame here). Frames overwritten
        # inside the middleware's depth-1 queue before the node's callback runs are counted from the stamp gaps;
        # every frame the callback sees is either tracked or counted as dropped. 72 rather than 36: a loaded
        # machine delivers few.
        burst = [raw.message(frames[31 + k % 9], 1000 + k) for k in range(72)]  # unique stamps
        first_burst_index = len(raw.detections)
        for msg in burst:
            raw.image_pub.publish(msg)
            time.sleep(0.010)
        last = 1000 + len(burst) - 1
        time.sleep(1.0)  # the node finishes the newest burst frame (slow tracking) before the closing frame
        # A closing frame after the burst shows the gap of frames lost at its end.
        closing = 0
        while raw.status_for(last + 1) is None:
            raw.publish(frames[31], last + 1)
            closing += 1
            assert closing < 400, "the closing frame was never processed"
            time.sleep(0.05)
        counts_after = raw.frame_counts()
        rates_message = raw.latest_diagnostics()[f"{NODE}: rates"][1]  # a second after the input stopped
        deadline = time.monotonic() + 20.0
        while counts_after[0] != counts_after[1] + counts_after[2] and time.monotonic() < deadline:
            # A repeated closing frame can still be in the node's one-frame hand-off, or being tracked (9 scales,
            # slow on a loaded machine): received, not yet tracked or dropped. A queue would show as more tracked
            # frames than processed ones below.
            counts_after = raw.frame_counts()
        missed = raw.frames_missed() - missed_before
    finally:
        assert raw.set_parameter("expected_rate_hz", 0.0).successful
    processed = [d for d in raw.detections[first_burst_index:]
                 if stamp_ns(stamp_of(1000)) <= stamp_ns(d.header.stamp) <= stamp_ns(stamp_of(last))]
    stamps = [stamp_ns(d.header.stamp) for d in processed]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # in order, each once
    received, tracked, dropped = (after - before for after, before in zip(counts_after, counts_before, strict=True))
    print(f"burst: {len(burst)} published, {received} received, {missed} missed before the node, {tracked} tracked, "
          f"{dropped} dropped, closing frame published {closing} time(s)")
    assert len(processed) + 1 <= tracked <= len(processed) + closing  # and the closing frame, maybe repeated
    assert received == tracked + dropped, f"{received} received, {tracked} tracked, {dropped} dropped: a queue?"
    # Not every burst frame was tracked (``tracked`` also counts the closing frame, so compare the burst's own).
    assert dropped >= 1 and len(processed) < len(burst), \
        f"{received} received, {tracked} tracked ({len(processed)} of the burst), {dropped} dropped"
    assert stamps[-1] >= stamp_ns(stamp_of(last - 3))  # the newest frames are processed, not a backlog
    # Every burst frame is accounted for: received, or missed (a stamp gap); the closing frame may arrive repeatedly.
    assert len(burst) + 1 <= received + missed <= len(burst) + closing, (received, missed, closing)
    assert "below the expected 100 Hz" in rates_message  # after a second of quiet the input is far below 100 Hz


def test_parameters_are_validated_at_run_time_with_a_reason(raw):
    result = raw.set_parameter("diagnostics.latency_warn_ms", 500.0)
    assert not result.successful and "must not exceed diagnostics.latency_error_ms" in result.reason
    result = raw.set_parameter("tracker.scale_num", 4)
    assert not result.successful and "tracker.scale_num" in result.reason
    result = raw.set_parameter("model_path", "/tmp/other.onnx")
    assert not result.successful and "read-only" in result.reason.lower()
    result = raw.set_parameter("tracker.lost_score", 0.9)
    assert not result.successful and "lost_score" in result.reason
    result = raw.set_parameter("input_type", "mjpeg")
    assert not result.successful
    result = raw.set_parameter("tracker.box_mode", "anchors")
    assert not result.successful and "scale, regression, both" in result.reason
    result = raw.set_parameter("tracker.box_mode", "regression")  # the NCC test model has no box output
    assert not result.successful and "needs a model with a box output" in result.reason
    assert raw.set_parameter("diagnostics.latency_warn_ms", 30.0).successful
    assert raw.set_parameter("diagnostics.latency_warn_ms", 40.0).successful  # the default again
    assert raw.process.poll() is None


# -- compressed input with an initial target from parameters ---------------------------------------------------
def test_compressed_input_and_headless_initial_target(client, launcher, model_path, frames):
    namespace = unique_namespace("compressed")
    box = ",".join(f"{v:.1f}" for v in BOXES[0])
    process = start_tracker(launcher, model_path, namespace, "input_type:=compressed", f"initial_target:=[{box}]",
                            name="tracker_compressed")
    tracker = TrackerClient(client, namespace, compressed=True)
    tracker.publish_until_processed(frames[0], 0)
    wait_until(lambda: "initial_target" in process.output(), DISCOVERY_TIMEOUT_S, "the initial target to be set")
    assert "tracking target 1" in process.output()
    # One frame at a time: at a fixed rate a CPU-starved node on a loaded machine drops frames by design (covered by
    # the burst test); here every compressed frame must be decoded and tracked.
    for i in range(1, 10):
        tracker.publish_until_processed(frames[i], i)
    wait_until(lambda: tracker.detection_for(9), DISCOVERY_TIMEOUT_S, "the detection of compressed frame 9")
    followed = [i for i in range(1, 10) if tracker.detection_for(i) is not None]
    assert len(followed) == 9
    for i in followed:
        assert centre_error(tracker.detection_for(i), BOXES[i]) < 5.0, f"frame {i}"
    corrupt = __import__("sensor_msgs.msg", fromlist=["CompressedImage"]).CompressedImage(format="jpeg",
                                                                                          data=b"\xff\xd8garbage")
    corrupt.header.stamp = stamp_of(10)
    tracker.image_pub.publish(corrupt)
    wait_until(lambda: "corrupt compressed image" in process.output(), DISCOVERY_TIMEOUT_S, "the corrupt-image warning")
    assert process.poll() is None


# -- large raw frames at camera rate ----------------------------------------------------------------------------
LARGE_SIZE = (640, 480)
LARGE_RATE_HZ = 30.0
LARGE_FRAMES_SENT = 100
MIN_ARRIVED = 95  # of LARGE_FRAMES_SENT


def test_a_hundred_concurrent_target_requests_are_all_answered(raw, frames):
    from siammixer_ros.ros.node import service_qos

    raw.publish_until_processed(frames[0], 6000)
    # The caller's queues must be as deep as the node's: with ROS's default client QoS (depth 10) the client's own
    # request writer and response reader keep only the newest 10 samples, and under load (seen on Jazzy in CI) an
    # answer was overwritten before the client took it.
    deep_client = raw.client.node.create_client(raw._set_target_type, raw.set_target_client.srv_name,
                                                qos_profile=service_qos())
    assert deep_client.wait_for_service(timeout_sec=DISCOVERY_TIMEOUT_S)
    futures = []
    for k in range(100):
        request = raw._set_target_type.Request(x=float(BOXES[0][0]), y=float(BOXES[0][1]), width=float(BOXES[0][2]),
                                               height=float(BOXES[0][3]), label=f"t{k}")
        futures.append(deep_client.call_async(request))
    wait_until(lambda: all(f.done() for f in futures), 4 * DISCOVERY_TIMEOUT_S, "answers to all 100 requests")
    assert all(f.result().success for f in futures)
    assert len({f.result().track_id for f in futures}) == 100


def test_parameter_files_apply_in_a_namespace_and_under_another_name(client, launcher):
    """The launch file's example: namespace:=uav1 params_file:=tracker_arm.yaml. The files key their parameters by
    /** so that they apply to the node whatever its namespace and name (a node-name key would silently not)."""
    from rcl_interfaces.srv import GetParameters

    repo = Path(__file__).resolve().parents[1]
    namespace = unique_namespace("uav")
    launcher.start_python_module(
        "siammixer_ros.ros.node", "--ros-args", "-r", f"__ns:={namespace}", "-r", "__node:=follow_me",
        # The shipped model: the ARM file's row mode needs a model with patch parts.
        "--params-file", str(repo / "config" / "tracker_arm.yaml"), "-p",
        f"model_path:={repo / 'models' / SHIPPED_MODEL_NAMES['float']}", name="arm").wait_for_output(r"tracking on /")
    names = ["input_type", "execution_mode", "intra_op_threads", "publish_debug_image", "tracker.scale_num",
             "tracker.response_up"]
    get = client.node.create_client(GetParameters, f"{namespace}/follow_me/get_parameters")
    assert get.wait_for_service(timeout_sec=DISCOVERY_TIMEOUT_S)
    # A read, so it may be asked again: right after discovery a response can go out before the client's response
    # reader is matched and be lost (seen once in a CI rehearsal on the loaded machine).
    future = None
    deadline = time.monotonic() + 2 * DISCOVERY_TIMEOUT_S
    while future is None or not future.done():
        assert time.monotonic() < deadline, "no answer from get_parameters"
        future = get.call_async(GetParameters.Request(names=names))
        stop = time.monotonic() + 3.0
        while not future.done() and time.monotonic() < stop:
            time.sleep(0.02)
    values = future.result().values
    assert [values[0].string_value, values[1].string_value, values[2].integer_value, values[3].bool_value,
            values[4].integer_value, values[5].integer_value] == ["compressed", "row", 1, False, 1, 8]


def test_640x480_bgr8_frames_at_30_hz_reach_the_node(client, launcher, model_path):
    # One 640x480 bgr8 frame (900 kB) is larger than Fast DDS's default 512 KiB shared-memory segment. Unless the
    # project's profile (16 MiB segment) reaches Fast DDS, under FASTRTPS_DEFAULT_PROFILES_FILE on Jazzy (Fast DDS
    # 2.x) and FASTDDS_DEFAULT_PROFILES_FILE on Kilted (3.x), frames go over fragmented UDP and best effort loses
    # most of them: 8-11 of 100 reached the node on Jazzy with only the Kilted name set.
    from siammixer_ros.testing.synthetic import render_sequence

    boxes = [(200.0 + 4 * i, 150.0 + 2 * i, 90.0, 70.0) for i in range(10)]
    large_frames = render_sequence(boxes, size=LARGE_SIZE, seed=11, blob=14.0).frames
    namespace = unique_namespace("large")
    # The input queue holds 1 s of frames instead of the newest one only (REP-2003 override): the count then
    # measures the transport, not how often a CPU-starved executor ran on a loaded 2-core machine (there, with
    # depth 1 and tracking, 67-97 of 100 frames were counted with the profile in place; with depth 30, 78-100).
    depth = f"qos_overrides.{namespace}/camera/image.subscription.depth:={LARGE_RATE_HZ:.0f}"
    start_tracker(launcher, model_path, namespace, depth, name="tracker_large")
    tracker = TrackerClient(client, namespace)
    # No target is set: the node converts every frame and reports it idle, so its own CPU use stays small and the
    # count reflects the transport (tracking under load is test_a_burst_faster_than_processing_is_dropped_not_queued).
    tracker.publish_until_processed(large_frames[0], 0)  # both directions matched before anything is counted
    messages = [tracker.message(large_frames[k % len(boxes)], 1 + k) for k in range(LARGE_FRAMES_SENT)]
    received_before = tracker.frame_counts()[0]

    start = time.monotonic()
    for k, msg in enumerate(messages):
        # Paced against the start time, so a late frame does not delay the ones after it.
        time.sleep(max(0.0, start + k / LARGE_RATE_HZ - time.monotonic()))
        tracker.image_pub.publish(msg)
    sending_s = time.monotonic() - start
    received = tracker.frame_counts()[0] - received_before
    summary = (f"{LARGE_SIZE[0]}x{LARGE_SIZE[1]} bgr8 at {LARGE_RATE_HZ:.0f} Hz: {received} of {LARGE_FRAMES_SENT} "
               f"frames reached the node, sent in {sending_s:.2f} s")
    print(summary)
    nominal_s = (LARGE_FRAMES_SENT - 1) / LARGE_RATE_HZ
    assert sending_s < 1.5 * nominal_s, f"this machine could not publish at {LARGE_RATE_HZ:.0f} Hz: {summary}"
    assert MIN_ARRIVED <= received <= LARGE_FRAMES_SENT, summary


# -- start-up failures -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params,message", [
    (["model_path:=/nonexistent/model.onnx"], "model file not found: /nonexistent/model.onnx"),
    (["model_path:=" + sys.executable], "is not a loadable ONNX model"),
    (["initial_target:=[1.0, 2.0]"], "initial_target needs 4 numbers"),
])
def test_startup_problems_exit_with_a_clear_message(launcher, model_path, params, message):
    args = ["--ros-args", "-p", f"model_path:={model_path}"]
    for param in params:
        args += ["-p", param]
    process = launcher.start_python_module("siammixer_ros.ros.node", *args, name="tracker_bad")
    process.popen.wait(60)
    output = process.output()
    assert process.popen.returncode == 1, output
    assert message in output and "Traceback" not in output
