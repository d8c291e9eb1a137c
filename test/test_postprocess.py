"""Response post-processing: scales, window, displacement geometry, scale choice, PSR."""

import cv2
import numpy as np
import pytest

from siammixer_ros.core.postprocess import (
    hann_window,
    parabola_vertex,
    peak_to_sidelobe,
    scale_factors,
    select_peak,
    sigmoid,
    upsample,
)


def test_scale_factors_are_symmetric_powers_of_the_step():
    np.testing.assert_allclose(scale_factors(3, 1.0375), [1 / 1.0375, 1.0, 1.0375])
    np.testing.assert_allclose(scale_factors(5, 1.1), 1.1 ** np.array([-2, -1, 0, 1, 2]))
    assert scale_factors(1, 1.0375).tolist() == [1.0]


def test_hann_window_sums_to_one_and_peaks_in_the_middle():
    w = hann_window(17 * 16)
    assert w.sum() == pytest.approx(1.0, rel=1e-5)
    assert np.unravel_index(w.argmax(), w.shape) in {(135, 135), (135, 136), (136, 135), (136, 136)}


def _peaked_map(r: int, row: int, col: int) -> np.ndarray:
    yy, xx = np.mgrid[0:r, 0:r]
    return (5.0 * np.exp(-((yy - row) ** 2 + (xx - col) ** 2) / 2.0) - 3.0).astype(np.float32)


@pytest.mark.parametrize("stride,r", [(8, 17), (16, 9), (4, 33)])
def test_peak_on_a_cell_gives_that_cells_displacement(stride, r):
    center = (r - 1) // 2
    for row, col in [(center, center), (center + 2, center - 1), (1, r - 3)]:
        peak = select_peak(_peaked_map(r, row, col)[None], stride, 16, None, None, 0.0, 2)
        # Upsampled grid points fall half a sub-cell from the original cells: error <= stride / (2 * up).
        assert peak.dx == pytest.approx((col - center) * stride, abs=stride / 32 + 1e-9)
        assert peak.dy == pytest.approx((row - center) * stride, abs=stride / 32 + 1e-9)
        assert peak.index == 0


def test_window_pulls_an_ambiguous_peak_towards_the_centre():
    r = 17
    two = np.maximum(_peaked_map(r, 8, 8), _peaked_map(r, 8, 14) + 0.05)
    assert select_peak(two[None], 8, 16, None, None, 0.0, 2).dx > 40
    windowed = select_peak(two[None], 8, 16, None, hann_window(r * 16), 0.3, 2)
    assert abs(windowed.dx) < 4


def test_scale_penalty_needs_evidence_and_handles_negative_logits():
    r = 17
    base = _peaked_map(r, 8, 8)
    penalties = np.array([0.9745, 1.0, 0.9745])
    # A slightly higher peak at another scale does not win against the penalty...
    maps = np.stack([base + 0.05, base, base])
    assert select_peak(maps, 8, 4, penalties, None, 0.0, 2).index == 1
    # ...a clearly higher one does.
    maps = np.stack([base, base, base + 0.5])
    assert select_peak(maps, 8, 4, penalties, None, 0.0, 2).index == 2
    # All peaks negative: multiplying by the penalty would favour the penalised scales; it must not.
    neg = np.stack([base - 6, base - 6, base - 6])
    assert select_peak(neg, 8, 4, penalties, None, 0.0, 2).index == 1


def test_scale_between_the_scales_is_the_vertex_of_the_parabola_through_the_peaks():
    # Peaks sampled from a parabola peaking at 1.3 (index units) give back 1.3; at 0.4 likewise.
    for top in (1.3, 0.4):
        values = np.array([-(i - top) ** 2 for i in range(3)])
        assert parabola_vertex(values, int(np.argmax(values))) == pytest.approx(top)
    # Never beyond the scales searched, and no estimate from a parabola with no maximum between them.
    assert parabola_vertex(np.array([0.0, 1.0, 1.9]), 2) == 2.0
    assert parabola_vertex(np.array([1.0, 0.5, 0.9]), 0) == 0.0
    assert parabola_vertex(np.array([1.0, 1.0, 1.0]), 1) == 1.0
    # Five scales: the three around the winner.
    five = np.array([-((i - 2.2) ** 2) for i in range(5)])
    five[0] = five[4] = 10.0  # far from the winner: not used
    assert parabola_vertex(five, 2) == pytest.approx(2.2)


def test_select_peak_reports_the_interpolated_scale_only_when_asked():
    base = _peaked_map(17, 8, 8)
    penalties = np.array([0.9745, 1.0, 0.9745])
    maps = np.stack([base, base + 0.3, base + 0.2])
    plain = select_peak(maps, 8, 4, penalties, None, 0.0, 2)
    assert plain.index == 1 and plain.scale_position is None
    between = select_peak(maps, 8, 4, penalties, None, 0.0, 2, interpolate_scale=True)
    assert between.index == 1 and 1.0 < between.scale_position < 1.5
    assert (between.dx, between.dy, between.logit) == (plain.dx, plain.dy, plain.logit)  # position: the winner's


def test_psr_is_high_for_a_sharp_peak_low_for_noise_and_offset_invariant():
    rng = np.random.default_rng(0)
    sharp = _peaked_map(17, 8, 8) + rng.normal(0, 0.1, (17, 17)).astype(np.float32)
    noise = rng.normal(0, 1, (17, 17)).astype(np.float32)
    assert peak_to_sidelobe(sharp, 2) > 10
    assert peak_to_sidelobe(noise, 2) < 5
    assert peak_to_sidelobe(sharp * 3 + 7, 2) == pytest.approx(peak_to_sidelobe(sharp, 2), rel=1e-4)
    assert peak_to_sidelobe(np.zeros((9, 9), np.float32), 2) == 0.0


def test_sigmoid_is_overflow_safe():
    assert sigmoid(0.0) == 0.5
    assert sigmoid(1000.0) == 1.0
    assert sigmoid(-1000.0) == 0.0


@pytest.mark.parametrize("r, up", [(9, 16), (17, 8), (5, 3)])
def test_upsampling_equals_opencv_bicubic_resize(r, up):
    maps = np.random.default_rng(r).normal(size=(3, r, r)).astype(np.float32)
    got = upsample(maps, up)
    for i in range(3):
        want = cv2.resize(maps[i], (r * up, r * up), interpolation=cv2.INTER_CUBIC)
        np.testing.assert_allclose(got[i], want, atol=1e-5)
