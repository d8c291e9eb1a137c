"""The node's output messages, built in one place for the node (rclpy) and the bag tools (rosbags).

Builders take a message factory ``new(type_name, **fields)`` (``type_name`` as ``"pkg/msg/Type"``) so that
one function serves rclpy messages (:func:`rclpy_message`), rosbags messages
(``siammixer_ros.bag.convert.bag_message``) and plain objects in unit tests. Every field is given
explicitly, because rosbags message classes have no defaults.

Conventions: boxes are ``(x, y, w, h)``, top-left corner, pixels; vision_msgs/BoundingBox2D is
center-based. Stamps are integer nanoseconds outside messages.

The tracking state has one vocabulary: the core's :class:`~siammixer_ros.core.tracker.TrackState`, and
``None`` while no target is set. :data:`STATUS_CODES` maps it to the ``siammixer_interfaces/TrackerStatus``
constants, :func:`state_name` to the upper-case names the diagnostics and the debug image show.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from siammixer_ros.core.tracker import TrackState

NS_PER_S = 1_000_000_000

# new(type_name, **fields) -> message
MessageFactory = Callable[..., Any]

# siammixer_interfaces/TrackerStatus constants (IDLE=0, TRACKING=1, UNCERTAIN=2, LOST=3); None: no target set.
STATUS_CODES: dict[TrackState | None, int] = {
    None: 0,
    TrackState.TRACKING: 1,
    TrackState.UNCERTAIN: 2,
    TrackState.LOST: 3,
}
IDLE_NAME = "IDLE"


def state_name(state: TrackState | None) -> str:
    """IDLE, TRACKING, UNCERTAIN or LOST: the name of the TrackerStatus constant."""
    return IDLE_NAME if state is None else state.name


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time (rclpy, rosbags or any object with sec/nanosec) -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def format_stamp(stamp_ns: int) -> str:
    """Nanoseconds as ``sec.nanosec`` (how ROS prints stamps)."""
    return f"{stamp_ns // NS_PER_S}.{stamp_ns % NS_PER_S:09d}"


def time_message(new: MessageFactory, stamp_ns: int) -> Any:
    """builtin_interfaces/Time from integer nanoseconds."""
    return new("builtin_interfaces/msg/Time", sec=int(stamp_ns // NS_PER_S), nanosec=int(stamp_ns % NS_PER_S))


@functools.cache  # the node builds about ten messages a frame
def message_class(msgtype: str) -> Any:
    """The rclpy message class of ``pkg/msg/Type`` (ImportError names the missing package)."""
    package, kind, name = msgtype.split("/")
    try:
        module = importlib.import_module(f"{package}.{kind}")
        return getattr(module, name)
    except (ImportError, AttributeError) as error:
        raise ImportError(f"message type {msgtype} is not available to rclpy ({error}); build/install the "
                          f"'{package}' interface package (scripts/setup.sh does it for this project)") from error


def rclpy_message(msgtype: str, **fields: Any) -> Any:
    """The :data:`MessageFactory` for rclpy messages."""
    return message_class(msgtype)(**fields)


def detection_2d(new: MessageFactory, header: Any, box: Sequence[float], label: str, track_id: str,
                 score: float) -> Any:
    """vision_msgs/Detection2D for a top-left ``(x, y, w, h)`` box.

    The box covers pixels ``[x, x + w)``, so its centre is ``x + w / 2``; theta 0; one hypothesis with
    ``label`` as class_id and ``score``, its pose the identity; ``id`` = ``track_id``.
    """
    x, y, w, h = (float(v) for v in box)
    point = new("vision_msgs/msg/Point2D", x=x + w / 2.0, y=y + h / 2.0)
    bbox = new("vision_msgs/msg/BoundingBox2D", center=new("vision_msgs/msg/Pose2D", position=point, theta=0.0),
               size_x=w, size_y=h)
    pose = new("geometry_msgs/msg/PoseWithCovariance",
               pose=new("geometry_msgs/msg/Pose",
                        position=new("geometry_msgs/msg/Point", x=0.0, y=0.0, z=0.0),
                        orientation=new("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0)),
               covariance=np.zeros(36))
    hypothesis = new("vision_msgs/msg/ObjectHypothesisWithPose",
                     hypothesis=new("vision_msgs/msg/ObjectHypothesis", class_id=label, score=float(score)),
                     pose=pose)
    return new("vision_msgs/msg/Detection2D", header=header, results=[hypothesis], bbox=bbox, id=str(track_id))


def detection_to_box(msg: Any) -> tuple[float, float, float, float]:
    """(x, y, w, h) top-left box from a vision_msgs/Detection2D (inverse of :func:`detection_2d`)."""
    w, h = float(msg.bbox.size_x), float(msg.bbox.size_y)
    return (float(msg.bbox.center.position.x) - w / 2.0, float(msg.bbox.center.position.y) - h / 2.0, w, h)


def detection_score(msg: Any) -> float:
    """Score of the first hypothesis, NaN when the detection carries none."""
    return float(msg.results[0].hypothesis.score) if len(msg.results) else float("nan")


def tracker_status(new: MessageFactory, header: Any, state: TrackState | None, score: float, track_id: int,
                   label: str, box: Sequence[float] | None, fps: float, processing_ms: float,
                   frames_processed: int, dropped_frames: int, psr: float = math.nan, reason: str = "") -> Any:
    """siammixer_interfaces/TrackerStatus; a non-finite score or PSR reads 0, no box reads 0, 0, 0, 0."""
    x, y, w, h = (0.0, 0.0, 0.0, 0.0) if box is None else (float(v) for v in box)
    return new("siammixer_interfaces/msg/TrackerStatus", header=header, state=STATUS_CODES[state],
               score=float(score) if math.isfinite(score) else 0.0,
               psr=float(psr) if math.isfinite(psr) else 0.0, reason=str(reason),
               track_id=int(track_id), label=label,
               x=x, y=y, width=w, height=h, fps=float(fps), processing_ms=float(processing_ms),
               frames_processed=int(frames_processed), dropped_frames=int(dropped_frames))


def fill_set_target_response(new: MessageFactory, response: Any, success: bool, message: str, track_id: int,
                             frame_stamp_ns: int, used_box: Sequence[float]) -> Any:
    """Fill a siammixer_interfaces/SetTarget response (the box after clipping); returns ``response``."""
    response.success = bool(success)
    response.message = message
    response.track_id = int(track_id)
    response.frame_stamp = time_message(new, frame_stamp_ns)
    response.used_x, response.used_y, response.used_width, response.used_height = (float(v) for v in used_box)
    return response
