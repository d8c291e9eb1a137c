"""Synthetic tracking sequences with exact ground truth: a textured target moving, scaling, partly
occluded, leaving the frame, on a low-contrast background. Used to test the tracker's geometry without
a trained model (with :mod:`siammixer_ros.testing.ncc_model`).

Boxes follow the core convention: ``(x, y, w, h)``, 0-based top-left, the box covering pixels
``x .. x + w - 1`` (pixel centres at integer coordinates). The target texture is rendered with sub-pixel
accuracy and anti-aliased edges (cv2.warpAffine), so a box of any real size/position is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from siammixer_ros.eval import metrics

__all__ = [
    "SyntheticSequence", "iou", "make_background", "make_texture", "render_lookalike_crossing", "render_sequence",
    "saturated_texture",
]

Box = tuple[float, float, float, float]


def make_texture(
    rng: np.random.Generator, height: int, width: int, blob: float = 6.0, contrast: float = 110.0
) -> np.ndarray:
    """High-contrast smooth random colour texture (features about ``blob`` pixels wide), uint8 HxWx3."""
    gh, gw = max(2, round(height / blob)), max(2, round(width / blob))
    grid = rng.normal(0.0, 1.0, (gh, gw, 3)).astype(np.float32)
    tex = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    tex = 128.0 + contrast * tex / (tex.std() + 1e-6) * 0.6
    return np.clip(tex, 0, 255).astype(np.uint8)


def saturated_texture(rng: np.random.Generator, height: int, width: int, blob: float = 10.0) -> np.ndarray:
    """A textured target in strongly saturated colour (red high, green middle, blue low, each channel textured):
    every pixel's red and blue differ by more than 150, which no pixel of :func:`make_background` does (the NCC test
    model's box output measures that colour's extent)."""
    tex = make_texture(rng, height, width, blob=blob).astype(np.float32) / 255.0
    low = np.array([0.0, 20.0, 200.0], np.float32)  # B, G, R: green carries most of the gray-level texture
    span = np.array([40.0, 150.0, 55.0], np.float32)
    return np.clip(low + span * tex, 0, 255).astype(np.uint8)


def make_background(rng: np.random.Generator, height: int, width: int, contrast: float = 20.0) -> np.ndarray:
    """Low-contrast smooth background (so that the target is the most distinctive thing), uint8 HxWx3."""
    return make_texture(rng, height, width, blob=24.0, contrast=contrast)


def _paste(frame: np.ndarray, texture: np.ndarray, box: Box) -> None:
    """Draw ``texture`` stretched over ``box`` into ``frame`` (float32, in place), anti-aliased edges."""
    x, y, w, h = box
    th, tw = texture.shape[:2]
    sx, sy = w / tw, h / th
    # Texture pixel u covers [u - 0.5, u + 0.5]; its left edge -0.5 maps to the box's left edge x - 0.5.
    matrix = np.array([[sx, 0.0, x - 0.5 + 0.5 * sx], [0.0, sy, y - 0.5 + 0.5 * sy]], dtype=np.float64)
    size = (frame.shape[1], frame.shape[0])
    warped = cv2.warpAffine(
        texture.astype(np.float32), matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    # Coverage: a ones texture with a one-pixel zero border, so edges blend over one pixel.
    ones = np.zeros((th + 2, tw + 2), np.float32)
    ones[1:-1, 1:-1] = 1.0
    m2 = matrix.copy()
    m2[:, 2] -= np.array([sx, sy])  # the border pixel sits one texture pixel before the texture
    alpha = cv2.warpAffine(ones, m2, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
    frame *= 1.0 - alpha
    frame += warped * alpha if warped.ndim == 3 else warped[..., None] * alpha


@dataclass
class SyntheticSequence:
    frames: list[np.ndarray]
    boxes: list[Box]  # ground truth, unclipped (may leave the image)
    visible: list[bool] = field(default_factory=list)  # target at least partly in the image

    def __len__(self) -> int:
        return len(self.frames)


def render_sequence(
    boxes: Sequence[Box],
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    occluders: Sequence[Box | None] | None = None,
    texture_size: tuple[int, int] = (64, 64),
    blob: float = 10.0,
    noise: float = 2.0,
    saturated: bool = False,
) -> SyntheticSequence:
    """Frames of a textured target drawn at ``boxes`` (one per frame) over a fixed background.

    ``size`` is (width, height). ``occluders``: per frame, a box drawn over the target with another texture
    (None: no occluder). ``noise``: std of per-frame Gaussian pixel noise. ``saturated``: the target's texture
    is :func:`saturated_texture` (for the NCC test model's box output).
    """
    rng = np.random.default_rng(seed)
    width, height = size
    background = make_background(rng, height, width).astype(np.float32)
    texture = make_texture(rng, texture_size[1], texture_size[0], blob=blob)
    if saturated:
        texture = saturated_texture(rng, texture_size[1], texture_size[0], blob=blob)
    occluder_texture = make_texture(rng, 64, 64, blob=10.0, contrast=60.0)
    frames, visible = [], []
    for i, box in enumerate(boxes):
        frame = background.copy()
        _paste(frame, texture, box)
        if occluders is not None and occluders[i] is not None:
            _paste(frame, occluder_texture, occluders[i])
        if noise > 0:
            frame += rng.normal(0.0, noise, frame.shape).astype(np.float32)
        frames.append(np.clip(frame + 0.5, 0, 255).astype(np.uint8))
        x, y, w, h = box
        visible.append(x + w > 0 and y + h > 0 and x < width and y < height)
    return SyntheticSequence(frames=frames, boxes=[tuple(map(float, b)) for b in boxes], visible=visible)


def render_lookalike_crossing(
    frames: int = 60,
    size: tuple[int, int] = (320, 240),
    seed: int = 5,
    target_contrast: float = 0.7,
    lane_offset: float = 20.0,
    speed: float = 3.0,
    noise: float = 2.0,
) -> tuple[SyntheticSequence, list[Box]]:
    """A target and a look-alike with the same texture pattern crossing each other.

    The target (40x40, its texture at ``target_contrast`` times the look-alike's contrast) moves right at
    ``speed`` px/frame; the look-alike moves left on a lane ``lane_offset`` px lower and is drawn on top
    of it. A similarity that ignores contrast (the NCC test model's) rates the look-alike at least as high as
    the target, so only appearance learnt on this video (or luck) keeps a tracker on the target. Returns the
    sequence (ground truth: the target) and the look-alike's boxes.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    background = make_background(rng, height, width).astype(np.float32)
    texture = make_texture(rng, 64, 64, blob=10.0)
    target_texture = np.clip((texture.astype(np.float32) - 128.0) * target_contrast + 128.0, 0, 255).astype(np.uint8)
    target_boxes = [(60.0 + speed * i, 100.0, 40.0, 40.0) for i in range(frames)]
    lookalike_boxes = [(240.0 - speed * i, 100.0 + lane_offset, 40.0, 40.0) for i in range(frames)]
    images = []
    for target_box, lookalike_box in zip(target_boxes, lookalike_boxes, strict=True):
        frame = background.copy()
        _paste(frame, target_texture, target_box)
        _paste(frame, texture, lookalike_box)
        if noise > 0:
            frame += rng.normal(0.0, noise, frame.shape).astype(np.float32)
        images.append(np.clip(frame + 0.5, 0, 255).astype(np.uint8))
    sequence = SyntheticSequence(frames=images, boxes=target_boxes, visible=[True] * frames)
    return sequence, lookalike_boxes


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes: the evaluation toolkit's IoU for one pair."""
    return float(metrics.iou(np.asarray([a], dtype=np.float64), np.asarray([b], dtype=np.float64))[0])
