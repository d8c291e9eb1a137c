"""The training loop on a tiny synthetic dataset: a step lowers the loss, resume continues exactly, CLI, export."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from siammixer_ros.train.config import config_from_dict, load_config, save_config  # noqa: E402
from siammixer_ros.train.trainer import Trainer, lr_at  # noqa: E402


def _write_clip(folder: Path, seed: int, frames: int = 8) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    background = cv2.resize(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), (160, 120))
    target = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(folder / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write mp4v here")
    lines = []
    for i in range(frames):
        frame = background.copy()
        x, y = 40 + 5 * i, 40 + 2 * i
        frame[y:y + 20, x:x + 20] = target
        writer.write(frame)
        lines.append(f"{x},{y},20,20")
    writer.release()
    (folder / "groundtruth.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train_data")
    for seed, name in enumerate(("clip_a", "clip_b", "clip_val")):
        _write_clip(root / "sequences" / name, seed)
    return root


def _config(data: Path, cache: Path, loss: dict | None = None, **schedule: int) -> object:
    return config_from_dict({
        "threads": 1, "data_dir": str(data), "cache_dir": str(cache), "val_sequences": ["clip_val"],
        "pairs": {"sources": {"video": 0.75, "negative": 0.25}, "max_gap": 4},
        "loss": loss or {"distill_weight": 0.0},
        "optim": {"batch_size": 4, "warmup_pairs": 0, "lr": 0.002},
        "schedule": {"total_pairs": 400, "checkpoint_every_s": 1e9, "val_every_pairs": 10**6,
                     "tracking_val_every_pairs": 0, **schedule},
        "val": {"pairs": 4, "tracking_sequences": ["clip_val"], "tracking_max_frames": 4,
                "select_metric": "val_peak_hit"},
    })


def test_training_steps_lower_the_loss_on_a_fixed_batch(tiny_data: Path, tmp_path: Path) -> None:
    trainer = Trainer(_config(tiny_data, tmp_path / "cache"), tmp_path / "run", progress=False)
    assert trainer.train_names == ["clip_a", "clip_b"] and trainer.val_names == ["clip_val"]
    batch = trainer.batches.make(0)
    losses = [trainer.train_step(batch)["loss"] for _ in range(6)]
    assert losses[-1] < losses[0], losses


def test_resume_continues_exactly_like_an_uninterrupted_run(tiny_data: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    straight = Trainer(_config(tiny_data, cache), tmp_path / "a", progress=False)
    straight.run(max_steps=3)

    first = Trainer(_config(tiny_data, cache), tmp_path / "b", progress=False)
    first.run(max_steps=2)
    assert (tmp_path / "b" / "checkpoints" / "last.pt").is_file()
    with (tmp_path / "b" / "log.csv").open("a") as f:  # a step logged after the last checkpoint, then killed
        f.write("3,12,0,0,9,9,9,0,0,0,0,0,0\n")
    with pytest.raises(FileExistsError):
        Trainer(_config(tiny_data, cache), tmp_path / "b", progress=False)
    resumed = Trainer(_config(tiny_data, cache), tmp_path / "b", resume=True, progress=False)
    assert (resumed.step, resumed.pairs_seen) == (2, 8)
    opt_state = resumed.optimizer.state_dict()["state"]
    assert opt_state and all(int(s["step"]) == 2 for s in opt_state.values())
    resumed.run(max_steps=1)

    assert resumed.step == straight.step == 3
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    rows = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    # Each invocation is a segment of the run, with the pairs it trained and its note.
    import csv

    with (tmp_path / "b" / "segments.csv").open(newline="") as f:
        segments = list(csv.DictReader(f))
    assert [(r["segment"], r["start_pairs"], r["end_pairs"]) for r in segments] == [("1", "0", "8"), ("2", "8", "12")]


def test_validation_writes_metrics_and_best_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    trainer = Trainer(_config(tiny_data, tmp_path / "cache"), tmp_path / "run", progress=False)
    metrics = trainer.validate(tracking=True)
    assert 0.0 <= metrics["val_peak_hit"] <= 1.0 and np.isfinite(metrics["val_loss"])
    assert 0.0 <= metrics["val_track_auc"] <= 1.0
    assert (tmp_path / "run" / "val.csv").is_file()
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", map_location="cpu", weights_only=False)
    # Weights to export, not a resume point: no optimiser state (the committed run state stays small).
    assert "model" in best and "optimizer" not in best


def test_selection_split_is_held_back_and_validates(tiny_data: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from siammixer_ros.train import trainer as trainer_module

    cfg = _config(tiny_data, tmp_path / "cache")
    cfg.val.split, cfg.val.tracking_sequences = "selection", None
    monkeypatch.setattr(trainer_module, "SELECTION_SEQUENCES", ("clip_b",))
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    assert trainer.train_names == ["clip_a"] and trainer.check_names == ["clip_b"]
    assert trainer.val_names == ["clip_val"] and trainer.tracking_names == ["clip_b"]
    assert "clip_b" not in trainer.sampler.sequence_names
    cfg.train_sequences = ["clip_val"]
    with pytest.raises(ValueError, match="train_sequences not in the training split"):
        trainer_module.choose_sequences(cfg, ["clip_a", "clip_b", "clip_val"])


def test_in_training_validation_takes_temporal_restarts_from_the_config(tiny_data: Path, tmp_path: Path) -> None:
    cfg = _config(tiny_data, tmp_path / "cache")
    cfg.val.tracking_starts = 2
    assert Trainer(cfg, tmp_path / "run", progress=False).validator.tracking_starts == 2
    cfg.val.tracking_starts = 0
    with pytest.raises(ValueError, match="tracking_starts must be at least 1"):
        Trainer(cfg, tmp_path / "run0", progress=False)


def test_config_base_holds_only_differences(tmp_path: Path) -> None:
    from siammixer_ros.train.config import read_config_dict

    (tmp_path / "a.yaml").write_text("seed: 3\noptim: {lr: 0.5, batch_size: 8}\npairs: {sources: {video: 1.0}}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("base: ../a.yaml\noptim: {lr: 0.1}\n")
    cfg = load_config(tmp_path / "sub" / "b.yaml")
    assert (cfg.seed, cfg.optim.lr, cfg.optim.batch_size, cfg.pairs.sources) == (3, 0.1, 8, {"video": 1.0})
    (tmp_path / "a.yaml").write_text("base: sub/b.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        read_config_dict(tmp_path / "sub" / "b.yaml")
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(tmp_path / "c.yaml")


def test_config_round_trip_and_unknown_keys(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[1] / "siammixer_ros" / "train" / "configs" / "xs.yaml"
    cfg = load_config(shipped)
    assert cfg.pairs.augment.brightness == (0.7, 1.3) and cfg.pairs.augment.rotation_deg == 2.0
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    with pytest.raises(ValueError, match="in optim: lrr"):
        config_from_dict({"optim": {"lrr": 1.0}})


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "siammixer_ros" / "train"
                                                           / "configs").glob("*.yaml")))
def test_every_shipped_config_loads(name: str) -> None:
    cfg = load_config(Path(__file__).resolve().parents[1] / "siammixer_ros" / "train" / "configs" / name)
    assert cfg.variant in ("xs", "s") and sum(cfg.pairs.sources.values()) > 0
    if cfg.init_checkpoint and not Path(cfg.init_checkpoint).is_absolute():  # a committed run's weights
        assert (Path(__file__).resolve().parents[1] / cfg.init_checkpoint).is_file(), cfg.init_checkpoint
    if cfg.pairs.sources.get("pseudo", 0) > 0:
        # Pseudo pairs have no labels: without the teacher's map nothing would supervise them.
        assert cfg.loss.distill_weight > 0 and cfg.loss.distill_mode == "bce"


def test_lr_schedule_warms_up_then_decays() -> None:
    cfg = config_from_dict({"optim": {"lr": 1.0, "warmup_pairs": 100, "min_lr_ratio": 0.1},
                            "schedule": {"total_pairs": 1100}})
    assert lr_at(cfg, 0) == pytest.approx(0.1)
    assert lr_at(cfg, 100) == pytest.approx(1.0)
    assert lr_at(cfg, 600) == pytest.approx(0.55)
    assert lr_at(cfg, 1100) == pytest.approx(0.1)


def test_cli_trains_resumes_and_exports(tiny_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from siammixer_ros.train.cli import main as train_main
    from siammixer_ros.train.export import main as export_main

    config = tmp_path / "cfg.yaml"
    save_config(_config(tiny_data, tmp_path / "cache"), config)
    run = tmp_path / "run"
    assert train_main(["--config", str(config), "--out", str(run), "--max-steps", "1", "--no-progress"]) == 0
    assert train_main(["--out", str(run), "--resume", "--max-steps", "1", "--no-progress"]) == 0
    assert train_main(["--out", str(tmp_path / "none"), "--resume"]) == 2
    out = tmp_path / "x.onnx"
    assert export_main(["--run", str(run), "--checkpoint", "last.pt", "--out", str(out)]) == 0
    from siammixer_ros.core.model_file import read_model_file

    info, _ = read_model_file(out)
    assert info.provenance["pairs_seen"] == 8 and info.provenance["val_sequences_never_trained_on"] == ["clip_val"]
    assert out.with_suffix(".onnx.sha256").read_text().split()[0] == __import__("hashlib").sha256(
        out.read_bytes()).hexdigest()
    # Another search size (the network is fully convolutional): the file says so and the response grows with it.
    wide = tmp_path / "wide.onnx"
    assert export_main(["--run", str(run), "--checkpoint", "last.pt", "--out", str(wide), "--search-size", "288"]) == 0
    wide_info, _ = read_model_file(wide)
    assert (wide_info.search_size, wide_info.response_size) == (288, 11)
    assert export_main(["--run", str(run), "--checkpoint", "last.pt", "--out", str(wide), "--search-size", "250"]) == 2


def test_a_new_run_of_a_deeper_variant_starts_from_a_shallower_runs_weights(tiny_data: Path, tmp_path: Path) -> None:
    import dataclasses

    xs = Trainer(_config(tiny_data, tmp_path / "cache"), tmp_path / "xs", progress=False)
    xs.run(max_steps=1)
    checkpoint = tmp_path / "xs" / "checkpoints" / "last.pt"
    cfg = dataclasses.replace(_config(tiny_data, tmp_path / "cache"), variant="s", init_checkpoint=str(checkpoint))
    grown = Trainer(cfg, tmp_path / "s", progress=False)
    start = torch.load(checkpoint, weights_only=False)["model"]
    state = grown.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in start.items())  # every XS weight, unchanged
    assert not grown.model.mixer2.layers[1].channel_mixing.fc2.weight.abs().any()  # the new layer: the identity
    grown.run(max_steps=1)  # and it trains
    # The run records what it started from, across a resume, and an export's provenance carries it (the model's
    # lineage: the pairs its starting weights had seen).
    started_from = {"checkpoint": str(checkpoint), "variant": "xs", "pairs_seen": xs.pairs_seen}
    resumed = Trainer(cfg, tmp_path / "s", resume=True, progress=False)
    resumed.run(max_steps=2)
    from siammixer_ros.train.export import initialisation_of

    saved = torch.load(tmp_path / "s" / "checkpoints" / "last.pt", weights_only=False)
    assert saved["initialised_from"] == started_from and initialisation_of(saved) == started_from
    del saved["initialised_from"]  # a run from before the record: the export reads the starting file itself
    assert initialisation_of(saved) == {**started_from, "read_at_export": True}


def test_export_reestimates_the_batchnorm_statistics_of_a_checkpoint_made_before_branches(tiny_data: Path,
                                                                                          tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from siammixer_ros.core.model_file import read_model_file
    from siammixer_ros.model.network import has_branch_statistics
    from siammixer_ros.train.export import main as export_main

    trainer = Trainer(_config(tiny_data, tmp_path / "cache"), tmp_path / "run", progress=False)
    trainer.run(max_steps=2)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    assert has_branch_statistics(state["model"])  # runs keep both averages now
    # A checkpoint as made before: one blended set of statistics.
    state["model"] = {k: v for k, v in state["model"].items() if "template_" not in k}
    old = tmp_path / "old.pt"
    torch.save(state, old)
    fresh, kept = tmp_path / "fresh.onnx", tmp_path / "kept.onnx"
    assert export_main(["--run", str(tmp_path / "run"), "--checkpoint", str(old), "--out", str(fresh),
                        "--bn-pairs", "16"]) == 0
    assert export_main(["--run", str(tmp_path / "run"), "--checkpoint", str(old), "--out", str(kept),
                        "--bn-pairs", "0"]) == 0
    fresh_info, fresh_parts = read_model_file(fresh)
    kept_info, kept_parts = read_model_file(kept)
    assert fresh_info.provenance["bn_statistics"].startswith("re-estimated per branch on 16 clean pairs")
    assert kept_info.provenance["bn_statistics"].startswith("one running average blending both branches")
    assert fresh_parts["template"] != kept_parts["template"] and fresh_parts["search"] != kept_parts["search"]
    assert torch.load(old, weights_only=False)["model"].keys() == state["model"].keys()  # the original is kept
    # Without the data the re-estimation needs, a clear refusal that names the way out.
    state["config"]["data_dir"] = str(tmp_path / "nowhere")
    torch.save(state, old)
    assert export_main(["--run", str(tmp_path / "run"), "--checkpoint", str(old), "--out", str(fresh)]) == 2


TEACHER = Path(__file__).resolve().parents[1].parent / "shared" / "peers" / "nanotrack_v2"


def test_feature_distillation_trains_an_adapter_that_resumes_and_is_not_exported(tiny_data: Path,
                                                                                  tmp_path: Path) -> None:
    if not (TEACHER / "nanotrack_head_sim.onnx").is_file():
        pytest.skip(f"NanoTrack v2 teacher absent ({TEACHER}); it lives in ../shared/peers")
    pytest.importorskip("onnx")
    loss = {"distill_weight": 0.0, "feature_distill_weight": 1.0, "teacher_dir": str(TEACHER)}
    cache = tmp_path / "cache"
    trainer = Trainer(_config(tiny_data, cache, loss), tmp_path / "fixed", progress=False)
    batch = trainer.batches.make(0)
    assert batch["teacher_search_features"].shape == (4, 48, 16, 16)
    rows = [trainer.train_step(batch) for _ in range(6)]
    assert rows[0]["distill"] == 0.0 and rows[0]["feature_distill"] > 0.5
    assert rows[-1]["feature_distill"] < rows[0]["feature_distill"], [r["feature_distill"] for r in rows]

    straight = Trainer(_config(tiny_data, cache, loss), tmp_path / "a", progress=False)
    straight.run(max_steps=3)
    first = Trainer(_config(tiny_data, cache, loss), tmp_path / "b", progress=False)
    first.run(max_steps=2)
    assert "feature_adapter" in torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=False)
    resumed = Trainer(_config(tiny_data, cache, loss), tmp_path / "b", resume=True, progress=False)
    resumed.run(max_steps=1)
    for key, value in straight.adapter.state_dict().items():
        torch.testing.assert_close(value, resumed.adapter.state_dict()[key], rtol=1e-5, atol=1e-6, msg=key)
    assert "feature_distill" in (tmp_path / "b" / "log.csv").read_text().splitlines()[0]

    # A run without the adapter cannot silently resume as one with it.
    plain = Trainer(_config(tiny_data, cache), tmp_path / "plain", progress=False)
    plain.run(max_steps=1)
    with pytest.raises(ValueError, match="feature adapter"):
        Trainer(_config(tiny_data, cache, loss), tmp_path / "plain", resume=True, progress=False)

    from siammixer_ros.core.model_file import read_model_file
    from siammixer_ros.train.export import main as export_main

    out = tmp_path / "fd.onnx"
    assert export_main(["--run", str(tmp_path / "b"), "--checkpoint", "last.pt", "--out", str(out)]) == 0
    info, _ = read_model_file(out)
    assert info.provenance["pairs_seen"] == 12


def test_pseudo_pairs_without_a_teacher_are_refused(tiny_data: Path, tmp_path: Path) -> None:
    cfg = _config(tiny_data, tmp_path / "cache")
    cfg.pairs.sources = {"video": 0.5, "pseudo": 0.5}
    with pytest.raises(ValueError, match="only the teacher"):
        Trainer(cfg, tmp_path / "run", progress=False)


def test_a_finished_run_validates_its_last_step_once(tiny_data: Path, tmp_path: Path) -> None:
    # total 8 pairs at batch 4: the periodic validation falls on the last step, and the final one must not repeat it.
    trainer = Trainer(_config(tiny_data, tmp_path / "cache", total_pairs=8, val_every_pairs=8), tmp_path / "run",
                      progress=False)
    assert trainer.run()["finished"]
    rows = (tmp_path / "run" / "val.csv").read_text().splitlines()[1:]
    assert [r.split(",")[1] for r in rows] == ["8"]
    # Without a periodic validation on the last step the final one still runs.
    other = Trainer(_config(tiny_data, tmp_path / "cache", total_pairs=8), tmp_path / "other", progress=False)
    other.run()
    assert len((tmp_path / "other" / "val.csv").read_text().splitlines()) == 2


def test_a_data_pack_trains_without_the_shared_data(tiny_data: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU path: a pack of some frames (within a size limit) stands in for ../shared and the frame cache."""
    from siammixer_ros.train import trainer as trainer_module
    from siammixer_ros.train.cache import load_cached_sequences
    from siammixer_ros.train.pack import build_pack

    sequences = load_cached_sequences(tiny_data, tmp_path / "cache", ["clip_a", "clip_b"])
    manifest = build_pack(sequences, tiny_data, None, tmp_path / "pack", max_mib=0.5, max_side=80)
    assert (tmp_path / "pack" / "site" / "yaml" / "__init__.py").is_file()
    assert manifest["bytes"] <= 0.5 * 2**20
    packed = manifest["sequences"]["clip_a"]
    assert 2 <= packed["packed"] <= 8 and packed["scale"] == 0.5  # 160 px wide frames -> 80
    first = next(b for b in packed["boxes"] if b[0] is not None)
    assert first[2] == 10.0  # the 20 px target, scaled with its frame
    monkeypatch.setattr(trainer_module, "SELECTION_SEQUENCES", ("clip_b",))
    cfg = _config(tiny_data, tmp_path / "cache")
    cfg.pack_dir, cfg.data_dir, cfg.val.split, cfg.val.tracking_sequences = str(tmp_path / "pack"), "/nonexistent", \
        "selection", None
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    assert trainer.train_names == ["clip_a"] and trainer.check_names == ["clip_b"] and trainer.val_names == []
    trainer.run(max_steps=1)
    assert trainer.step == 1
    # Pseudo pairs take any frame "up to N later": a frame that is not packed reads as the nearest packed one.
    from siammixer_ros.train.pack import PackedSequence

    (clip_a,) = [s for s in trainer.sampler.sequences if s.name == "clip_a"]
    sparse = PackedSequence("clip_a", clip_a.directory, clip_a.boxes, np.array([0, 5]))
    np.testing.assert_array_equal(sparse.frame(4), sparse.frame(5))
    np.testing.assert_array_equal(sparse.frame(1), sparse.frame(0))


def test_worker_processes_build_the_same_batches(tiny_data: Path, tmp_path: Path) -> None:
    cfg = _config(tiny_data, tmp_path / "cache")
    cfg.data_workers = 1
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    try:
        from_workers = [trainer.batches.get(step) for step in (0, 1)]
    finally:
        trainer.batches.close()
    for step, batch in enumerate(from_workers):
        local = trainer.batches.make(step)
        np.testing.assert_array_equal(batch["search"], local["search"])
        np.testing.assert_array_equal(batch["label"], local["label"])


def test_set_overrides_config_values_and_refuses_unknown_keys() -> None:
    from siammixer_ros.train.config import TrainConfig, apply_overrides

    cfg = apply_overrides(TrainConfig(), ["schedule.tracking_val_every_pairs=0", "pairs.sources.pseudo=0.2",
                                          "device=cuda", "val.tracking_sequences=[a, b]"])
    assert cfg.schedule.tracking_val_every_pairs == 0 and cfg.pairs.sources["pseudo"] == 0.2
    assert cfg.pairs.sources["video"] == TrainConfig().pairs.sources["video"]  # the other sources stay
    assert cfg.device == "cuda" and cfg.val.tracking_sequences == ["a", "b"]
    with pytest.raises(ValueError, match="unknown config keys in optim: lrr"):
        apply_overrides(TrainConfig(), ["optim.lrr=1"])
    with pytest.raises(ValueError, match="dotted.key=value"):
        apply_overrides(TrainConfig(), ["optim.lr"])
def test_box_branch_learns_and_joins_a_run_at_its_resume(tiny_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    cache = tmp_path / "cache"
    box_loss = {"distill_weight": 0.0, "box_weight": 1.0}
    cfg = _config(tiny_data, cache, box_loss)
    with pytest.raises(ValueError, match="box_head"):
        Trainer(cfg, tmp_path / "no_branch", progress=False)
    cfg.box_head = True
    trainer = Trainer(cfg, tmp_path / "fixed", progress=False)
    batch = trainer.batches.make(0)
    assert batch["target_wh"].shape == (4, 2)
    rows = [trainer.train_step(batch) for _ in range(8)]
    assert rows[0]["box"] > 0 and rows[-1]["box"] < rows[0]["box"], [r["box"] for r in rows]

    # A run without the branch, resumed with it: the backbone continues, the branch starts fresh.
    plain = Trainer(_config(tiny_data, cache), tmp_path / "run", progress=False)
    plain.run(max_steps=2)
    before = {k: v.clone() for k, v in plain.model.state_dict().items()}
    resumed = Trainer(cfg, tmp_path / "run", resume=True, progress=False)
    assert (resumed.step, resumed.pairs_seen) == (2, 8)
    for key, value in before.items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, msg=key)
    resumed.run(max_steps=1)
    assert (tmp_path / "run" / "log_box.csv").read_text().splitlines()[0] == "step,pairs,box"
    # Its checkpoint now has the branch; it resumes as a box run and exports a file with the box output.
    again = Trainer(cfg, tmp_path / "run", resume=True, progress=False)
    assert again.step == 3 and again.model.box_head is not None
    from siammixer_ros.core.model_file import read_model_file
    from siammixer_ros.train.export import main as export_main

    out = tmp_path / "box.onnx"
    assert export_main(["--run", str(tmp_path / "run"), "--checkpoint", "last.pt", "--out", str(out)]) == 0
    assert read_model_file(out)[0].has_box_output
    metrics = again.validator.pairs_metrics(again.model)
    assert 0.0 <= metrics["val_box_iou"] <= 1.0 and 0.0 <= metrics["val_box_iou_cells"] <= 1.0


def test_segments_table_lists_each_invocation_with_its_last_tracking_auc(tmp_path: Path) -> None:
    from siammixer_ros.train.segments import segments_markdown

    (tmp_path / "segments.csv").write_text(
        "segment,started_at,ended_at,start_pairs,end_pairs,train_hours,pairs_per_hour,threads,device,git_commit,note\n"
        "1,2026-12-02T07:53:14Z,2026-12-02T08:31:58Z,0,6400,0.5,12800,2,cpu,abc1234,start\n"
        "2,2026-12-02T08:40:00Z,,6400,,,,2,cpu,def5678,box branch\n")
    (tmp_path / "val.csv").write_text("step,pairs,val_track_auc\n200,6400,0.41\n300,9600,\n400,12800,0.45\n")
    rows = segments_markdown(tmp_path).splitlines()[2:]
    assert rows[0].startswith("| 1 | 2026-12-02 07:53 | 0 - 6,400 | 0.50 | 12,800 |") and "0.410 at 6,400" in rows[0]
    assert "(running or killed)" in rows[1] and "0.450 at 12,800" in rows[1] and "box branch" in rows[1]


class _SequenceOfBoxes:
    """The part of a cached sequence the tracking validation reads: boxes, and frames that carry their index."""

    def __init__(self, name: str, boxes: np.ndarray) -> None:
        self.name, self.boxes = name, boxes

    def __len__(self) -> int:
        return len(self.boxes)

    def frame(self, index: int) -> np.ndarray:
        return np.full((4, 4, 3), index % 256, dtype=np.uint8)

    def valid_indices(self, min_size: float = 2.0) -> np.ndarray:
        ok = np.isfinite(self.boxes).all(axis=1) & (self.boxes[:, 2] >= min_size) & (self.boxes[:, 3] >= min_size)
        return np.flatnonzero(ok)


def test_temporal_restarts_spread_passes_so_one_early_failure_does_not_decide() -> None:
    from siammixer_ros.train.validate import _one_pass_auc, restart_frames

    assert restart_frames(np.arange(90), 1) == [0]
    assert restart_frames(np.arange(90), 3) == [0, 30, 60]
    assert restart_frames(np.array([2, 3, 50, 51, 52, 53]), 3) == [2, 50, 52]  # annotated frames only
    assert restart_frames(np.array([7]), 3) == [7]
    assert restart_frames(np.array([], dtype=int), 3) == []

    boxes = np.tile([40.0, 40.0, 20.0, 20.0], (90, 1))
    boxes[:5] = np.nan  # the target enters at frame 5

    def make_tracker():
        # Follows the target exactly, except that a pass which sees frame 20 loses it for good there.
        state = {"lost": False}

        def update(image: np.ndarray) -> np.ndarray:
            state["lost"] = state["lost"] or int(image[0, 0, 0]) == 20
            return np.array([200.0, 200.0, 20.0, 20.0]) if state["lost"] else boxes[5].copy()
        return (lambda image, box: None), update

    one = _one_pass_auc([_SequenceOfBoxes("s", boxes)], 0, make_tracker)
    three = _one_pass_auc([_SequenceOfBoxes("s", boxes)], 0, make_tracker, starts=3)
    # A pass right on every frame scores 20/21 (no IoU exceeds the last threshold, 1.0). One pass from frame 5 is
    # right on frames 6-19 of 6-89 only; of three passes, from 5, 33 and 61, the later two never fail.
    perfect = 20 / 21
    assert one["val_track_auc"] == pytest.approx(perfect * 14 / 84)
    assert three["val_track_auc"] == pytest.approx(perfect * (14 / 84 + 1 + 1) / 3)
    assert three["auc/s"] == three["val_track_auc"]


def test_validate_scores_a_model_file_with_other_tracker_settings(monkeypatch, tmp_path: Path, capsys) -> None:
    # `train.validate FILE --set NAME=VALUE`: tracker settings compared with temporal restarts on the selection
    # split; they reach the tracker, are recorded with the result, and a wrong one stops with a clear message.
    import json

    import siammixer_ros.train.cache as cache
    import siammixer_ros.train.validate as validate

    seen: list[dict | None] = []

    def scored(path, sequences, max_frames, params=None, starts=1):
        seen.append(params)
        return {"auc/s": 0.5, "val_track_auc": 0.5}

    monkeypatch.setattr(cache, "load_cached_sequences", lambda *args, **kwargs: [])
    monkeypatch.setattr(validate, "model_file_tracking_auc", scored)
    out = tmp_path / "r.json"
    assert validate.main(["m.onnx", "--set", "window_influence=0.12", "--set", "scale_lr=0.8", "--json",
                          str(out)]) == 0
    assert seen == [{"window_influence": 0.12, "scale_lr": 0.8}]
    assert json.loads(out.read_text())["m.onnx"]["tracker_params"] == seen[0]
    assert validate.main(["m.onnx"]) == 0 and seen[-1] is None  # no --set: the defaults
    for bad, message in ((["--set", "window_influence=-1"], "window_influence"), (["--set", "nothing"], "NAME=VALUE"),
                         (["--set", "scale_lr=0.8", "--backend", "builtin"], "tracker backend"),
                         (["--turned-pairs", "30"], "trainer checkpoints"), (["--scaled-pairs"], "trainer checkpoints"),
                         (["--no-tracking"], "nothing to score")):
        with pytest.raises(SystemExit):
            validate.main(["m.onnx", *bad])
        assert message in capsys.readouterr().err


class _RenderedSequence:
    """A synthetic sequence in the shape the scale probe reads (name, boxes, frame(i), valid_indices)."""

    def __init__(self, seq, name: str = "synthetic") -> None:
        self.name, self.boxes, self._frames = name, np.asarray(seq.boxes, dtype=np.float64), seq.frames

    def frame(self, index: int) -> np.ndarray:
        return self._frames[index]

    def valid_indices(self, min_size: float = 2.0) -> np.ndarray:
        return np.arange(len(self.boxes))


class _CorrelationModel(torch.nn.Module):
    """Normalised cross-correlation of grey images at 1/4 resolution: the best match is the crop that shows the
    target exactly as the template does, i.e. at the template's scale. ``blind``: every crop scores the same."""

    def __init__(self, blind: bool = False) -> None:
        super().__init__()
        self.blind = blind

    @staticmethod
    def _grey(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x.mean(1, keepdim=True), 4)

    def template_features(self, z: torch.Tensor) -> torch.Tensor:
        g = self._grey(z)[:, :, 8:24, 8:24]  # the target's middle, away from the context
        return (g - g.mean()) / (g.std() + 1e-6)

    def search_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._grey(x)

    def head(self, zf: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        if self.blind:
            return torch.zeros(len(xf), 1, 9, 9)
        k = zf.shape[-1]
        patches = torch.nn.functional.unfold(xf, k)  # (B, k*k, L)
        patches = (patches - patches.mean(1, keepdim=True)) / (patches.std(1, keepdim=True) + 1e-6)
        scores = (zf.reshape(1, -1, 1) * patches).mean(1)
        side = int(round(scores.shape[-1] ** 0.5))
        return scores.reshape(len(xf), 1, side, side)


def test_the_scale_probe_tells_a_scale_aware_network_from_a_blind_one() -> None:
    # `train.validate --scaled-pairs`: five search crops 1.1x apart around the target; a network whose peak is
    # highest on the crop at the target's scale scores right ~1, one that cannot tell scales apart does not.
    from siammixer_ros.testing.synthetic import render_sequence
    from siammixer_ros.train.validate import scale_pick_metrics, scaled_pair_cases

    seq = _RenderedSequence(render_sequence([(130 + i, 100, 48, 48) for i in range(12)], size=(320, 240), seed=2))
    cases = scaled_pair_cases([seq], 12, seed=0, max_gap=5, max_shift=8.0)
    assert all(t != x and abs(t - x) <= 5 for _, t, x, _ in cases)
    aware = scale_pick_metrics(_CorrelationModel(), [seq], cases)
    blind = scale_pick_metrics(_CorrelationModel(blind=True), [seq], cases)
    assert aware["scale_pick/right"] >= 0.9 and aware["scale_pick/steps"] <= 0.1, aware
    assert blind["scale_pick/right"] == 0.0 and blind["scale_pick/bias"] == -2.0, blind  # ties: the first crop


def test_scale_ranking_trains_on_its_crops_and_logs_its_term(tiny_data: Path, tmp_path: Path) -> None:
    cfg = _config(tiny_data, tmp_path / "cache", {"distill_weight": 0.0, "scale_rank_weight": 1.0})
    cfg.pairs.sources = {"video": 1.0}
    cfg.pairs.scale_rank_prob = 1.0
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    batch = trainer.batches.make(0)
    assert batch["scale_search"].shape == (8, 3, 256, 256) and batch["scale_owner"].tolist() == [0, 1, 2, 3]
    rows = [trainer.train_step(batch) for _ in range(8)]
    assert rows[0]["scale_rank"] > 0 and rows[-1]["scale_rank"] < rows[0]["scale_rank"], \
        [r["scale_rank"] for r in rows]
    trainer.run(max_steps=1)
    assert (tmp_path / "run" / "log_scale_rank.csv").read_text().splitlines()[0] == "step,pairs,scale_rank"
    # With the weight at 0 the crops are drawn but not scored: the term is 0 and log.csv keeps its columns.
    cfg.loss.scale_rank_weight = 0.0
    off = Trainer(cfg, tmp_path / "off", progress=False)
    assert off.train_step(off.batches.make(0))["scale_rank"] == 0.0
    off.run(max_steps=1)
    assert not (tmp_path / "off" / "log_scale_rank.csv").exists()


def test_a_soup_averages_runs_of_one_start_and_refuses_mixed_ones(tiny_data: Path, tmp_path: Path) -> None:
    from siammixer_ros.train.bn_stats import model_from_checkpoint_state
    from siammixer_ros.train.soup import average_states
    from siammixer_ros.train.soup import main as soup_main

    cache = tmp_path / "cache"
    paths = []
    for seed in (1, 2):
        cfg = _config(tiny_data, cache)
        cfg.seed = seed
        Trainer(cfg, tmp_path / f"run{seed}", progress=False).run(max_steps=2)
        paths.append(tmp_path / f"run{seed}" / "checkpoints" / "last.pt")
    a, b = (torch.load(p, map_location="cpu", weights_only=False) for p in paths)
    out = tmp_path / "soup.pt"
    assert soup_main([str(p) for p in paths] + ["--out", str(out), "--bn-pairs", "8", "--threads", "1"]) == 0
    soup = torch.load(out, map_location="cpu", weights_only=False)
    # Weights are the mean; BatchNorm's statistics are re-estimated for them (not the mean of the runs').
    for key, value in soup["model"].items():
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        torch.testing.assert_close(value, (a["model"][key] + b["model"][key]) / 2, msg=key)
    assert "re-estimated" in soup["bn_statistics"]
    assert [s["checkpoint"] for s in soup["souped_from"]] == [str(p) for p in paths]
    model = model_from_checkpoint_state(soup)  # what train.validate and export load
    scores = model.head(model.template_features(torch.zeros(1, 3, 128, 128)),
                        model.search_features(torch.zeros(1, 3, 256, 256)))
    assert scores.shape == (1, 1, 9, 9) and torch.isfinite(scores).all()
    # Runs on other sequences, or of another shape, do not mix; nor does a soup of one.
    other = dict(b, train_sequences=["clip_b"])
    torch.save(other, tmp_path / "other.pt")
    assert soup_main([str(paths[0]), str(tmp_path / "other.pt"), "--out", str(tmp_path / "x.pt")]) == 2
    assert soup_main([str(paths[0]), "--out", str(tmp_path / "x.pt")]) == 2
    with pytest.raises(ValueError, match="different parameters"):
        average_states([a["model"], {k: v for k, v in b["model"].items() if not k.startswith("head")}])
