"""Cheap validation during training, on the validation split only (never trained on).

Two measures:

- Pair validation (every few thousand pairs, ~10 s): a fixed, seeded set of pairs from the
  validation sequences with the target off-centre (shift jitter only, no photometric change).
  ``val_loss`` (the joint loss), ``val_peak_hit`` (share of positive pairs whose highest response cell
  lies within 16 px of the target) and ``val_peak_err_px`` (mean distance of that cell to the target).
  With the box branch also ``val_box_iou`` (mean IoU with the ground truth of the box regressed at that highest
  cell, positive pairs) and ``val_box_iou_cells`` (mean IoU over the cells inside the ground-truth box).
- Tracking validation (less often, ~1 min): a plain SiamFC tracker (3 scales, cosine window, scale
  penalty and learning rate) running the torch model in eval mode on the first frames of each
  validation sequence; ``val_track_auc`` is the mean over sequences of the OTB success AUC (21 IoU
  thresholds in [0, 1], frames without ground truth skipped). It is a selection signal, not the
  project's evaluation: the reported table comes from ``siammixer_ros.eval`` with the real tracker on
  the exported model. ``tracking_backend: tracker`` runs the project's tracker on the exported
  weights instead (:func:`tracker_tracking_auc`); ``tracking_validator`` in :class:`Validator` is the
  hook for anything else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from siammixer_ros.train.cache import CachedSequence
from siammixer_ros.train.data import (
    SEARCH_SIZE,
    STRIDE,
    TEMPLATE_SIZE,
    AugmentConfig,
    PairConfig,
    PairSampler,
    box_center,
    collate,
    context_side,
    crop_linear,
    response_positions,
    warp_crop,
)
from siammixer_ros.train.losses import box_targets, joint_loss


def validation_pairs(sequences: list[CachedSequence], count: int, seed: int, max_gap: int = 50,
                     turn_deg: float = 0.0) -> list:
    """A fixed set of validation pairs: 80 % positive video pairs, 20 % negatives across sequences.

    ``turn_deg`` > 0: every search crop turned by U(+-turn_deg) degrees against its template (how well the network
    finds a target that turned in the image plane).
    """
    augment = AugmentConfig(flip=0.0, rotation_deg=0.0, brightness=(1.0, 1.0), search_shift=48.0,
                            search_scale=0.1, template_shift=0.0, template_scale=0.0, stretch=0.0, blur=0.0,
                            motion_blur=0.0, grayscale=0.0, color=0.0, noise=0.0,
                            rotation_wide_prob=1.0 if turn_deg > 0 else 0.0, rotation_wide_deg=turn_deg)
    cfg = PairConfig(sources={"video": 0.8, "negative": 0.2}, max_gap=max_gap, min_box=4.0,
                     sequence_weight_power=0.0, augment=augment)
    sampler = PairSampler(sequences, None, cfg, seed=seed)
    return [sampler.sample() for _ in range(count)]


@torch.no_grad()
def pair_metrics(model: torch.nn.Module, pairs: list, batch_size: int = 32, channels_last: bool = True,
                 triplet_weight: float = 1.0, pos_radius: float = 16.0, neg_radius: float = 16.0) -> dict[str, float]:
    was_training = model.training
    model.eval()
    positions = response_positions().reshape(-1, 2)
    losses, hits, errs, box_ious, cell_ious = [], [], [], [], []
    has_box = getattr(model, "box_head", None) is not None
    try:
        for start in range(0, len(pairs), batch_size):
            batch = collate(pairs[start:start + batch_size], pos_radius, neg_radius)
            z, x = torch.from_numpy(batch["template"]), torch.from_numpy(batch["search"])
            if channels_last:
                z, x = z.contiguous(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
            if has_box:
                zf, xf = model.template_features(z), model.search_features(x)
                scores = model.head(zf, xf)
                box_ious_batch, cell_ious_batch = _box_ious(model.box(zf, xf), scores, batch)
                box_ious += box_ious_batch
                cell_ious += cell_ious_batch
            else:
                scores = model(z, x)
            labels = torch.from_numpy(batch["label"])
            losses.append(float(joint_loss(scores, labels, triplet_weight)["total"]) * len(z))
            flat = scores.reshape(len(z), -1).numpy()
            for b in np.flatnonzero(batch["positive"]):
                peak = positions[int(np.argmax(flat[b]))]
                err = float(np.linalg.norm(peak - batch["target_xy"][b]))
                errs.append(err)
                hits.append(err <= 16.0)
    finally:
        model.train(was_training)
    out = {"val_loss": sum(losses) / len(pairs), "val_peak_hit": float(np.mean(hits)) if hits else float("nan"),
           "val_peak_err_px": float(np.mean(errs)) if errs else float("nan")}
    if has_box:
        out["val_box_iou"] = float(np.mean(box_ious)) if box_ious else float("nan")
        out["val_box_iou_cells"] = float(np.mean(cell_ious)) if cell_ious else float("nan")
    return out


def _box_ious(pred: torch.Tensor, scores: torch.Tensor, batch: dict[str, np.ndarray]
              ) -> tuple[list[float], list[float]]:
    """Per positive pair: the IoU of the box regressed at the highest response cell, and the mean IoU over the cells
    inside the ground-truth box (both against the ground truth, boxes measured from the same cell point)."""
    target, inside = box_targets(torch.from_numpy(batch["target_xy"]), torch.from_numpy(batch["target_wh"]),
                                 pred.shape[-1])
    p, t = pred.double(), target.double()
    inter = ((torch.minimum(p[:, 0], t[:, 0]) + torch.minimum(p[:, 2], t[:, 2])).clamp(min=0)
             * (torch.minimum(p[:, 1], t[:, 1]) + torch.minimum(p[:, 3], t[:, 3])).clamp(min=0))
    union = (p[:, 0] + p[:, 2]) * (p[:, 1] + p[:, 3]) + (t[:, 0] + t[:, 2]) * (t[:, 1] + t[:, 3]) - inter
    iou = (inter / union.clamp(min=1e-9)).numpy()  # (B,R,R)
    at_peak, on_cells = [], []
    flat = scores.reshape(len(scores), -1).numpy()
    for b in np.flatnonzero(batch["positive"]):
        peak = int(np.argmax(flat[b]))
        r = iou.shape[-1]
        py, px = divmod(peak, r)
        # The peak cell may lie outside the box: then its target distances are negative; IoU from the boxes as drawn.
        at_peak.append(_drawn_iou(pred[b, :, py, px].double().numpy(), target[b, :, py, px].double().numpy()))
        cells = inside[b].numpy()
        if cells.any():
            on_cells.append(float(iou[b][cells].mean()))
    return at_peak, on_cells


def _drawn_iou(pred: np.ndarray, target: np.ndarray) -> float:
    """IoU of two boxes given as (l, t, r, b) from one point (any signs): as x0, y0, x1, y1 around it."""
    a = np.array([-pred[0], -pred[1], pred[2], pred[3]])
    b = np.array([-target[0], -target[1], target[2], target[3]])
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


# --- scale probe: does the response's peak say which crop shows the target at the template's scale? ----------

SCALE_PROBE_FACTORS = 1.1 ** np.arange(-2.0, 3.0)  # search crops 0.83x .. 1.21x the side that matches the target


def scaled_pair_cases(sequences: list[CachedSequence], count: int, seed: int, max_gap: int = 50,
                      max_shift: float = 24.0) -> list[tuple[int, int, int, np.ndarray]]:
    """Fixed cases for :func:`scale_pick_metrics`: ``(sequence index, template frame, search frame, shift)``, the
    shift (search-crop pixels, U(+-max_shift) per axis) moving every crop of a case off the target alike."""
    rng = np.random.default_rng(seed)
    valid = [seq.valid_indices(4.0) for seq in sequences]
    usable = [i for i, v in enumerate(valid) if len(v) >= 2]
    if not usable:
        raise ValueError("no sequence has two frames with a target of at least 4 px")
    cases = []
    for _ in range(count):
        i = int(rng.choice(usable))
        frames = valid[i]
        t = int(rng.integers(len(frames)))
        near = frames[(np.abs(frames - frames[t]) <= max_gap) & (frames != frames[t])]
        x = int(rng.choice(near)) if len(near) else int(frames[(t + 1) % len(frames)])
        cases.append((i, int(frames[t]), x, rng.uniform(-max_shift, max_shift, 2)))
    return cases


@torch.no_grad()
def scale_pick_metrics(model: torch.nn.Module, sequences: list[CachedSequence],
                       cases: list[tuple[int, int, int, np.ndarray]]) -> dict[str, float]:
    """How well the network's peak tells the scales apart, the question SiamFC's scale search asks it.

    Per case the template is cut from the template frame at its true box (as ``init`` does) and the search frame
    is cut at the five sides ``SCALE_PROBE_FACTORS`` times the one that shows its true box at the template's scale
    (``2 * context_side``), all around the same shifted centre. ``scale_pick/right``: share of cases whose highest
    peak logit (of the map upsampled 16x, as the tracker reads it) is the matching crop's (chance: 0.2);
    ``scale_pick/steps``: mean distance of the winning crop from it, in steps of 1.1 (0 is perfect, chance 1.2);
    ``scale_pick/bias``: the mean signed step (positive: larger crops win, so the box would grow; negative: shrink).
    """
    was_training = model.training
    model.eval()
    picks = []
    try:
        for i, t, x, shift in cases:
            seq = sequences[i]
            template_frame, search_frame = seq.frame(t), seq.frame(x)
            pad_z = tuple(cv2.mean(template_frame)[:3])
            z_box, x_box = seq.boxes[t], seq.boxes[x]
            z = warp_crop(template_frame, box_center(z_box), crop_linear(context_side(*z_box[2:]), TEMPLATE_SIZE),
                          TEMPLATE_SIZE, pad_z)
            side = 2.0 * context_side(*x_box[2:])
            pad_x = tuple(cv2.mean(search_frame)[:3])
            crops = []
            for f in SCALE_PROBE_FACTORS:
                centre = box_center(x_box) + shift * side / SEARCH_SIZE
                crops.append(warp_crop(search_frame, centre, crop_linear(side * f, SEARCH_SIZE), SEARCH_SIZE, pad_x))
            zt = torch.from_numpy(z[None].transpose(0, 3, 1, 2).astype(np.float32))
            xt = torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32))
            scores = model.head(model.template_features(zt), model.search_features(xt))[:, 0].numpy()
            # The peak as the tracker reads it: the map upsampled 16x (bicubic) first.
            up = scores.shape[-1] * 16
            peaks = [cv2.resize(m, (up, up), interpolation=cv2.INTER_CUBIC).max() for m in scores]
            picks.append(int(np.argmax(peaks)) - len(SCALE_PROBE_FACTORS) // 2)
    finally:
        model.train(was_training)
    steps = np.array(picks, dtype=np.float64)
    return {"scale_pick/right": float(np.mean(steps == 0)), "scale_pick/steps": float(np.mean(np.abs(steps))),
            "scale_pick/bias": float(np.mean(steps))}


# --- a plain SiamFC tracker on the torch model (selection signal only) --------------------------------

class TorchSiamFC:
    """SiamFC inference (3 scales) with the torch model; boxes x, y, w, h."""

    def __init__(self, model: torch.nn.Module, scale_step: float = 1.0375, scale_penalty: float = 0.9745,
                 scale_lr: float = 0.59, window_influence: float = 0.176, upscale: int = 16,
                 channels_last: bool = True) -> None:
        self.model = model
        self.scales = scale_step ** np.array([-1.0, 0.0, 1.0])
        self.scale_penalty, self.scale_lr, self.window_influence = scale_penalty, scale_lr, window_influence
        self.upscale = upscale
        self.channels_last = channels_last
        r = 9 * upscale
        hann = np.hanning(r)
        window = np.outer(hann, hann)
        self.window = window / window.sum()

    def _tensor(self, crops: list[np.ndarray]) -> torch.Tensor:
        t = torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32))
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last else t

    @torch.no_grad()
    def init(self, image: np.ndarray, box: np.ndarray) -> None:
        self.center = box_center(box)
        self.size = np.array([box[2], box[3]], dtype=np.float64)
        self.pad = tuple(cv2.mean(image)[:3])
        side = context_side(*self.size)
        crop = warp_crop(image, self.center, crop_linear(side, TEMPLATE_SIZE), TEMPLATE_SIZE, self.pad)
        self.zf = self.model.template_features(self._tensor([crop]))

    @torch.no_grad()
    def update(self, image: np.ndarray) -> np.ndarray:
        side_x = 2.0 * context_side(*self.size)
        crops = [warp_crop(image, self.center, crop_linear(side_x * s, SEARCH_SIZE), SEARCH_SIZE, self.pad)
                 for s in self.scales]
        responses = self.model.head(self.zf, self.model.search_features(self._tensor(crops)))[:, 0].numpy()
        r = responses.shape[-1] * self.upscale
        up = np.stack([cv2.resize(resp, (r, r), interpolation=cv2.INTER_CUBIC) for resp in responses])
        peaks = up.reshape(3, -1).max(1) * np.array([self.scale_penalty, 1.0, self.scale_penalty])
        k = int(np.argmax(peaks))
        resp = up[k] - up[k].min()
        resp = resp / max(resp.sum(), 1e-12)
        resp = (1 - self.window_influence) * resp + self.window_influence * self.window
        iy, ix = np.unravel_index(int(np.argmax(resp)), resp.shape)
        # Upsampled pixel (r-1)/2 is the crop centre; one upsampled pixel = stride/upscale crop pixels.
        disp_crop = (np.array([ix, iy]) - (r - 1) / 2.0) * STRIDE / self.upscale
        self.center = self.center + disp_crop * side_x * self.scales[k] / SEARCH_SIZE
        scale = (1 - self.scale_lr) + self.scale_lr * self.scales[k]
        self.size = np.clip(self.size * scale, 4.0, None)
        h, w = image.shape[:2]
        self.center = np.clip(self.center, 0, [w - 1, h - 1])
        return np.array([self.center[0] - (self.size[0] - 1) / 2, self.center[1] - (self.size[1] - 1) / 2,
                         self.size[0], self.size[1]])


def restart_frames(valid: np.ndarray, starts: int) -> list[int]:
    """The first frame of each of ``starts`` passes: valid frames at 0, 1/starts, ... of the way through the valid
    ones (OTB's temporal robustness evaluation, TRE), so one early failure does not decide a short split."""
    if len(valid) == 0:
        return []
    picks = [int(valid[(i * len(valid)) // starts]) for i in range(max(starts, 1))]
    return sorted(set(picks))


def _one_pass_auc(sequences: list[CachedSequence], max_frames: int,
                  make_tracker: Callable[[], tuple[Callable, Callable]], starts: int = 1) -> dict[str, float]:
    """``{"val_track_auc": mean, "auc/<seq>": ...}``: one pass per sequence from its first annotated frame,
    scored with the evaluation toolkit's metrics (init frame and absent frames not scored). With ``starts`` > 1,
    that many passes per sequence from evenly spread annotated frames (:func:`restart_frames`), each to the end
    (or ``max_frames`` on), and the sequence's AUC is their mean.

    ``make_tracker()`` returns ``(init(image, box), update(image) -> box)`` for a fresh tracker.
    """
    from siammixer_ros.eval.metrics import sequence_metrics

    result: dict[str, float] = {}
    for seq in sequences:
        pass_aucs = []
        for first in restart_frames(seq.valid_indices(1.0), starts):
            last = len(seq) if max_frames <= 0 else min(len(seq), first + max_frames)
            if last - first < 2:
                continue
            init, update = make_tracker()
            init(seq.frame(first), seq.boxes[first])
            preds = np.full((last, 4), np.nan)
            preds[first] = seq.boxes[first]
            for idx in range(first + 1, last):
                preds[idx] = update(seq.frame(idx))
            pass_aucs.append(sequence_metrics(preds, seq.boxes[:last], first)["success_auc"])
        finite = [v for v in pass_aucs if math.isfinite(v)]
        if pass_aucs:
            result[f"auc/{seq.name}"] = float(np.mean(finite)) if finite else float("nan")
    aucs = [v for v in result.values() if math.isfinite(v)]
    result["val_track_auc"] = float(np.mean(aucs)) if aucs else float("nan")
    return result


def tracking_auc(model: torch.nn.Module, sequences: list[CachedSequence], max_frames: int,
                 channels_last: bool = True, starts: int = 1) -> dict[str, float]:
    """The tracking measure with a plain SiamFC loop on the torch model (:class:`TorchSiamFC`)."""
    def make_tracker() -> tuple[Callable, Callable]:
        tracker = TorchSiamFC(model, channels_last=channels_last)
        return tracker.init, tracker.update

    was_training = model.training
    model.eval()
    try:
        return _one_pass_auc(sequences, max_frames, make_tracker, starts)
    finally:
        model.train(was_training)


def tracker_tracking_auc(model: torch.nn.Module, sequences: list[CachedSequence], max_frames: int,
                         params: dict | None = None, starts: int = 1) -> dict[str, float]:
    """The same measure with the project's tracker (``siammixer_ros.core.tracker``) on the exported model.

    Exports the current weights to a temporary model file (provenance says so), then runs
    ``SiamMixerTracker``: the numbers the evaluation toolkit would give on these frames.
    """
    import tempfile

    from siammixer_ros.model.export import export_model

    with tempfile.TemporaryDirectory(prefix="siammixer_val_") as tmp:
        path = Path(tmp) / "candidate.onnx"
        export_model(model, path, provenance={"training": "in-training validation candidate, not a release"},
                     model_version="validation")
        return model_file_tracking_auc(path, sequences, max_frames, params, starts)


def model_file_tracking_auc(path: str | Path, sequences: list[CachedSequence], max_frames: int,
                            params: dict | None = None, starts: int = 1) -> dict[str, float]:
    """The tracking measure of a model file (an export, or a shipped model: the reference for checkpoints)."""
    from siammixer_ros.core.params import TrackerParams
    from siammixer_ros.core.tracker import SiamMixerTracker

    tracker_params = TrackerParams.from_dict(params) if params else None

    def make_tracker() -> tuple[Callable, Callable]:
        tracker = SiamMixerTracker(str(path), params=tracker_params)
        return (lambda image, box: tracker.init(image, tuple(float(v) for v in box)),
                lambda image: tracker.update(image).box)

    return _one_pass_auc(sequences, max_frames, make_tracker, starts)


class Validator:
    """Runs the validation measures; ``tracking_validator`` is the hook for the evaluation toolkit.

    ``tracking_validator(model) -> dict`` with at least ``val_track_auc``; the default runs
    :func:`tracking_auc` in process.
    """

    def __init__(self, sequences: list[CachedSequence], pair_count: int, seed: int, tracking_names: list[str],
                 tracking_max_frames: int, channels_last: bool = True, triplet_weight: float = 1.0,
                 pos_radius: float = 16.0, neg_radius: float = 16.0,
                 tracking_validator: Callable[[torch.nn.Module], dict[str, float]] | None = None,
                 tracking_backend: str = "builtin", tracking_starts: int = 1) -> None:
        self.pairs = validation_pairs(sequences, pair_count, seed) if pair_count > 0 else []
        self.channels_last = channels_last
        self.triplet_weight, self.pos_radius, self.neg_radius = triplet_weight, pos_radius, neg_radius
        by_name = {s.name: s for s in sequences}
        self.tracking_sequences = [by_name[n] for n in tracking_names if n in by_name]
        self.tracking_max_frames = tracking_max_frames
        if tracking_starts < 1:
            raise ValueError(f"val.tracking_starts must be at least 1, got {tracking_starts}")
        self.tracking_starts = tracking_starts
        if tracking_validator is None:
            if tracking_backend == "tracker":
                def tracking_validator(model: torch.nn.Module) -> dict[str, float]:
                    return tracker_tracking_auc(model, self.tracking_sequences, self.tracking_max_frames,
                                                starts=self.tracking_starts)
            elif tracking_backend == "builtin":
                def tracking_validator(model: torch.nn.Module) -> dict[str, float]:
                    return tracking_auc(model, self.tracking_sequences, self.tracking_max_frames, self.channels_last,
                                        starts=self.tracking_starts)
            else:
                raise ValueError(f"unknown tracking validation backend {tracking_backend!r}; "
                                 "use 'builtin' or 'tracker'")
        self.tracking_validator = tracking_validator

    def pairs_metrics(self, model: torch.nn.Module) -> dict[str, float]:
        if not self.pairs:
            return {}
        return pair_metrics(model, self.pairs, channels_last=self.channels_last, triplet_weight=self.triplet_weight,
                            pos_radius=self.pos_radius, neg_radius=self.neg_radius)

    def tracking_metrics(self, model: torch.nn.Module) -> dict[str, float]:
        if not self.tracking_sequences:
            return {}
        return self.tracking_validator(model)


def main(argv: list[str] | None = None) -> int:
    """Score checkpoints with the project's tracker on the selection split (default; what checkpoint selection of
    runs since 0.2 uses) or the validation split."""
    import argparse
    import json
    import time

    from siammixer_ros.eval.datasets import SELECTION_SEQUENCES
    from siammixer_ros.train.bn_stats import model_from_checkpoint_state
    from siammixer_ros.train.cache import default_cache_dir, default_data_dir, load_cached_sequences
    from siammixer_ros.train.data import VAL_SEQUENCES

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("checkpoints", nargs="+", type=Path,
                        help="trainer checkpoints (.pt), or model files (.onnx, e.g. the shipped one as reference)")
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--cache", type=Path, default=default_cache_dir())
    parser.add_argument("--max-frames", type=int, default=0, help="first N frames of each sequence (0: all)")
    parser.add_argument("--backend", choices=("tracker", "builtin"), default="tracker")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--split", choices=("selection", "validation"), default="selection",
                        help="selection: training sequences held back for choosing; validation: the reported split")
    parser.add_argument("--starts", type=int, default=1,
                        help="passes per sequence from evenly spread annotated frames (temporal restarts, as OTB's "
                             "TRE; 1: one pass from the first frame, what the trainer's validation does)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--bn-pairs", type=int, default=None,
                        help="re-estimate a checkpoint's BatchNorm statistics per branch first, on N pairs of its "
                             "training sequences (default: only for checkpoints without per-branch statistics; "
                             "0: never)")
    parser.add_argument("--turned-pairs", type=float, nargs="+", default=[], metavar="DEG",
                        help="also score fixed pairs of the split whose search crops turn by U(+-DEG) degrees "
                             "(0: not turned): peak_hit/turn_DEG, the share of positive pairs whose highest cell is "
                             "within 16 px of the target (trainer checkpoints only)")
    parser.add_argument("--turned-pair-count", type=int, default=512)
    parser.add_argument("--scaled-pairs", action="store_true",
                        help="also score the scale probe on fixed cases of the split (scale_pick_metrics: does the "
                             "highest peak of five crops 1.1x apart come from the one at the target's scale; trainer "
                             "checkpoints only)")
    parser.add_argument("--scaled-pair-count", type=int, default=400)
    parser.add_argument("--no-tracking", action="store_true",
                        help="only the pair scores (with --turned-pairs or --scaled-pairs)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="one TrackerParams value of the tracker backend (repeatable), e.g. to compare tracker "
                             "settings with temporal restarts")
    args = parser.parse_args(argv)
    if args.starts < 1:
        parser.error("--starts must be at least 1")
    from siammixer_ros.core.errors import TrackerParamsError
    from siammixer_ros.eval.cli import tracker_params_from_args

    try:
        params = tracker_params_from_args(None, args.set) or None
    except TrackerParamsError as error:
        parser.error(str(error))
    if params and args.backend != "tracker":
        parser.error("--set needs the tracker backend")
    if (args.turned_pairs or args.scaled_pairs) and any(c.suffix == ".onnx" for c in args.checkpoints):
        parser.error("--turned-pairs and --scaled-pairs score trainer checkpoints (.pt), not model files")
    if args.no_tracking and not (args.turned_pairs or args.scaled_pairs):
        parser.error("--no-tracking leaves nothing to score without --turned-pairs or --scaled-pairs")
    torch.set_num_threads(args.threads)
    names = SELECTION_SEQUENCES if args.split == "selection" else VAL_SEQUENCES
    sequences = load_cached_sequences(args.data, args.cache, list(names))
    # Drawn once, so every checkpoint is scored on the same pairs.
    turned = {deg: validation_pairs(sequences, args.turned_pair_count, seed=0, turn_deg=deg)
              for deg in args.turned_pairs}
    scaled = scaled_pair_cases(sequences, args.scaled_pair_count, seed=0) if args.scaled_pairs else []
    results = {}
    for ckpt in args.checkpoints:
        t0 = time.time()
        if ckpt.suffix == ".onnx":
            metrics = model_file_tracking_auc(ckpt, sequences, args.max_frames, params, starts=args.starts)
            metrics["pairs_seen"] = -1
        else:
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
            model = model_from_checkpoint_state(state, args.bn_pairs, data_dir=args.data, cache_dir=args.cache)
            metrics: dict = {}
            if args.no_tracking:
                pass  # only the turned pairs below
            elif args.backend == "tracker":
                metrics = tracker_tracking_auc(model, sequences, args.max_frames, params, starts=args.starts)
            else:
                metrics = tracking_auc(model, sequences, args.max_frames, channels_last=False, starts=args.starts)
            for deg, pairs in turned.items():
                metrics[f"peak_hit/turn_{deg:g}"] = pair_metrics(model, pairs, channels_last=False)["val_peak_hit"]
            if scaled:
                metrics.update(scale_pick_metrics(model, sequences, scaled))
            metrics["pairs_seen"] = state.get("pairs_seen", -1)
        if params:
            metrics["tracker_params"] = params
        results[str(ckpt)] = metrics
        per_seq = " ".join(f"{k[4:]}={v:.3f}" for k, v in metrics.items() if k.startswith("auc/"))
        per_turn = " ".join(f"{k.removeprefix('peak_hit/')}={v:.3f}" for k, v in metrics.items()
                            if k.startswith("peak_hit/"))
        pairs_seen = f"pairs {metrics['pairs_seen']} " if metrics["pairs_seen"] >= 0 else ""
        auc = f"val_track_auc {metrics['val_track_auc']:.4f} " if "val_track_auc" in metrics else ""
        per_scale = " ".join(f"{k.removeprefix('scale_pick/')}={v:.3f}" for k, v in metrics.items()
                             if k.startswith("scale_pick/"))
        print(f"{ckpt}: {pairs_seen}{auc}({time.time() - t0:.0f} s)  {per_seq}"
              + (f"  peak_hit {per_turn}" if per_turn else "") + (f"  scale_pick {per_scale}" if per_scale else ""),
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
