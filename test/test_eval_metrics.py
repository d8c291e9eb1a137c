"""Evaluation metrics against hand-computed cases (OTB/got10k conventions documented in eval/metrics.py)."""

import math

import numpy as np
import pytest

from siammixer_ros.eval import metrics


def test_iou_hand_computed_cases():
    predicted = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5], [np.nan] * 4, [0, 0, 10, 10]], float)
    groundtruth = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [np.nan] * 4], float)
    result = metrics.iou(predicted, groundtruth)
    # identical 1; half-overlap 50 / (100 + 100 - 50); disjoint 0; missing prediction 0; absent gt NaN
    assert result[:4] == pytest.approx([1.0, 1 / 3, 0.0, 0.0])
    assert math.isnan(result[4])


def test_center_errors_hand_computed():
    groundtruth = np.array([[0, 0, 10, 20]], float)
    assert metrics.center_error(np.array([[3, 4, 10, 20]], float), groundtruth) == pytest.approx([5.0])
    # (5/10, 10/20) -> sqrt(0.5)
    assert metrics.normalized_center_error(np.array([[5, 10, 10, 20]], float), groundtruth) == pytest.approx(
        [math.sqrt(0.5)])
    assert np.isinf(metrics.center_error(np.full((1, 4), np.nan), groundtruth)[0])


def test_success_curve_and_auc_hand_computed():
    curve = metrics.success_curve(np.array([0.0, 0.5, 1.0]))
    assert len(curve) == 21
    assert curve[0] == pytest.approx(2 / 3)  # IoU > 0: 0.5 and 1.0
    assert curve[10] == pytest.approx(1 / 3)  # IoU > 0.5 is strict: only 1.0
    assert curve[20] == 0.0
    # 1.0 exceeds thresholds 0..0.95 (20 of them), 0.5 exceeds 0..0.45 (10): (20 + 10) / 3 / 21
    assert curve.mean() == pytest.approx(10 / 21)


def test_precision_curve_is_inclusive_at_threshold():
    curve = metrics.precision_curve(np.array([0.0, 20.0, 20.5, np.inf]))
    assert curve[20] == pytest.approx(0.5)
    assert curve[21] == pytest.approx(0.75)
    assert curve[50] == pytest.approx(0.75)


def test_sequence_metrics_excludes_init_and_absent_frames():
    groundtruth = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [np.nan] * 4, [0, 0, 10, 10], [0, 0, 10, 10]], float)
    predicted = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 10, 10], [5, 0, 10, 10], [np.nan] * 4], float)
    times = np.array([0.5, 0.01, 0.02, 0.03, 0.04])
    result = metrics.sequence_metrics(predicted, groundtruth, init_frame=0, times=times)
    assert result["scored_frames"] == 3  # frames 1, 3, 4
    assert result["mean_iou"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert result["precision"] == pytest.approx(2 / 3)  # errors 0, 5, inf
    assert result["success_50"] == pytest.approx(1 / 3)
    ious = np.array([1.0, 1 / 3, 0.0])
    expected_auc = np.mean([(ious > t).mean() for t in np.linspace(0, 1, 21)])
    assert result["success_auc"] == pytest.approx(expected_auc)
    # by hand: IoU 1 beats 20 thresholds (0..0.95), IoU 1/3 beats 7 (0..0.30), IoU 0 none
    assert result["success_auc"] == pytest.approx((20 + 7) / 3 / 21)
    # fps: 4 updates in 0.1 s; the 0.5 s init is excluded
    assert result["updated_frames"] == 4
    assert result["fps"] == pytest.approx(40.0)
    assert result["ms_per_frame"] == pytest.approx(25.0)
    assert result["median_ms"] == pytest.approx(25.0)


def test_init_frame_later_than_zero_scores_only_after_it():
    groundtruth = np.array([[np.nan] * 4, [0, 0, 10, 10], [0, 0, 10, 10]], float)
    predicted = np.array([[np.nan] * 4, [0, 0, 10, 10], [100, 100, 10, 10]], float)
    result = metrics.sequence_metrics(predicted, groundtruth, init_frame=1, times=np.array([np.nan, 0.1, 0.2]))
    assert result["scored_frames"] == 1
    assert result["success_auc"] == 0.0
    assert result["fps"] == pytest.approx(5.0)


def test_normalized_precision_curve_and_value_at_0_2():
    groundtruth = np.array([[0, 0, 10, 10]] * 3, float)
    predicted = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    predicted[1, 0] += 1.0  # normalised error 0.1
    predicted[2, 0] += 3.0  # 0.3
    result = metrics.sequence_metrics(np.vstack([groundtruth[:1], predicted]), np.vstack([groundtruth[:1],
                                                                                           groundtruth]), 0)
    assert result["norm_precision_at_0.2"] == pytest.approx(2 / 3)
    curve = np.array(result["norm_precision_curve"])
    thresholds = np.linspace(0, 0.5, 51)
    expected = np.mean([(np.array([0.0, 0.1, 0.3]) <= t + 1e-12).mean() for t in thresholds])
    assert result["norm_precision"] == pytest.approx(curve.mean())
    assert result["norm_precision"] == pytest.approx(expected, abs=0.02)


def test_aggregate_means_over_sequences_and_pools_time():
    a = {"scored_frames": 10, "updated_frames": 10, "update_seconds": 1.0, "median_ms": 100.0,
         **{k: 0.2 for k in metrics.SCALAR_KEYS}, **{k: [0.2, 0.0] for k in metrics.CURVE_KEYS}}
    b = {"scored_frames": 5, "updated_frames": 30, "update_seconds": 1.0, "median_ms": 30.0,
         **{k: 0.6 for k in metrics.SCALAR_KEYS}, **{k: [0.6, 0.2] for k in metrics.CURVE_KEYS}}
    empty = {**a, "scored_frames": 0, "updated_frames": 0, "update_seconds": 0.0}
    result = metrics.aggregate({"a": a, "b": b, "c": empty})
    assert result["sequences"] == 2 and result["unscored"] == ["c"]
    assert result["success_auc"] == pytest.approx(0.4)  # each sequence weighs the same
    assert result["success_curve"] == pytest.approx([0.4, 0.1])
    assert result["fps"] == pytest.approx(20.0)  # 40 frames / 2 s
    subset = metrics.aggregate({"a": a, "b": b}, ["b"])
    assert subset["precision"] == pytest.approx(0.6)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="shape"):
        metrics.iou(np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="differ"):
        metrics.iou(np.zeros((2, 4)), np.zeros((3, 4)))
