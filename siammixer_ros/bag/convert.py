"""numpy images / (x, y, w, h) boxes -> ROS messages as rosbags dataclasses, for writing bags.

Decoding images goes through the node's converter (siammixer_ros.ros.image_conversion) and detections
through siammixer_ros.ros.messages, so offline and live evaluation of one bag read it the same way.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from siammixer_ros.bag.msgtypes import typestore
from siammixer_ros.ros.messages import NS_PER_S, detection_2d, time_message

__all__ = ["NS_PER_S", "BagImageError", "bag_message", "camera_info_message", "cdr_header_stamp",
           "compressed_image_message", "detection_message", "header", "image_message"]

# image_transport's "compressed" plugin writes this format string for BGR JPEG frames.
JPEG_FORMAT = "bgr8; jpeg compressed bgr8"


class BagImageError(ValueError):
    """A numpy image cannot be written as an image message (wrong shape or type, encoding failed)."""


def bag_message(msgtype: str, **fields: Any) -> Any:
    """The rosbags :data:`~siammixer_ros.ros.messages.MessageFactory`: ``pkg/msg/Type`` with every field given."""
    return typestore().types[msgtype](**fields)


def header(stamp_ns: int, frame_id: str) -> Any:
    return bag_message("std_msgs/msg/Header", stamp=time_message(bag_message, stamp_ns), frame_id=frame_id)


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


def detection_message(box: tuple[float, float, float, float], stamp_ns: int, frame_id: str, label: str,
                      detection_id: str, score: float = 1.0) -> Any:
    """vision_msgs/Detection2D (center-based bbox) from an (x, y, w, h) top-left box."""
    return detection_2d(bag_message, header(stamp_ns, frame_id), box, label, detection_id, score)


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
