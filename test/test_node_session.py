"""The node's logic without rclpy (siammixer_ros.ros.session, selection, params) on the real tracker with the
NCC test model: newest-frame handover and drop counting, stamped selection with catch-up, bad requests and
bad frames."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from siammixer_ros.core.tracker import TrackState
from siammixer_ros.ros import params as node_params
from siammixer_ros.ros.image_conversion import ImageConverter, fill_image_msg
from siammixer_ros.ros.selection import ClickSelector, TargetError, check_target_box
from siammixer_ros.ros.session import TrackingSession

SIZE = (320, 240)
BOXES = [(60.0 + 6 * i, 50.0 + 4 * i, 48.0, 40.0) for i in range(16)]


@pytest.fixture(scope="module")
def model_path():
    from siammixer_ros.testing.ncc_model import ncc_model_path

    return ncc_model_path(8)


@pytest.fixture(scope="module")
def frames():
    from siammixer_ros.testing.synthetic import render_sequence

    return render_sequence(BOXES, size=SIZE, seed=3).frames


def _header(i: int) -> SimpleNamespace:
    return SimpleNamespace(stamp=SimpleNamespace(sec=100 + i // 10, nanosec=(i % 10) * 100_000_000), frame_id="cam")


def _stamp_ns(i: int) -> int:
    return (100 + i // 10) * 1_000_000_000 + (i % 10) * 100_000_000


def _image_msg(frame: np.ndarray, i: int) -> SimpleNamespace:
    msg = fill_image_msg(SimpleNamespace(), frame)
    msg.header = _header(i)
    return msg


@pytest.fixture
def session(model_path):
    from siammixer_ros.core.tracker import SiamMixerTracker

    return TrackingSession(SiamMixerTracker(model_path), ImageConverter(), buffer_size=20)


def _feed(session, frames, indices):
    for i in indices:
        msg = _image_msg(frames[i], i)
        session.on_frame(msg, msg.header, compressed=False)


def _centre_error(box, truth) -> float:
    return float(np.hypot(box[0] + box[2] / 2 - truth[0] - truth[2] / 2, box[1] + box[3] / 2 - truth[1] - truth[3] / 2))


def test_set_target_before_any_image_says_so(session):
    outcome = session.set_target(BOXES[0])
    assert not outcome.success and "no image received yet" in outcome.message


def test_frames_arriving_while_busy_are_dropped_not_queued(session, frames):
    _feed(session, frames, range(5))
    assert session.dropped_frames == 4  # each replaced an unprocessed frame
    processed = session.process_next(timeout=0.0)
    assert processed.frame.seq == 5 and processed.state is None
    assert session.process_next(timeout=0.0) is None  # nothing queued behind it


def test_the_image_callback_never_waits_for_the_tracker(session, frames):
    # An update (or a SetTarget catch-up) holds the session's lock; a frame arriving meanwhile must still be
    # stored at once, with its arrival time taken before anything else.
    import threading
    import time

    session.clock = time.monotonic
    done = threading.Event()
    msg = _image_msg(frames[0], 0)
    with session._lock:
        start = time.monotonic()
        worker = threading.Thread(target=lambda: (session.on_frame(msg, msg.header, False), done.set()))
        worker.start()
        assert done.wait(2.0), "on_frame waited for the tracker's lock"
    worker.join()
    newest = session.ring.newest()
    assert newest is not None and start <= newest.received < start + 1.0


def test_frames_lost_before_the_node_are_counted_from_stamp_gaps(session, frames):
    # Frames 0..20 at 10 Hz; 5, 6 and 12 never arrive (lost in the middleware): 3 missed.
    _feed(session, frames[:1] * 21, [i for i in range(21) if i not in (5, 6, 12)])
    assert (session.frames_missed, session.dropped_frames) == (3, 17)
    assert session.frames_not_processed == 20  # 17 replaced in the hand-off + 3 missed; 1 waits in the slot
    # With the camera's rate known, the first gaps count too (no period to estimate).
    from siammixer_ros.core.tracker import SiamMixerTracker

    known = TrackingSession(SiamMixerTracker(runtime=session.tracker.runtime), ImageConverter(),
                            expected_rate_hz=10.0)
    _feed(known, frames[:1] * 4, [0, 3])
    assert known.frames_missed == 2


def test_stamps_going_backwards_are_flagged_and_counted_without_gaps(session, frames):
    _feed(session, frames, [0, 1, 2, 3, 4])
    msg = _image_msg(frames[5], 2)  # a stamp earlier than the last one
    frame = session.on_frame(msg, msg.header, compressed=False)
    assert frame.stamp_backwards and session.stamps_backwards == 1 and session.frames_missed == 0
    msg = _image_msg(frames[6], 3)
    later = session.on_frame(msg, msg.header, compressed=False)
    assert not later.stamp_backwards and session.frames_missed == 0


def test_newest_frame_selection_tracks_the_target(session, frames):
    _feed(session, frames, [0])
    outcome = session.set_target(BOXES[0], label="car")
    assert outcome.success, outcome.message
    assert outcome.track_id == 1 and outcome.frame_stamp_ns == _stamp_ns(0)
    for i in range(1, 8):
        _feed(session, frames, [i])
        processed = session.process_next(timeout=0.0)
        assert processed.state is TrackState.TRACKING and processed.label == "car"
        assert _centre_error(processed.box, BOXES[i]) < 4.0


def test_stamped_selection_initialises_on_that_frame_and_catches_up(session, frames):
    _feed(session, frames, range(12))  # the operator drew on frame 3; the video is at frame 11
    outcome = session.set_target(BOXES[3], stamp_ns=_stamp_ns(3))
    assert outcome.success, outcome.message
    assert outcome.frame_stamp_ns == _stamp_ns(3) and outcome.catchup_frames == 8
    assert _centre_error(session.box, BOXES[11]) < 4.0
    assert session.process_next(timeout=0.0) is None  # frame 11 was used by the catch-up
    _feed(session, frames, [12])
    assert _centre_error(session.process_next(timeout=0.0).box, BOXES[12]) < 4.0


def test_the_same_box_on_the_newest_frame_would_be_wrong(session, frames):
    # Control for the test above: without the stamp, frame 3's box lies on the target's old place.
    _feed(session, frames, range(12))
    assert session.set_target(BOXES[3]).success
    _feed(session, frames, [12])
    assert _centre_error(session.process_next(timeout=0.0).box, BOXES[12]) > 20.0


def test_stamp_within_tolerance_uses_the_nearest_frame(session, frames):
    _feed(session, frames, range(6))
    outcome = session.set_target(BOXES[2], stamp_ns=_stamp_ns(2) + 5_000_000, tolerance_s=0.02)
    assert outcome.success and outcome.frame_stamp_ns == _stamp_ns(2)


@pytest.mark.parametrize("stamp,match", [(_stamp_ns(0) - 10**9, "no longer buffered"),
                                         (_stamp_ns(2) + 50_000_000, "no buffered frame within 0.02 s")])
def test_unknown_stamp_is_rejected_with_the_reason(session, frames, stamp, match):
    _feed(session, frames, range(6))
    outcome = session.set_target(BOXES[2], stamp_ns=stamp, tolerance_s=0.02)
    assert not outcome.success and match in outcome.message and session.state is None


@pytest.mark.parametrize("box,match", [
    ((10, 10, 0, 20), "zero or negative width"),
    ((10, 10, 20, -1), "zero or negative height"),
    ((400, 300, 20, 20), "outside the 320x240 image"),
    ((float("nan"), 10, 20, 20), "NaN"),
    ((318, 10, 20, 20), "smaller than min_target_size"),
])
def test_bad_boxes_are_rejected_and_keep_the_current_track(session, frames, box, match):
    _feed(session, frames, [0])
    assert session.set_target(BOXES[0]).success
    outcome = session.set_target(box)
    assert not outcome.success and match in outcome.message
    assert session.state is TrackState.TRACKING and session.track_id == 1


def test_changed_tracker_parameters_take_effect_only_with_an_accepted_target(session, frames):
    from siammixer_ros.core.params import TrackerParams
    from siammixer_ros.core.tracker import SiamMixerTracker

    _feed(session, frames, [0])
    assert session.set_target(BOXES[0]).success
    current = session.tracker
    replacement = SiamMixerTracker(params=TrackerParams(scale_num=1), runtime=current.runtime)
    assert not session.set_target((10, 10, 0, 20), new_tracker=replacement).success
    assert session.tracker is current and session.state is TrackState.TRACKING  # refused: nothing changed
    _feed(session, frames, [1])
    assert session.process_next(timeout=0.0).state is TrackState.TRACKING  # the old tracker still tracks
    assert session.set_target(BOXES[1], new_tracker=replacement).success and session.tracker is replacement


def test_partly_outside_box_is_clipped():
    assert check_target_box((-10, -5, 50, 30), 320, 240) == (0.0, 0.0, 40.0, 25.0)
    with pytest.raises(TargetError, match="4 numbers"):
        check_target_box((1, 2, 3), 320, 240)


def test_each_target_gets_a_new_track_id_and_stop_goes_idle(session, frames):
    _feed(session, frames, [0])
    ids = [session.set_target(BOXES[0]).track_id for _ in range(3)]
    assert ids == [1, 2, 3]
    assert "stopped tracking target 3" in session.stop()
    assert session.state is None and session.track_id == 0


def test_a_bad_frame_is_skipped_with_the_reason_and_the_track_survives(session, frames):
    _feed(session, frames, [0])
    assert session.set_target(BOXES[0]).success
    bad = _image_msg(frames[1], 1)
    bad.encoding = "yuv422"
    session.on_frame(bad, bad.header, compressed=False)
    processed = session.process_next(timeout=0.0)
    assert "unsupported image encoding 'yuv422'" in processed.error and session.bad_frames == 1
    truncated = _image_msg(frames[2], 2)
    truncated.data = truncated.data[:100]
    session.on_frame(truncated, truncated.header, compressed=False)
    assert "corrupt image" in session.process_next(timeout=0.0).error
    _feed(session, frames, [3])
    processed = session.process_next(timeout=0.0)
    assert processed.error is None and processed.state is TrackState.TRACKING
    assert _centre_error(processed.box, BOXES[3]) < 4.0


def test_a_frame_of_another_aspect_ratio_stops_the_track_as_lost_with_the_reason(session, frames):
    _feed(session, frames, [0, 1])
    assert session.set_target(BOXES[1]).success
    session.process_next(timeout=0.0)
    square = _image_msg(np.zeros((200, 200, 3), np.uint8), 2)  # another camera, or a crop
    session.on_frame(square, square.header, compressed=False)
    processed = session.process_next(timeout=0.0)
    assert processed.state is TrackState.LOST and processed.box is None
    assert "stopped" in processed.error and "from 320x240 to 200x200" in processed.error
    # It stays LOST (no box at a wrong place, no error per frame) until a new target is set.
    _feed(session, frames, [3])
    processed = session.process_next(timeout=0.0)
    assert processed.state is TrackState.LOST and processed.box is None and processed.error is None
    assert session.set_target(BOXES[3]).success
    _feed(session, frames, [4])
    assert session.process_next(timeout=0.0).state is TrackState.TRACKING


def test_the_frame_buffer_keeps_messages_not_decoded_images(session, frames):
    _feed(session, frames, [0])
    assert session.set_target(BOXES[0]).success
    for i in range(1, 6):
        _feed(session, frames, [i])
        assert session.process_next(timeout=0.0).image is not None  # the processed frame's image is handed out
    buffered = session.ring.snapshot()
    assert len(buffered) == 6
    assert not any(isinstance(value, np.ndarray) for frame in buffered for value in vars(frame).values())


def test_uncertain_says_why_and_the_psr_is_reported(session, frames):
    from siammixer_ros.core.params import TrackerParams
    from siammixer_ros.core.tracker import SiamMixerTracker

    _feed(session, frames, [0])
    assert session.set_target(BOXES[0]).success
    _feed(session, frames, [1])
    confident = session.process_next(timeout=0.0)
    assert confident.state is TrackState.TRACKING and confident.reason == ""
    assert np.isfinite(confident.psr) and confident.psr > 1.0
    # The same frames with a PSR threshold no response reaches: UNCERTAIN, and the reason names the PSR.
    strict = SiamMixerTracker(params=TrackerParams(tracking_psr=900.0), runtime=session.tracker.runtime)
    assert session.set_target(BOXES[1], new_tracker=strict).success
    _feed(session, frames, [2])
    uncertain = session.process_next(timeout=0.0)
    assert uncertain.state is TrackState.UNCERTAIN
    assert uncertain.reason == f"PSR {uncertain.psr:.1f} < tracker.tracking_psr 900", uncertain.reason


def test_state_reasons_name_the_threshold_that_was_missed():
    from siammixer_ros.core.params import TrackerParams
    from siammixer_ros.ros.session import state_reason

    params = TrackerParams()
    low_score = state_reason(TrackState.UNCERTAIN, params.lost_score / 2, 50.0, params)
    assert low_score.startswith(f"score {params.lost_score / 2:.2f} < tracker.lost_score {params.lost_score:g}")
    assert "LOST after" in low_score and "PSR" not in low_score
    between = (params.lost_score + params.tracking_score) / 2
    assert state_reason(TrackState.UNCERTAIN, between, 50.0, params) == (
        f"score {between:.2f} < tracker.tracking_score {params.tracking_score:g}")
    assert state_reason(TrackState.TRACKING, 0.9, 50.0, params) == ""
    assert "searching" in state_reason(TrackState.LOST, 0.1, 2.0, params)


def test_stage_latencies_are_recorded(session, frames):
    _feed(session, frames, [0])
    session.set_target(BOXES[0])
    _feed(session, frames, [1])
    session.process_next(timeout=0.0)
    stages = session.latencies.summary_ms()
    assert {"wait", "crop", "inference_search", "inference_head", "postprocess", "processing"} <= set(stages)


def test_two_clicks_make_a_box_and_a_stale_first_click_is_forgotten():
    now = [0.0]
    clicks = ClickSelector(timeout_s=5.0, clock=lambda: now[0])
    assert clicks.click(100, 80) is None and clicks.pending
    assert clicks.click(40, 20) == (40.0, 20.0, 60.0, 60.0)
    assert clicks.click(10, 10) is None
    now[0] = 6.0
    assert clicks.click(50, 50) is None  # the first click expired: this one starts a new box
    assert clicks.click(60, 70) == (50.0, 50.0, 10.0, 20.0)


def test_parameter_validation_gives_reasons():
    current = {spec.name: spec.default for spec in node_params.all_param_specs()}
    assert node_params.validate_change(current, {"diagnostics.latency_warn_ms": 20.0}) is None
    assert "must not exceed" in node_params.validate_change(current, {"diagnostics.latency_warn_ms": 500.0})
    assert "scale_num" in node_params.validate_change(current, {"tracker.scale_num": 4})
    assert "lost_score" in node_params.validate_change(current, {"tracker.lost_score": 0.9})
    assert "input_type must be one of" in node_params.validate_change(current, {"input_type": "mjpeg"})
    assert "4 numbers" in node_params.validate_change(current, {"initial_target": [1.0, 2.0]})
    assert "zero or negative" in node_params.validate_change(current, {"initial_target": [1.0, 2.0, 0.0, 5.0]})


def test_every_tracker_parameter_is_exposed():
    from siammixer_ros.core.params import TrackerParams

    names = {spec.name for spec in node_params.all_param_specs()}
    assert {f"tracker.{name}" for name in TrackerParams.field_names()} <= names
    table = node_params.markdown_table()
    assert "`tracker.scale_num`" in table and "`model_path`" in table


def test_the_frame_buffer_is_bounded_in_bytes_and_says_which_bound_refused_a_stamp(model_path, frames):
    from siammixer_ros.core.tracker import SiamMixerTracker

    frame_bytes = SIZE[0] * SIZE[1] * 3
    session = TrackingSession(SiamMixerTracker(model_path), ImageConverter(), buffer_size=20,
                              buffer_bytes=3 * frame_bytes + 100)
    _feed(session, frames, range(6))
    buffered = session.ring.snapshot()
    assert [f.seq for f in buffered] == [4, 5, 6] and session.ring.nbytes == 3 * frame_bytes
    old = session.set_target(BOXES[2], stamp_ns=_stamp_ns(2))
    assert not old.success and "no longer buffered" in old.message and "raise frame_buffer_mb" in old.message
    outcome = session.set_target(BOXES[4], stamp_ns=_stamp_ns(4))
    assert outcome.success and outcome.catchup_frames == 1, outcome.message
    # Over the count first: the message names the count.
    by_count = TrackingSession(session.tracker, ImageConverter(), buffer_size=2, buffer_bytes=100 * frame_bytes)
    _feed(by_count, frames, range(6))
    assert "raise frame_buffer_size" in by_count.set_target(BOXES[0], stamp_ns=_stamp_ns(0)).message
    # A bound below one frame still keeps the newest (a plain SetTarget always has its frame); 0 means no bound.
    tiny = TrackingSession(session.tracker, ImageConverter(), buffer_size=20, buffer_bytes=10)
    _feed(tiny, frames, range(3))
    assert [f.seq for f in tiny.ring.snapshot()] == [3] and tiny.set_target(BOXES[2]).success
    unbounded = TrackingSession(session.tracker, ImageConverter(), buffer_size=5, buffer_bytes=0)
    _feed(unbounded, frames, range(8))
    assert len(unbounded.ring.snapshot()) == 5 and unbounded.ring.nbytes == 5 * frame_bytes
    unbounded.ring.clear()
    assert unbounded.ring.nbytes == 0
