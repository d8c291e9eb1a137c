"""Batches of training pairs, built in the training process or in worker processes (no torch here).

Batch ``step`` is drawn with its own RNG seeded by ``(seed, step)``, so any number of workers, or none, gives the
same batches in the same order: a run resumed on another machine continues exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from siammixer_ros.train.data import PairSampler, collate


def make_batch(sampler: PairSampler, cfg: Any, teacher: Any | None, step: int) -> dict[str, np.ndarray]:
    """Batch ``step``: ``batch_size`` pairs, collated, with the teacher's outputs when there is a teacher."""
    sampler.rng = np.random.default_rng([cfg.seed, step])
    pairs = [sampler.sample() for _ in range(cfg.optim.batch_size)]
    batch = collate(pairs, cfg.labels.pos_radius, cfg.labels.neg_radius, cfg.labels.size_iou_power)
    batch["kinds"] = np.array([p.kind for p in pairs])
    if teacher is not None:
        # The teacher's regression supervises the box branch on pseudo pairs (they have no ground truth).
        pseudo = bool((batch["kinds"] == "pseudo").any())
        teacher_box = cfg.box_head and cfg.loss.box_weight > 0 and pseudo
        out = teacher.outputs(np.stack([p.template for p in pairs]), np.stack([p.search for p in pairs]),
                              features=cfg.loss.feature_distill_weight > 0, box=teacher_box)
        batch["teacher"] = out["logits"]
        if "box" in out:
            batch["teacher_box"] = out["box"]
        if "template_features" in out:
            batch["teacher_template_features"] = out["template_features"]
            batch["teacher_search_features"] = out["search_features"]
    return batch


# -- worker processes (a GPU machine's many cores; see TrainConfig.data_workers) --------------------------
_worker: dict[str, Any] = {}


def init_worker(sampler: PairSampler, cfg: Any, teacher_dir: str | None) -> None:
    """Runs once in each worker: its own sampler copy and its own teacher session (one thread each)."""
    import cv2

    cv2.setNumThreads(1)
    _worker["sampler"], _worker["cfg"] = sampler, cfg
    _worker["teacher"] = None
    if teacher_dir is not None:
        from siammixer_ros.train.teacher import NanoTrackTeacher

        _worker["teacher"] = NanoTrackTeacher(teacher_dir or None, threads=1)


def worker_batch(step: int) -> tuple[int, dict[str, np.ndarray]]:
    return step, make_batch(_worker["sampler"], _worker["cfg"], _worker["teacher"], step)
