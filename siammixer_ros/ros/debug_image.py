"""The debug image: the frame with the box, score, state and processing rate drawn on it (no rclpy)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from siammixer_ros.core.tracker import TrackState
from siammixer_ros.ros.messages import state_name

# BGR; None: no target set.
_COLOURS = {TrackState.TRACKING: (0, 220, 0), TrackState.UNCERTAIN: (0, 200, 255), TrackState.LOST: (0, 0, 255),
            None: (200, 200, 200)}


def draw_debug_image(image: np.ndarray, state: TrackState | None, box: tuple[float, float, float, float] | None,
                     score: float, track_id: int, label: str, rate_hz: float, latency_ms: float | None = None,
                     pending_click: tuple[float, float] | None = None) -> np.ndarray:
    """A copy of ``image`` (BGR uint8) with the track drawn on it."""
    out = image.copy()
    colour = _COLOURS.get(state, (255, 255, 255))
    scale = max(0.4, min(out.shape[0], out.shape[1]) / 800.0)
    thickness = max(1, int(round(2 * scale)))
    if box is not None and all(math.isfinite(v) for v in box):
        x, y, w, h = box
        cv2.rectangle(out, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))), colour, thickness)
    if pending_click is not None:
        cv2.drawMarker(out, (int(pending_click[0]), int(pending_click[1])), (255, 0, 255), cv2.MARKER_CROSS,
                       int(20 * scale), thickness)
    text = state_name(state) if state is None else f"{state_name(state)} #{track_id} {label} score {score:.2f}"
    text += f" | {rate_hz:.1f} Hz"
    if latency_ms is not None and math.isfinite(latency_ms):
        text += f" | {latency_ms:.0f} ms"
    origin = (int(8 * scale), int(24 * scale))
    cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, colour, thickness, cv2.LINE_AA)
    return out
