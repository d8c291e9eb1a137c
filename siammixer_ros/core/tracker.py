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

from siammixer_ros.core.blas_threads import one_blas_thread
from siammixer_ros.core.crop import (
    box_center,
    center_box,
    crop_window,
    get_subwindow,
    get_subwindows,
    image_mean,
    to_nchw,
)
from siammixer_ros.core.errors import FrameSizeError, ModelError, TrackerStateError
from siammixer_ros.core.online import OnlineModel, find_distractors, fuse_responses, online_filter_cells
from siammixer_ros.core.params import TrackerParams
from siammixer_ros.core.postprocess import (
    BoxChoice,
    Peak,
    box_at,
    box_window,
    hann_window,
    peak_to_sidelobe,
    scale_factors,
    select_box_cell,
    select_peak,
)
from siammixer_ros.core.scale_filter import ScaleFilter
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
    the raw response (``inf`` on init). scale: the search scale found (the winning one, or between the scales
    with ``scale_estimate`` parabola; 1.0 when lost or on init).
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
    #: Distractors (strong secondary peaks) found on this frame; 0 while the distractor memory is off.
    distractors: int = 0


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
    # Memories (None / 0 while their part is off): the online model, the gated second template.
    online: OnlineModel | None = None
    frames_since_online_update: int = 0
    second_template: np.ndarray | None = None
    frames_since_template: int = 0
    distractor_templates: tuple[np.ndarray, ...] = ()
    frame_size: tuple[int, int] = (0, 0)  # (width, height) of the frames the state refers to
    # Velocity of the centre, pixels per frame (exponential average over TRACKING frames; motion_weight > 0).
    vx: float = 0.0
    vy: float = 0.0
    # DSST's scale filter (scale_estimate dsst; core/scale_filter.py).
    scale_filter: ScaleFilter | None = None


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
        if params.box_mode != "scale" and not info.has_box_output:
            raise ModelError(
                f"tracker parameter box_mode {params.box_mode!r} needs a model with a box output; this model has "
                "none (siammixer-model-info shows it): use box_mode 'scale'"
            )
        self._box_window = box_window(info.response_size)
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
        online = None
        if self._params.online_weight > 0:
            with one_blas_thread():
                online = self._train_online(img, cx, cy, w, h, size, pad, timings)
        scale_filter = None
        if self._params.scale_estimate == "dsst":
            t3 = time.perf_counter()
            p = self._params
            scale_filter = ScaleFilter.start(img, (cx, cy), math.sqrt(w * h), pad, p.dsst_scales, p.dsst_step,
                                             p.dsst_sigma, p.dsst_reg, p.dsst_padding)
            timings["scale_filter"] = time.perf_counter() - t3
        height, width = img.shape[:2]
        min_w, min_h = min(self._params.min_box_size, w), min(self._params.min_box_size, h)
        reported = clip_box(cx, cy, w, h, width, height, min_w, min_h)
        self._target = _Target(
            cx=cx, cy=cy, w=w, h=h, min_w=min_w, min_h=min_h, template_features=features, box=reported,
            online=online, frame_size=(width, height), scale_filter=scale_filter,
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
        if (width, height) != target.frame_size:
            target = self._rescaled(target, width, height)
        x_size = self._template_crop_size(target.w, target.h) * info.search_size / info.template_size
        lost = target.state is TrackState.LOST
        if lost:
            centers = self._redetection_centers(target, x_size, width, height)
            sizes = [x_size] * len(centers)
            penalties, influence = None, params.lost_window_influence
        else:
            center = (target.cx, target.cy)
            if params.motion_weight > 0:  # constant-velocity prediction: the crops and the window follow it
                center = (target.cx + params.motion_weight * target.vx, target.cy + params.motion_weight * target.vy)
            if params.box_mode == "regression":  # one crop at the current size: the regression finds the size
                centers, sizes = [center], [x_size]
                penalties, influence = None, params.window_influence
            else:
                centers = [center] * params.scale_num
                sizes = (x_size * self._scales).tolist()
                penalties, influence = self._penalties, params.window_influence
        # Snap every crop to whole pixels (fast crops, see core/crop.py) and map results back through
        # the windows actually cut.
        windows = [crop_window(c, s) for c, s in zip(centers, sizes, strict=True)]
        centers = [wnd.center for wnd in windows]
        sizes = [float(wnd.side) for wnd in windows]
        n = len(centers)
        pad = image_mean(img)
        crops = get_subwindows(img, centers, sizes, info.search_size, pad, out=self._crop_buffers.get(n))
        self._crop_buffers[n] = crops
        batch = to_nchw(crops, out=self._input_buffers.get(n))
        self._input_buffers[n] = batch
        t1 = time.perf_counter()
        features = self._runtime.search_features(batch)
        boxes = None
        if params.box_mode != "scale" and not lost:
            responses, boxes = self._runtime.response_and_box(self._template_in_use(target), features)
            responses = np.asarray(responses)
            if boxes is None or np.shape(boxes) != (n, 4, info.response_size, info.response_size):
                raise ModelError(f"model returned a box output of shape {np.shape(boxes)}, expected "
                                 f"{(n, 4, info.response_size, info.response_size)}")
            boxes = np.asarray(boxes)
        else:
            responses = np.asarray(self._runtime.response(self._template_in_use(target), features))
        t2 = time.perf_counter()
        expected = (n, 1, info.response_size, info.response_size)
        if responses.shape != expected:
            raise ModelError(f"model returned a response of shape {responses.shape}, its metadata says {expected}")
        siamese = responses
        if target.online is not None:
            with one_blas_thread():
                online_scores = target.online.scores(features)
            if np.all(np.isfinite(online_scores)):  # degenerate features: the Siamese response alone
                responses = fuse_responses(responses[:, 0], online_scores, params.online_weight)[:, None]
        t_online = time.perf_counter() - t2
        upsampled = self._upsampled_buffers.setdefault(
            n, np.empty((n, self._window.shape[0], self._window.shape[1]), dtype=np.float32)
        )
        choice: BoxChoice | None = None
        if boxes is not None and params.box_mode == "regression":
            # NanoTrack: the cell with the best penalised, windowed score; its regression is the box.
            crop_to = info.search_size / sizes[0]  # search-crop pixels per image pixel
            choice = select_box_cell(responses[0, 0], boxes[0], info.stride, target.w * crop_to, target.h * crop_to,
                                     params.box_penalty_k, self._box_window, params.box_window_influence)
            peak = Peak(index=0, dx=choice.dx, dy=choice.dy, logit=float(responses[0, 0][choice.cell]),
                        psr=peak_to_sidelobe(responses[0, 0], params.psr_exclude_radius))
        else:
            peak = select_peak(
                responses,
                info.stride,
                params.response_up,
                penalties,
                self._window,
                influence,
                params.psr_exclude_radius,
                out=upsampled,
                interpolate_scale=params.scale_estimate == "parabola",
            )
            if boxes is not None:  # both: the regression's size where the scale search found the target
                crop_to = info.search_size / sizes[peak.index]
                choice = box_at(boxes[peak.index], peak.dx, peak.dy, info.stride, target.w * crop_to,
                                target.h * crop_to, params.box_penalty_k)
        if responses is not siamese:
            # The PSR thresholds are calibrated on the Siamese map; the fused map is flatter by construction.
            peak = replace(peak, psr=peak_to_sidelobe(siamese[peak.index, 0], params.psr_exclude_radius))
        new = self._next_target(target, peak, centers, sizes, x_size, lost, width, height, choice)
        found_scale = 1.0 if lost else self._found_scale(peak, sizes, x_size)
        if new.scale_filter is not None and not lost and new.state is TrackState.TRACKING:
            t_scale = time.perf_counter()
            new, found_scale = self._scale_filter_step(new, img, pad, width, height)
            timings_scale = time.perf_counter() - t_scale
        else:
            timings_scale = None
        t3 = time.perf_counter()
        timings = {"crop": t1 - t0, "inference": t2 - t1}
        timings.update(self._runtime_timings(("search", "head")))
        if timings_scale is not None:
            timings["scale_filter"] = timings_scale
        distractors: list[tuple[int, int]] = []
        if not lost:
            with one_blas_thread():
                new, distractors = self._update_memories(
                    new, img, pad, peak, responses, siamese, features, sizes[peak.index], timings
                )
        t4 = time.perf_counter()
        if target.online is not None or params.template_weight > 0 or params.distractor_subtract > 0:
            timings["memory"] = t_online + (t4 - t3) - timings.get("inference_template", 0.0)
        timings["postprocess"] = t3 - t2
        timings["total"] = t4 - t0
        self._target = new
        return TrackResult(
            box=new.box,
            score=peak.score,
            state=new.state,
            psr=peak.psr,
            scale=found_scale,
            search_crops=n,
            frame_index=new.frame_index,
            timings=timings,
            distractors=len(distractors),
        )

    def reset(self) -> None:
        """Forget the target (the model stays loaded); ``init`` must be called again."""
        self._target = None

    def _rescaled(self, target: _Target, width: int, height: int) -> _Target:
        """The target state carried over to frames of another size with the same aspect ratio (a camera switching
        resolution); a different aspect ratio raises :class:`FrameSizeError` (a crop or another camera: the
        position cannot be carried over)."""
        old_w, old_h = target.frame_size
        sx, sy = width / old_w, height / old_h
        if abs(sx / sy - 1.0) > 0.01:
            raise FrameSizeError(
                f"frame size changed from {old_w}x{old_h} to {width}x{height} (another aspect ratio): the target "
                "cannot be carried over; set the target again"
            )
        w, h = target.w * sx, target.h * sy
        return replace(
            target, cx=(target.cx + 0.5) * sx - 0.5, cy=(target.cy + 0.5) * sy - 0.5, w=w, h=h,
            min_w=min(target.min_w * sx, w), min_h=min(target.min_h * sy, h), vx=target.vx * sx, vy=target.vy * sy,
            frame_size=(width, height),
        )

    # -- memories (online model, distractors, second template) -----------------------------------
    def _template_in_use(self, target: _Target) -> np.ndarray:
        """The template features correlated this frame: the first template, blended with the second one when
        the template memory holds one (the head is linear in the template features, so one call does it)."""
        params = self._params
        if target.second_template is None and not target.distractor_templates:
            return target.template_features
        mix = params.template_weight if target.second_template is not None else 0.0
        template = (1.0 - mix) * target.template_features
        if target.second_template is not None:
            template = template + mix * target.second_template
        if target.distractor_templates:
            # DaSiamRPN: response(z) - alpha * mean response(d_i); the head's bias cancels (weights sum to 1 - alpha
            # on the template side, and the bias is added once).
            template = template - params.distractor_subtract * np.mean(target.distractor_templates, axis=0)
        return template

    def _label_geometry(
        self, output_size: int, dx: float, dy: float, w: float, h: float, crop_side: float
    ) -> tuple[tuple[float, float], tuple[float, float]]:
        """Centre ``(row, col)`` and sigma, in online output cells (``output_size`` per side), of the label of a
        target of ``w x h`` image pixels displaced ``(dx, dy)`` search-crop pixels from a crop of side ``crop_side``."""
        info = self._info
        middle = (output_size - 1) / 2.0
        cells = info.search_size / crop_side / info.stride  # feature cells per image pixel
        sigma = self._params.online_sigma
        return (
            (middle + dy / info.stride, middle + dx / info.stride),
            (max(sigma * h * cells, 0.25), max(sigma * w * cells, 0.25)),
        )

    def _train_online(
        self, img: np.ndarray, cx: float, cy: float, w: float, h: float, template_side: float,
        pad: tuple[float, ...], timings: dict[str, float],
    ) -> OnlineModel | None:
        """The online model of the first frame, target vs surroundings, on a 3 x 3 grid of search crops shifted by
        ``online_init_shift`` feature cells (one batched call): the features are not shift-equivariant, so the
        model must see the target away from the crop centre too. None when the features are degenerate (the
        tracker then uses the Siamese response alone)."""
        info, params = self._info, self._params
        side = template_side * info.search_size / info.template_size
        shift = params.online_init_shift * info.stride * side / info.search_size  # image pixels
        steps = (-1, 0, 1) if shift > 0 else (0,)
        windows = [crop_window((cx + sx * shift, cy + sy * shift), side) for sy in steps for sx in steps]
        crops = get_subwindows(img, [wnd.center for wnd in windows], [float(wnd.side) for wnd in windows],
                               info.search_size, pad)
        t0 = time.perf_counter()
        features = np.asarray(self._runtime.search_features(to_nchw(crops)))
        t1 = time.perf_counter()
        timings["inference"] = timings.get("inference", 0.0) + (t1 - t0)
        timings.update(self._runtime_timings(("search",)))
        # The template's feature size, implied by the search map and the response: Fs - R + 1.
        template_cells = features.shape[-1] - info.response_size + 1
        k = online_filter_cells(params.online_filter_cells, template_cells)
        centers = []
        for wnd in windows:
            scale = info.search_size / wnd.side  # search-crop pixels per image pixel
            center, sigma = self._label_geometry(
                features.shape[-1] - k + 1, (cx - wnd.center[0]) * scale, (cy - wnd.center[1]) * scale, w, h,
                float(wnd.side),
            )
            centers.append(center)
        model = OnlineModel.train(
            features, centers, sigma, channels=params.online_channels, filter_cells=k,
            template_cells=template_cells, response_size=info.response_size, reg=params.online_reg,
            first_share=params.online_first_share, cg_iterations=params.online_cg_iterations,
        )
        timings["memory"] = time.perf_counter() - t1
        return model

    def _update_memories(
        self,
        new: _Target,
        img: np.ndarray,
        pad: tuple[float, ...],
        peak: Peak,
        responses: np.ndarray,
        siamese: np.ndarray,
        features: np.ndarray,
        crop_side: float,
        timings: dict[str, float],
    ) -> tuple[_Target, list[tuple[int, int]]]:
        """Distractors of this frame, and the online model and second template updated where the frame passes
        their gates (a frame that does not pass changes no memory)."""
        params, info = self._params, self._info
        r = info.response_size
        middle = (r - 1) / 2.0
        cell = (
            int(min(max(round(middle + peak.dy / info.stride), 0), r - 1)),
            int(min(max(round(middle + peak.dx / info.stride), 0), r - 1)),
        )
        tracking = new.state is TrackState.TRACKING
        distractors: list[tuple[int, int]] = []
        hard_negatives = new.online is not None and params.distractor_weight > 0
        if tracking and (hard_negatives or params.distractor_subtract > 0):
            distractors = find_distractors(
                responses[peak.index, 0], cell, params.psr_exclude_radius, params.distractor_ratio
            )
        changes: dict[str, Any] = {}
        if distractors and params.distractor_subtract > 0 and peak.score >= params.memory_update_score:
            # Remember the strongest look-alike's template (the target's size, at the distractor's place).
            strongest = max(distractors, key=lambda rc: responses[peak.index, 0][rc])
            to_image = crop_side / info.search_size * info.stride
            dcx = new.cx + (strongest[1] - cell[1]) * to_image
            dcy = new.cy + (strongest[0] - cell[0]) * to_image
            found = self._template_at(img, pad, (dcx, dcy), new, timings)
            if found is not None:
                keep = params.distractor_memory - 1
                kept = new.distractor_templates[max(0, len(new.distractor_templates) - keep) :] if keep > 0 else ()
                changes["distractor_templates"] = (*kept, found)
        online = new.online
        if online is not None:
            since = new.frames_since_online_update + 1
            due = since >= params.online_update_interval or bool(distractors)
            if tracking and due and peak.score >= params.memory_update_score:
                center, sigma = self._label_geometry(online.output_size, peak.dx, peak.dy, new.w, new.h, crop_side)
                hard = [(row + online.offset, col + online.offset) for row, col in distractors]
                windows = online.windows(features[peak.index : peak.index + 1])
                online = online.update(windows, center, sigma, params.online_rate, hard, params.distractor_weight)
                changes.update(online=online, frames_since_online_update=0)
            else:
                changes["frames_since_online_update"] = since
        if params.template_weight > 0:
            since = new.frames_since_template + 1
            siamese_cell = divmod(int(np.argmax(siamese[peak.index, 0])), r)
            agree = max(abs(siamese_cell[0] - cell[0]), abs(siamese_cell[1] - cell[1])) <= 1
            gate = (
                tracking
                and peak.score >= params.template_gate_score
                and peak.psr >= params.template_gate_psr
                and not distractors
                and agree
            )
            if gate and since >= params.template_interval:
                second = self._template_at(img, pad, (new.cx, new.cy), new, timings)
                if second is not None:
                    changes.update(second_template=second, frames_since_template=0)
                else:
                    changes["frames_since_template"] = since
            else:
                changes["frames_since_template"] = since
        return (replace(new, **changes) if changes else new), distractors

    def _template_at(
        self, img: np.ndarray, pad: tuple[float, ...], center: tuple[float, float], target: _Target,
        timings: dict[str, float],
    ) -> np.ndarray | None:
        """Template features of a crop at ``center`` with the target's size (one template-branch call, added to
        ``timings["inference_template"]``); None when they are not finite."""
        side = self._template_crop_size(target.w, target.h)
        crop = get_subwindow(img, center, side, self._info.template_size, pad)
        t0 = time.perf_counter()
        features = np.array(self._runtime.template_features(to_nchw(crop[None])), copy=True)
        timings["inference_template"] = timings.get("inference_template", 0.0) + time.perf_counter() - t0
        return features if np.all(np.isfinite(features)) else None

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

    def _scale_filter_step(self, target: _Target, image: np.ndarray, pad: tuple[float, ...], width: int,
                           height: int) -> tuple[_Target, float]:
        """A TRACKING frame with ``scale_estimate`` dsst: the scale filter's size at the network's position (moved
        by ``scale_lr``), then the filter learns the target at that size."""
        params, scale_filter = self._params, target.scale_filter
        if scale_filter is None:
            return target, 1.0
        centre = (target.cx, target.cy)
        found = scale_filter.scale(scale_filter.samples(image, centre, math.sqrt(target.w * target.h), pad))
        factor = ((1.0 - params.scale_lr) + params.scale_lr * found) ** params.dsst_weight
        w = min(max(target.w * factor, target.min_w), max(float(width), target.min_w))
        h = min(max(target.h * factor, target.min_h), max(float(height), target.min_h))
        samples = scale_filter.samples(image, centre, math.sqrt(w * h), pad)
        if np.all(np.isfinite(samples)):
            scale_filter = scale_filter.updated(samples, params.dsst_lr)
        return replace(target, w=w, h=h, scale_filter=scale_filter,
                       box=clip_box(target.cx, target.cy, w, h, width, height, target.min_w, target.min_h)), found

    def _found_scale(self, peak: Peak, sizes: list[float], x_size: float) -> float:
        """The scale the search found, relative to the unsnapped search size: the winning crop as cut (snapped),
        moved between the scales by the parabola's vertex when one was fitted (``scale_estimate``)."""
        scale = sizes[peak.index] / x_size
        if peak.scale_position is not None:
            scale *= self._params.scale_step ** (peak.scale_position - peak.index)
        return scale

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
        choice: BoxChoice | None = None,
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
            if choice is not None and params.box_size_gate > 0:
                change = 0.5 * math.log(max(choice.w * choice.h, 1e-12) * crop_scale ** 2 / (w * h))
                if abs(change) > params.box_size_gate:
                    choice = None  # the gate: this regressed size is not taken
            if choice is not None and math.sqrt(w * h) < params.box_min_target_px:
                choice = None  # too small a target for its regressed size to be trusted
            if good and choice is not None:
                # The regressed box, smoothed as NanoTrack does: a = box_lr * penalty * score.
                rate = params.box_lr * choice.penalty * score
                w = (1.0 - rate) * w + rate * choice.w * crop_scale
                h = (1.0 - rate) * h + rate * choice.h * crop_scale
            elif good:
                factor = (1.0 - params.scale_lr) + params.scale_lr * self._found_scale(peak, sizes, x_size)
                if params.scale_estimate == "dsst":  # the scale filter has the rest of the say (update())
                    factor **= 1.0 - params.dsst_weight
                w, h = w * factor, h * factor
        cx = min(max(cx, 0.0), width - 1.0)
        cy = min(max(cy, 0.0), height - 1.0)
        vx, vy = target.vx, target.vy
        if params.motion_weight > 0:
            rate = params.motion_rate
            if state is TrackState.TRACKING and not lost:
                vx, vy = (1 - rate) * vx + rate * (cx - target.cx), (1 - rate) * vy + rate * (cy - target.cy)
            elif state is TrackState.LOST:
                vx, vy = 0.0, 0.0
            else:  # uncertain: trust the motion less
                vx, vy = (1 - rate) * vx, (1 - rate) * vy
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
            vx=vx,
            vy=vy,
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
