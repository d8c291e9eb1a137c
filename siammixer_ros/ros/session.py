"""What the node does between messages, without rclpy: newest-frame handover, recent-frame buffer,
target selection (with catch-up from an older frame), tracking and the counters the diagnostics report.

Threads: the image callback calls :meth:`TrackingSession.on_frame` (cheap: no conversion, no tracking);
one processing thread calls :meth:`TrackingSession.process_next`; service callbacks call
:meth:`TrackingSession.set_target` / :meth:`TrackingSession.stop`. The tracker itself is used under one
lock, so a service call waits at most for the frame being processed.

Frames are never queued: the handover slot holds one frame; a frame that replaces one that was not
processed yet counts as dropped. The image callback never takes the tracker's lock (it would wait for a whole
update): arrival is timed first, then the frame goes to the slot and the ring, each behind its own short lock.
Frames that never reached the callback are counted from gaps between header stamps (:class:`StampGaps`).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from siammixer_ros.core.errors import FrameSizeError
from siammixer_ros.core.tracker import TrackState
from siammixer_ros.ros.image_conversion import ImageConversionError, ImageConverter
from siammixer_ros.ros.messages import format_stamp, stamp_to_ns
from siammixer_ros.ros.selection import Box, TargetError, check_target_box
from siammixer_ros.ros.stats import RateMeter, StageLatencies, StampGaps


class TrackerLike(Protocol):
    """The tracking core's contract (siammixer_ros.core.tracker.SiamMixerTracker)."""

    def init(self, image: np.ndarray, box: Sequence[float]) -> Any: ...

    def update(self, image: np.ndarray) -> Any: ...

    def reset(self) -> None: ...


@dataclass
class Frame:
    """One received image message; converted to BGR when used (in the processing thread).

    The decoded image is not kept: the ring of recent frames holds messages (a compressed frame is a few tens
    of kB; a raw one is its message), not decoded copies beside them. Only a conversion error is remembered.
    """

    seq: int
    stamp_ns: int
    header: Any
    msg: Any
    compressed: bool
    received: float  # time.monotonic() at reception
    stamp_backwards: bool = False  # stamped earlier than the frame before it: kept out of the latency statistics
    nbytes: int = 0  # the message's data size, counted against the ring's byte bound
    _error: str | None = field(default=None, repr=False)

    def image(self, converter: ImageConverter) -> np.ndarray:
        """BGR uint8 image, converted anew; raises ImageConversionError (remembered: a bad frame is tried once)."""
        if self._error is not None:
            raise ImageConversionError(self._error)
        try:
            return converter.to_bgr(self.msg, self.compressed)
        except ImageConversionError as exc:
            self._error = str(exc)
            raise
        except Exception as exc:  # anything else a malformed message provokes
            self._error = f"cannot read the image: {type(exc).__name__}: {exc}"
            raise ImageConversionError(self._error) from exc


class FrameSlot:
    """Hands the newest frame to the processing thread; a replaced, unprocessed frame is a dropped frame."""

    def __init__(self) -> None:
        self._frame: Frame | None = None
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, frame: Frame) -> bool:
        with self._cond:
            dropped = self._frame is not None
            if dropped:
                self.dropped += 1
            self._frame = frame
            self._cond.notify()
            return dropped

    def take(self, timeout: float | None = None) -> Frame | None:
        with self._cond:
            if self._frame is None and timeout:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


def message_bytes(msg: Any) -> int:
    """The size of an image message's data (raw pixels or the compressed stream); 0 when it has none."""
    try:
        return len(msg.data)
    except (AttributeError, TypeError):
        return 0


class FrameRing:
    """The last ``size`` frames, for stamped target selection, holding at most ``max_bytes`` of message data
    (0: no limit; the newest frame is always kept). The byte bound keeps the memory of raw frames in check (30
    640x480 bgr8 frames are 26 MiB, and the heap they fragment more) while compressed frames, a few tens of kB,
    still fill ``size``."""

    def __init__(self, size: int, max_bytes: int = 0) -> None:
        self.size = max(1, int(size))
        self.max_bytes = max(0, int(max_bytes))
        self._frames: deque[Frame] = deque()
        self._bytes = 0
        self._lock = threading.Lock()

    def append(self, frame: Frame) -> None:
        with self._lock:
            self._frames.append(frame)
            self._bytes += frame.nbytes
            while len(self._frames) > self.size or (self.max_bytes and self._bytes > self.max_bytes
                                                     and len(self._frames) > 1):
                self._bytes -= self._frames.popleft().nbytes

    @property
    def nbytes(self) -> int:
        """Message data held now."""
        return self._bytes

    def snapshot(self) -> list[Frame]:
        with self._lock:
            return list(self._frames)

    def newest(self) -> Frame | None:
        with self._lock:
            return self._frames[-1] if self._frames else None

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()
            self._bytes = 0


@dataclass
class TargetOutcome:
    """What ``set_target`` did; mirrors the SetTarget response."""

    success: bool
    message: str
    track_id: int = 0
    frame_stamp_ns: int = 0
    box: Box = (0.0, 0.0, 0.0, 0.0)
    catchup_frames: int = 0


@dataclass
class ProcessedFrame:
    """The result of processing one frame, for the node to publish."""

    frame: Frame
    state: TrackState | None  # None: no target set
    track_id: int
    label: str
    box: Box | None  # None while IDLE or LOST
    score: float
    processing_s: float
    image: np.ndarray | None = None  # BGR image when it was converted
    psr: float = float("nan")  # peak-to-sidelobe ratio of the frame's response (NaN: no target)
    reason: str = ""  # why the track is in its state (empty while TRACKING or idle)
    error: str | None = None  # a bad frame: why it was skipped


@dataclass
class _Track:
    track_id: int
    label: str
    state: TrackState = TrackState.TRACKING
    box: Box | None = None
    score: float = 1.0
    psr: float = math.inf
    reason: str = ""
    frames: int = 0
    ended: str | None = None  # why the track can no longer be followed (it stays LOST until a new target)


def state_reason(state: TrackState, score: float, psr: float, params: Any) -> str:
    """Why the tracker is UNCERTAIN or LOST on a frame, from its score, PSR and thresholds (TrackerParams); empty
    while TRACKING. The tracker's rules (siammixer_ros.core.tracker): UNCERTAIN when score or PSR is below the
    tracking thresholds; a frame below the lost thresholds keeps the position and counts towards LOST."""
    if state is TrackState.TRACKING or params is None:
        return ""
    if state is TrackState.LOST:
        return (f"target not found (score {score:.2f}, PSR {psr:.1f}); searching a wider region until score >= "
                f"tracker.redetect_score {params.redetect_score:g} and PSR >= tracker.redetect_psr "
                f"{params.redetect_psr:g} for {params.redetect_frames} frame(s)")
    why = []
    for name, value, lost, tracking in (("score", score, "lost_score", "tracking_score"),
                                        ("PSR", psr, "lost_psr", "tracking_psr")):
        shown = f"{value:.2f}" if name == "score" else f"{value:.1f}"
        if value < getattr(params, lost):
            why.append(f"{name} {shown} < tracker.{lost} {getattr(params, lost):g} (position kept; LOST after "
                       f"{params.lost_frames} such frame(s))")
        elif value < getattr(params, tracking):
            why.append(f"{name} {shown} < tracker.{tracking} {getattr(params, tracking):g}")
    return "; ".join(why) or f"weak response (score {score:.2f}, PSR {psr:.1f})"


class TrackingSession:
    """The node's logic; see the module docstring."""

    def __init__(self, tracker: TrackerLike, converter: ImageConverter, buffer_size: int = 30,
                 latency_window: int = 100, clock: Callable[[], float] = time.monotonic,
                 expected_rate_hz: float = 0.0, buffer_bytes: int = 0) -> None:
        self.tracker = tracker
        self.converter = converter
        self.clock = clock
        self.slot = FrameSlot()
        self.ring = FrameRing(buffer_size, buffer_bytes)
        self.latencies = StageLatencies(latency_window)
        self.input_rate = RateMeter(2.0, clock)
        self.output_rate = RateMeter(2.0, clock)
        self._lock = threading.RLock()  # the tracker and the track; never taken by on_frame
        self._seq = itertools.count(1)  # next() is atomic under the GIL: no lock in the image callback
        self._input_lock = threading.Lock()  # stamp bookkeeping (short; the input callback's own)
        self.gaps = StampGaps(expected_rate_hz)
        self._last_processed_seq = 0
        self._next_track_id = 1
        self._track: _Track | None = None
        self.frames_received = 0
        self.frames_processed = 0
        self.bad_frames = 0
        self.tracker_errors = 0
        self.last_error: str | None = None
        self.image_size: tuple[int, int] | None = None  # (width, height) of the last converted frame

    # -- input -------------------------------------------------------------------------------------
    def on_frame(self, msg: Any, header: Any, compressed: bool) -> Frame:
        """Store a received message as the newest frame (cheap; called from the subscription callback).

        Never waits for the tracker: arrival is timed before anything else, and only the slot's, the ring's
        and the stamp counter's own short locks are taken.
        """
        received = self.clock()
        seq = next(self._seq)
        try:
            stamp_ns = stamp_to_ns(header.stamp)
        except (AttributeError, TypeError, ValueError):
            stamp_ns = 0
        with self._input_lock:
            _, backwards = self.gaps.observe(stamp_ns)
            self.frames_received += 1
        frame = Frame(seq=seq, stamp_ns=stamp_ns, header=header, msg=msg, compressed=compressed,
                      received=received, stamp_backwards=backwards, nbytes=message_bytes(msg))
        self.input_rate.tick(received)
        self.ring.append(frame)
        self.slot.put(frame)
        return frame

    @property
    def dropped_frames(self) -> int:
        """Frames received but replaced in the hand-off before the processing thread took them."""
        return self.slot.dropped

    @property
    def frames_missed(self) -> int:
        """Camera frames that never reached the node (stamp gaps)."""
        return self.gaps.missed

    @property
    def frames_not_processed(self) -> int:
        """Every published frame the node did not process: missed before the callback plus dropped in the hand-off."""
        return self.gaps.missed + self.slot.dropped

    @property
    def stamps_backwards(self) -> int:
        return self.gaps.backwards

    # -- state -------------------------------------------------------------------------------------
    @property
    def state(self) -> TrackState | None:
        """The tracker's state on the last frame; None while no target is set."""
        track = self._track
        return None if track is None else track.state

    @property
    def track_id(self) -> int:
        track = self._track
        return 0 if track is None else track.track_id

    @property
    def label(self) -> str:
        track = self._track
        return "" if track is None else track.label

    @property
    def score(self) -> float:
        track = self._track
        return float("nan") if track is None else track.score

    @property
    def box(self) -> Box | None:
        track = self._track
        return None if track is None else track.box

    @property
    def psr(self) -> float:
        track = self._track
        return float("nan") if track is None else track.psr

    @property
    def reason(self) -> str:
        """Why the track is UNCERTAIN or LOST (empty while TRACKING or without a target)."""
        track = self._track
        return "" if track is None else track.reason

    # -- target selection ----------------------------------------------------------------------------
    def _find_frame(self, stamp_ns: int, tolerance_ns: int) -> tuple[Frame | None, str]:
        frames = self.ring.snapshot()
        if not frames:
            return None, "no image received yet"
        best = min(frames, key=lambda f: abs(f.stamp_ns - stamp_ns))
        if abs(best.stamp_ns - stamp_ns) <= tolerance_ns:
            return best, ""
        oldest, newest = frames[0].stamp_ns, frames[-1].stamp_ns
        if stamp_ns < oldest - tolerance_ns:
            raise_what = "frame_buffer_size" if len(frames) >= self.ring.size else "frame_buffer_mb"
            why = (f"the frame with stamp {format_stamp(stamp_ns)} is no longer buffered (the {len(frames)} buffered "
                   f"frames span {format_stamp(oldest)} .. {format_stamp(newest)}; raise {raise_what})")
        else:
            why = (f"no buffered frame within {tolerance_ns / 1e9:g} s of stamp {format_stamp(stamp_ns)} (nearest: "
                   f"{format_stamp(best.stamp_ns)}; buffered {format_stamp(oldest)} .. {format_stamp(newest)})")
        return None, why

    def set_target(self, box: Sequence[float], stamp_ns: int = 0, label: str = "", tolerance_s: float = 0.02,
                   min_size: float = 4.0, new_tracker: TrackerLike | None = None) -> TargetOutcome:
        """Start a new track on ``box`` drawn on the frame stamped ``stamp_ns`` (0: the newest frame).

        With a stamp, the tracker is initialised on that buffered frame and then updated through every
        buffered frame after it, so that the track is current when live processing resumes.
        ``new_tracker`` (changed tracker parameters) replaces the tracker for this track, under the lock and
        only once the request is valid: a refused request leaves the current track and tracker as they were.
        """
        try:
            box_values = [float(v) for v in box]
        except (TypeError, ValueError):
            return TargetOutcome(False, f"box {box!r} is not numeric")
        if stamp_ns:
            frame, why = self._find_frame(int(stamp_ns), int(max(0.0, tolerance_s) * 1e9))
            if frame is None:
                return TargetOutcome(False, why)
        else:
            frame = self.ring.newest()
            if frame is None:
                return TargetOutcome(False, "no image received yet")
        try:
            image = frame.image(self.converter)
        except ImageConversionError as exc:
            return TargetOutcome(False, f"the frame stamped {format_stamp(frame.stamp_ns)} is unusable: {exc}")
        height, width = image.shape[:2]
        try:
            used = check_target_box(box_values, width, height, min_size)
        except TargetError as exc:
            return TargetOutcome(False, str(exc))

        with self._lock:
            if new_tracker is not None:
                self.tracker = new_tracker
            try:
                self.tracker.reset()
                self.tracker.init(image, used)
            except Exception as exc:  # the core raises TrackerInputError for boxes it cannot use
                self._track = None
                return TargetOutcome(False, f"the tracker rejected the box: {exc}")
            track = _Track(track_id=self._next_track_id, label=label, box=used, score=1.0)
            self._next_track_id += 1
            self._track = track
            self.image_size = (width, height)
            last_seq = frame.seq
            catchup = 0
            for later in self.ring.snapshot():
                if later.seq <= frame.seq:
                    continue
                self._update(later, record=False)
                last_seq = later.seq
                catchup += 1
            self._last_processed_seq = max(self._last_processed_seq, last_seq)
            where = f"frame stamped {format_stamp(frame.stamp_ns)}" if stamp_ns else \
                f"the newest frame (stamped {format_stamp(frame.stamp_ns)})"
            message = f"tracking target {track.track_id} from {where}"
            if catchup:
                message += f", caught up over {catchup} newer frame(s) (state {track.state})"
            return TargetOutcome(True, message, track.track_id, frame.stamp_ns, used, catchup)

    def stop(self) -> str:
        with self._lock:
            track = self._track
            self._track = None
            try:
                self.tracker.reset()
            except Exception:
                pass
        if track is None:
            return "no target was being tracked"
        return f"stopped tracking target {track.track_id} after {track.frames} frame(s)"

    # -- processing ----------------------------------------------------------------------------------
    def _update(self, frame: Frame, record: bool) -> tuple[np.ndarray | None, str | None]:
        """Track on one frame (lock held). Returns (image, error)."""
        track = self._track
        try:
            image = frame.image(self.converter)
        except ImageConversionError as exc:
            self.bad_frames += 1
            self.last_error = str(exc)
            return None, str(exc)
        self.image_size = (image.shape[1], image.shape[0])
        if track is None or track.ended is not None:
            return image, None
        try:
            result = self.tracker.update(image)
        except FrameSizeError as exc:  # another aspect ratio: the position cannot be carried over
            self.tracker_errors += 1
            self.last_error = f"track {track.track_id} stopped: {exc}"
            track.state, track.box, track.score, track.ended = TrackState.LOST, None, 0.0, str(exc)
            track.reason = f"stopped: {exc}; set a new target"
            return image, self.last_error
        except Exception as exc:  # bad frame (e.g. one the core rejects): keep the track
            self.tracker_errors += 1
            self.last_error = f"tracker update failed: {type(exc).__name__}: {exc}"
            return image, self.last_error
        score = float(result.score)
        track.state = TrackState(result.state)
        track.score = score if math.isfinite(score) else 0.0
        track.psr = float(getattr(result, "psr", math.nan))
        track.reason = state_reason(track.state, track.score, track.psr, getattr(self.tracker, "params", None))
        track.box = tuple(float(v) for v in result.box) if track.state is not TrackState.LOST else None
        track.frames += 1
        if record:
            self.latencies.add_many(dict(getattr(result, "timings", {}) or {}))
        return image, None

    def process_next(self, timeout: float = 0.1, need_image: bool = False) -> ProcessedFrame | None:
        """Take the newest frame (waiting up to ``timeout`` s) and track on it; None when there was none.

        While no target is set the frame is only converted when ``need_image`` (the debug image).
        """
        frame = self.slot.take(timeout)
        if frame is None:
            return None
        start = self.clock()
        with self._lock:
            if frame.seq <= self._last_processed_seq:
                return None  # already used by a stamped set_target's catch-up
            self._last_processed_seq = frame.seq
            self.latencies.add("wait", start - frame.received)
            track = self._track
            image, error = None, None
            if track is not None:
                image, error = self._update(frame, record=True)
            elif need_image:
                try:
                    image = frame.image(self.converter)
                except ImageConversionError as exc:
                    self.bad_frames += 1
                    self.last_error = error = str(exc)
            processing = self.clock() - start
            if track is not None and error is None:
                self.frames_processed += 1
                self.latencies.add("processing", processing)
            state = self.state
            return ProcessedFrame(
                frame=frame, state=state, track_id=self.track_id, label=self.label,
                box=self.box if state in (TrackState.TRACKING, TrackState.UNCERTAIN) else None,
                score=self.score if track is not None else float("nan"),
                processing_s=processing, image=image, error=error,
                psr=self.psr, reason=self.reason,
            )
