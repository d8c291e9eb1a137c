"""Tracking core: numpy + OpenCV + onnxruntime only (no torch, no rclpy).

Names are imported lazily so that ``import siammixer_ros.core`` stays cheap:
``from siammixer_ros.core import SiamMixerTracker, TrackerParams, TrackResult, TrackState``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SiamMixerTracker": "siammixer_ros.core.tracker",
    "TrackResult": "siammixer_ros.core.tracker",
    "TrackState": "siammixer_ros.core.tracker",
    "TrackerParams": "siammixer_ros.core.params",
    "TrackerError": "siammixer_ros.core.errors",
    "TrackerInputError": "siammixer_ros.core.errors",
    "TrackerParamsError": "siammixer_ros.core.errors",
    "TrackerStateError": "siammixer_ros.core.errors",
    "FrameSizeError": "siammixer_ros.core.errors",
    "ModelError": "siammixer_ros.core.model_file",
    "ModelInfo": "siammixer_ros.core.model_file",
    "SiamMixerRuntime": "siammixer_ros.core.runtime",
    "RuntimeOptions": "siammixer_ros.core.runtime",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'siammixer_ros.core' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
