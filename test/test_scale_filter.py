"""DSST's scale filter (core/scale_filter.py) and the tracker's ``scale_estimate: dsst``: the filter reads a zoom
of the target's surroundings, keeps a still target's size, gives 1.0 (not NaN) on a uniform image, and the tracker
follows a growing target with it."""

import cv2
import numpy as np
import pytest

from siammixer_ros.core.errors import TrackerParamsError
from siammixer_ros.core.params import TrackerParams
from siammixer_ros.core.runtime import RuntimeOptions, SiamMixerRuntime
from siammixer_ros.core.scale_filter import MIN_SAMPLE_SIDE, ScaleFilter, scale_samples
from siammixer_ros.core.tracker import SiamMixerTracker
from siammixer_ros.testing.ncc_model import ncc_model_path
from siammixer_ros.testing.synthetic import iou, render_sequence

CENTRE = (200.0, 150.0)
PAD = (128.0, 128.0, 128.0)
PLAIN = {"distractor_subtract": 0.0, "template_weight": 0.0, "online_weight": 0.0}


def _texture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (300, 400, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 3.0) * 3.0 - 255.0, 0, 255).astype(np.uint8)


def _zoomed(image: np.ndarray, zoom: float) -> np.ndarray:
    cx, cy = CENTRE
    matrix = np.array([[zoom, 0.0, cx * (1 - zoom)], [0.0, zoom, cy * (1 - zoom)]])
    return cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REFLECT)


def _filter(image: np.ndarray, side: float = 60.0) -> ScaleFilter:
    factors = ScaleFilter.geometry(17, 1.03, 0.25)[0]
    return ScaleFilter.learn(scale_samples(image, CENTRE, side, factors, PAD), 1.03, 0.25, 0.01, 1.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_filter_reads_a_zoom_of_the_target(seed):
    image = _texture(seed)
    scale_filter = _filter(image)
    factors = scale_filter.factors

    def read(zoom: float) -> float:
        return scale_filter.scale(scale_samples(_zoomed(image, zoom), CENTRE, 60.0, factors, PAD))

    assert read(1.0) == pytest.approx(1.0, abs=0.005)
    # The target 6 % larger (or smaller) in the new frame: the filter says so, by at least half of it.
    assert 1.03 < read(1.06) < 1.09
    assert 1 / 1.09 < read(1 / 1.06) < 1 / 1.03


def test_a_uniform_image_gives_scale_one_not_nan():
    grey = np.full((300, 400, 3), 90, np.uint8)
    scale_filter = _filter(grey)
    factors = scale_filter.factors
    assert scale_filter.scale(scale_samples(grey, CENTRE, 60.0, factors, PAD)) == 1.0
    # A target at the image border: most samples are padding, the answer is still a finite scale.
    found = scale_filter.scale(scale_samples(_texture(), (0.0, 0.0), 60.0, factors, PAD))
    assert np.isfinite(found) and factors[0] <= found <= factors[-1]


def test_updating_returns_a_new_filter_and_keeps_the_old_one():
    image = _texture()
    scale_filter = _filter(image)
    numerator = scale_filter.numerator.copy()
    newer = scale_filter.updated(scale_samples(_zoomed(image, 1.1), CENTRE, 60.0, scale_filter.factors, PAD), 0.5)
    np.testing.assert_array_equal(scale_filter.numerator, numerator)
    assert not np.allclose(newer.numerator, numerator)


def test_a_tiny_target_is_sampled_with_more_context():
    assert ScaleFilter.init_padding(1.5, 4.0) == pytest.approx(MIN_SAMPLE_SIDE / 4.0)
    assert ScaleFilter.init_padding(1.5, 100.0) == 1.5


def test_dsst_parameters_are_checked():
    with pytest.raises(TrackerParamsError, match="dsst_scales"):
        TrackerParams(dsst_scales=16)
    with pytest.raises(TrackerParamsError, match="dsst_step"):
        TrackerParams(dsst_step=1.0)
    with pytest.raises(TrackerParamsError, match="scale_estimate"):
        TrackerParams(scale_estimate="dsst", box_mode="regression")


@pytest.fixture(scope="module")
def runtime():
    return SiamMixerRuntime(ncc_model_path(8), RuntimeOptions(mode="whole", intra_op_threads=1))


def _track(runtime, seq, **params):
    tracker = SiamMixerTracker(runtime=runtime, params={**PLAIN, **params})
    results = [tracker.init(seq.frames[0], seq.boxes[0])] + [tracker.update(f) for f in seq.frames[1:]]
    return np.array([iou(r.box, b) for r, b in zip(results[1:], seq.boxes[1:], strict=True)]), results


def test_the_tracker_follows_fast_growth_with_the_scale_filter(runtime):
    # A target growing 3.5 % a frame (2.4x in 40 frames) outruns SiamFC's arg-max scale at step 1.0375 (at most
    # 2.2 % a frame); the scale filter reads the growth from the target's own appearance.
    frames = np.arange(40)
    boxes = [(200 - 20 * 0.035 * i, 150 - 18 * 0.035 * i, 40 * (1 + 0.035 * i), 36 * (1 + 0.035 * i)) for i in frames]
    seq = render_sequence(boxes, seed=3)
    siamfc, _ = _track(runtime, seq)
    dsst, results = _track(runtime, seq, scale_estimate="dsst", scale_lr=1.0)
    assert dsst.mean() > siamfc.mean() + 0.04 and dsst.min() > 0.8, (dsst, siamfc)
    assert "scale_filter" in results[1].timings and results[1].scale > 1.0
    # A still target keeps its size.
    still = render_sequence([(150, 120, 40, 36)] * 12, seed=3)
    _, results = _track(runtime, still, scale_estimate="dsst", scale_lr=1.0)
    np.testing.assert_allclose([r.box[2] for r in results], 40, rtol=0.03)
