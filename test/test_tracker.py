"""SiamMixerTracker end to end on synthetic sequences with the NCC test model (no trained network):
the geometry (crop, stride, offsets, scales) must put the box on the target within tight bounds, the
lost-target logic must report LOST while the target is away and re-acquire it, bad input must raise a
clear error and leave the tracker unchanged."""

import dataclasses

import cv2
import numpy as np
import pytest

import siammixer_ros.core.tracker as tracker_module
from siammixer_ros.core.crop import box_center
from siammixer_ros.core.errors import ModelError, TrackerInputError, TrackerStateError
from siammixer_ros.core.model_file import SHIPPED_MODEL_NAMES
from siammixer_ros.core.runtime import RuntimeOptions, SiamMixerRuntime
from siammixer_ros.core.tracker import SiamMixerTracker, TrackResult, TrackState
from siammixer_ros.testing.ncc_model import ncc_model_path
from siammixer_ros.testing.synthetic import iou, render_sequence

N = 40
FRAMES = np.arange(N)
# The geometry checks measure the plain pipeline (crop, network, peak, box): the memories, which change the template
# the response is computed with, are off here and tested in test_online.py and below.
PLAIN = {"distractor_subtract": 0.0, "template_weight": 0.0, "online_weight": 0.0}


@pytest.fixture(scope="module")
def ncc_path():
    return ncc_model_path(8)


@pytest.fixture(scope="module")
def runtime(ncc_path):
    return SiamMixerRuntime(ncc_path, RuntimeOptions(mode="whole", intra_op_threads=1))


def track(tracker, seq):
    results = [tracker.init(seq.frames[0], seq.boxes[0])]
    results += [tracker.update(frame) for frame in seq.frames[1:]]
    return results


def quality(results, seq):
    ious = np.array([iou(r.box, b) for r, b in zip(results[1:], seq.boxes[1:], strict=False)])
    pairs = list(zip(results[1:], seq.boxes[1:], strict=True))
    errors = np.array([np.hypot(*np.subtract(box_center(r.box), box_center(b))) for r, b in pairs])
    return ious, errors


TRANSLATION = [(100 + 3 * i, 80 + 20 * np.sin(i / 5), 48, 40) for i in FRAMES]


def test_translation_is_followed_to_a_pixel(runtime):
    seq = render_sequence(TRANSLATION, seed=1)
    results = track(SiamMixerTracker(runtime=runtime, params=PLAIN), seq)
    ious, errors = quality(results, seq)
    assert ious.min() > 0.9 and ious.mean() > 0.95, ious
    assert np.median(errors) < 1.0 and errors.max() < 2.0, errors
    assert all(r.state is TrackState.TRACKING for r in results)


def test_static_target_box_does_not_move(runtime):
    box = (101, 77, 47, 39)
    seq = render_sequence([box] * 10, seed=2)
    results = track(SiamMixerTracker(runtime=runtime, params=PLAIN), seq)
    # Crops are snapped to whole pixels, so the target sits up to half a pixel off the crop centre and
    # its peak is interpolated between response cells: sub-pixel error, but no drift.
    for r in results[1:]:
        np.testing.assert_allclose(r.box, box, atol=0.75)
    np.testing.assert_allclose(results[-1].box, results[-4].box, atol=0.35)


@pytest.mark.parametrize("grow", [0.012, -0.008])
def test_scale_change_is_followed(runtime, grow):
    boxes = [(140 - 30 * grow * i, 100 - 25 * grow * i, 44 * (1 + grow * i), 40 * (1 + grow * i)) for i in FRAMES]
    seq = render_sequence(boxes, seed=3)
    results = track(SiamMixerTracker(runtime=runtime, params=PLAIN), seq)
    ious, _ = quality(results, seq)
    assert ious.min() > 0.8 and ious.mean() > 0.88, ious
    final_ratio = results[-1].box[2] / boxes[-1][2]
    assert abs(final_ratio - 1) < 0.1, final_ratio
    # The size did change (it is not just a box of the initial size that overlaps enough).
    assert abs(results[-1].box[2] / boxes[0][2] - 1) > 0.5 * abs(boxes[-1][2] / boxes[0][2] - 1)


def test_parabola_scale_estimate_follows_fast_growth_without_jitter(runtime):
    # A target growing 3.5 % a frame at first (2.4x in 40 frames) outruns SiamFC's arg-max scale at step 1.0375
    # (at most 1 + 0.59 * 0.0375 = 2.2 % a frame). A wider step with the size read between the scales follows it;
    # the same wider step read by arg-max jumps a whole step each frame (the jitter the parabola avoids).
    boxes = [(200 - 20 * 0.035 * i, 150 - 18 * 0.035 * i, 40 * (1 + 0.035 * i), 36 * (1 + 0.035 * i)) for i in FRAMES]
    seq = render_sequence(boxes, seed=3)

    def run(**params):
        results = track(SiamMixerTracker(runtime=runtime, params={**PLAIN, **params}), seq)
        widths = np.array([r.box[2] for r in results])
        return quality(results, seq)[0], np.std(np.diff(np.log(widths[5:])))

    siamfc_ious, _ = run()  # the defaults: arg-max, step 1.0375
    _, wide_argmax_jitter = run(scale_step=1.08)
    parabola_ious, parabola_jitter = run(scale_estimate="parabola", scale_step=1.08)
    assert parabola_ious.min() > 0.88 and parabola_ious.mean() > siamfc_ious.mean() + 0.04, (parabola_ious, siamfc_ious)
    assert parabola_jitter < 0.5 * wide_argmax_jitter, (parabola_jitter, wide_argmax_jitter)
    # A still target keeps its size exactly with the parabola too.
    still = render_sequence([(150, 120, 40, 36)] * 12, seed=3)
    results = track(SiamMixerTracker(runtime=runtime, params={**PLAIN, "scale_estimate": "parabola",
                                                               "scale_step": 1.08}), still)
    np.testing.assert_allclose([r.box[2] for r in results], 40, atol=0.5)


def test_partly_occluded_target_is_kept(runtime):
    boxes = [(100 + 2 * i, 80, 48, 48) for i in FRAMES]
    # An occluder covering about 30 % of the target's width for 15 frames.
    occluders = [(100 + 2 * i + 34, 60, 40, 100) if 10 <= i < 25 else None for i in FRAMES]
    seq = render_sequence(boxes, occluders=occluders, seed=4)
    results = track(SiamMixerTracker(runtime=runtime, params=PLAIN), seq)
    ious, errors = quality(results, seq)
    assert ious.min() > 0.8 and ious.mean() > 0.9, ious
    assert all(r.state is not TrackState.LOST for r in results)


def test_stride_16_model_like_siammixer_xs(tmp_path):
    # Template 128 / search 256 / stride 16 -> 9x9 response, the real XS geometry; coarser texture for stride 16.
    path = ncc_model_path(16)
    tracker = SiamMixerTracker(path, params=PLAIN)
    assert tracker.info.response_size == 9 and tracker.runtime.mode == "whole"
    boxes = [(100 + 2 * i, 90 + 10 * np.sin(i / 6), 56, 48) for i in FRAMES[:30]]
    # Four textures: one sequence's sub-pixel luck (crops snap to whole pixels) does not decide the test.
    mean_ious, median_errors = [], []
    for seed in (5, 6, 7, 8):
        seq = render_sequence(boxes, seed=seed, blob=20.0)
        ious, errors = quality(track(tracker, seq), seq)
        assert ious.min() > 0.75, (seed, ious)
        mean_ious.append(ious.mean())
        median_errors.append(np.median(errors))
    assert np.mean(mean_ious) > 0.87 and np.mean(median_errors) < 2.2, (mean_ious, median_errors)


# Every memory on (online model, distractors, both template memories); the NCC model's single feature channel
# needs a filter as wide as its template grid.
MEMORIES = {"online_weight": 0.5, "online_filter_cells": 8, "distractor_weight": 3.0, "distractor_subtract": 0.3,
            "template_weight": 0.3}


@pytest.mark.parametrize("memories", [{}, MEMORIES], ids=["plain", "memories"])
def test_target_leaving_and_returning_goes_lost_then_tracking(runtime, memories):
    xs = np.concatenate([np.arange(200, 340, 7), np.full(10, 340), np.arange(340, 200, -7)])
    seq = render_sequence([(x, 100, 40, 40) for x in xs], seed=6)
    params = {"lost_frames": 3, **memories}
    results = track(SiamMixerTracker(runtime=runtime, params=params), seq)
    states = [r.state for r in results]
    away = [i for i, v in enumerate(seq.visible) if not v]
    assert away, "the sequence must contain frames without the target"
    # LOST on every frame the target is away, once lost_frames frames have passed.
    assert all(states[i] is TrackState.LOST for i in away[params["lost_frames"]:]), states
    # While lost the box is frozen, the size is not updated, and a wider region is searched.
    lost_results = [results[i] for i in away[params["lost_frames"]:]]
    assert len({r.box for r in lost_results}) == 1
    assert all(r.search_crops > 3 for r in lost_results[1:])
    # Back: re-acquired within a few frames of being fully visible again, then followed closely.
    back = [i for i in range(away[-1] + 1, len(xs)) if xs[i] + 40 <= 320]
    assert states[back[0] + 3] is TrackState.TRACKING, states
    tail_ious = [iou(results[i].box, seq.boxes[i]) for i in back[3:]]
    assert min(tail_ious) > 0.85, tail_ious
    assert results[-1].search_crops == 3


def test_timings_and_result_fields(runtime):
    seq = render_sequence(TRANSLATION[:3], seed=7)
    tracker = SiamMixerTracker(runtime=runtime)
    first = tracker.init(seq.frames[0], seq.boxes[0])
    assert isinstance(first, TrackResult) and first.state is TrackState.TRACKING and first.score == 1.0
    assert {"crop", "inference", "inference_template", "postprocess", "total"} <= set(first.timings)
    r = tracker.update(seq.frames[1])
    assert {"crop", "inference", "inference_search", "inference_head", "postprocess", "total"} <= set(r.timings)
    assert all(v >= 0 for v in r.timings.values())
    assert r.timings["total"] >= r.timings["crop"] + r.timings["inference"] + r.timings["postprocess"] - 1e-6
    assert 0.0 <= r.score <= 1.0 and r.psr > 0 and r.frame_index == 1 and r.search_crops == 3
    assert str(r.state) == "tracking"


# --- geometry mistakes must be caught by the checks above ------------------------------------------------


class _LyingRuntime:
    """A runtime whose metadata states a wrong stride."""

    def __init__(self, runtime, stride):
        self._rt = runtime
        self.info = dataclasses.replace(runtime.info, stride=stride)
        self.last_timings = {}

    def template_features(self, x):
        return self._rt.template_features(x)

    def search_features(self, x):
        return self._rt.search_features(x)

    def response(self, z, x):
        return self._rt.response(z, x)


def _translation_passes(tracker) -> bool:
    seq = render_sequence(TRANSLATION, seed=1)
    ious, errors = quality(track(tracker, seq), seq)
    return bool(ious.min() > 0.9 and ious.mean() > 0.95 and np.median(errors) < 1.0 and errors.max() < 2.0)


@pytest.mark.parametrize("mistake", ["stride x2", "stride /2", "half-cell offset", "crop 10% too large"])
def test_geometry_mistakes_fail_the_translation_check(runtime, monkeypatch, mistake):
    if mistake.startswith("stride"):
        wrong = 16 if "x2" in mistake else 4
        tracker = SiamMixerTracker(runtime=_LyingRuntime(runtime, wrong))
    else:
        real = tracker_module.get_subwindows

        def sabotaged(image, centers, sizes, out_size, pad, out=None):
            if mistake == "half-cell offset":
                centers = [(cx + 4 * s / out_size, cy) for (cx, cy), s in zip(centers, sizes, strict=False)]
            else:
                sizes = [s * 1.1 for s in sizes]
            return real(image, centers, sizes, out_size, pad, out=out)

        monkeypatch.setattr(tracker_module, "get_subwindows", sabotaged)
        tracker = SiamMixerTracker(runtime=runtime)
    assert not _translation_passes(tracker)


# --- input validation --------------------------------------------------------------------------------


@pytest.fixture
def started(runtime):
    seq = render_sequence(TRANSLATION[:4], seed=8)
    tracker = SiamMixerTracker(runtime=runtime)
    tracker.init(seq.frames[0], seq.boxes[0])
    tracker.update(seq.frames[1])
    return tracker, seq


BAD_IMAGES = [
    (np.zeros((240, 320, 3), np.float64), "uint8.*float64"),
    (np.zeros((240, 320, 4), np.uint8), "HxWx3.*BGRA2BGR"),
    (np.zeros((0, 320, 3), np.uint8), "empty"),
    (np.zeros((240, 320, 3, 2), np.uint8), "HxWx3"),
    ([[1, 2], [3, 4]], "numpy array.*list"),
    (None, "None"),
]


@pytest.mark.parametrize("image,message", BAD_IMAGES)
def test_bad_image_in_update_raises_and_changes_nothing(started, image, message):
    tracker, seq = started
    before = (tracker.box, tracker.state, tracker._target)
    with pytest.raises(TrackerInputError, match=message):
        tracker.update(image)
    assert (tracker.box, tracker.state, tracker._target) == before
    # The next good frame gives what it would have given without the failed call.
    twin = SiamMixerTracker(runtime=tracker.runtime)
    twin.init(seq.frames[0], seq.boxes[0])
    twin.update(seq.frames[1])
    assert tracker.update(seq.frames[2]).box == twin.update(seq.frames[2]).box


@pytest.mark.parametrize("box,message", [
    ((10, 10, 0, 20), "positive width and height"),
    ((10, 10, 20, -5), "positive width and height"),
    ((float("nan"), 10, 20, 20), "NaN"),
    ((10, 10, float("inf"), 20), "NaN or infinity"),
    ((400, 10, 20, 20), "entirely outside"),
    ((-50, 10, 20, 20), "entirely outside"),
    ((10, 10, 20), "4 numbers"),
    ("10,10,20,20", "4 numbers"),
])
def test_bad_box_in_init_raises_and_keeps_the_current_target(started, box, message):
    tracker, seq = started
    before = tracker._target
    with pytest.raises(TrackerInputError, match=message):
        tracker.init(seq.frames[2], box)
    assert tracker._target is before


def test_bad_image_in_init_raises(runtime):
    tracker = SiamMixerTracker(runtime=runtime)
    with pytest.raises(TrackerInputError, match="float32"):
        tracker.init(np.zeros((240, 320, 3), np.float32), (10, 10, 20, 20))
    assert not tracker.is_initialized


def test_update_before_init_and_after_reset_raises(runtime):
    tracker = SiamMixerTracker(runtime=runtime)
    frame = np.zeros((240, 320, 3), np.uint8)
    with pytest.raises(TrackerStateError, match="before init"):
        tracker.update(frame)
    tracker.init(frame, (10, 10, 30, 30))
    tracker.reset()
    assert tracker.state is None and tracker.box is None
    with pytest.raises(TrackerStateError):
        tracker.update(frame)


def test_grayscale_frames_are_accepted(runtime):
    seq = render_sequence(TRANSLATION[:10], seed=9)
    gray = [np.ascontiguousarray(f[:, :, 1]) for f in seq.frames]
    tracker = SiamMixerTracker(runtime=runtime)
    tracker.init(gray[0], seq.boxes[0])
    results = [tracker.update(f) for f in gray[1:]]
    assert min(iou(r.box, b) for r, b in zip(results, seq.boxes[1:], strict=False)) > 0.85


def test_box_partly_outside_is_accepted_and_reported_inside(runtime):
    frame = render_sequence([(-10, 100, 40, 40)], seed=10).frames[0]
    tracker = SiamMixerTracker(runtime=runtime)
    result = tracker.init(frame, (-10, 100, 40, 40))
    x, y, w, h = result.box
    assert x >= 0 and x + w <= 320 and w == pytest.approx(30)


def test_missing_model_raises_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        SiamMixerTracker(tmp_path / "absent.onnx")


def test_core_import_is_light():
    import subprocess
    import sys

    code = "import sys, siammixer_ros.core; assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    # Every core module, used for real: still no ROS and no torch (the core runs where neither is installed).
    code = ("import importlib, pkgutil, sys, siammixer_ros.core as core\n"
            "for m in pkgutil.iter_modules(core.__path__): importlib.import_module('siammixer_ros.core.' + m.name)\n"
            "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('rclpy', 'rosidl_runtime_py', 'torch'))\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_motion_prediction_keeps_a_fast_target_that_leaves_the_search_region(runtime):
    # Accelerating to 50 px a frame: more than the search region reaches around the last position.
    xs, speed = [20.0], 8.0
    while xs[-1] < 1100:
        xs.append(xs[-1] + speed)
        speed = min(50.0, speed + 4.0)
    seq = render_sequence([(x, 100, 40, 40) for x in xs], size=(1200, 240), seed=2)
    plain, _ = quality(track(SiamMixerTracker(runtime=runtime), seq), seq)
    assert plain.min() < 0.1, "the target no longer outruns the plain tracker: make it faster"
    predicted, errors = quality(track(SiamMixerTracker(runtime=runtime, params={"motion_weight": 1.0}), seq), seq)
    assert predicted.min() > 0.9 and np.median(errors) < 2.0, predicted


def test_a_change_of_frame_size_rescales_the_track_or_is_refused_clearly(runtime):
    from siammixer_ros.core.errors import FrameSizeError

    seq = render_sequence([(100 + 2 * i, 80, 48, 40) for i in range(12)], size=(320, 240), seed=8)
    tracker = SiamMixerTracker(runtime=runtime, params=PLAIN)
    tracker.init(seq.frames[0], seq.boxes[0])
    for frame in seq.frames[1:6]:
        tracker.update(frame)
    # The camera switches to twice the resolution (same aspect ratio): the track carries over, scaled.
    big = cv2.resize(seq.frames[6], (640, 480), interpolation=cv2.INTER_LINEAR)
    result = tracker.update(big)
    doubled = tuple(2 * v for v in seq.boxes[6])
    assert result.state is TrackState.TRACKING and iou(result.box, doubled) > 0.85, (result.box, doubled)
    # Another aspect ratio: a clear error, and the tracker is left as it was.
    before = tracker.box
    with pytest.raises(FrameSizeError, match="from 640x480 to 64x64"):
        tracker.update(np.zeros((64, 64, 3), np.uint8))
    assert tracker.box == before
    big = cv2.resize(seq.frames[7], (640, 480), interpolation=cv2.INTER_LINEAR)
    assert iou(tracker.update(big).box, tuple(2 * v for v in seq.boxes[7])) > 0.85


def test_search_crops_one_at_a_time_give_the_same_boxes_as_one_batch():
    # RuntimeOptions.search_batch (default 1: the scale crops run one onnxruntime call each, for a third of the
    # intermediate buffers) must not change a result: each crop's features depend on that crop alone. The shipped
    # model, on the tracking path (3 scales) and the lost path (a 3 x 3 grid of crops, uneven chunks with 2).
    from pathlib import Path

    model = Path(__file__).resolve().parents[1] / "models" / SHIPPED_MODEL_NAMES["float"]
    seq = render_sequence([(200 + 4 * i, 150 + 10 * np.sin(i / 4), 60, 50) for i in range(12)], size=(640, 480),
                          seed=3)
    runtimes = {b: SiamMixerRuntime(model, RuntimeOptions(search_batch=b)) for b in (0, 1, 2)}
    assert RuntimeOptions().search_batch == 1
    crops = np.random.default_rng(0).uniform(0, 255, (9, 3, 256, 256)).astype(np.float32)
    whole = runtimes[0].search_features(crops)
    for b in (1, 2):
        np.testing.assert_allclose(runtimes[b].search_features(crops), whole, rtol=1e-5, atol=1e-5)
    lost_path = {"tracking_psr": 1000.0, "lost_psr": 1000.0, "lost_frames": 1, "redetect_score": 1.0,
                 "redetect_psr": 1000.0}
    for params in ({}, lost_path):
        runs = {b: track(SiamMixerTracker(runtime=rt, params=params), seq) for b, rt in runtimes.items()}
        assert runs[0][-1].search_crops == (9 if params else 3)
        for b in (1, 2):
            for one, batched in zip(runs[b], runs[0], strict=True):
                assert one.state is batched.state
                np.testing.assert_allclose(one.box, batched.box, atol=1e-3)
                assert one.score == pytest.approx(batched.score, abs=1e-5)
    with pytest.raises(ModelError, match="search_batch"):
        SiamMixerRuntime(model, RuntimeOptions(search_batch=-1))
