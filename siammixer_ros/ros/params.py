"""The node's parameters: names, defaults, ranges and descriptions in one table (no rclpy).

The node declares each with a ``ParameterDescriptor`` built from this table (ranges, read-only flags,
descriptions shown by ``ros2 param describe`` / rqt), validates changes at run time with
:func:`validate_change`, and docs/node.md's parameter table comes from :func:`markdown_table`.
Tracker parameters are passed through to :class:`~siammixer_ros.core.params.TrackerParams` as
``tracker.<field>``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from siammixer_ros.core.params import BOX_MODES, SCALE_ESTIMATES, TrackerParams
from siammixer_ros.core.runtime import MODES

TRACKER_PREFIX = "tracker."
INPUT_TYPES = ("raw", "compressed")


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    low: float | None = None  # inclusive range, numbers only
    high: float | None = None
    step: float = 0  # integer ranges: valid values are low + n * step
    read_only: bool = False
    choices: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        d = self.default
        if isinstance(d, bool):
            return "bool"
        if isinstance(d, int):
            return "int"
        if isinstance(d, float):
            return "double"
        if isinstance(d, str):
            return "string"
        if isinstance(d, list) and self.name in _STRING_ARRAYS:
            return "string[]"
        return "double[]"

    def range_text(self) -> str:
        if self.choices:
            return " \\| ".join(self.choices)
        if self.low is None:
            return ""
        step = f", step {self.step:g}" if self.step and self.step != 1 else ""
        return f"{self.low:g} .. {self.high:g}{step}"


_STRING_ARRAYS = {"providers"}

NODE_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("model_path", "", "SiamMixer ONNX model file; empty: models/siammixer_s.onnx installed with the "
              "package (share/siammixer_ros/models)", read_only=True),
    ParamSpec("model_precision", "float", "Which installed model an empty model_path selects: float "
              "(models/siammixer_s.onnx) or int8 (models/siammixer_s_int8.onnx, its static INT8 copy: 1.06-1.15x "
              "faster whole-image inference on an AVX2 CPU, more with VNNI; validation AUC 0.526 against 0.538, "
              "models/README.md)",
              read_only=True, choices=("float", "int8")),
    ParamSpec("image_topic", "image", "Input image topic (remap it or set it); with input_type compressed the "
              "node subscribes to <image_topic>/compressed (image_transport's naming)", read_only=True),
    ParamSpec("input_type", "raw", "raw: sensor_msgs/Image; compressed: sensor_msgs/CompressedImage",
              read_only=True, choices=INPUT_TYPES),
    ParamSpec("target_label", "target", "class_id of published detections when SetTarget gives no label"),
    ParamSpec("execution_mode", "whole", "Search-branch execution: whole (no patching, the fastest on CPU); "
              "batched, row, patch (patch-based, least feature-map memory with patch; need a model with patch parts)",
              read_only=True, choices=MODES),
    ParamSpec("intra_op_threads", 1, "onnxruntime intra-op threads (0: onnxruntime's default)", 0, 64, 1,
              read_only=True),
    ParamSpec("search_batch", 1, "Search crops per onnxruntime call in execution_mode whole (0: all of a frame's "
              "crops in one call). 1: onnxruntime's buffers hold one crop's feature maps, not three (about 20 MiB "
              "less RSS at 640x480, 3 scales), same boxes, no more CPU at 1 thread (docs/node.md, Memory)", 0, 64, 1,
              read_only=True),
    ParamSpec("providers", ["CPUExecutionProvider"], "onnxruntime execution providers in order of preference "
              "(missing ones are skipped; CPU is always last)", read_only=True),
    ParamSpec("expected_rate_hz", 0.0, "The camera's frame rate (Hz): input slower than 90 % of it is WARN in the "
              "rates diagnostics, and frames missing between stamps are counted against this period (0: off; the "
              "period is estimated from the stamps)", 0.0, 1000.0),
    ParamSpec("executor_threads", 1, "Threads of the node's ROS executor: 1, a SingleThreadedExecutor; more, "
              "rclpy's MultiThreadedExecutor, which busy-loops and lost frames before the callback (30 Hz, 2 cores: "
              "8-13 % of the frames without a detection against 0-1.3 %, benchmarks/node_executor.md)", 1, 16, 1,
              read_only=True),
    ParamSpec("max_image_pixels", 4096 * 4096, "Largest input image (width x height pixels) the node converts; a "
              "larger frame is skipped with a warning, checked before decoding (raw: the message's size; compressed: "
              "the PNG, JPEG, BMP or WebP header; other formats once decoded). 0: no limit", 0, 1_000_000_000, 1),
    ParamSpec("frame_buffer_size", 30, "Recent frames kept for SetTarget requests with a stamp (as received "
              "messages, not decoded images), at most frame_buffer_mb of them", 1, 600, 1,
              read_only=True),
    ParamSpec("frame_buffer_mb", 8.0, "Largest size (MiB of message data) of the recent-frame buffer; the newest "
              "frame is always kept. 8 MiB: 9 raw 640x480 bgr8 frames (0.3 s at 30 Hz), all 30 compressed ones. "
              "0: no limit", 0.0, 4096.0, read_only=True),
    ParamSpec("stamp_tolerance", 0.02, "SetTarget with a stamp: largest difference (s) to the nearest buffered "
              "frame's stamp", 0.0, 10.0),
    ParamSpec("min_target_size", 4.0, "Smallest target box (pixels, each side, after clipping to the image)",
              1.0, 10000.0),
    ParamSpec("initial_target", [], "Target [x, y, width, height] (pixels) set on the first frame, for a headless "
              "start; empty: none", read_only=True),
    ParamSpec("click_selection", True, "Select the target by two clicks in rqt_image_view (topics "
              "<image_topic>_mouse_left and ~/debug_image_mouse_left)"),
    ParamSpec("click_timeout", 10.0, "Seconds after which a lone first click is forgotten", 0.5, 600.0),
    ParamSpec("publish_debug_image", True, "Publish ~/debug_image (drawn only while it has subscribers)"),
    ParamSpec("diagnostics.period", 1.0, "Seconds between /diagnostics messages", 0.1, 60.0),
    ParamSpec("diagnostics.window", 100, "Samples in the latency windows (median, p95)", 10, 10000, 1),
    ParamSpec("diagnostics.hardware_id", "", "hardware_id of the diagnostic statuses; empty: the host name"),
    ParamSpec("diagnostics.latency_warn_ms", 40.0, "End-to-end p95 latency (ms) at or above which latency is WARN "
              "(0: off)", 0.0, 100000.0),
    ParamSpec("diagnostics.latency_error_ms", 100.0, "End-to-end p95 latency (ms) at or above which latency is "
              "ERROR (0: off)", 0.0, 100000.0),
    ParamSpec("diagnostics.drop_rate_warn", 0.5, "Fraction of the camera's frames not processed since the last "
              "report (dropped while busy, or missing between stamps) at or above which rates are WARN (0: off)",
              0.0, 1.0),
    ParamSpec("diagnostics.drop_rate_error", 0.95, "Dropped fraction at or above which rates are ERROR (0: off)",
              0.0, 1.0),
    ParamSpec("diagnostics.input_timeout", 2.0, "Seconds without an image after which input is WARN (none yet) "
              "or ERROR (stopped)", 0.1, 3600.0),
    ParamSpec("diagnostics.score_warn", 0.3, "Tracking score below which tracking is WARN (0: off); LOST is "
              "always WARN", 0.0, 1.0),
    ParamSpec("diagnostics.rss_warn_mb", 0.0, "Process RSS (MiB) at or above which resources are WARN (0: off)",
              0.0, 1.0e6),
)

# Ranges of the tracker parameters for their descriptors; TrackerParams checks the cross-field rules.
_TRACKER_RANGES: dict[str, tuple[float, float, float]] = {
    "context_amount": (0.0, 4.0, 0),
    "scale_num": (1, 9, 2),
    "scale_step": (1.0, 2.0, 0),
    "scale_penalty": (0.01, 1.0, 0),
    "scale_lr": (0.0, 1.0, 0),
    "window_influence": (0.0, 1.0, 0),
    "response_up": (1, 32, 1),
    "min_box_size": (1.0, 1000.0, 0),
    "psr_exclude_radius": (0, 16, 1),
    "tracking_score": (0.0, 1.0, 0),
    "tracking_psr": (0.0, 1000.0, 0),
    "lost_score": (0.0, 1.0, 0),
    "lost_psr": (0.0, 1000.0, 0),
    "lost_frames": (1, 1000, 1),
    "redetect_score": (0.0, 1.0, 0),
    "redetect_psr": (0.0, 1000.0, 0),
    "redetect_frames": (1, 1000, 1),
    "lost_search_growth": (1.0, 10.0, 0),
    "lost_search_max": (1.0, 10.0, 0),
    "lost_window_influence": (0.0, 1.0, 0),
    "dsst_scales": (3, 65, 2),
    "dsst_step": (1.001, 1.5, 0),
    "dsst_weight": (0.0, 1.0, 0),
    "dsst_padding": (0.25, 4.0, 0),
    "dsst_lr": (0.001, 1.0, 0),
    "dsst_sigma": (0.01, 4.0, 0),
    "dsst_reg": (1e-06, 100.0, 0),
    "motion_weight": (0.0, 2.0, 0),
    "motion_rate": (0.0, 1.0, 0),
    "online_weight": (0.0, 1.0, 0),
    "online_channels": (1, 256, 1),
    "online_filter_cells": (1, 16, 1),
    "online_reg": (0.001, 1000.0, 0),
    "online_init_shift": (0.0, 4.0, 0),
    "online_sigma": (0.01, 2.0, 0),
    "online_first_share": (0.0, 1.0, 0),
    "online_rate": (0.0, 1.0, 0),
    "online_update_interval": (1, 1000, 1),
    "memory_update_score": (0.0, 1.0, 0),
    "online_cg_iterations": (0, 100, 1),
    "distractor_weight": (0.0, 100.0, 0),
    "distractor_ratio": (0.0, 1.0, 0),
    "distractor_subtract": (0.0, 0.99, 0),
    "distractor_memory": (1, 64, 1),
    "template_weight": (0.0, 1.0, 0),
    "template_interval": (1, 1000, 1),
    "template_gate_score": (0.0, 1.0, 0),
    "template_gate_psr": (0.0, 1000.0, 0),
    "box_penalty_k": (0.0, 10.0, 0),
    "box_lr": (0.0, 1.0, 0),
    "box_window_influence": (0.0, 1.0, 0),
    "box_size_gate": (0.0, 5.0, 0),
    "box_min_target_px": (0.0, 10000.0, 0),
}
_TRACKER_CHOICES: dict[str, tuple[str, ...]] = {"box_mode": BOX_MODES, "scale_estimate": SCALE_ESTIMATES}


def _first_doc_line(field_name: str) -> str:
    return f"TrackerParams.{field_name} (see siammixer_ros/core/params.py); applies to the next target"


def tracker_param_specs() -> tuple[ParamSpec, ...]:
    specs = []
    defaults = TrackerParams()
    for f in dataclasses.fields(TrackerParams):
        default = getattr(defaults, f.name)
        low, high, step = _TRACKER_RANGES.get(f.name, (None, None, 0))
        if isinstance(default, int) and not isinstance(default, bool):
            low = None if low is None else int(low)
            high = None if high is None else int(high)
        specs.append(ParamSpec(TRACKER_PREFIX + f.name, default, _first_doc_line(f.name), low, high, step,
                               choices=_TRACKER_CHOICES.get(f.name, ())))
    return tuple(specs)


def all_param_specs() -> tuple[ParamSpec, ...]:
    return NODE_PARAMS + tracker_param_specs()


def check_initial_target(value: list[float]) -> str | None:
    """None if ``value`` is empty or a usable [x, y, w, h]; otherwise why not."""
    if len(value) == 0:
        return None
    if len(value) != 4:
        return f"initial_target needs 4 numbers [x, y, width, height] or none, got {len(value)}"
    if not all(math.isfinite(v) for v in value):
        return f"initial_target {list(value)} contains NaN or infinity"
    if value[2] <= 0 or value[3] <= 0:
        return f"initial_target {list(value)} has zero or negative size"
    return None


def tracker_params_from(values: dict[str, Any]) -> TrackerParams:
    """TrackerParams from ``{"tracker.<field>": value}`` (other keys ignored); raises TrackerParamsError."""
    fields = {k[len(TRACKER_PREFIX):]: v for k, v in values.items() if k.startswith(TRACKER_PREFIX)}
    return TrackerParams.from_dict(fields)


def validate_change(current: dict[str, Any], changes: dict[str, Any]) -> str | None:
    """Why a set of parameter changes is invalid (None if valid). Ranges and types are checked by rclpy
    from the descriptors; this checks choices and the rules between parameters."""
    merged = {**current, **changes}
    specs = {s.name: s for s in NODE_PARAMS}
    choices = {s.name: s.choices for s in all_param_specs() if s.choices}
    for name, value in changes.items():
        spec = specs.get(name)
        if name in choices and value not in choices[name]:
            return f"{name} must be one of {', '.join(choices[name])}, got '{value}'"
        if spec is not None and spec.low is not None and isinstance(value, (int, float)):
            if not (spec.low <= value <= spec.high):
                return f"{name} must be in {spec.low:g} .. {spec.high:g}, got {value}"
            if isinstance(value, float) and not math.isfinite(value):
                return f"{name} must be finite, got {value}"
    if "initial_target" in changes:
        why = check_initial_target(list(changes["initial_target"]))
        if why:
            return why
    for warn_name, error_name in (("diagnostics.latency_warn_ms", "diagnostics.latency_error_ms"),
                                  ("diagnostics.drop_rate_warn", "diagnostics.drop_rate_error")):
        warn, error = merged.get(warn_name), merged.get(error_name)
        if warn and error and warn > error:
            return f"{warn_name} ({warn:g}) must not exceed {error_name} ({error:g})"
    if any(k.startswith(TRACKER_PREFIX) for k in changes):
        try:
            tracker_params_from(merged)
        except (ValueError, TypeError) as exc:
            return str(exc)
    return None


def markdown_table() -> str:
    """The parameter table of docs/node.md (section "Parameters")."""
    lines = ["| Parameter | Type | Default | Range | Read-only | Description |",
             "|---|---|---|---|---|---|"]
    for spec in all_param_specs():
        default = spec.default
        if isinstance(default, str):
            default = f'"{default}"'
        elif isinstance(default, bool):
            default = str(default).lower()
        description = spec.description.replace("<", "\\<").replace(">", "\\>")
        lines.append(f"| `{spec.name}` | {spec.kind} | `{default}` | {spec.range_text()} | "
                     f"{'yes' if spec.read_only else ''} | {description} |")
    return "\n".join(lines)
