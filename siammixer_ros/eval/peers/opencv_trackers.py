"""OpenCV's classic trackers (CSRT, KCF; need opencv-contrib-python-headless) and TrackerNano (main modules).

OpenCV trackers take integer boxes and report success as a bool without a score: the score recorded is
1.0 on success and 0.0 on failure, and on failure the last successful box is kept (the runner needs a
box every frame; OpenCV's box is undefined then).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from siammixer_ros.eval.peers.siamese_common import check_box

CLASSIC = {"csrt": "TrackerCSRT", "kcf": "TrackerKCF"}


def unavailable_reason(kind: str) -> str | None:
    """None when cv2 has the tracker, else why not."""
    class_name = CLASSIC[kind]
    if not hasattr(cv2, class_name):
        return (f"cv2 {cv2.__version__} has no {class_name}: install opencv-contrib-python-headless=="
                f"{cv2.__version__}.* instead of opencv-python-headless (they conflict; uninstall the latter first)")
    return None


class OpenCVTracker:
    """Adapter giving an OpenCV tracker the runner's ``init``/``update -> (box, score)`` interface."""

    def __init__(self, kind: str) -> None:
        reason = unavailable_reason(kind)
        if reason:
            raise RuntimeError(reason)
        self.kind = kind
        self._factory = getattr(cv2, CLASSIC[kind] + "_create", None) or getattr(cv2, CLASSIC[kind]).create
        self._tracker = None
        self._last_box = (0.0, 0.0, 0.0, 0.0)

    def init(self, image: np.ndarray, box: tuple[float, float, float, float]) -> None:
        x, y, w, h = check_box(box, image)
        self._tracker = self._factory()
        rect = (int(round(x)), int(round(y)), max(1, int(round(w))), max(1, int(round(h))))
        self._tracker.init(image, rect)
        self._last_box = tuple(float(v) for v in rect)

    def update(self, image: np.ndarray) -> tuple[tuple[float, float, float, float], float]:
        if self._tracker is None:
            raise RuntimeError(f"{self.kind}: update() called before init()")
        ok, rect = self._tracker.update(image)
        if ok:
            self._last_box = tuple(float(v) for v in rect)
            return self._last_box, 1.0
        return self._last_box, 0.0


class OpenCVNano:
    """OpenCV's own TrackerNano with the NanoTrack v2 files: used to cross-check our onnxruntime port."""

    def __init__(self, backbone: Path, head: Path) -> None:
        for path in (backbone, head):
            if not Path(path).is_file():
                raise FileNotFoundError(f"NanoTrack model file missing: {path}")
        params = cv2.TrackerNano_Params()
        params.backbone = str(backbone)
        params.neckhead = str(head)
        self._params = params
        self._tracker = None

    def init(self, image: np.ndarray, box: tuple[float, float, float, float]) -> None:
        x, y, w, h = check_box(box, image)
        self._tracker = cv2.TrackerNano_create(self._params)
        self._tracker.init(image, (int(x), int(y), int(w), int(h)))

    def update(self, image: np.ndarray) -> tuple[tuple[float, float, float, float], float]:
        if self._tracker is None:
            raise RuntimeError("TrackerNano: update() called before init()")
        _, rect = self._tracker.update(image)
        return tuple(float(v) for v in rect), float(self._tracker.getTrackingScore())
