"""A small diagnostic updater following diagnostic_updater's conventions (it is not on PyPI for ROS 2).

Conventions kept from diagnostic_updater:

- one ``diagnostic_msgs/DiagnosticStatus`` per task, named ``"<node name>: <task name>"``;
- every status carries the hardware id (a parameter);
- a task fills a :class:`StatusWrapper`: ``summary(level, message)``, ``merge_summary`` (the worse level
  wins, messages are joined with ``"; "``), ``add(key, value)`` for key-values (values as strings);
- statuses are published together on ``/diagnostics`` as a ``diagnostic_msgs/DiagnosticArray`` with the
  current time, periodically (the ``diagnostics_period`` parameter).

The status building is plain Python (testable without rclpy); :func:`to_diagnostic_array` turns the
statuses into messages given the message classes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
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

    @property
    def task_names(self) -> list[str]:
        return [name for name, _ in self._tasks]

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
