"""Registry of trackers the evaluation runner can run: name -> factory + availability check.

Every tracker has the got10k-style interface ``init(image_bgr, (x, y, w, h))`` and
``update(image_bgr) -> ((x, y, w, h), score)``. A tracker whose files or packages are missing is reported
by :func:`unavailable_reason` and skipped by the runner with that message.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from siammixer_ros.core.model_file import SHIPPED_MODEL_NAMES

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PEERS_DIR = Path(os.environ.get("SIAMMIXER_PEERS_DIR", REPO_ROOT.parent / "shared" / "peers"))
DEFAULT_MODEL = REPO_ROOT / "models" / SHIPPED_MODEL_NAMES["float"]


class EvalTracker(Protocol):
    def init(self, image: np.ndarray, box: tuple[float, float, float, float]) -> None: ...

    def update(self, image: np.ndarray) -> tuple[tuple[float, float, float, float], float]: ...


@dataclass(frozen=True)
class TrackerConfig:
    """What factories need; picklable so that worker processes can build their own trackers."""

    peers_dir: Path = DEFAULT_PEERS_DIR
    model_path: Path = DEFAULT_MODEL
    threads: int = 1
    #: TrackerParams of the siammixer tracker as sorted ``(name, value)`` pairs (hashable, picklable); empty:
    #: the defaults.
    tracker_params: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class TrackerSpec:
    name: str
    description: str
    factory: Callable[[TrackerConfig], EvalTracker]
    check: Callable[[TrackerConfig], str | None]


class SiamMixerAdapter:
    """SiamMixerTracker (siammixer_ros.core.tracker) with the runner's interface."""

    def __init__(self, config: TrackerConfig) -> None:
        from siammixer_ros.core.runtime import RuntimeOptions
        from siammixer_ros.core.tracker import SiamMixerTracker

        options = RuntimeOptions(intra_op_threads=config.threads)
        self._tracker = SiamMixerTracker(
            str(config.model_path), params=dict(config.tracker_params), runtime_options=options
        )

    def init(self, image: np.ndarray, box: tuple[float, float, float, float]) -> None:
        self._tracker.init(image, tuple(float(v) for v in box))

    def update(self, image: np.ndarray) -> tuple[tuple[float, float, float, float], float]:
        result = self._tracker.update(image)
        return tuple(float(v) for v in result.box), float(result.score)


class StaticBoxTracker:
    """Baseline that never moves: reports the init box every frame (a lower bound for any real tracker)."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self._box: tuple[float, float, float, float] | None = None

    def init(self, image: np.ndarray, box: tuple[float, float, float, float]) -> None:
        self._box = tuple(float(v) for v in box)

    def update(self, image: np.ndarray) -> tuple[tuple[float, float, float, float], float]:
        if self._box is None:
            raise RuntimeError("StaticBoxTracker.update() called before init()")
        return self._box, 1.0


def _siammixer_check(config: TrackerConfig) -> str | None:
    if not Path(config.model_path).is_file():
        return f"model file {config.model_path} not found (train/export one, or pass --model PATH)"
    try:
        import siammixer_ros.core.tracker  # noqa: F401
    except ImportError as error:
        return f"siammixer_ros.core.tracker cannot be imported: {error}"
    return None


def _opencv_check(kind: str) -> Callable[[TrackerConfig], str | None]:
    def check(config: TrackerConfig) -> str | None:
        from siammixer_ros.eval.peers.opencv_trackers import unavailable_reason

        return unavailable_reason(kind)
    return check


def _opencv_factory(kind: str) -> Callable[[TrackerConfig], EvalTracker]:
    def factory(config: TrackerConfig) -> EvalTracker:
        from siammixer_ros.eval.peers.opencv_trackers import OpenCVTracker

        return OpenCVTracker(kind)
    return factory


def _nanotrack_check(version: str) -> Callable[[TrackerConfig], str | None]:
    def check(config: TrackerConfig) -> str | None:
        from siammixer_ros.eval.peers.nanotrack import missing_files

        missing = missing_files(config.peers_dir, version)
        return f"NanoTrack {version} files missing: {', '.join(map(str, missing))}" if missing else None
    return check


def _nanotrack_factory(version: str) -> Callable[[TrackerConfig], EvalTracker]:
    def factory(config: TrackerConfig) -> EvalTracker:
        from siammixer_ros.eval.peers.nanotrack import NanoTrack

        return NanoTrack(config.peers_dir, version, threads=config.threads)
    return factory


def _opencv_nano_check(config: TrackerConfig) -> str | None:
    import cv2

    if not hasattr(cv2, "TrackerNano_create") and not hasattr(cv2, "TrackerNano"):
        return f"cv2 {cv2.__version__} has no TrackerNano"
    return _nanotrack_check("v2")(config)


def _opencv_nano_factory(config: TrackerConfig) -> EvalTracker:
    from siammixer_ros.eval.peers.nanotrack import model_paths
    from siammixer_ros.eval.peers.opencv_trackers import OpenCVNano

    search, _, head = model_paths(config.peers_dir, "v2")
    return OpenCVNano(search, head)


def _lighttrack_check(config: TrackerConfig) -> str | None:
    from siammixer_ros.eval.peers.lighttrack import unavailable_reason

    return unavailable_reason(config.peers_dir)


def _lighttrack_factory(config: TrackerConfig) -> EvalTracker:
    from siammixer_ros.eval.peers.lighttrack import LightTrack

    return LightTrack(config.peers_dir, threads=config.threads)


REGISTRY: dict[str, TrackerSpec] = {spec.name: spec for spec in (
    TrackerSpec("siammixer", "SiamMixer (this project), onnxruntime", SiamMixerAdapter, _siammixer_check),
    TrackerSpec("csrt", "OpenCV CSRT (opencv-contrib)", _opencv_factory("csrt"), _opencv_check("csrt")),
    TrackerSpec("kcf", "OpenCV KCF (opencv-contrib)", _opencv_factory("kcf"), _opencv_check("kcf")),
    TrackerSpec("nanotrack_v2", "NanoTrack v2, project port on onnxruntime", _nanotrack_factory("v2"),
                _nanotrack_check("v2")),
    TrackerSpec("nanotrack_v3", "NanoTrack v3, project port on onnxruntime", _nanotrack_factory("v3"),
                _nanotrack_check("v3")),
    TrackerSpec("opencv_nano", "OpenCV TrackerNano with the NanoTrack v2 files (cross-check)", _opencv_nano_factory,
                _opencv_nano_check),
    TrackerSpec("static", "baseline: the init box in every frame", StaticBoxTracker, lambda config: None),
    TrackerSpec("lighttrack", "LightTrack-Mobile, project port on OpenVINO", _lighttrack_factory, _lighttrack_check),
)}


def _import_factory(name: str) -> Callable[[TrackerConfig], EvalTracker]:
    module_name, _, attribute = name.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute)


def unavailable_reason(name: str, config: TrackerConfig) -> str | None:
    """None if the tracker can run, else a message saying what is missing.

    Besides registry names, ``"package.module:factory"`` names a callable ``factory(TrackerConfig)`` that
    worker processes can import (e.g. a training checkpoint wrapper).
    """
    if ":" in name:
        try:
            _import_factory(name)
        except (ImportError, AttributeError) as error:
            return f"cannot import tracker factory {name!r}: {error}"
        return None
    if name not in REGISTRY:
        return f"unknown tracker {name!r}; known: {', '.join(REGISTRY)} or package.module:factory"
    return REGISTRY[name].check(config)


def create_tracker(name: str, config: TrackerConfig) -> EvalTracker:
    reason = unavailable_reason(name, config)
    if reason:
        raise RuntimeError(f"tracker {name} unavailable: {reason}")
    if ":" in name:
        return _import_factory(name)(config)
    return REGISTRY[name].factory(config)


def register(spec: TrackerSpec) -> None:
    """Add a tracker (e.g. a training checkpoint under a custom name); only in-process runs (jobs=1) see it."""
    REGISTRY[spec.name] = spec


def describe() -> list[dict[str, Any]]:
    return [{"name": s.name, "description": s.description} for s in REGISTRY.values()]
