"""Choosing a target: checking a requested box against the image, and two-click selection from rqt_image_view.

rqt_image_view publishes a ``geometry_msgs/Point`` in image pixels on ``<viewed topic>_mouse_left`` for each
left click when "mouse publishing" is on; two clicks are taken as opposite corners of the target box.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from siammixer_ros.core.errors import TrackerInputError
from siammixer_ros.core.validation import check_box

Box = tuple[float, float, float, float]


class TargetError(ValueError):
    """A requested target box is unusable; the message says why, in words for an operator."""


def check_target_box(box: Sequence[float], image_width: int, image_height: int, min_size: float = 4.0) -> Box:
    """Validate an (x, y, w, h) box against a ``image_width`` x ``image_height`` image.

    Returns the box clipped to the image. Raises :class:`TargetError` for a box that is not four finite
    numbers, has zero or negative size, lies outside the image, or is smaller than ``min_size`` pixels
    (either side) once clipped.
    """
    # The checks a tracker needs are the core's (one place for them); an operator's box may then be clipped.
    try:
        x, y, w, h = check_box(box, (image_height, image_width), what="target box")
    except TrackerInputError as exc:
        raise TargetError(str(exc)) from None
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(image_width), x + w), min(float(image_height), y + h)
    cw, ch = x1 - x0, y1 - y0
    if cw < min_size or ch < min_size:
        raise TargetError(
            f"box is {cw:.1f}x{ch:.1f} pixels inside the {image_width}x{image_height} image, "
            f"smaller than min_target_size={min_size:g}"
        )
    return (x0, y0, cw, ch)


def corners_to_box(x0: float, y0: float, x1: float, y1: float) -> Box:
    """Two opposite corners (any order) -> (x, y, w, h)."""
    return (min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0))


class ClickSelector:
    """Two clicks -> a box. The first click is forgotten after ``timeout_s`` seconds."""

    def __init__(self, timeout_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._first: tuple[float, float, float] | None = None  # x, y, time

    @property
    def pending(self) -> bool:
        return self._first is not None and self._clock() - self._first[2] <= self.timeout_s

    @property
    def first_click(self) -> tuple[float, float] | None:
        """The pending first corner (for drawing), None when there is none."""
        first = self._first
        return (first[0], first[1]) if first is not None and self.pending else None

    def click(self, x: float, y: float) -> Box | None:
        """Register a click; returns the box on the second click, None on the first."""
        if not (math.isfinite(x) and math.isfinite(y)):
            return None
        now = self._clock()
        if self._first is None or now - self._first[2] > self.timeout_s:
            self._first = (float(x), float(y), now)
            return None
        fx, fy, _ = self._first
        self._first = None
        return corners_to_box(fx, fy, float(x), float(y))

    def cancel(self) -> None:
        self._first = None
