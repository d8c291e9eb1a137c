"""Pieces shared by the Siamese peer ports (NanoTrack, LightTrack): pysot-style cropping and penalties."""

from __future__ import annotations

import cv2
import numpy as np


def get_subwindow(image: np.ndarray, center: np.ndarray, output_size: int, crop_size: float,
                  fill: np.ndarray) -> np.ndarray:
    """Square crop of side ``round(crop_size)`` centred on ``center``, padded with ``fill``, resized.

    Same geometry as pysot's get_subwindow (top-left = floor(c - (s+1)/2 + 0.5)); returns uint8 HxWx3.
    """
    size = max(round(float(crop_size)), 1)
    half = (size + 1) / 2.0
    x_min = int(np.floor(center[0] - half + 0.5))
    y_min = int(np.floor(center[1] - half + 0.5))
    x_max, y_max = x_min + size, y_min + size  # exclusive
    height, width = image.shape[:2]
    pad_left, pad_top = max(0, -x_min), max(0, -y_min)
    pad_right, pad_bottom = max(0, x_max - width), max(0, y_max - height)
    if pad_left or pad_top or pad_right or pad_bottom:
        # Padding only the needed part keeps this cheap when the target sits near a border.
        inner = image[max(0, y_min):min(height, y_max), max(0, x_min):min(width, x_max)]
        patch = cv2.copyMakeBorder(inner, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_CONSTANT,
                                   value=[float(v) for v in fill])
    else:
        patch = image[y_min:y_max, x_min:x_max]
    if patch.shape[0] != output_size or patch.shape[1] != output_size:
        patch = cv2.resize(patch, (output_size, output_size))
    return patch


def context_size(size: np.ndarray, context_amount: float = 0.5) -> float:
    """Side of the square template region: sqrt((w + p)(h + p)) with p = context * (w + h)."""
    pad = context_amount * float(size[0] + size[1])
    return float(np.sqrt((size[0] + pad) * (size[1] + pad)))


def change(ratio: np.ndarray) -> np.ndarray:
    return np.maximum(ratio, 1.0 / ratio)


def padded_size(w: np.ndarray, h: np.ndarray) -> np.ndarray:
    pad = (w + h) * 0.5
    return np.sqrt((w + pad) * (h + pad))


def size_penalty(pred_w: np.ndarray, pred_h: np.ndarray, target_w: float, target_h: float,
                 penalty_k: float, scale_reference: tuple[float, float] | None = None) -> np.ndarray:
    """exp(-(r_c * s_c - 1) * k): penalises scale and aspect-ratio changes (SiamRPN/pysot).

    ``scale_reference`` replaces (target_w, target_h) in the scale term (only to mimic OpenCV's TrackerNano).
    """
    ref_w, ref_h = (target_w, target_h) if scale_reference is None else scale_reference
    with np.errstate(divide="ignore", invalid="ignore"):
        scale_change = change(padded_size(pred_w, pred_h) / padded_size(np.float64(ref_w), np.float64(ref_h)))
        ratio_change = change((target_w / target_h) / (pred_w / pred_h))
        penalty = np.exp(-(ratio_change * scale_change - 1.0) * penalty_k)
    return np.nan_to_num(penalty, nan=0.0)


def clip_state(center: np.ndarray, size: np.ndarray, image_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Keep the centre inside the image and the size between 10 px and the image size (pysot _bbox_clip)."""
    height, width = image_shape[:2]
    cx = min(max(float(center[0]), 0.0), float(width))
    cy = min(max(float(center[1]), 0.0), float(height))
    w = min(max(float(size[0]), 10.0), float(width))
    h = min(max(float(size[1]), 10.0), float(height))
    return np.array([cx, cy]), np.array([w, h])


def check_box(box: tuple[float, float, float, float], image: np.ndarray) -> np.ndarray:
    """Validate an init box against its image; raises ValueError naming the problem."""
    if image is None or not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 \
            or image.size == 0 or image.dtype != np.uint8:
        shape = None if image is None else getattr(image, "shape", type(image))
        raise ValueError(f"expected a BGR uint8 HxWx3 image, got {shape}")
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.size != 4 or not np.all(np.isfinite(values)):
        raise ValueError(f"init box must be 4 finite numbers (x, y, w, h), got {box}")
    if values[2] <= 0 or values[3] <= 0:
        raise ValueError(f"init box has zero or negative size: {box}")
    height, width = image.shape[:2]
    if values[0] >= width or values[1] >= height or values[0] + values[2] <= 0 or values[1] + values[3] <= 0:
        raise ValueError(f"init box {box} lies outside the {width}x{height} image")
    return values
