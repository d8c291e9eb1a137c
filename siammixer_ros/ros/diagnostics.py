"""A small diagnostic updater following diagnostic_updater's conventions (it is not on PyPI for ROS 2).

Conventions kept from diagnostic_updater:

- one ``diagnostic_msgs/DiagnosticStatus`` per task, named ``"<node name>: <task name>"``;
- every status carries the hardware id (a parameter);
- a task fills a :class:`StatusWrapper`: ``summary(level, message)``, ``merge_summary`` (the worse level
  wins, messages are joined with ``"; "``), ``add(key, value)`` for key-values (values as strings);
- statuses are published together on ``/diagnostics`` as a ``diagnostic_msgs/DiagnosticArray`` with the
  current time, periodically (the ``diagnostics_period`` parameter).

The status building is plain Python (testable without rclpy); :func:`to_diagnostic_array` turns the
statuses into messages given the message classes. The node's four tasks (tracking, latency, rates, model
and resources) are here too; the node only registers them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OK = 0
WARN = 1
ERROR = 2
STALE = 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


def format_value(value: Any) -> str:
    """Key-value values as diagnostic_updater writes them: strings; floats with a sensible precision."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.3f}" if abs(value) < 1e6 else f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


@dataclass
class StatusWrapper:
    """What a task reports: level, message and key-values (diagnostic_updater's DiagnosticStatusWrapper)."""

    name: str = ""
    hardware_id: str = ""
    level: int = OK
    message: str = ""
    values: list[tuple[str, str]] = field(default_factory=list)

    def summary(self, level: int, message: str) -> None:
        self.level, self.message = int(level), message

    def merge_summary(self, level: int, message: str) -> None:
        """Keep the worse level; join messages of the same worst level (diagnostic_updater's mergeSummary)."""
        level = int(level)
        if level > self.level:
            self.level, self.message = level, message
        elif level == self.level and message:
            self.message = f"{self.message}; {message}" if self.message else message

    def add(self, key: str, value: Any) -> None:
        self.values.append((key, format_value(value)))

    def as_dict(self) -> dict[str, str]:
        return dict(self.values)


Task = Callable[[StatusWrapper], None]


class DiagnosticUpdater:
    """Runs the registered tasks and collects their statuses; the node publishes them."""

    def __init__(self, node_name: str, hardware_id: str) -> None:
        self.node_name = node_name
        self.hardware_id = hardware_id
        self._tasks: list[tuple[str, Task]] = []

    def add(self, name: str, task: Task) -> None:
        self._tasks.append((name, task))

    def collect(self) -> list[StatusWrapper]:
        statuses = []
        for name, task in self._tasks:
            status = StatusWrapper(name=f"{self.node_name}: {name}", hardware_id=self.hardware_id)
            try:
                task(status)
            except Exception as exc:  # a failing task is reported, not propagated into the timer
                status.summary(ERROR, f"diagnostic task '{name}' failed: {exc}")
            if not status.message and status.level == OK:
                status.message = "OK"
            statuses.append(status)
        return statuses


def level_to_msg(level: int, byte_typed: bool) -> Any:
    """DiagnosticStatus.level is a ``byte`` field: ``bytes`` in rclpy (Kilted, Jazzy, Humble)."""
    return bytes([int(level)]) if byte_typed else int(level)


def level_from_msg(level: Any) -> int:
    """Inverse of :func:`level_to_msg`, for either representation."""
    if isinstance(level, (bytes, bytearray)):
        return level[0] if level else 0
    return int(level)


def to_diagnostic_array(statuses: list[StatusWrapper], stamp: Any, array_cls: Any, status_cls: Any,
                        key_value_cls: Any) -> Any:
    """Build a ``diagnostic_msgs/DiagnosticArray`` from statuses (message classes passed in)."""
    array = array_cls()
    array.header.stamp = stamp
    probe = status_cls()
    byte_typed = isinstance(probe.level, (bytes, bytearray))
    for status in statuses:
        msg = status_cls()
        msg.level = level_to_msg(status.level, byte_typed)
        msg.name = status.name
        msg.message = status.message
        msg.hardware_id = status.hardware_id
        msg.values = [key_value_cls(key=k, value=v) for k, v in status.values]
        array.status.append(msg)
    return array


def threshold_level(value: float, warn: float, error: float) -> int:
    """OK/WARN/ERROR for a value that is worse when larger; a threshold <= 0 is disabled."""
    if value != value:  # NaN: nothing measured yet
        return OK
    if error > 0 and value >= error:
        return ERROR
    if warn > 0 and value >= warn:
        return WARN
    return OK


# -- the node's tasks (the statuses docs/node.md documents) ---------------------------------------------------
# Each task reads its thresholds from the node's live parameter values ``cfg`` (names as declared), so run-time
# parameter changes apply at the next report.

# Stages reported by the latency task: keys of TrackResult.timings plus the node's own.
LATENCY_STAGES = ("wait", "crop", "inference_search", "inference_head", "inference", "postprocess", "processing",
                  "end_to_end")


def tracking_task(status: StatusWrapper, session: Any, cfg: Mapping[str, Any]) -> None:
    """``tracking``: OK idle, tracking or uncertain (with the reason); WARN when lost or the score is below
    ``diagnostics.score_warn``."""
    from siammixer_ros.core.tracker import TrackState
    from siammixer_ros.ros.messages import state_name

    state, score, score_warn = session.state, session.score, cfg["diagnostics.score_warn"]
    if state is None:
        status.summary(OK, "no target set (call set_target or click twice)")
    elif state is TrackState.LOST:
        status.summary(WARN, f"target {session.track_id} lost")
    elif score_warn > 0 and score < score_warn:
        status.summary(WARN, f"low score {score:.2f} (< {score_warn:g})")
    elif state is TrackState.UNCERTAIN:
        status.summary(OK, f"uncertain target {session.track_id}: {session.reason}")
    else:
        status.summary(OK, f"{state.value} target {session.track_id}")
    status.add("state", state_name(state))
    status.add("score", score)
    status.add("psr", session.psr)
    status.add("reason", session.reason)
    status.add("track id", session.track_id)
    status.add("label", session.label)
    box = session.box
    status.add("box", "" if box is None else ", ".join(f"{v:.1f}" for v in box))
    status.add("frames processed", session.frames_processed)
    status.add("bad frames", session.bad_frames)
    status.add("tracker errors", session.tracker_errors)
    status.add("last error", session.last_error or "")


def latency_task(status: StatusWrapper, session: Any, cfg: Mapping[str, Any]) -> None:
    """``latency``: median and p95 (ms) per stage over the window; WARN / ERROR on the end-to-end p95."""
    summary = session.latencies.summary_ms()
    e2e = summary.get("end_to_end")
    if e2e is None:
        status.summary(OK, "no frames tracked yet")
    else:
        level = threshold_level(e2e[1], cfg["diagnostics.latency_warn_ms"], cfg["diagnostics.latency_error_ms"])
        status.summary(level, f"end-to-end p95 {e2e[1]:.1f} ms" + ("" if level == OK else " (too slow)"))
    for stage in LATENCY_STAGES:
        median, p95 = summary.get(stage, (math.nan, math.nan))
        status.add(f"{stage} median ms", median)
        status.add(f"{stage} p95 ms", p95)
    status.add("window", cfg["diagnostics.window"])


# Input at less than this share of ``expected_rate_hz`` is WARN (a camera at 30 Hz delivering under 27 Hz).
INPUT_RATE_TOLERANCE = 0.9


@dataclass
class RatesTask:
    """``rates``: input silence, input slower than the camera's rate, and the fraction of the camera's frames not
    processed since the previous report: missed before the node (stamp gaps) plus dropped in its hand-off."""

    topic: str
    _last_counts: tuple[int, int] = (0, 0)  # (frames published = received + missed, not processed) at the last report

    def __call__(self, status: StatusWrapper, session: Any, cfg: Mapping[str, Any], now: float) -> None:
        received, missed, dropped = session.frames_received, session.frames_missed, session.dropped_frames
        published, not_processed = received + missed, missed + dropped
        last_published, last_not_processed = self._last_counts
        self._last_counts = (published, not_processed)
        new = published - last_published
        drop_rate = (not_processed - last_not_processed) / new if new > 0 else 0.0
        input_rate = session.input_rate.rate(now)
        expected = float(cfg.get("expected_rate_hz", 0.0))
        last = session.input_rate.last()
        if last is None:
            status.summary(WARN, f"no image received yet on {self.topic}")
        elif now - last > cfg["diagnostics.input_timeout"]:
            status.summary(ERROR, f"no image on {self.topic} for {now - last:.1f} s")
        else:
            level = threshold_level(drop_rate, cfg["diagnostics.drop_rate_warn"], cfg["diagnostics.drop_rate_error"])
            status.summary(level, f"{100 * drop_rate:.0f}% of frames not processed" if level != OK else "receiving")
            if expected > 0 and input_rate < INPUT_RATE_TOLERANCE * expected:
                status.merge_summary(WARN, f"input rate {input_rate:.1f} Hz below the expected {expected:g} Hz")
        status.add("input topic", self.topic)
        status.add("input rate hz", input_rate)
        status.add("expected rate hz", expected)
        status.add("output rate hz", session.output_rate.rate(now))
        status.add("frames received", received)
        status.add("frames processed", session.frames_processed)
        status.add("frames missed before the node", missed)
        status.add("dropped frames", dropped)
        status.add("frames not processed", not_processed)
        status.add("drop rate", drop_rate)
        status.add("stamps backwards", session.stamps_backwards)
        status.add("bad frames", session.bad_frames)


def model_memory(variant: str, mode: str) -> tuple[int | str, int | str, str]:
    """(float32 weight bytes, float32 feature-map peak bytes of the search branch in ``mode``, its layer).

    From the architecture table (siammixer_ros.core.memory); "n/a" for models outside it (test models).
    """
    try:
        from siammixer_ros.core.memory import SiamMixerConfig, count_parameters, feature_memory

        arch = SiamMixerConfig.for_variant(variant)
        memory = feature_memory(arch, mode, bytes_per_element=4)
        return count_parameters(arch) * 4, int(memory["live_peak_bytes"]), str(memory["live_peak_layer"])
    except Exception:
        return "n/a", "n/a", f"n/a (variant {variant} is not in the architecture table)"


@dataclass
class ResourcesTask:
    """``model and resources``: the loaded model, how it runs, and the process's memory (WARN over a limit)."""

    model_path: Path
    image_conversion: str
    _memory: tuple[int | str, int | str, str] | None = None  # constant for the loaded model and mode

    def __call__(self, status: StatusWrapper, tracker: Any, cfg: Mapping[str, Any], rss_bytes: int,
                 peak_rss_bytes: int) -> None:
        limit = cfg["diagnostics.rss_warn_mb"] * 1024 * 1024
        if limit > 0 and rss_bytes >= limit:
            status.summary(WARN, f"RSS {rss_bytes / 2**20:.0f} MiB >= {limit / 2**20:.0f} MiB")
        else:
            status.summary(OK, f"RSS {rss_bytes / 2**20:.0f} MiB")
        runtime, info = tracker.runtime, tracker.info
        status.add("model path", str(self.model_path))
        status.add("model variant", info.variant)
        status.add("model version", info.model_version)
        status.add("model file bytes", self.model_path.stat().st_size if self.model_path.is_file() else 0)
        if self._memory is None:
            self._memory = model_memory(info.variant, runtime.mode)
        weight_bytes, peak_bytes, peak_layer = self._memory
        status.add("model weight bytes", weight_bytes)
        status.add("feature map peak bytes", peak_bytes)
        status.add("feature map peak layer", peak_layer)
        status.add("execution mode", runtime.mode)
        status.add("intra op threads", cfg["intra_op_threads"])
        status.add("providers", ", ".join(runtime.providers))
        status.add("image conversion", self.image_conversion)
        status.add("rss bytes", rss_bytes)
        status.add("peak rss bytes", peak_rss_bytes)
