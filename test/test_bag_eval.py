"""Offline evaluation of bags: the same numbers as the direct evaluation, and scoring of recorded detections."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from siammixer_ros.bag import eval_bag, make_bag, reader
from siammixer_ros.eval.datasets import Sequence
from siammixer_ros.eval.report import evaluate
from siammixer_ros.eval.runner import load_results, run_sequence
from siammixer_ros.eval.trackers import TrackerConfig

FPS = 10.0


@pytest.fixture(scope="module")
def ncc_model() -> Path:
    from siammixer_ros.testing.ncc_model import ncc_model_path

    return ncc_model_path(16)


def synthetic_sequence(frames: int = 16, absent: tuple[int, ...] = ()) -> Sequence:
    """A textured target moving over a textured background (siammixer_ros.testing.synthetic)."""
    from siammixer_ros.testing.synthetic import render_sequence

    boxes = [(60 + 4 * i, 50 + 2 * i, 40, 32) for i in range(frames)]
    rendered = render_sequence(boxes, size=(240, 180), seed=3, blob=10.0)
    groundtruth = np.asarray(rendered.boxes, dtype=np.float64)
    groundtruth[list(absent)] = np.nan
    return Sequence("synthetic", list(rendered.frames), groundtruth, {"name": "synthetic", "fps": FPS})


def test_offline_bag_evaluation_equals_direct_evaluation(ncc_model: Path, tmp_path: Path) -> None:
    sequence = synthetic_sequence(absent=(0, 9))
    config = TrackerConfig(model_path=ncc_model, threads=1)
    # Direct: the toolkit's runner and metrics on the sequence itself.
    assert run_sequence("siammixer", sequence, tmp_path / "direct", config, progress=False)["status"] == "done"
    direct = evaluate(tmp_path / "direct", ["siammixer"], [sequence])["trackers"]["siammixer"]["per_sequence"]
    # Through a raw bag.
    make_bag.write_bag(sequence, tmp_path / "bag")
    via_bag = eval_bag.evaluate_bag(tmp_path / "bag", tmp_path / "bag_eval", config=config)
    bag_scores = via_bag["trackers"]["siammixer"]["per_sequence"]["synthetic"]
    direct_scores = direct["synthetic"]
    assert direct_scores["scored_frames"] == len(sequence) - 3  # init frame 1, absent frame 9 and frame 0
    for key in ("success_auc", "precision", "success_50", "norm_precision", "mean_iou", "scored_frames"):
        assert bag_scores[key] == direct_scores[key], key
    assert bag_scores["success_curve"] == direct_scores["success_curve"]
    np.testing.assert_array_equal(load_results(tmp_path / "bag_eval", "siammixer", "synthetic")["boxes"],
                                  load_results(tmp_path / "direct", "siammixer", "synthetic")["boxes"])
    # The NCC model follows this target: a real score, not a degenerate one.
    assert bag_scores["success_auc"] > 0.6


def test_latest_output_rule() -> None:
    stamps = [100, 200, 300, 400, 500, 600]
    groundtruth = np.array([[0, 0, 10, 10]] * 6, dtype=np.float64)
    outputs = [eval_bag.Output(200, (0, 0, 10, 10)),          # own output: IoU 1
               eval_bag.Output(400, (5, 0, 10, 10)),          # own output: IoU 1/3; frame 300 held from 200
               eval_bag.Output(500, None),                     # lost: no box
               eval_bag.Output(999, (0, 0, 10, 10))]           # stamp of no frame
    result = eval_bag.score_outputs(stamps, groundtruth, outputs)
    assert result["init_frame"] == 0
    assert (result["matched"], result["held"], result["unmatched_outputs"]) == (3, 2, 1)
    predicted = result["predicted"]
    np.testing.assert_array_equal(predicted[2], [0, 0, 10, 10])      # held from frame 1
    assert np.all(np.isnan(predicted[4])) and np.all(np.isnan(predicted[5]))  # lost, then still no box
    assert result["scored_frames"] == 5
    assert math.isclose(result["mean_iou"], (1 + 1 + 1 / 3 + 0 + 0) / 5)


def test_score_a_recorded_detection_bag_against_ground_truth(tmp_path: Path) -> None:
    sequence = synthetic_sequence(frames=10, absent=(4,))
    make_bag.write_bag(sequence, tmp_path / "gt_bag")
    # A "recording": detections on a differently named topic, on every other frame, shifted by 4 px.
    shifted = sequence.boxes.copy()
    shifted[:, 0] += 4.0
    shifted[1::2] = np.nan
    recording = Sequence("synthetic", sequence.frames, shifted, sequence.meta)
    make_bag.write_bag(recording, tmp_path / "det_bag", gt_topic="/tracker/detection")

    result = eval_bag.score_detection_bag(tmp_path / "gt_bag", tmp_path / "det_bag")
    assert result["frames_in_bag"] == 10 and result["init_frame"] == 0
    assert result["scored_frames"] == 8  # frames 1..9 without the absent frame 4
    # Own detections on frames 2, 6, 8 (frame 4 is absent, so the recording has none there); the rest hold.
    assert result["matched"] == 3 and result["held"] == 6
    iou_own = (40 - 4) * 32 / (2 * 40 * 32 - (40 - 4) * 32)
    assert result["success_auc"] < 1.0 and result["mean_iou"] < iou_own + 1e-9
    with pytest.raises(reader.BagError, match="topics of type"):
        eval_bag.score_detection_bag(tmp_path / "gt_bag", tmp_path / "gt_bag")  # only /ground_truth: excluded
