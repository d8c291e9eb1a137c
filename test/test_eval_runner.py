"""One-pass runner: results layout, skip of finished sequences, --force, failures that do not stop the run, CLI."""

import json

import numpy as np
import pytest
from test_eval_datasets import write_video_sequence

from siammixer_ros.eval import cli, trackers
from siammixer_ros.eval.datasets import load_dataset
from siammixer_ros.eval.runner import load_results, result_paths, run_experiment
from siammixer_ros.eval.trackers import TrackerConfig, TrackerSpec


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "data"
    write_video_sequence(root / "still", ["NaN,NaN,NaN,NaN", "10,10,20,20", "10,10,20,20", "NaN,NaN,NaN,NaN",
                                          "10,10,20,20"], {"name": "still", "aerial": True})
    write_video_sequence(root / "moving", ["0,0,20,20", "10,0,20,20", "20,0,20,20"],
                         {"name": "moving", "aerial": False})
    return root


class ExplodingTracker:
    """Fails on its second update, like a tracker hitting a bug mid-sequence."""

    def __init__(self, config=None):
        self.calls = 0

    def init(self, image, box):
        self.box = box

    def update(self, image):
        self.calls += 1
        if self.calls == 2:
            raise ValueError("boom")
        return self.box, 0.5


def test_results_layout_skip_and_force(dataset, tmp_path):
    sequences = load_dataset(dataset)
    out = tmp_path / "results"
    summary = run_experiment(["static"], sequences, out, TrackerConfig(), progress=False)
    assert [s["status"] for s in summary.statuses] == ["done", "done"]
    results = load_results(out, "static", "still")
    boxes = results["boxes"]
    assert boxes.shape == (5, 4) and np.isnan(boxes[0]).all()  # before the first annotated frame
    np.testing.assert_allclose(boxes[1:], [[10, 10, 20, 20]] * 4)  # init frame = gt, then the static box
    assert np.isnan(results["scores"][:2]).all() and (results["scores"][2:] == 1.0).all()
    assert np.isnan(results["times"][0]) and np.isfinite(results["times"][1:]).all()
    info = json.loads(result_paths(out, "static", "still")["done"].read_text())
    assert info["init_frame"] == 1 and info["frames"] == 5

    mtime = result_paths(out, "static", "still")["boxes"].stat().st_mtime_ns
    again = run_experiment(["static"], sequences, out, TrackerConfig(), progress=False)
    assert [s["status"] for s in again.statuses] == ["skipped", "skipped"]
    assert result_paths(out, "static", "still")["boxes"].stat().st_mtime_ns == mtime

    forced = run_experiment(["static"], sequences, out, TrackerConfig(), force=True, progress=False)
    assert [s["status"] for s in forced.statuses] == ["done", "done"]


def test_different_max_frames_is_not_counted_as_done(dataset, tmp_path):
    sequences = load_dataset(dataset, names=["still"])
    out = tmp_path / "results"
    run_experiment(["static"], sequences, out, TrackerConfig(), max_frames=3, progress=False)
    assert load_results(out, "static", "still")["boxes"].shape == (3, 4)
    summary = run_experiment(["static"], sequences, out, TrackerConfig(), progress=False)
    assert summary.statuses[0]["status"] == "done"
    assert load_results(out, "static", "still")["boxes"].shape == (5, 4)


def test_failing_tracker_and_missing_tracker_do_not_stop_the_run(dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(trackers.REGISTRY, "exploding",
                        TrackerSpec("exploding", "test", ExplodingTracker, lambda config: None))
    messages = []
    config = TrackerConfig(model_path=tmp_path / "missing.onnx")
    summary = run_experiment(["siammixer", "exploding", "static"], load_dataset(dataset), tmp_path / "r", config,
                             progress=False, log=messages.append)
    assert "siammixer" in summary.skipped_trackers and "missing.onnx" in summary.skipped_trackers["siammixer"]
    errors = {(s["tracker"], s["sequence"]): s["error"] for s in summary.errors}
    assert errors[("exploding", "still")] == "ValueError: boom"
    assert not result_paths(tmp_path / "r", "exploding", "still")["done"].exists()
    assert result_paths(tmp_path / "r", "static", "still")["done"].exists()
    assert any("boom" in m for m in messages) and any("skipping tracker siammixer" in m for m in messages)


def test_parallel_jobs_give_the_same_results(dataset, tmp_path):
    sequences = load_dataset(dataset)
    run_experiment(["static"], sequences, tmp_path / "serial", TrackerConfig(), progress=False)
    summary = run_experiment(["static"], sequences, tmp_path / "parallel", TrackerConfig(), jobs=2, progress=False)
    assert sorted(s["status"] for s in summary.statuses) == ["done", "done"]
    for name in ("still", "moving"):
        np.testing.assert_array_equal(load_results(tmp_path / "serial", "static", name)["boxes"],
                                      load_results(tmp_path / "parallel", "static", name)["boxes"])


def test_cli_writes_reports_with_subsets(dataset, tmp_path, capsys):
    out = tmp_path / "results" / "demo"
    code = cli.main(["--dataset", str(dataset), "--trackers", "static,siammixer", "--model",
                     str(tmp_path / "none.onnx"), "--out", str(out), "--no-progress",
                     "--copy-to", str(tmp_path / "bench" / "eval_demo")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "skipping tracker siammixer" in printed
    report = json.loads((out / "report.json").read_text())
    still = report["trackers"]["static"]["per_sequence"]["still"]
    moving = report["trackers"]["static"]["per_sequence"]["moving"]
    # perfect boxes: IoU 1 beats 20 of the 21 thresholds (success is IoU > t, OTB), so AUC = 20/21
    assert still["success_auc"] == pytest.approx(20 / 21) and still["scored_frames"] == 2  # frames 2 and 4
    # moving: static box (0,0,20,20) vs gt shifted 10 px (IoU 1/3) and 20 px (IoU 0)
    assert moving["mean_iou"] == pytest.approx((1 / 3 + 0) / 2)
    assert report["trackers"]["static"]["subsets"]["aerial"]["names"] == ["still"]
    assert report["trackers"]["static"]["subsets"]["all"]["success_auc"] == pytest.approx(
        (20 / 21 + moving["success_auc"]) / 2)
    for name in ("report.md", "success.png", "precision.png", "success_aerial.png"):
        assert (out / name).is_file()
    assert "| static |" in (tmp_path / "bench" / "eval_demo.md").read_text()
    assert json.loads((tmp_path / "bench" / "eval_demo.json").read_text())["command"].startswith("siammixer-eval")


def test_cli_reports_bad_dataset_clearly(tmp_path, capsys):
    assert cli.main(["--dataset", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
