"""The training loop: pairs -> loss -> AdamW/SGD with warm-up + cosine LR; CSV logs, checkpoints, resume.

A run directory holds::

    config.yaml          the configuration the run started with (a resume reads it back)
    log.csv              one row per step: pairs seen, LR, losses, gradient norm, throughput
    val.csv              one row per validation: pair metrics and, less often, tracking AUC
    checkpoints/last.pt  model, optimiser, step, pairs seen, best metric (written every few minutes,
                         on SIGINT/SIGTERM and at the end; atomically, so a kill never leaves half a file)
    checkpoints/best.pt  the weights with the best selection metric so far
    checkpoints/pairs_<N>.pt  a snapshot at every tracking validation (candidates for the full evaluation)

Each batch is drawn with its own RNG seeded by ``(seed, step)``, so a resumed run continues with exactly
the batches an uninterrupted run would have drawn, whatever the prefetch thread had queued.
"""

from __future__ import annotations

import collections
import csv
import math
import os
import queue
import signal
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from siammixer_ros.eval.datasets import SELECTION_SEQUENCES
from siammixer_ros.train.batches import make_batch
from siammixer_ros.train.cache import default_cache_dir, default_data_dir, load_cached_sequences
from siammixer_ros.train.config import TrainConfig, config_from_dict, config_to_dict, save_config
from siammixer_ros.train.data import VAL_SEQUENCES, PairSampler, StillImages, split_sequences
from siammixer_ros.train.losses import (
    box_loss,
    distillation_loss,
    feature_distillation_loss,
    joint_loss,
    scale_rank_loss,
)

SEGMENT_FIELDS = ["segment", "started_at", "ended_at", "start_pairs", "end_pairs", "train_hours", "pairs_per_hour",
                  "threads", "device", "git_commit", "note"]


def git_commit(repo: Path) -> str:
    """The repository's HEAD (with ``+dirty`` when it has changes), or "" outside a git checkout."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+dirty" if dirty else "")


LOG_FIELDS = ["step", "pairs", "elapsed_s", "lr", "loss", "logistic", "triplet", "distill", "feature_distill",
              "grad_norm", "pairs_per_s", "data_wait_s", "head_scale", "head_bias"]


def lr_at(cfg: TrainConfig, pairs: int) -> float:
    """Linear warm-up, then cosine from ``lr`` to ``lr * min_lr_ratio`` at ``total_pairs``."""
    o, total = cfg.optim, max(cfg.schedule.total_pairs, 1)
    if pairs < o.warmup_pairs:
        return o.lr * (0.1 + 0.9 * pairs / max(o.warmup_pairs, 1))
    progress = min(1.0, (pairs - o.warmup_pairs) / max(total - o.warmup_pairs, 1))
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def choose_sequences(cfg: TrainConfig, names: list[str]) -> tuple[list[str], list[str], list[str]]:
    """``(train, validation, selection)`` sequence names for a run.

    Validation is the README's split (or ``val_sequences``); selection is held back from the training split when
    ``val.split`` is "selection"; ``train_sequences`` may name a subset of the rest (older recipes list theirs so
    that they stay reproducible as the shared data grow).
    """
    if cfg.val.split not in ("validation", "selection"):
        raise ValueError(f"val.split must be 'validation' or 'selection', not {cfg.val.split!r}")
    val_names = tuple(cfg.val_sequences) if cfg.val_sequences is not None else VAL_SEQUENCES
    train_names, val_list = split_sequences(names, val_names)
    selection: list[str] = []
    if cfg.val.split == "selection":
        missing = [n for n in SELECTION_SEQUENCES if n not in train_names]
        if missing:
            raise ValueError(f"selection sequences not in the training split: {', '.join(missing)}")
        selection = [n for n in train_names if n in SELECTION_SEQUENCES]
        train_names, _ = split_sequences(train_names, tuple(selection))
    if cfg.train_sequences is not None:
        unknown = [n for n in cfg.train_sequences if n not in train_names]
        if unknown:
            raise ValueError(f"train_sequences not in the training split (held out, or not in the data): "
                             f"{', '.join(unknown)}")
        train_names = [n for n in train_names if n in cfg.train_sequences]
    return train_names, val_list, selection


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    from siammixer_ros.model.network import SiamMixer

    model = SiamMixer(variant=cfg.variant, box_head=cfg.box_head)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_feature_adapter(cfg: TrainConfig, model: torch.nn.Module) -> torch.nn.Module | None:
    """The training-only 1x1 convolution from the student's MB4 features to the teacher's backbone channels.

    Never exported: it exists only so that the student's features can be compared with the teacher's.
    """
    if cfg.loss.feature_distill_weight <= 0:
        return None
    from siammixer_ros.train.teacher import TEACHER_CHANNELS

    adapter = torch.nn.Conv2d(model.mb4.project.out_channels, TEACHER_CHANNELS, 1)
    if cfg.channels_last:
        adapter = adapter.to(memory_format=torch.channels_last)
    return adapter


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module,
                    adapter: torch.nn.Module | None = None) -> torch.optim.Optimizer:
    # No weight decay on norms and biases. The head's scalar scale (init 1e-3) and bias get their own,
    # smaller LR: an Adam step moves a parameter by ~lr whatever its size, and at lr 2e-3 the scale
    # collapsed to zero in the first hundred steps (measured), taking the response with it.
    decay, no_decay, head, box_decay, box_no_decay = [], [], [], [], []
    for name, p in model.named_parameters():
        if name.startswith("head_module."):
            head.append(p)
        elif name.startswith("box_head."):  # groups of their own, last: a run can add the branch on --resume
            (box_no_decay if p.ndim <= 1 else box_decay).append(p)
        else:
            (no_decay if p.ndim <= 1 else decay).append(p)
    if adapter is not None:
        for p in adapter.parameters():
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay, "lr_mult": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "lr_mult": 1.0},
              {"params": head, "weight_decay": 0.0, "lr_mult": cfg.optim.head_lr_mult}]
    if box_decay or box_no_decay:
        groups += [{"params": box_decay, "weight_decay": cfg.optim.weight_decay, "lr_mult": 1.0},
                   {"params": box_no_decay, "weight_decay": 0.0, "lr_mult": 1.0}]
    if cfg.optim.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.optim.lr)
    if cfg.optim.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.optim.lr, momentum=cfg.optim.momentum, nesterov=True)
    raise ValueError(f"unknown optimiser {cfg.optim.name!r}; use 'adamw' or 'sgd'")


def optimizer_state_with_new_groups(saved: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A saved optimiser state extended by the groups ``optimizer`` has beyond it (the box branch switched on at a
    resume): the saved groups keep their state, the new ones start empty with their current settings."""
    current = optimizer.state_dict()
    old, new = saved["param_groups"], current["param_groups"]
    if len(old) >= len(new):
        return saved
    count = sum(len(g["params"]) for g in old)
    groups = [dict(g) for g in old]
    for group in new[len(old):]:
        extended = dict(group)
        extended["params"] = list(range(count, count + len(group["params"])))
        count += len(group["params"])
        groups.append(extended)
    return {"state": saved["state"], "param_groups": groups}


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class BatchSource:
    """Builds batch ``step`` from its own RNG: in the training process, one step ahead in a thread (``prefetch``),
    or in ``data_workers`` processes that keep a window of batches in flight (a GPU machine's cores)."""

    def __init__(self, sampler: PairSampler, cfg: TrainConfig, teacher: Any | None, prefetch: bool) -> None:
        self.sampler, self.cfg, self.teacher = sampler, cfg, teacher
        self.prefetch = prefetch
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._next_step: int | None = None
        self._pool: Any = None
        self._pending: collections.deque = collections.deque()

    def make(self, step: int) -> dict[str, np.ndarray]:
        return make_batch(self.sampler, self.cfg, self.teacher, step)

    def _worker(self, start: int) -> None:
        step = start
        while not self._stop.is_set():
            try:
                item = (step, self.make(step))
            except Exception as exc:  # surfaced in the main thread
                item = (step, exc)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.5)
                    break
                except queue.Full:
                    continue
            step += 1

    def _from_workers(self, step: int) -> dict[str, np.ndarray]:
        import multiprocessing

        from siammixer_ros.train.batches import init_worker, worker_batch

        workers = self.cfg.data_workers
        if self._pool is None:
            teacher_dir = None
            if self.teacher is not None:
                teacher_dir = self.cfg.loss.teacher_dir or ""
            # spawn, not fork: the parent holds torch and onnxruntime thread pools that a fork would copy broken.
            self._pool = multiprocessing.get_context("spawn").Pool(
                workers, initializer=init_worker, initargs=(self.sampler, self.cfg, teacher_dir))
        if self._next_step != step:
            self._pending.clear()
            self._next_step = step
        while len(self._pending) < 2 * workers:
            queued = self._next_step + len(self._pending)
            self._pending.append(self._pool.apply_async(worker_batch, (queued,)))
        got_step, batch = self._pending.popleft().get()
        assert got_step == step, (got_step, step)
        self._next_step = step + 1
        return batch

    def get(self, step: int) -> dict[str, np.ndarray]:
        if self.cfg.data_workers > 0:
            return self._from_workers(step)
        if not self.prefetch:
            return self.make(step)
        if self._thread is None or self._next_step != step:
            self.close()
            self._stop.clear()
            self._queue = queue.Queue(maxsize=2)
            self._thread = threading.Thread(target=self._worker, args=(step,), daemon=True)
            self._thread.start()
        got_step, item = self._queue.get()
        if isinstance(item, Exception):
            raise item
        assert got_step == step, (got_step, step)
        self._next_step = step + 1
        return item

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=30)
            self._thread = None
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
            self._pending.clear()


class Trainer:
    def __init__(self, cfg: TrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True,
                 note: str = "") -> None:
        self.out = Path(out_dir)
        self.note = note
        self.ckpt_dir = self.out / "checkpoints"
        last = self.ckpt_dir / "last.pt"
        self.resume_state: dict[str, Any] | None = None
        if resume:
            if not last.is_file():
                raise FileNotFoundError(f"--resume: no checkpoint at {last}")
            self.resume_state = torch.load(last, map_location="cpu", weights_only=False)
            cfg = config_from_dict(self.resume_state["config"]) if cfg is None else cfg
        elif last.is_file():
            raise FileExistsError(f"{self.out} already holds a run (checkpoints/last.pt); "
                                  "use --resume or another --out")
        if not cfg.loss.distill_labelled_positives and cfg.loss.distill_mode != "bce":
            raise ValueError("loss.distill_labelled_positives: false needs distill_mode 'bce' "
                             "(per-cell terms to leave out)")
        if cfg.pairs.sources.get("pseudo", 0) > 0 and (cfg.loss.distill_weight <= 0 or cfg.loss.distill_mode != "bce"):
            raise ValueError("pairs.sources.pseudo needs loss.distill_weight > 0 with distill_mode 'bce': pseudo pairs "
                             "have no ground truth, only the teacher's map supervises them")
        if cfg.loss.box_weight > 0 and not cfg.box_head:
            raise ValueError("loss.box_weight > 0 needs box_head: true (the box branch)")
        self.cfg = cfg
        self.progress = progress
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.out / "config.yaml")

        torch.set_num_threads(max(1, cfg.threads))
        cv2.setNumThreads(1)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)

        data_dir = Path(cfg.data_dir) if cfg.data_dir else default_data_dir()
        cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
        if cfg.pack_dir:
            # A machine without ../shared: frames, still images and teacher come from the pack (pack.py).
            from siammixer_ros.train.pack import load_pack, pack_sequence_names

            if cfg.val.split != "selection":
                raise ValueError("a data pack holds no validation sequences: use val.split selection")
            data_dir = Path(cfg.pack_dir)
            names = pack_sequence_names(data_dir)
            if (data_dir / "teacher").is_dir():
                cfg.loss.teacher_dir = str(data_dir / "teacher")
        else:
            names = sorted(p.name for p in (data_dir / "sequences").iterdir() if (p / "video.mp4").is_file())
        train_names, val_names_list, selection_names = choose_sequences(cfg, names)
        self.train_names, self.val_names, self.selection_names = train_names, val_names_list, selection_names
        # What the in-training validation (and so the choice of best.pt) looks at.
        self.check_names = selection_names if cfg.val.split == "selection" else val_names_list
        if cfg.pack_dir:
            train_seqs, check_seqs = load_pack(data_dir, train_names), load_pack(data_dir, self.check_names)
        else:
            train_seqs = load_cached_sequences(data_dir, cache_dir, train_names)
            check_seqs = load_cached_sequences(data_dir, cache_dir, self.check_names)
        stills = StillImages.load(data_dir) if (data_dir / "still_images").is_dir() else None
        # data_dir: where the masks and unlabeled clips of the newer pair sources are (None in a pack: not packed).
        self.sampler = PairSampler(train_seqs, stills, cfg.pairs, seed=cfg.seed,
                                   data_dir=None if cfg.pack_dir else data_dir, cache_dir=cache_dir)
        held_out = set(val_names_list) | set(selection_names)
        assert not set(self.sampler.sequence_names) & held_out, "validation or selection sequence in training"

        from siammixer_ros.train.validate import Validator

        self.tracking_names = (list(cfg.val.tracking_sequences) if cfg.val.tracking_sequences is not None
                               else self.check_names)
        self.validator = Validator(check_seqs, cfg.val.pairs, cfg.val.seed, self.tracking_names,
                                   cfg.val.tracking_max_frames, cfg.channels_last, cfg.loss.triplet_weight,
                                   cfg.labels.pos_radius, cfg.labels.neg_radius,
                                   tracking_backend=cfg.val.tracking_backend, tracking_starts=cfg.val.tracking_starts)
        self.teacher = None
        if cfg.loss.distill_weight > 0 or cfg.loss.feature_distill_weight > 0:
            from siammixer_ros.train.teacher import NanoTrackTeacher

            self.teacher = NanoTrackTeacher(cfg.loss.teacher_dir, threads=1)

        self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' asked for, but torch sees no CUDA device here")
        self.model = build_model(cfg).to(self.device)
        self.adapter = build_feature_adapter(cfg, self.model)
        if self.adapter is not None:
            self.adapter = self.adapter.to(self.device)
        self.optimizer = build_optimizer(cfg, self.model, self.adapter)
        self.step = 0
        self.pairs_seen = 0
        self.elapsed = 0.0
        self.best_metric = -math.inf
        self.best_step = -1
        self.last_val_pairs = 0
        self.last_track_pairs = 0
        self.initialised_from: dict[str, Any] | None = None
        if self.resume_state is not None:
            s = self.resume_state
            self.initialised_from = s.get("initialised_from")
            from siammixer_ros.model.network import load_model_state

            # A run may switch the box branch on at a resume: only its weights are new (fresh), and its optimiser
            # groups are added to the saved state.
            new_keys = load_model_state(self.model, s["model"])
            self.model.to(self.device)
            if new_keys:
                print(f"--resume: the box branch is new in this run ({len(new_keys)} tensors, freshly initialised)",
                      flush=True)
            if self.adapter is not None:
                if "feature_adapter" not in s:
                    raise ValueError("--resume: the checkpoint has no feature adapter; feature distillation "
                                     "must be on from the start of a run (or start a new run with init_checkpoint)")
                self.adapter.load_state_dict(s["feature_adapter"])
            self.optimizer.load_state_dict(optimizer_state_with_new_groups(s["optimizer"], self.optimizer))
            self.step, self.pairs_seen, self.elapsed = s["step"], s["pairs_seen"], s["elapsed_s"]
            self.best_metric, self.best_step = s["best_metric"], s["best_step"]
            self.last_val_pairs, self.last_track_pairs = s.get("last_val_pairs", 0), s.get("last_track_pairs", 0)
            torch.set_rng_state(s["torch_rng"].cpu())
            # Steps after the checkpoint (a run killed between saves) are redone: drop their old log rows.
            for name in ("log.csv", "val.csv", "log_box.csv", "val_box.csv", "log_scale_rank.csv"):
                self._truncate_csv(self.out / name, self.step)
        elif cfg.init_checkpoint:
            from siammixer_ros.model.export import load_checkpoint

            # A shallower variant's weights may start a deeper one (XS -> S: the extra Mixer2 layer starts as
            # the identity, so training starts from what the checkpoint computed).
            extras = load_checkpoint(self.model, cfg.init_checkpoint, grow_depth=True)
            # Recorded with the run: the model's provenance counts the pairs its starting weights saw.
            self.initialised_from = {"checkpoint": str(cfg.init_checkpoint), "variant": extras.get("variant"),
                                     "pairs_seen": int(extras.get("pairs_seen", 0))}
        self.batches = BatchSource(self.sampler, cfg, self.teacher, cfg.prefetch)
        self._stop_requested = False

    # -- checkpoints ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
                "pairs_seen": self.pairs_seen, "elapsed_s": self.elapsed, "best_metric": self.best_metric,
                "best_step": self.best_step, "last_val_pairs": self.last_val_pairs,
                "last_track_pairs": self.last_track_pairs, "torch_rng": torch.get_rng_state(),
                "config": config_to_dict(self.cfg), "variant": self.cfg.variant,
                "train_sequences": self.train_names, "val_sequences": self.val_names,
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                **({"initialised_from": self.initialised_from} if self.initialised_from else {}),
                **({"feature_adapter": self.adapter.state_dict()} if self.adapter is not None else {})}

    def save(self, name: str = "last.pt", extra: dict[str, Any] | None = None) -> Path:
        state = self.state()
        if name != "last.pt":
            # Only last.pt resumes; the others are weights to export or compare (a third of the size).
            state.pop("optimizer")
        if extra:
            state.update(extra)
        path = self.ckpt_dir / name
        atomic_save(state, path)
        return path

    # -- logging -------------------------------------------------------------------------------------
    @staticmethod
    def _truncate_csv(path: Path, last_step: int) -> None:
        if not path.is_file():
            return
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= last_step]
        if len(kept) != len(rows):
            tmp = path.with_suffix(".tmp")
            with tmp.open("w", newline="") as f:
                csv.writer(f).writerows(kept)
            os.replace(tmp, path)

    def _append_csv(self, name: str, row: dict[str, Any], fields: list[str] | None = None) -> None:
        path = self.out / name
        new = not path.is_file()
        fields = fields or list(row)
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    def validate(self, tracking: bool) -> dict[str, float]:
        metrics = {"step": self.step, "pairs": self.pairs_seen, "elapsed_s": round(self.elapsed, 1)}
        t0 = time.time()
        # The validator feeds CPU tensors and exports the weights for the project's tracker: it runs on the CPU.
        self.model.to("cpu")
        try:
            metrics.update(self.validator.pairs_metrics(self.model))
            if "val_box_iou" in metrics:  # a file of its own: val.csv keeps its columns when a run adds the branch
                self._append_csv("val_box.csv", {k: metrics[k] for k in ("step", "pairs", "val_box_iou",
                                                                          "val_box_iou_cells")})
            if tracking:
                metrics.update(self.validator.tracking_metrics(self.model))
        finally:
            self.model.to(self.device)
        metrics["val_time_s"] = round(time.time() - t0, 1)
        fields = ["step", "pairs", "elapsed_s", "val_loss", "val_peak_hit", "val_peak_err_px", "val_track_auc",
                  "val_time_s"] + [f"auc/{n}" for n in self.tracking_names]
        self._append_csv("val.csv", metrics, fields)
        key = self.cfg.val.select_metric
        value = metrics.get(key)
        if value is not None and math.isfinite(value) and value > self.best_metric:
            self.best_metric, self.best_step = float(value), self.step
            self.save("best.pt", {"selected_by": key, "selected_value": float(value), "val_metrics": metrics})
        if tracking:
            self.save(f"pairs_{self.pairs_seen:07d}.pt", {"val_metrics": metrics})
        return metrics

    # -- segments: one row per invocation of a run (a run continues across sessions and machines) ----------
    def _write_segments(self, rows: list[dict[str, Any]]) -> None:
        path = self.out / "segments.csv"
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=SEGMENT_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)

    def _read_segments(self) -> list[dict[str, Any]]:
        path = self.out / "segments.csv"
        if not path.is_file():
            return []
        with path.open(newline="") as f:
            return list(csv.DictReader(f))

    def _begin_segment(self) -> None:
        rows = self._read_segments()
        rows.append({"segment": len(rows) + 1, "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "start_pairs": self.pairs_seen, "threads": self.cfg.threads, "device": self.cfg.device,
                     "git_commit": git_commit(Path(__file__).resolve().parents[2]), "note": self.note})
        self._write_segments(rows)
        self._segment_start = (self.pairs_seen, self.elapsed)

    def _end_segment(self) -> None:
        rows = self._read_segments()
        if not rows:
            return
        pairs = self.pairs_seen - self._segment_start[0]
        hours = (self.elapsed - self._segment_start[1]) / 3600.0
        rows[-1].update({"ended_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "end_pairs": self.pairs_seen,
                         "train_hours": f"{hours:.3f}", "pairs_per_hour": f"{pairs / hours:.0f}" if hours > 0 else ""})
        self._write_segments(rows)

    # -- the loop ------------------------------------------------------------------------------------
    def train_step(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        cfg = self.cfg
        dev = self.device

        def tensor(name: str) -> torch.Tensor:
            return torch.from_numpy(batch[name]).to(dev)

        z, x = tensor("template"), tensor("search")
        if cfg.channels_last:
            z, x = z.contiguous(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        labels = tensor("label")
        lr = lr_at(cfg, self.pairs_seen)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        self.model.train()
        # Only the network runs in bfloat16; the losses (logs, softplus, BCE) see float32 scores.
        rank = "scale_search" in batch and cfg.loss.scale_rank_weight > 0
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.autocast_bf16):
            zf = self.model.template_features(z)
            if rank:
                # One pass through the search branch for the pairs' crops and the scale crops, so that batch norm
                # sees them as one batch; the scale crops are then scored against their own pair's template.
                scale_x = tensor("scale_search")
                if cfg.channels_last:
                    scale_x = scale_x.contiguous(memory_format=torch.channels_last)
                owner = tensor("scale_owner")
                per_pair = scale_x.shape[0] // owner.shape[0]  # off crops of each pair (collate: larger, smaller)
                xf_all = self.model.search_features(torch.cat([x, scale_x]))
                xf, scale_xf = xf_all[:x.shape[0]], xf_all[x.shape[0]:]
                scale_scores = self.model.head(zf[owner].repeat_interleave(per_pair, dim=0), scale_xf)
            else:
                xf = self.model.search_features(x)
            scores = self.model.head(zf, xf)
        scores, zf, xf = scores.float(), zf.float(), xf.float()
        losses = joint_loss(scores, labels, cfg.loss.triplet_weight)
        total = losses["total"]
        scale_rank = torch.zeros((), device=dev)
        if rank:
            scale_rank = scale_rank_loss(scores[owner], scale_scores.float().reshape(owner.shape[0], per_pair,
                                                                                   *scores.shape[-2:]))
            total = total + cfg.loss.scale_rank_weight * scale_rank
        distill = torch.zeros((), device=dev)
        feature_distill = torch.zeros((), device=dev)
        if self.adapter is not None:
            feature_distill = 0.5 * (
                feature_distillation_loss(self.adapter(zf), tensor("teacher_template_features"))
                + feature_distillation_loss(self.adapter(xf), tensor("teacher_search_features")))
            total = total + cfg.loss.feature_distill_weight * feature_distill
        if self.teacher is not None and cfg.loss.distill_weight > 0:
            skip = None
            if cfg.loss.distill_skip_kinds:
                skip = torch.from_numpy(~np.isin(batch["kinds"], cfg.loss.distill_skip_kinds)).to(dev)
            cells = None if cfg.loss.distill_labelled_positives else (labels <= 0)
            distill = distillation_loss(scores, tensor("teacher"), tensor("positive"), cfg.loss.distill_mode,
                                        cfg.loss.distill_temperature, pair_weight=skip, cell_weight=cells)
            total = total + cfg.loss.distill_weight * distill
        box = torch.zeros((), device=dev)
        if self.model.box_head is not None and cfg.loss.box_weight > 0:
            with_teacher = "teacher_box" in batch
            box = box_loss(self.model.box(zf, xf), tensor("target_xy"), tensor("target_wh"),
                           tensor("teacher_box") if with_teacher else None,
                           tensor("teacher") if with_teacher else None,
                           torch.from_numpy(batch["kinds"] == "pseudo").to(dev), cfg.loss.box_loss,
                           cfg.loss.box_teacher_min_logit)
            total = total + cfg.loss.box_weight * box
        if not torch.isfinite(total):
            raise FloatingPointError(f"loss is {float(total)} at step {self.step}; lower the LR or check the data")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        # Clip the backbone only: the head scale's gradient is the raw correlation (hundreds) and would
        # dominate a global norm, shrinking every backbone step.
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for n, p in self.model.named_parameters() if not n.startswith("head_module.")], cfg.optim.grad_clip)
        self.optimizer.step()
        head = self.model.head_module
        return {"lr": lr, "loss": float(total.detach()), "logistic": float(losses["logistic"].detach()),
                "triplet": float(losses["triplet"].detach()), "distill": float(distill.detach()),
                "feature_distill": float(feature_distill.detach()), "box": float(box.detach()),
                "scale_rank": float(scale_rank.detach()),
                "grad_norm": float(grad_norm), "head_scale": float(head.scale.detach()),
                "head_bias": float(head.bias.detach())}

    def _request_stop(self, signum: int, frame: Any) -> None:
        self._stop_requested = True

    def run(self, max_steps: int | None = None, max_seconds: float | None = None) -> dict[str, Any]:
        cfg = self.cfg
        bs = cfg.optim.batch_size
        total_steps = math.ceil(cfg.schedule.total_pairs / bs)
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self._request_stop)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=total_steps, initial=self.step, unit="step", dynamic_ncols=True, mininterval=5)
        last_ckpt = started = time.time()
        steps_done = 0
        last_row: dict[str, Any] = {}
        self._begin_segment()
        try:
            while self.step < total_steps and not self._stop_requested:
                if max_steps is not None and steps_done >= max_steps:
                    break
                if max_seconds is not None and time.time() - started >= max_seconds:
                    break
                t0 = time.time()
                batch = self.batches.get(self.step)
                t1 = time.time()
                row = self.train_step(batch)
                t2 = time.time()
                self.step += 1
                steps_done += 1
                self.pairs_seen += bs
                self.elapsed += t2 - t0
                row.update({"step": self.step, "pairs": self.pairs_seen, "elapsed_s": round(self.elapsed, 1),
                            "pairs_per_s": bs / max(t2 - t0, 1e-9), "data_wait_s": t1 - t0})
                self._append_csv("log.csv", row, LOG_FIELDS)
                if self.model.box_head is not None and cfg.loss.box_weight > 0:  # log.csv keeps its columns
                    self._append_csv("log_box.csv", {k: row[k] for k in ("step", "pairs", "box")})
                if cfg.loss.scale_rank_weight > 0:  # log.csv keeps its columns
                    self._append_csv("log_scale_rank.csv", {k: row[k] for k in ("step", "pairs", "scale_rank")})
                last_row = row
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{row['loss']:.3f}", pps=f"{row['pairs_per_s']:.1f}", lr=f"{row['lr']:.2e}")
                track_every = cfg.schedule.tracking_val_every_pairs
                do_track = track_every > 0 and self.pairs_seen - self.last_track_pairs >= track_every
                if do_track or self.pairs_seen - self.last_val_pairs >= cfg.schedule.val_every_pairs:
                    metrics = self.validate(tracking=do_track)
                    self.last_val_pairs = self.pairs_seen
                    if do_track:
                        self.last_track_pairs = self.pairs_seen
                    if bar is not None:
                        bar.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in metrics.items() if not k.startswith("auc/")))
                if time.time() - last_ckpt >= cfg.schedule.checkpoint_every_s:
                    self.save()
                    last_ckpt = time.time()
            finished = self.step >= total_steps
            tracking = cfg.schedule.tracking_val_every_pairs > 0
            # The final validation, unless the last step has just run the same one (it would be a duplicate row).
            already = (self.last_val_pairs == self.pairs_seen
                       and (not tracking or self.last_track_pairs == self.pairs_seen))
            if finished and not already:
                self.validate(tracking=tracking)
            self.save()
            self._end_segment()
        finally:
            self.batches.close()
            if bar is not None:
                bar.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        return {"step": self.step, "pairs_seen": self.pairs_seen, "finished": self.step >= total_steps,
                "best_metric": self.best_metric, "best_step": self.best_step, "last": last_row}
