"""Tracker parameters: one frozen dataclass with documented defaults, loadable from a dict or YAML.

Defaults follow SiamFC (Bertinetto et al. 2016, the reference implementation's 3-scale setting) for
the geometry and post-processing, and pysot's long-term tracker for the lost-target handling. The
thresholds of the state machine are on two quantities the tracker computes on every frame:

* ``score``: ``sigmoid(peak logit)`` in [0, 1] (the network is trained with a logistic loss, so this
  is its estimate that the peak is on the target);
* ``psr``: peak-to-sidelobe ratio of the raw response map, ``(peak - mean(sidelobe)) / std(sidelobe)``
  where the sidelobe is the map outside a ``(2 * psr_exclude_radius + 1)``-cell square around the peak.

The score and PSR thresholds must be calibrated per trained model (the evaluation toolkit reports the
score/PSR distributions); the defaults are a starting point.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siammixer_ros.core.errors import TrackerParamsError

__all__ = ["BOX_MODES", "SCALE_ESTIMATES", "TrackerParams"]

#: How the box's size is found: ``scale`` (SiamFC's scale search, the box keeps its aspect ratio), ``regression``
#: (one search crop; the cell and the box come from the model's box output, NanoTrack style), ``both`` (the scale
#: search chooses the crop and the peak as with ``scale``; the box output at the peak gives the size).
BOX_MODES = ("scale", "regression", "both")
#: How the scale search's size is read from the scales' peaks: ``argmax`` (SiamFC: the winning scale) or
#: ``parabola`` (the vertex of the parabola through the penalised peaks, between the scales); or not from the network:
#: ``dsst`` (the size from a discriminative scale filter on HOG features, core/scale_filter.py, mixed with the scale
#: search's by ``dsst_weight``).
SCALE_ESTIMATES = ("argmax", "parabola", "dsst")
# Fields holding a word, not a number, and the words allowed.
_CHOICES = {"box_mode": BOX_MODES, "scale_estimate": SCALE_ESTIMATES}


@dataclass(frozen=True)
class TrackerParams:
    """Parameters of :class:`~siammixer_ros.core.tracker.SiamMixerTracker` (all sizes in pixels)."""

    #: Context added around the target for the template crop: ``p = context_amount * (w + h)``,
    #: crop side ``sqrt((w + p) * (h + p))`` (SiamFC).
    context_amount: float = 0.5
    #: Number of search scales, odd: 1, 3 or 5 (all scales go to the network in one batched call).
    scale_num: int = 3
    #: Ratio between neighbouring scales: scales are ``scale_step ** linspace(-(n-1)/2, (n-1)/2, n)``. With the
    #: arg-max the size changes by at most ``scale_lr * (scale_step - 1)`` a frame (2.2 %); a wider step read by the
    #: parabola (below) follows faster changes (docs/tracker.md, "The scale between the scales").
    scale_step: float = 1.0375
    #: Penalty of every scale other than 1 (positive peak logits are multiplied by it, negative ones
    #: divided), so that a scale change needs evidence.
    scale_penalty: float = 0.9745
    #: Learning rate of the size update: ``size *= (1 - scale_lr) + scale_lr * best_scale``.
    scale_lr: float = 0.59
    #: ``argmax``: the size follows the winning scale (SiamFC); ``parabola``: the scale where the parabola through
    #: the penalised peaks of the winning scale and its neighbours peaks (between the scales searched, never
    #: beyond), so that a wider ``scale_step`` can follow fast size changes without jumping a whole step.
    #: ``dsst``: the size comes from DSST's scale filter (Danelljan et al. 2014, CSRT's scale estimator) at the
    #: position the network found, on TRACKING frames, moved by ``scale_lr`` like the scale search's; the network
    #: still searches ``scale_num`` crops (their position, and their size vote when ``dsst_weight`` < 1; with
    #: ``dsst_weight`` 1, ``scale_num: 1`` saves two crops). Not the default: docs/tracker.md, "A scale filter beside
    #: the network".
    scale_estimate: str = "argmax"
    #: DSST: scales sampled (odd), ``dsst_step ** k`` apart around the current size.
    dsst_scales: int = 17
    dsst_step: float = 1.03
    #: DSST: weight of the scale filter's size change against the network's scale search, in log scale: the size
    #: moves by ``network ** (1 - dsst_weight) * filter ** dsst_weight`` (1: the filter alone; below 1 the
    #: ``scale_num`` crops still vote).
    dsst_weight: float = 1.0
    #: DSST: side of a scale sample, times the target's geometric mean side (1: the target alone, as DSST).
    dsst_padding: float = 1.0
    #: DSST: learning rate of the filter (TRACKING frames only), the label's sigma relative to sqrt(dsst_scales)
    #: scale steps, and the ridge regulariser.
    dsst_lr: float = 0.025
    dsst_sigma: float = 0.25
    dsst_reg: float = 0.01
    #: Weight of the cosine (Hann) window blended into the normalised response (motion prior).
    window_influence: float = 0.176
    #: Upsampling factor of the response map (bicubic) before the peak is located.
    response_up: int = 16
    #: Smallest width/height of the reported box.
    min_box_size: float = 8.0
    #: Radius, in response cells, of the square around the peak left out of the PSR sidelobe.
    psr_exclude_radius: int = 2
    #: A frame is "good" (state TRACKING) when score >= tracking_score and psr >= tracking_psr.
    #: The PSR thresholds were calibrated on the first 150 frames of every training sequence (never the
    #: validation split). First XS snapshot: 4.0 / 3.0 put 12 % of correctly tracked frames below lost_psr
    #: (mean AUC 0.404), 3.0 / 2.0 put 0.2 % there (0.446; no lost logic 0.438). Shipped model 0.1.0:
    #: 4.0 / 3.0 give 0.553, 3.0 / 2.0 give 0.603 (no lost logic 0.604).
    tracking_score: float = 0.5
    tracking_psr: float = 3.0
    #: A frame is "bad" when score < lost_score or psr < lost_psr: the position and size are kept;
    #: frames that are neither good nor bad are UNCERTAIN (position updated, size kept).
    lost_score: float = 0.25
    lost_psr: float = 2.0
    #: Consecutive bad frames after which the target is LOST (before that: UNCERTAIN).
    lost_frames: int = 3
    #: While LOST, the target is re-acquired after ``redetect_frames`` consecutive frames with
    #: score >= redetect_score and psr >= redetect_psr.
    redetect_score: float = 0.6
    redetect_psr: float = 5.0
    redetect_frames: int = 1
    #: While LOST the search region (the area where the target centre can be found) grows by this
    #: factor per frame, up to ``lost_search_max`` times the normal region, pysot long-term style.
    #: The model's input size is fixed, so a larger region is searched as a grid of k x k search crops
    #: at the tracking scale (k the smallest odd integer >= the factor) in one batched call.
    lost_search_growth: float = 1.5
    lost_search_max: float = 3.0
    #: Window influence while LOST (re-detection should not prefer the old position).
    lost_window_influence: float = 0.0

    # -- Motion: the search region is centred on ``centre + motion_weight * velocity`` (velocity: exponential
    # average, rate ``motion_rate``, of the centre's moves on TRACKING frames; reset when LOST). 0: off (SiamFC).
    motion_weight: float = 0.0
    motion_rate: float = 0.3

    # -- Online discriminative model (core/online.py): a ridge-regression filter on the search features,
    # learnt on the first frame and updated from confident frames, fused with the Siamese response.
    #: Fusion weight of the online model: ``logit((1 - w) * sigmoid(siamese) + w * online)``; 0 switches the
    #: online model (and the distractor memory, which feeds it) off.
    online_weight: float = 0.0
    #: Feature channels kept (principal components of the first frame's search features).
    online_channels: int = 32
    #: Filter side in feature cells (rounded to the template feature size's parity).
    online_filter_cells: int = 4
    #: Ridge regulariser, relative to the mean eigenvalue of the normal equations.
    online_reg: float = 1.0
    #: The first frame is learnt from a 3 x 3 grid of search crops shifted by this many feature cells (0: the
    #: centred crop alone); one batched network call at ``init``.
    online_init_shift: float = 2.0
    #: Label Gaussian's sigma, relative to the target's size (per axis).
    online_sigma: float = 0.25
    #: Share of the first frame in the normal equations (it always stays in memory).
    online_first_share: float = 0.3
    #: Learning rate of the recent frames' share (exponential average over updates).
    online_rate: float = 0.1
    #: Frames between two updates (a frame with a distractor updates at once).
    online_update_interval: int = 5
    #: A TRACKING frame updates the online model, or gives the distractor memory a look-alike, only when its
    #: score is at least this.
    memory_update_score: float = 0.6
    #: Conjugate-gradient steps per update (warm-started from the current filter).
    online_cg_iterations: int = 5

    # -- Distractor memory: strong secondary peaks become hard negatives of the online model, remembered with
    # the recent frames (needs online_weight > 0).
    #: Extra sample weight of a distractor's window (0: off).
    distractor_weight: float = 0.0
    #: A local maximum outside the peak's PSR square is a distractor when its probability is at least this
    #: fraction of the peak's.
    distractor_ratio: float = 0.5
    #: DaSiamRPN's distractor-aware similarity: the response becomes ``r(z) - distractor_subtract * mean r(d_i)``
    #: over the templates ``d_i`` of the last ``distractor_memory`` distractors, each taken (one template-branch
    #: call) on a confident frame where one was found (0: off).
    distractor_subtract: float = 0.5
    distractor_memory: int = 4

    # -- Template memory: the first template always stays; a second one, taken from frames that pass the gate,
    # is blended in: ``z = (1 - template_weight) * z_first + template_weight * z_second`` (the head is linear).
    #: Weight of the second template (0: off).
    template_weight: float = 0.3
    #: Frames between two refreshes of the second template.
    template_interval: int = 10
    #: Gate: a TRACKING frame with score and PSR at least these, no distractor, and Siamese and fused peaks
    #: within one response cell, may refresh the second template; no other frame changes the memory.
    template_gate_score: float = 0.8
    template_gate_psr: float = 5.0

    # -- Box regression (models with a box output, ``siammixer-model-info`` shows it; see BOX_MODES above).
    #: ``scale``, ``regression`` or ``both``; the last two need a model file with a box output.
    box_mode: str = "scale"
    #: Size and aspect-change penalty ``exp(-(r_c * s_c - 1) * k)`` of a regressed box (NanoTrack v2's 0.15).
    box_penalty_k: float = 0.15
    #: Size smoothing: ``size = (1 - a) * size + a * box`` with ``a = box_lr * penalty * score`` (NanoTrack v2's 0.385).
    box_lr: float = 0.385
    #: ``regression``: weight of the cosine window on the cells, ``pscore (1 - w) + window w`` (NanoTrack v2's 0.49).
    box_window_influence: float = 0.49
    #: Size gate of a regressed box: with ``g`` > 0, a box whose size (square root of its area) differs from the
    #: current one by more than ``exp(g)`` is not taken; the size then follows the scale search (``both``) or stays
    #: (``regression``). Why: one wrong regressed size of a small or thin target feeds the next crop and the track
    #: collapses (docs/tracker.md, "Box regression"). 0: off, every regressed box is taken.
    box_size_gate: float = 0.0
    #: Smallest target, in image pixels (square root of the current box's area), whose regressed box is taken; a
    #: smaller target keeps the scale search's size (``both``) or its size (``regression``). Why: a target of a few
    #: dozen pixels is blown up several times into the search crop, and there the branch drifts to its mean shape
    #: over many frames, a step at a time (docs/tracker.md, "Box regression"). 0: off.
    box_min_target_px: float = 0.0

    def __post_init__(self) -> None:
        self._check()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> TrackerParams:
        """Parameters from a mapping; unknown keys raise :class:`TrackerParamsError` naming them."""
        if values is None:
            return cls()
        if not isinstance(values, dict):
            raise TrackerParamsError(f"tracker parameters must be a mapping, got {type(values).__name__}")
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise TrackerParamsError(
                f"unknown tracker parameter(s): {', '.join(map(str, unknown))}; "
                f"known: {', '.join(cls.field_names())}"
            )
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path, key: str | None = None) -> TrackerParams:
        """Parameters from a YAML file: the whole document, or the mapping under ``key`` (dotted path allowed)."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise TrackerParamsError(f"tracker parameter file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise TrackerParamsError(f"{path} is not valid YAML: {exc}") from exc
        if key:
            for part in key.split("."):
                if not isinstance(data, dict) or part not in data:
                    raise TrackerParamsError(f"{path} has no key '{key}'")
                data = data[part]
        try:
            return cls.from_dict(data or {})
        except TrackerParamsError as exc:
            raise TrackerParamsError(f"{path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrackerParams:
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise TrackerParamsError(f"unknown tracker parameter(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    # -- validation -------------------------------------------------------------------------
    def _check(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _CHOICES:
                if value not in _CHOICES[f.name]:
                    raise TrackerParamsError(f"tracker parameter {f.name} must be one of "
                                             f"{', '.join(_CHOICES[f.name])}, got {value!r}")
                continue
            want_int = f.type in ("int", int)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TrackerParamsError(
                    f"tracker parameter {f.name} must be a number, got {type(value).__name__} {value!r}"
                )
            if want_int and not float(value).is_integer():
                raise TrackerParamsError(f"tracker parameter {f.name} must be an integer, got {value!r}")
            if want_int and not isinstance(value, int):
                object.__setattr__(self, f.name, int(value))
            if not math.isfinite(value):
                raise TrackerParamsError(f"tracker parameter {f.name} must be finite, got {value!r}")

        def need(cond: bool, name: str, rule: str) -> None:
            if not cond:
                raise TrackerParamsError(f"tracker parameter {name} must be {rule}, got {getattr(self, name)!r}")

        need(self.context_amount >= 0, "context_amount", ">= 0")
        need(self.scale_num >= 1 and self.scale_num % 2 == 1, "scale_num", "an odd integer >= 1 (1, 3 or 5)")
        need(self.scale_step >= 1.0, "scale_step", ">= 1")
        need(self.dsst_scales >= 3 and self.dsst_scales % 2 == 1, "dsst_scales", "an odd integer >= 3")
        need(self.dsst_step > 1.0, "dsst_step", "> 1")
        need(self.dsst_padding > 0, "dsst_padding", "> 0")
        need(0 <= self.dsst_weight <= 1, "dsst_weight", "in [0, 1]")
        need(0 < self.dsst_lr <= 1, "dsst_lr", "in (0, 1]")
        need(self.dsst_sigma > 0, "dsst_sigma", "> 0")
        need(self.dsst_reg > 0, "dsst_reg", "> 0")
        need(self.scale_estimate != "dsst" or self.box_mode == "scale", "scale_estimate",
             f"argmax or parabola with box_mode {self.box_mode!r} (dsst sizes the box of box_mode 'scale' only)")
        need(0 < self.scale_penalty <= 1, "scale_penalty", "in (0, 1]")
        need(0 <= self.scale_lr <= 1, "scale_lr", "in [0, 1]")
        need(0 <= self.window_influence <= 1, "window_influence", "in [0, 1]")
        need(0 <= self.lost_window_influence <= 1, "lost_window_influence", "in [0, 1]")
        need(self.response_up >= 1, "response_up", ">= 1")
        need(self.min_box_size >= 1, "min_box_size", ">= 1")
        need(self.psr_exclude_radius >= 0, "psr_exclude_radius", ">= 0")
        for name in ("tracking_score", "lost_score", "redetect_score"):
            need(0 <= getattr(self, name) <= 1, name, "in [0, 1]")
        need(self.lost_score <= self.tracking_score, "lost_score", f"<= tracking_score ({self.tracking_score})")
        need(self.lost_psr <= self.tracking_psr, "lost_psr", f"<= tracking_psr ({self.tracking_psr})")
        need(self.lost_frames >= 1, "lost_frames", ">= 1")
        need(self.redetect_frames >= 1, "redetect_frames", ">= 1")
        need(self.lost_search_growth >= 1, "lost_search_growth", ">= 1")
        need(self.lost_search_max >= 1, "lost_search_max", ">= 1")
        for name in ("online_weight", "online_first_share", "online_rate", "memory_update_score",
                     "distractor_ratio", "template_weight", "template_gate_score"):
            need(0 <= getattr(self, name) <= 1, name, "in [0, 1]")
        for name in ("online_channels", "online_filter_cells", "online_update_interval", "template_interval"):
            need(getattr(self, name) >= 1, name, ">= 1")
        need(self.online_reg > 0, "online_reg", "> 0")
        need(0 <= self.motion_weight <= 2, "motion_weight", "in [0, 2]")
        need(0 <= self.motion_rate <= 1, "motion_rate", "in [0, 1]")
        need(self.online_sigma > 0, "online_sigma", "> 0")
        need(self.online_init_shift >= 0, "online_init_shift", ">= 0")
        need(self.online_cg_iterations >= 0, "online_cg_iterations", ">= 0")
        need(self.distractor_weight >= 0, "distractor_weight", ">= 0")
        need(0 <= self.distractor_subtract < 1, "distractor_subtract", "in [0, 1)")
        need(self.distractor_memory >= 1, "distractor_memory", ">= 1")
        need(self.template_gate_psr >= 0, "template_gate_psr", ">= 0")
        need(self.box_penalty_k >= 0, "box_penalty_k", ">= 0")
        need(0 <= self.box_lr <= 1, "box_lr", "in [0, 1]")
        need(0 <= self.box_window_influence <= 1, "box_window_influence", "in [0, 1]")
        need(self.box_size_gate >= 0, "box_size_gate", ">= 0 (0: off)")
        need(self.box_min_target_px >= 0, "box_min_target_px", ">= 0 (0: off)")
