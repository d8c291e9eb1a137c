"""Rolling statistics for the node's diagnostics: latency windows (median, p95) and event rates.

Thread-safe: the image callback, the processing thread and the diagnostics timer touch them concurrently.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable

import numpy as np


class RollingWindow:
    """The last ``size`` samples of a quantity (e.g. a latency in seconds)."""

    def __init__(self, size: int = 100) -> None:
        if size < 1:
            raise ValueError(f"window size must be at least 1, got {size}")
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        if value != value:  # NaN: a broken clock or stamp must not poison the statistics
            return
        with self._lock:
            self._values.append(float(value))

    def resize(self, size: int) -> None:
        with self._lock:
            self._values = deque(self._values, maxlen=max(1, int(size)))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def __len__(self) -> int:
        return len(self._values)

    def values(self) -> list[float]:
        with self._lock:
            return list(self._values)

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100, linear interpolation); NaN when empty."""
        values = self.values()
        if not values:
            return float("nan")
        return float(np.percentile(np.asarray(values), q))

    def median(self) -> float:
        return self.percentile(50.0)

    def p95(self) -> float:
        return self.percentile(95.0)


class RateMeter:
    """Events per second over the last ``window_s`` seconds (monotonic clock)."""

    def __init__(self, window_s: float = 2.0, clock=time.monotonic) -> None:
        self.window_s = float(window_s)
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.total = 0
        self._last: float | None = None  # kept when the window empties: silence is measured from it

    def tick(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        with self._lock:
            self._last = now
            self._times.append(now)
            self.total += 1
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        """Events per second; 0 when fewer than two events lie in the window."""
        now = self._clock() if now is None else now
        with self._lock:
            self._trim(now)
            if len(self._times) < 2:
                return 0.0
            span = max(now - self._times[0], self._times[-1] - self._times[0])
            return (len(self._times) - 1) / span if span > 0 else 0.0

    def last(self) -> float | None:
        """Time of the last event (also once it has left the window); None before the first."""
        with self._lock:
            return self._last


class StampGaps:
    """Camera frames that never reached the node, counted from gaps between consecutive header stamps.

    ROS 2 headers carry no sequence number, so a frame lost before the node's callback (in the middleware's
    depth-1 queue, or on the network) is only visible as a stamp gap: a gap of about ``n`` camera periods means
    ``n - 1`` frames are missing. The period is ``1 / expected_rate_hz`` when that is known, else the lower
    quartile of the recent stamp differences (robust to losing up to three frames in four). A gap counts from
    1.5 periods. A gap over ``max(1 s, 4 periods)`` is a pause of the camera (or a jump of its clock), not
    losses: the rates diagnostics report input silence. Stamps going backwards (or zero: unstamped) count no
    gap; backwards ones are counted apart.
    """

    def __init__(self, expected_rate_hz: float = 0.0, history: int = 30) -> None:
        self.expected_rate_hz = float(expected_rate_hz)
        self._deltas: deque[int] = deque(maxlen=max(4, int(history)))
        self._last_ns = 0
        self.missed = 0  # frames missing between received ones
        self.backwards = 0  # frames stamped earlier than the frame before them

    def period_ns(self) -> float:
        """The camera period used (ns); 0 while unknown (fewer than 4 stamp differences seen, no expected rate)."""
        if self.expected_rate_hz > 0:
            return 1e9 / self.expected_rate_hz
        if len(self._deltas) < 4:
            return 0.0
        return float(np.percentile(np.asarray(self._deltas), 25))

    def observe(self, stamp_ns: int) -> tuple[int, bool]:
        """Account for a received frame's stamp: (frames missing just before it, stamp went backwards)."""
        if stamp_ns <= 0:
            return 0, False
        last, self._last_ns = self._last_ns, stamp_ns
        if last == 0:
            return 0, False
        delta = stamp_ns - last
        if delta < 0:
            self.backwards += 1
            return 0, True
        if delta == 0:
            return 0, False
        period = self.period_ns()
        self._deltas.append(delta)
        if period <= 0 or delta < 1.5 * period or delta > max(1e9, 4 * period):
            return 0, False
        missed = int(delta / period + 0.5) - 1
        self.missed += missed
        return missed, False


class StageLatencies:
    """One :class:`RollingWindow` per named stage (crop, inference branches, post-processing, end to end)."""

    def __init__(self, size: int = 100) -> None:
        self._size = size
        self._windows: dict[str, RollingWindow] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            window = self._windows.get(stage)
            if window is None:
                window = self._windows[stage] = RollingWindow(self._size)
        window.add(seconds)

    def add_many(self, timings: dict[str, float], prefix: str = "") -> None:
        for stage, seconds in timings.items():
            try:
                self.add(prefix + stage, float(seconds))
            except (TypeError, ValueError):
                continue

    def resize(self, size: int) -> None:
        with self._lock:
            self._size = size
            for window in self._windows.values():
                window.resize(size)

    def stages(self) -> list[str]:
        with self._lock:
            return list(self._windows)

    def window(self, stage: str) -> RollingWindow | None:
        with self._lock:
            return self._windows.get(stage)

    def summary_ms(self, stages: Iterable[str] | None = None) -> dict[str, tuple[float, float]]:
        """stage -> (median ms, p95 ms)."""
        out = {}
        for stage in self.stages() if stages is None else stages:
            window = self.window(stage)
            if window is not None and len(window):
                out[stage] = (window.median() * 1e3, window.p95() * 1e3)
        return out


def process_memory_bytes(pid: int | None = None) -> tuple[int, int]:
    """(resident set size, peak resident set size) in bytes of this process, or of process ``pid``;
    (0, 0) where unknown."""
    rss = peak = 0
    try:
        with open(f"/proc/{pid or 'self'}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
    except OSError:
        pass
    if not peak and pid is None:
        try:
            import resource

            peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # kB on Linux
        except (ImportError, OSError):
            pass
    return rss, max(peak, rss)
