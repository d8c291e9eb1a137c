"""Conversions between numpy images / (x, y, w, h) boxes and ROS messages as rosbags dataclasses.

The same functions serve rclpy messages where noted: decoding only reads attributes that rclpy and
rosbags messages share (``encoding``, ``width``, ``data``, ``bbox.center.position.x``, ...).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from siammixer_ros.bag.msgtypes import typestore

NS_PER_S = 1_000_000_000
# image_transport's "compressed" plugin writes this format string for BGR JPEG frames.
JPEG_FORMAT = "bgr8; jpeg compressed bgr8"

# encoding -> (channels, dtype, conversion to BGR or None)
_ENCODINGS: dict[str, tuple[int, Any, int | None]] = {
    "bgr8": (3, np.uint8, None),
    "rgb8": (3, np.uint8, cv2.COLOR_RGB2BGR),
    "bgra8": (4, np.uint8, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, np.uint8, cv2.COLOR_RGBA2BGR),
    "mono8": (1, np.uint8, cv2.COLOR_GRAY2BGR),
    "8UC1": (1, np.uint8, cv2.COLOR_GRAY2BGR),
    "8UC3": (3, np.uint8, None),
}


class BagImageError(ValueError):
    """An image message cannot be turned into a BGR image (unsupported encoding, wrong size, corrupt data)."""


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time (rosbags or rclpy) -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Any:
    """Integer nanoseconds -> rosbags builtin_interfaces/Time."""
    t = typestore().types["builtin_interfaces/msg/Time"]
    return t(sec=int(ns // NS_PER_S), nanosec=int(ns % NS_PER_S))


def header(stamp_ns: int, frame_id: str) -> Any:
    return typestore().types["std_msgs/msg/Header"](stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)


def image_message(image_bgr: np.ndarray, stamp_ns: int, frame_id: str) -> Any:
    """sensor_msgs/Image, encoding bgr8, from a BGR uint8 HxWx3 array."""
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise BagImageError(f"expected a BGR uint8 HxWx3 image, got dtype {image_bgr.dtype} shape {image_bgr.shape}")
    height, width = image_bgr.shape[:2]
    return typestore().types["sensor_msgs/msg/Image"](
        header=header(stamp_ns, frame_id), height=height, width=width, encoding="bgr8", is_bigendian=0,
        step=width * 3, data=np.ascontiguousarray(image_bgr).reshape(-1))


def compressed_image_message(image_bgr: np.ndarray, stamp_ns: int, frame_id: str, quality: int = 90) -> Any:
    """sensor_msgs/CompressedImage, JPEG at the given quality (1..100)."""
    ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise BagImageError(f"JPEG encoding failed for an image of shape {image_bgr.shape}")
    return typestore().types["sensor_msgs/msg/CompressedImage"](
        header=header(stamp_ns, frame_id), format=JPEG_FORMAT, data=encoded.reshape(-1))


def camera_info_message(width: int, height: int, stamp_ns: int, frame_id: str,
                        calibration: dict[str, Any] | None = None) -> Any:
    """sensor_msgs/CameraInfo; without a calibration an *uncalibrated* one (K = 0, the ROS convention)."""
    types = typestore().types
    k = np.zeros(9)
    d = np.zeros(0)
    r = np.eye(3).reshape(-1)
    p = np.zeros(12)
    model = "plumb_bob"
    if calibration is not None:
        width = int(calibration.get("image_width", width))
        height = int(calibration.get("image_height", height))
        k = np.asarray(calibration["camera_matrix"]["data"], dtype=np.float64)
        d = np.asarray(calibration.get("distortion_coefficients", {}).get("data", []), dtype=np.float64)
        r = np.asarray(calibration.get("rectification_matrix", {}).get("data", r), dtype=np.float64)
        p = np.asarray(calibration.get("projection_matrix", {}).get("data", np.zeros(12)), dtype=np.float64)
        model = str(calibration.get("distortion_model", model))
        if k.size != 9 or r.size != 9 or p.size != 12:
            raise ValueError("camera calibration needs camera_matrix (9 values), rectification_matrix (9) and "
                             "projection_matrix (12)")
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types["sensor_msgs/msg/CameraInfo"](
        header=header(stamp_ns, frame_id), height=int(height), width=int(width), distortion_model=model, d=d,
        k=k, r=r, p=p, binning_x=0, binning_y=0, roi=roi)


def image_to_bgr(msg: Any) -> np.ndarray:
    """BGR uint8 HxWx3 from sensor_msgs/Image or CompressedImage (rosbags or rclpy message)."""
    if hasattr(msg, "format"):  # CompressedImage
        data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, np.uint8)
        if data.size == 0:
            raise BagImageError("empty CompressedImage (no data)")
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if image is None:
            raise BagImageError(f"cannot decode CompressedImage with format {msg.format!r} ({data.size} bytes)")
        return image
    encoding = str(msg.encoding)
    if encoding not in _ENCODINGS:
        raise BagImageError(f"unsupported image encoding {encoding!r}; supported: {', '.join(_ENCODINGS)}")
    channels, dtype, conversion = _ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, np.uint8)
    if height <= 0 or width <= 0:
        raise BagImageError(f"empty image: {width}x{height}")
    if step < width * channels or data.size < step * height:
        raise BagImageError(f"image data too short: {data.size} bytes for {width}x{height} {encoding} "
                            f"with step {step}")
    rows = data[: step * height].reshape(height, step)[:, : width * channels]
    image = rows.astype(dtype, copy=False).reshape(height, width, channels)
    if conversion is not None:
        image = cv2.cvtColor(image, conversion)
    return np.ascontiguousarray(image)


def detection_message(box: tuple[float, float, float, float], stamp_ns: int, frame_id: str, label: str,
                      detection_id: str, score: float = 1.0) -> Any:
    """vision_msgs/Detection2D (center-based bbox) from an (x, y, w, h) top-left box."""
    types = typestore().types
    x, y, w, h = (float(v) for v in box)
    point = types["vision_msgs/msg/Point2D"](x=x + w / 2.0, y=y + h / 2.0)
    bbox = types["vision_msgs/msg/BoundingBox2D"](
        center=types["vision_msgs/msg/Pose2D"](position=point, theta=0.0), size_x=w, size_y=h)
    pose = types["geometry_msgs/msg/PoseWithCovariance"](
        pose=types["geometry_msgs/msg/Pose"](
            position=types["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
            orientation=types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)),
        covariance=np.zeros(36))
    hypothesis = types["vision_msgs/msg/ObjectHypothesisWithPose"](
        hypothesis=types["vision_msgs/msg/ObjectHypothesis"](class_id=label, score=float(score)), pose=pose)
    return types["vision_msgs/msg/Detection2D"](
        header=header(stamp_ns, frame_id), results=[hypothesis], bbox=bbox, id=detection_id)


def detection_to_box(msg: Any) -> tuple[float, float, float, float]:
    """(x, y, w, h) top-left box from a vision_msgs/Detection2D (rosbags or rclpy message)."""
    w, h = float(msg.bbox.size_x), float(msg.bbox.size_y)
    return (float(msg.bbox.center.position.x) - w / 2.0, float(msg.bbox.center.position.y) - h / 2.0, w, h)


def detection_score(msg: Any) -> float:
    """Score of the first hypothesis, NaN when the detection carries none."""
    return float(msg.results[0].hypothesis.score) if len(msg.results) else float("nan")


def cdr_header_stamp(raw: bytes | memoryview) -> int | None:
    """``header.stamp`` in ns of a serialised message that starts with a std_msgs/Header, without decoding it.

    CDR layout: 4-byte encapsulation header (byte 1: 1 = little endian, 0 = big endian), then the stamp as
    int32 sec, uint32 nanosec. None when ``raw`` is too short or not CDR.
    """
    if len(raw) < 12 or raw[0] != 0 or raw[1] not in (0, 1):
        return None
    order = "little" if raw[1] == 1 else "big"
    sec = int.from_bytes(bytes(raw[4:8]), order, signed=True)
    nanosec = int.from_bytes(bytes(raw[8:12]), order, signed=False)
    return sec * NS_PER_S + nanosec
