"""One-pass evaluation metrics in pure numpy (OTB / LaSOT conventions).

Conventions (the same for every tracker):

- Boxes are ``(x, y, w, h)``, continuous pixels; IoU uses continuous areas (no +1, as got10k).
- Scored frames: frames with a ground-truth box (NaN rows = absent are excluded) *after* the
  initialisation frame. The init frame is excluded (got10k style) because the tracker is given its box
  there; OTB's toolkit counts it, which adds up to 1/N to every success and precision value.
- A missing prediction (NaN box, e.g. the tracker reported "lost") has IoU 0 and infinite centre error.
- Success curve: fraction of scored frames with IoU > t for t in ``np.linspace(0, 1, 21)``;
  success AUC = mean of that curve (OTB "AUC"); as in OTB's toolkit a perfect tracker gets 20/21 = 0.952
  (IoU 1 is not > 1).
- Precision curve: fraction with centre error <= t px, t = 0..50; precision = value at 20 px.
  Centres are ``x + w/2, y + h/2``.
- Normalised precision (TrackingNet/LaSOT): centre error divided by the ground-truth size per axis,
  ``||((cx_p - cx_g) / w_g, (cy_p - cy_g) / h_g)||``; curve over ``np.linspace(0, 0.5, 51)``;
  ``norm_precision`` = mean of that curve (its AUC, as TrackingNet reports), ``norm_precision_at_0.2`` too.
- Speed: ``fps = updated frames / summed update() time``; the init call is excluded, frame decoding
  is excluded. ``ms_per_frame = 1000 / fps``; ``median_ms`` is the median per-frame update time.
- Overall numbers are means over sequences (each sequence weighs the same, OTB style); the overall
  fps is total updated frames / total update time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

IOU_THRESHOLDS = np.linspace(0.0, 1.0, 21)
PRECISION_THRESHOLDS = np.arange(0, 51, dtype=np.float64)
NORM_PRECISION_THRESHOLDS = np.linspace(0.0, 0.5, 51)
PRECISION_PIXELS = 20.0
NORM_PRECISION_AT = 0.2


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4) as (x, y, w, h), got {boxes.shape}")
    return boxes


def iou(predicted: np.ndarray, groundtruth: np.ndarray) -> np.ndarray:
    """Per-row IoU of two (N, 4) box arrays; a NaN or empty box gives 0 (ground truth NaN gives NaN)."""
    p, g = _as_boxes(predicted), _as_boxes(groundtruth)
    if p.shape != g.shape:
        raise ValueError(f"predicted {p.shape} and ground truth {g.shape} differ in length")
    with np.errstate(invalid="ignore"):
        left = np.maximum(p[:, 0], g[:, 0])
        top = np.maximum(p[:, 1], g[:, 1])
        right = np.minimum(p[:, 0] + p[:, 2], g[:, 0] + g[:, 2])
        bottom = np.minimum(p[:, 1] + p[:, 3], g[:, 1] + g[:, 3])
        intersection = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
        union = p[:, 2] * p[:, 3] + g[:, 2] * g[:, 3] - intersection
        result = np.where(union > 0, intersection / np.where(union > 0, union, 1.0), 0.0)
    result = np.where(np.all(np.isfinite(p), axis=1), result, 0.0)
    return np.where(np.all(np.isfinite(g), axis=1), result, np.nan)


def centers(boxes: np.ndarray) -> np.ndarray:
    boxes = _as_boxes(boxes)
    return boxes[:, :2] + boxes[:, 2:] / 2.0


def center_error(predicted: np.ndarray, groundtruth: np.ndarray) -> np.ndarray:
    """Euclidean distance of box centres in pixels; NaN prediction -> inf."""
    error = np.linalg.norm(centers(predicted) - centers(groundtruth), axis=1)
    return np.where(np.all(np.isfinite(_as_boxes(predicted)), axis=1), error, np.inf)


def normalized_center_error(predicted: np.ndarray, groundtruth: np.ndarray) -> np.ndarray:
    """Centre error with each axis divided by the ground-truth width/height; NaN prediction -> inf."""
    g = _as_boxes(groundtruth)
    with np.errstate(divide="ignore", invalid="ignore"):
        error = np.linalg.norm((centers(predicted) - centers(g)) / g[:, 2:], axis=1)
    return np.where(np.all(np.isfinite(_as_boxes(predicted)), axis=1), error, np.inf)


def success_curve(ious: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    ious = np.asarray(ious, dtype=np.float64)
    if ious.size == 0:
        return np.full(len(thresholds), np.nan)
    return (ious[None, :] > np.asarray(thresholds)[:, None]).mean(axis=1)


def precision_curve(errors: np.ndarray, thresholds: np.ndarray = PRECISION_THRESHOLDS) -> np.ndarray:
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        return np.full(len(thresholds), np.nan)
    return (errors[None, :] <= np.asarray(thresholds)[:, None]).mean(axis=1)


def scored_mask(groundtruth: np.ndarray, init_frame: int) -> np.ndarray:
    """Frames that count: annotated (finite, positive size) and after the init frame."""
    g = _as_boxes(groundtruth)
    mask = np.all(np.isfinite(g), axis=1) & (np.nan_to_num(g[:, 2]) > 0) & (np.nan_to_num(g[:, 3]) > 0)
    mask[: init_frame + 1] = False
    return mask


def sequence_metrics(predicted: np.ndarray, groundtruth: np.ndarray, init_frame: int,
                     times: np.ndarray | None = None) -> dict[str, Any]:
    """Every number of one sequence; ``times`` are per-frame seconds (only frames after init_frame count)."""
    p, g = _as_boxes(predicted), _as_boxes(groundtruth)
    if len(p) != len(g):
        raise ValueError(f"{len(p)} predicted boxes but {len(g)} ground-truth boxes")
    mask = scored_mask(g, init_frame)
    ious = iou(p[mask], g[mask])
    errors = center_error(p[mask], g[mask])
    norm_errors = normalized_center_error(p[mask], g[mask])
    success = success_curve(ious)
    precision = precision_curve(errors)
    norm_precision = precision_curve(norm_errors, NORM_PRECISION_THRESHOLDS)
    result: dict[str, Any] = {
        "frames": int(len(g)),
        "scored_frames": int(mask.sum()),
        "success_auc": float(np.mean(success)),
        "success_50": float(np.mean(ious > 0.5)) if ious.size else float("nan"),
        "precision": float(np.mean(errors <= PRECISION_PIXELS)) if errors.size else float("nan"),
        "norm_precision": float(np.mean(norm_precision)),
        "norm_precision_at_0.2": float(np.mean(norm_errors <= NORM_PRECISION_AT)) if norm_errors.size
        else float("nan"),
        "mean_iou": float(np.mean(ious)) if ious.size else float("nan"),
        "success_curve": success.tolist(),
        "precision_curve": precision.tolist(),
        "norm_precision_curve": norm_precision.tolist(),
    }
    result.update(speed_metrics(times, init_frame))
    return result


def speed_metrics(times: np.ndarray | None, init_frame: int) -> dict[str, Any]:
    """fps = updated frames / summed update time; init and frames before it excluded."""
    if times is None:
        return {"updated_frames": 0, "update_seconds": 0.0, "fps": float("nan"), "ms_per_frame": float("nan"),
                "median_ms": float("nan")}
    update_times = np.asarray(times, dtype=np.float64)[init_frame + 1:]
    update_times = update_times[np.isfinite(update_times)]
    total = float(update_times.sum())
    count = int(update_times.size)
    fps = count / total if total > 0 else float("nan")
    return {"updated_frames": count, "update_seconds": total, "fps": fps,
            "ms_per_frame": 1000.0 / fps if np.isfinite(fps) and fps > 0 else float("nan"),
            "median_ms": float(np.median(update_times) * 1000.0) if count else float("nan")}


SCALAR_KEYS = ("success_auc", "success_50", "precision", "norm_precision", "norm_precision_at_0.2", "mean_iou")
CURVE_KEYS = ("success_curve", "precision_curve", "norm_precision_curve")


def aggregate(per_sequence: dict[str, dict[str, Any]], names: list[str] | None = None) -> dict[str, Any]:
    """Mean over sequences (each weighs the same) of the scalar metrics and curves, for a subset of names.

    Sequences with no scored frame are left out of the means and listed under ``"unscored"``.
    """
    names = list(per_sequence) if names is None else [n for n in names if n in per_sequence]
    scored = [n for n in names if per_sequence[n]["scored_frames"] > 0]
    result: dict[str, Any] = {"sequences": len(scored), "names": scored,
                              "unscored": [n for n in names if n not in scored]}
    for key in SCALAR_KEYS:
        result[key] = float(np.mean([per_sequence[n][key] for n in scored])) if scored else float("nan")
    for key in CURVE_KEYS:
        result[key] = np.mean([per_sequence[n][key] for n in scored], axis=0).tolist() if scored else []
    frames = sum(per_sequence[n]["updated_frames"] for n in names)
    seconds = sum(per_sequence[n]["update_seconds"] for n in names)
    result["updated_frames"] = frames
    result["update_seconds"] = seconds
    result["fps"] = frames / seconds if seconds > 0 else float("nan")
    result["ms_per_frame"] = 1000.0 * seconds / frames if frames else float("nan")
    medians = [per_sequence[n]["median_ms"] for n in names if np.isfinite(per_sequence[n]["median_ms"])]
    result["median_ms"] = float(np.median(medians)) if medians else float("nan")
    return result
