"""SiamMixerTracker: the single-object tracker shared by the ROS node, the evaluation toolkit, training
validation and the demo (got10k / pysot style ``init`` / ``update`` / ``reset``).

Per frame: one crop per search scale (or per re-detection tile while lost) -> one batched network call
-> SiamFC post-processing -> box, confidence, state. Conventions (see :mod:`siammixer_ros.core.crop`):
images BGR uint8 ``H x W x 3``; boxes ``(x, y, w, h)`` 0-based top-left pixels, centre
``(x + (w - 1) / 2, y + (h - 1) / 2)``.

State machine (thresholds in :class:`~siammixer_ros.core.params.TrackerParams`):

* a frame is *good* when ``score >= tracking_score`` and ``psr >= tracking_psr`` -> TRACKING, position and
  size updated;
* a frame is *bad* when ``score < lost_score`` or ``psr < lost_psr`` -> position and size kept, UNCERTAIN,
  and LOST after ``lost_frames`` consecutive bad frames;
* otherwise UNCERTAIN: position updated, size kept;
* while LOST the size is kept, the scale search is off, the search region grows by ``lost_search_growth``
  per frame up to ``lost_search_max`` times the normal region (a grid of search crops at the tracking
  scale, one batched call), no cosine window (``lost_window_influence``) and the box stays where the
  target was last seen; after ``redetect_frames`` consecutive frames with ``score >= redetect_score`` and
  ``psr >= redetect_psr`` the target is re-acquired at the detection (TRACKING).

A failed call (bad input, model error) leaves the tracker exactly as it was: the new target state is
built aside and committed only at the end of a successful ``init`` / ``update``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from siammixer_ros.core.crop import (
    box_center,
    center_box,
    crop_window,
    get_subwindow,
    get_subwindows,
    image_mean,
    to_nchw,
)
from siammixer_ros.core.errors import ModelError, TrackerStateError
from siammixer_ros.core.params import TrackerParams
from siammixer_ros.core.postprocess import Peak, hann_window, scale_factors, select_peak
from siammixer_ros.core.validation import as_bgr_image, check_box

if TYPE_CHECKING:
    from siammixer_ros.core.model_file import ModelInfo
    from siammixer_ros.core.runtime import RuntimeOptions, SiamMixerRuntime

__all__ = ["SiamMixerTracker", "TrackResult", "TrackState"]

Box = tuple[float, float, float, float]


class TrackState(str, Enum):
    """What the tracker believes about the target on the last frame."""

    TRACKING = "tracking"  # confident: position and size follow the target
    UNCERTAIN = "uncertain"  # weak or ambiguous response: size frozen, position kept on bad frames
    LOST = "lost"  # target not found for lost_frames frames: wide search, box frozen

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TrackResult:
    """Result of :meth:`SiamMixerTracker.init` or :meth:`SiamMixerTracker.update`.

    box: ``(x, y, w, h)`` pixels, clipped to the image, at least ``min_box_size`` wide/high (where the
    image allows). score: ``sigmoid(peak logit)`` in [0, 1] (1.0 on init). psr: peak-to-sidelobe ratio of
    the raw response (``inf`` on init). scale: the search scale chosen (1.0 when lost or on init).
    search_crops: how many crops went to the network (scales, or tiles while lost; 0 on init).
    timings: seconds, keys ``crop``, ``inference`` (network total), ``inference_<part>`` (the runtime's
    per-part times: ``inference_search``, ``inference_head``; ``inference_template`` on init),
    ``postprocess`` and ``total`` (the whole call, validation included).
    """

    box: Box
    score: float
    state: TrackState
    psr: float = math.inf
    scale: float = 1.0
    search_crops: int = 0
    frame_index: int = 0
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Target:
    """Everything ``update`` changes, replaced in one assignment (so failures change nothing)."""

    cx: float
    cy: float
    w: float
    h: float
    min_w: float
    min_h: float
    template_features: np.ndarray
    state: TrackState = TrackState.TRACKING
    bad_frames: int = 0
    redetect_frames: int = 0
    lost_factor: float = 1.0
    frame_index: int = 0
    box: Box = (0.0, 0.0, 0.0, 0.0)


def clip_box(cx: float, cy: float, w: float, h: float, width: int, height: int, min_w: float, min_h: float) -> Box:
    """The box of centre/size clipped to the image (pixels ``0 .. width - 1``), at least ``min_w x min_h``."""
    x0, y0, _, _ = center_box(cx, cy, w, h)
    x1, y1 = min(x0 + w, float(width)), min(y0 + h, float(height))
    x0, y0 = max(x0, 0.0), max(y0, 0.0)
    bw, bh = x1 - x0, y1 - y0
    min_w, min_h = min(min_w, float(width)), min(min_h, float(height))
    if bw < min_w:  # grow inside the image around the clipped box's centre
        mid = (x0 + x1) / 2.0
        x0 = min(max(mid - min_w / 2.0, 0.0), width - min_w)
        bw = min_w
    if bh < min_h:
        mid = (y0 + y1) / 2.0
        y0 = min(max(mid - min_h / 2.0, 0.0), height - min_h)
        bh = min_h
    return (x0, y0, bw, bh)


class SiamMixerTracker:
    """Single-object tracker on a SiamMixer model file (see module docstring).

    ``SiamMixerTracker(model_path, params, runtime_options)`` loads the model with
    :class:`~siammixer_ros.core.runtime.SiamMixerRuntime`; ``runtime_options=None`` uses the runtime's
    defaults, falling back to mode ``"whole"`` for models without patch parts. Pass ``runtime=`` instead of
    a path to share an already loaded runtime (or any object with the same methods).
    Raises :class:`~siammixer_ros.core.errors.ModelError` when the model cannot be used.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        params: TrackerParams | dict[str, Any] | None = None,
        runtime_options: RuntimeOptions | None = None,
        *,
        runtime: SiamMixerRuntime | Any | None = None,
    ) -> None:
        if isinstance(params, dict) or params is None:
            params = TrackerParams.from_dict(params)
        if not isinstance(params, TrackerParams):
            raise TypeError(f"params must be TrackerParams or a dict, got {type(params).__name__}")
        self._params = params
        if runtime is None:
            if model_path is None:
                raise ValueError("SiamMixerTracker needs a model_path (or a runtime)")
            runtime = _load_runtime(model_path, runtime_options)
        self._runtime = runtime
        info = runtime.info
        self._info = info
        if info.search_size <= info.template_size or info.stride <= 0 or info.response_size <= 0:
            raise ModelError(
                f"model sizes are unusable: template {info.template_size}, search {info.search_size}, "
                f"stride {info.stride}, response {info.response_size}"
            )
        self._scales = scale_factors(params.scale_num, params.scale_step)
        penalties = np.full(params.scale_num, params.scale_penalty, dtype=np.float64)
        penalties[params.scale_num // 2] = 1.0
        self._penalties = penalties
        self._window = hann_window(info.response_size * params.response_up)
        # Search-crop pixels covered by the response's displacements: (R - 1) * stride.
        self._coverage = (info.response_size - 1) * info.stride
        self._crop_buffers: dict[int, np.ndarray] = {}
        self._input_buffers: dict[int, np.ndarray] = {}
        self._upsampled_buffers: dict[int, np.ndarray] = {}
        self._target: _Target | None = None

    # -- properties ----------------------------------------------------------------------------
    @property
    def params(self) -> TrackerParams:
        return self._params

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def runtime(self) -> Any:
        return self._runtime

    @property
    def is_initialized(self) -> bool:
        return self._target is not None

    @property
    def state(self) -> TrackState | None:
        """State after the last call, None before ``init``."""
        return None if self._target is None else self._target.state

    @property
    def box(self) -> Box | None:
        """Box reported by the last call, None before ``init``."""
        return None if self._target is None else self._target.box

    # -- API -----------------------------------------------------------------------------------
    def init(self, image: np.ndarray, box: Any) -> TrackResult:
        """Start tracking the object in ``box`` ``(x, y, w, h)`` of ``image`` (BGR uint8)."""
        t0 = time.perf_counter()
        img = as_bgr_image(image)
        x, y, w, h = check_box(box, img.shape)
        cx, cy = box_center((x, y, w, h))
        size = self._template_crop_size(w, h)
        pad = image_mean(img)
        crop = get_subwindow(img, (cx, cy), size, self._info.template_size, pad)
        batch = to_nchw(crop[None])
        t1 = time.perf_counter()
        features = np.array(self._runtime.template_features(batch), copy=True)
        t2 = time.perf_counter()
        timings = {"crop": t1 - t0, "inference": t2 - t1}
        timings.update(self._runtime_timings(("template",)))
        height, width = img.shape[:2]
        min_w, min_h = min(self._params.min_box_size, w), min(self._params.min_box_size, h)
        reported = clip_box(cx, cy, w, h, width, height, min_w, min_h)
        self._target = _Target(
            cx=cx, cy=cy, w=w, h=h, min_w=min_w, min_h=min_h, template_features=features, box=reported
        )
        timings["postprocess"] = 0.0
        timings["total"] = time.perf_counter() - t0
        return TrackResult(box=reported, score=1.0, state=TrackState.TRACKING, timings=timings)

    def update(self, image: np.ndarray) -> TrackResult:
        """Locate the target in the next frame; returns a :class:`TrackResult`."""
        t0 = time.perf_counter()
        img = as_bgr_image(image)
        target = self._target
        if target is None:
            raise TrackerStateError("update() called before init(): call tracker.init(image, box) first")
        params, info = self._params, self._info
        height, width = img.shape[:2]
        x_size = self._template_crop_size(target.w, target.h) * info.search_size / info.template_size
        lost = target.state is TrackState.LOST
        if lost:
            centers = self._redetection_centers(target, x_size, width, height)
            sizes = [x_size] * len(centers)
            penalties, influence = None, params.lost_window_influence
        else:
            centers = [(target.cx, target.cy)] * params.scale_num
            sizes = (x_size * self._scales).tolist()
            penalties, influence = self._penalties, params.window_influence
        # Snap every crop to whole pixels (fast crops, see core/crop.py) and map results back through
        # the windows actually cut.
        windows = [crop_window(c, s) for c, s in zip(centers, sizes, strict=True)]
        centers = [wnd.center for wnd in windows]
        sizes = [float(wnd.side) for wnd in windows]
        n = len(centers)
        crops = get_subwindows(img, centers, sizes, info.search_size, image_mean(img), out=self._crop_buffers.get(n))
        self._crop_buffers[n] = crops
        batch = to_nchw(crops, out=self._input_buffers.get(n))
        self._input_buffers[n] = batch
        t1 = time.perf_counter()
        features = self._runtime.search_features(batch)
        responses = np.asarray(self._runtime.response(target.template_features, features))
        t2 = time.perf_counter()
        expected = (n, 1, info.response_size, info.response_size)
        if responses.shape != expected:
            raise ModelError(f"model returned a response of shape {responses.shape}, its metadata says {expected}")
        upsampled = self._upsampled_buffers.setdefault(
            n, np.empty((n, self._window.shape[0], self._window.shape[1]), dtype=np.float32)
        )
        peak = select_peak(
            responses,
            info.stride,
            params.response_up,
            penalties,
            self._window,
            influence,
            params.psr_exclude_radius,
            out=upsampled,
        )
        new = self._next_target(target, peak, centers, sizes, x_size, lost, width, height)
        t3 = time.perf_counter()
        timings = {"crop": t1 - t0, "inference": t2 - t1}
        timings.update(self._runtime_timings(("search", "head")))
        timings["postprocess"] = t3 - t2
        timings["total"] = t3 - t0
        self._target = new
        return TrackResult(
            box=new.box,
            score=peak.score,
            state=new.state,
            psr=peak.psr,
            scale=1.0 if lost else sizes[peak.index] / x_size,
            search_crops=n,
            frame_index=new.frame_index,
            timings=timings,
        )

    def reset(self) -> None:
        """Forget the target (the model stays loaded); ``init`` must be called again."""
        self._target = None

    # -- internals -----------------------------------------------------------------------------
    def _template_crop_size(self, w: float, h: float) -> float:
        context = self._params.context_amount * (w + h)
        return math.sqrt((w + context) * (h + context))

    def _runtime_timings(self, parts: tuple[str, ...]) -> dict[str, float]:
        """The runtime's per-part times of the calls just made (keys starting with a part name)."""
        last = getattr(self._runtime, "last_timings", None) or {}
        return {f"inference_{k}": float(v) for k, v in last.items() if k.startswith(parts)}

    def _redetection_centers(
        self, target: _Target, x_size: float, width: int, height: int
    ) -> list[tuple[float, float]]:
        """Centres of a k x k grid of search crops covering ``lost_factor`` times the normal search region.

        One crop finds centres within ``coverage`` image pixels (``(R - 1) * stride`` crop pixels) around
        its own centre; k is the smallest odd integer >= the factor, spaced so that the grid covers exactly
        ``factor * coverage`` (no gaps). Crops whose region misses the image are skipped.
        """
        factor = target.lost_factor
        k = 1 + 2 * math.ceil((factor - 1.0) / 2.0 - 1e-9)
        coverage = self._coverage * x_size / self._info.search_size
        spacing = factor * coverage / k
        half = (k - 1) / 2.0
        centers = []
        for iy in range(k):
            for ix in range(k):
                cx = target.cx + (ix - half) * spacing
                cy = target.cy + (iy - half) * spacing
                reach = spacing / 2.0
                if cx + reach < 0 or cy + reach < 0 or cx - reach > width - 1 or cy - reach > height - 1:
                    continue
                centers.append((cx, cy))
        return centers or [(target.cx, target.cy)]

    def _next_target(
        self,
        target: _Target,
        peak: Peak,
        centers: list[tuple[float, float]],
        sizes: list[float],
        x_size: float,
        lost: bool,
        width: int,
        height: int,
    ) -> _Target:
        params = self._params
        score, psr = peak.score, peak.psr
        crop_scale = sizes[peak.index] / self._info.search_size
        found_cx = centers[peak.index][0] + peak.dx * crop_scale
        found_cy = centers[peak.index][1] + peak.dy * crop_scale
        cx, cy, w, h = target.cx, target.cy, target.w, target.h
        bad_frames, redetect_frames, lost_factor = target.bad_frames, 0, 1.0
        if lost:
            strong = score >= params.redetect_score and psr >= params.redetect_psr
            redetect_frames = target.redetect_frames + 1 if strong else 0
            if redetect_frames >= params.redetect_frames:
                state, cx, cy, bad_frames, redetect_frames = TrackState.TRACKING, found_cx, found_cy, 0, 0
            else:
                state = TrackState.LOST
                lost_factor = min(target.lost_factor * params.lost_search_growth, params.lost_search_max)
        else:
            good = score >= params.tracking_score and psr >= params.tracking_psr
            bad = score < params.lost_score or psr < params.lost_psr
            if good:
                state, bad_frames = TrackState.TRACKING, 0
            elif bad:
                bad_frames += 1
                state = TrackState.LOST if bad_frames >= params.lost_frames else TrackState.UNCERTAIN
            else:
                state, bad_frames = TrackState.UNCERTAIN, 0
            if state is TrackState.LOST:
                lost_factor = min(params.lost_search_growth, params.lost_search_max)
            if not bad:
                cx, cy = found_cx, found_cy
            if good:
                # The scale of the crop that won, as cut (snapped), relative to the unsnapped search size.
                factor = (1.0 - params.scale_lr) + params.scale_lr * sizes[peak.index] / x_size
                w, h = w * factor, h * factor
        cx = min(max(cx, 0.0), width - 1.0)
        cy = min(max(cy, 0.0), height - 1.0)
        w = min(max(w, target.min_w), max(float(width), target.min_w))
        h = min(max(h, target.min_h), max(float(height), target.min_h))
        return replace(
            target,
            cx=cx,
            cy=cy,
            w=w,
            h=h,
            state=state,
            bad_frames=bad_frames,
            redetect_frames=redetect_frames,
            lost_factor=lost_factor,
            frame_index=target.frame_index + 1,
            box=clip_box(cx, cy, w, h, width, height, target.min_w, target.min_h),
        )


def _load_runtime(model_path: str | Path, options: RuntimeOptions | None) -> Any:
    from siammixer_ros.core.runtime import RuntimeOptions, SiamMixerRuntime

    if options is not None:
        return SiamMixerRuntime(model_path, options)
    from siammixer_ros.core.model_file import read_model_file

    info, _ = read_model_file(model_path)
    options = RuntimeOptions() if info.has_patch_parts else RuntimeOptions(mode="whole")
    return SiamMixerRuntime(model_path, options)
