"""Live replay: the real node tracks a short bag played at 10 Hz; one Detection2D per processed frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ros_helpers import requires_rclpy

from siammixer_ros.bag import make_bag, reader
from siammixer_ros.eval.datasets import Sequence

pytestmark = requires_rclpy


@pytest.fixture(scope="module")
def ncc_model() -> Path:
    from siammixer_ros.testing.ncc_model import ncc_model_path

    return ncc_model_path(16)


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "compressed"])
def test_live_replay_yields_one_detection_per_processed_frame(ncc_model: Path, tmp_path: Path,
                                                              compressed: bool) -> None:
    from siammixer_ros.bag.live_eval import LiveEvalConfig, run_live_eval
    from siammixer_ros.testing.synthetic import render_sequence

    frames = 20
    boxes = [(40 + 3 * i, 40 + 2 * i, 40, 32) for i in range(frames)]
    rendered = render_sequence(boxes, size=(240, 180), seed=5, blob=10.0)
    groundtruth = np.asarray(rendered.boxes, dtype=np.float64)
    groundtruth[:2] = np.nan  # the target is set at the first annotated frame (2), not frame 0
    sequence = Sequence("live", list(rendered.frames), groundtruth, {"name": "live", "fps": 10.0})
    bag = tmp_path / "bag"
    make_bag.write_bag(sequence, bag, compressed=compressed)

    report = run_live_eval(LiveEvalConfig(bag=bag, out_dir=tmp_path / "out", model=ncc_model,
                                          node_params={"execution_mode": "whole"}), log=lambda *_: None)

    published = reader.image_stamps(bag)
    assert report["set_target"]["success"] and report["init_frame"] == 2
    detections = reader.read_detections(tmp_path / "out" / "output_bag", "/siammixer_tracker/detection")
    stamps = [d.stamp_ns for d in detections]
    # Every detection carries the stamp of a published frame after the init frame, once.
    assert len(stamps) == len(set(stamps)) == report["detections"]
    assert set(stamps) <= set(published[3:])
    # One detection per processed frame (the NCC model does not lose this target), most frames processed.
    assert report["lost_frames"] == 0
    assert report["detections"] == report["processed_frames"]
    assert report["processed_frames"] + report["dropped_frames"] == frames - 3
    assert report["processed_frames"] >= (frames - 3) // 2
    assert report["accuracy"]["success_auc"] > 0.5
    assert 0 < report["latency_ms"]["p50"] < 2000
    assert (tmp_path / "out" / "live_report.json").is_file()
    # The player's lateness is stated, so a run whose player stalled is visible beside its drops.
    assert 0 <= report["schedule_lateness_ms"]["p50"] <= report["schedule_lateness_ms"]["max"]
    assert "player lateness" in (tmp_path / "out" / "live_report.md").read_text()
