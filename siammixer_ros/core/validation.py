"""Checks of what callers give the tracker: images and boxes.

Images: BGR uint8 ``H x W x 3``. A grayscale ``H x W`` (or ``H x W x 1``) uint8 image is accepted and
converted to BGR. Four-channel images are rejected rather than guessed at (BGRA and RGBA look the same):
convert them first, e.g. ``cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)``. Other dtypes are rejected,
never rescaled, because a float image may be 0..1 or 0..255.

Boxes: ``(x, y, w, h)`` pixels, 0-based top-left, finite, ``w > 0`` and ``h > 0``, overlapping the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from siammixer_ros.core.errors import TrackerInputError

__all__ = ["as_bgr_image", "check_box"]


def _describe(image: object) -> str:
    if isinstance(image, np.ndarray):
        return f"{image.dtype} array of shape {image.shape}"
    return f"{type(image).__name__}"


def as_bgr_image(image: object, what: str = "image") -> np.ndarray:
    """Return ``image`` as a C-contiguous BGR uint8 ``H x W x 3`` array, or raise TrackerInputError."""
    if image is None:
        raise TrackerInputError(f"{what} is None; expected a BGR uint8 HxWx3 numpy array")
    if not isinstance(image, np.ndarray):
        raise TrackerInputError(f"{what} must be a BGR uint8 HxWx3 numpy array, got {_describe(image)}")
    if image.size == 0:
        raise TrackerInputError(f"{what} is empty (shape {image.shape})")
    if image.dtype != np.uint8:
        raise TrackerInputError(
            f"{what} must be uint8 HxWx3 BGR, got {_describe(image)} (convert it, e.g. with "
            "np.clip(img, 0, 255).astype(np.uint8); floats are not rescaled automatically)"
        )
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        gray = np.ascontiguousarray(image.reshape(image.shape[0], image.shape[1]))
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] != 3:
        hint = " (convert 4-channel images first, e.g. cv2.cvtColor(img, cv2.COLOR_BGRA2BGR))" if (
            image.ndim == 3 and image.shape[2] == 4
        ) else ""
        raise TrackerInputError(f"{what} must be uint8 HxWx3 BGR (or HxW grayscale), got {_describe(image)}{hint}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise TrackerInputError(f"{what} is too small to track in: shape {image.shape}")
    return np.ascontiguousarray(image)


def check_box(box: object, image_shape: tuple[int, ...], what: str = "box") -> tuple[float, float, float, float]:
    """Return ``box`` as four floats ``(x, y, w, h)``, or raise TrackerInputError naming the problem."""
    if isinstance(box, np.ndarray):
        values = box.reshape(-1).tolist() if box.size == 4 else None
    elif isinstance(box, Sequence) and not isinstance(box, (str, bytes)):
        values = list(box)
    else:
        values = None
    if values is None or len(values) != 4:
        raise TrackerInputError(f"{what} must be 4 numbers (x, y, w, h), got {box!r}")
    try:
        x, y, w, h = (float(v) for v in values)
    except (TypeError, ValueError):
        raise TrackerInputError(f"{what} must be 4 numbers (x, y, w, h), got {box!r}") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise TrackerInputError(f"{what} contains NaN or infinity: {box!r}")
    if w <= 0 or h <= 0:
        which = "width and height" if (w <= 0 and h <= 0) else ("width" if w <= 0 else "height")
        raise TrackerInputError(
            f"{what} must have positive width and height, got w={w:g}, h={h:g} (zero or negative {which})"
        )
    height, width = image_shape[:2]
    if x + w <= 0 or y + h <= 0 or x >= width or y >= height:
        raise TrackerInputError(
            f"{what} ({x:g}, {y:g}, {w:g}, {h:g}) lies entirely outside the {width}x{height} image"
        )
    return x, y, w, h
