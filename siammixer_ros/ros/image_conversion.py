"""sensor_msgs/Image and CompressedImage <-> BGR uint8 arrays, with cv_bridge's semantics, without cv_bridge.

cv_bridge is not installable from PyPI for ROS 2 (the PyPI ``cv-bridge`` is a ROS 1 port that fails under
numpy 2), so the node converts messages itself and uses cv_bridge only where a working one is installed
(:func:`make_converter` checks it on a small image first). The built-in conversion matches what
``CvBridge().imgmsg_to_cv2(msg, "bgr8")`` returns for the encodings the node accepts:

=========  =====================================================================================
encoding   conversion to bgr8
=========  =====================================================================================
bgr8       copied as is
rgb8       channels swapped (``cv2.COLOR_RGB2BGR``)
bgra8      alpha dropped (``cv2.COLOR_BGRA2BGR``)
rgba8      alpha dropped, channels swapped (``cv2.COLOR_RGBA2BGR``)
mono8      grey copied to three channels (``cv2.COLOR_GRAY2BGR``)
mono16     grey copied to three channels and scaled by 255/65535 with rounding, as cv_bridge's
           ``convertTo(..., 255. / 65535.)``; ``is_bigendian`` is honoured
=========  =====================================================================================

Rows may be padded (``step`` larger than ``width * bytes per pixel``); the padding is skipped.
Compressed images are decoded with ``cv2.imdecode`` (whatever OpenCV can read: JPEG, PNG, ...) and the
decoded image goes through the same rules (grey -> BGR, 16 bit -> 8 bit scaled by 255/65535, alpha dropped).

An image larger than a limit (``max_pixels``, the node's ``max_image_pixels``) is refused before it is
decoded: from the message's width and height (raw), or from the compressed file's own header (PNG, JPEG,
BMP, WebP: :func:`compressed_image_size`); other compressed formats are checked once decoded. A 97 kB PNG can
hold a 10000x10000 image, 293 MiB decoded, that a Python process keeps.

Every problem raises :class:`ImageConversionError` with a message naming it. The functions take any
object with the message's fields, so they are usable and testable without rclpy.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

# encoding -> (channels, bytes per channel)
SUPPORTED_ENCODINGS: dict[str, tuple[int, int]] = {
    "bgr8": (3, 1),
    "rgb8": (3, 1),
    "bgra8": (4, 1),
    "rgba8": (4, 1),
    "mono8": (1, 1),
    "mono16": (1, 2),
}

# cv_bridge's scale between CV_16U [0, 65535] and CV_8U [0, 255].
MONO16_TO_8BIT_SCALE = 255.0 / 65535.0

# Compressed formats that OpenCV cannot decode as an image (image_transport's depth plugin adds a header).
_UNDECODABLE_COMPRESSED = ("compresseddepth",)


class ImageConversionError(ValueError):
    """An image message cannot be turned into a BGR image; the message says why."""


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the image size.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xDA)):  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if marker in _JPEG_SOF and i + 9 <= len(data):
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    return None


def compressed_image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from a PNG, JPEG, BMP or WebP header without decoding; None for other formats
    (or a header too short to tell)."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return width, height
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:2] == b"BM" and len(data) >= 26:
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            chunk = data[12:16]
            if chunk == b"VP8X":
                return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
            if chunk == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
            if chunk == b"VP8 ":
                width, height = struct.unpack("<HH", data[26:30])
                return width & 0x3FFF, height & 0x3FFF
    except (struct.error, IndexError):
        return None
    return None


def check_image_size(width: int, height: int, max_pixels: int, source: str) -> None:
    """Raise ImageConversionError when ``width x height`` exceeds ``max_pixels`` (0: no limit)."""
    if max_pixels > 0 and width * height > max_pixels:
        raise ImageConversionError(
            f"{source} is too large: {width}x{height} = {width * height} pixels > max_image_pixels {max_pixels}; "
            f"refused without decoding it"
        )


def _to_uint8_bgr(image: np.ndarray, source: str) -> np.ndarray:
    """Grey/BGR/BGRA, 8 or 16 bit -> BGR uint8, contiguous (the semantics of cv_bridge's conversion to bgr8)."""
    if image.dtype == np.uint16:
        # cv::Mat::convertTo rounds to nearest (saturate_cast); np.rint does the same up to ties (never exact here).
        image = np.rint(image.astype(np.float32) * np.float32(MONO16_TO_8BIT_SCALE)).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageConversionError(f"{source}: unsupported pixel type {image.dtype} (expected 8 or 16 bit)")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return np.ascontiguousarray(image)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise ImageConversionError(f"{source}: unsupported number of channels {channels}")


def image_msg_to_bgr(msg: Any, max_pixels: int = 0) -> np.ndarray:
    """A sensor_msgs/Image (or any object with its fields) -> BGR uint8 HxWx3 array (a copy); an image over
    ``max_pixels`` pixels (0: no limit) is refused."""
    encoding = str(msg.encoding).strip().lower()
    if encoding not in SUPPORTED_ENCODINGS:
        raise ImageConversionError(
            f"unsupported image encoding '{msg.encoding}'; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    channels, depth = SUPPORTED_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"empty image: {width}x{height} pixels")
    check_image_size(width, height, max_pixels, "image")
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise ImageConversionError(
            f"corrupt image: step {step} is smaller than width * bytes per pixel = {width} * {channels * depth}"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size < step * height:
        raise ImageConversionError(
            f"corrupt image: {data.size} bytes of data, expected step * height = {step} * {height} = {step * height}"
        )
    rows = data[: step * height].reshape(height, step)[:, :row_bytes]
    if depth == 2:
        dtype = np.dtype(">u2") if msg.is_bigendian else np.dtype("<u2")
        pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width).astype(np.uint16)
        return _to_uint8_bgr(pixels, encoding)
    pixels = rows.reshape(height, width, channels)
    if encoding == "bgr8":
        return pixels.copy()
    if encoding == "rgb8":
        return cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    if encoding == "bgra8":
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2BGR)
    if encoding == "rgba8":
        return cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGR)
    return cv2.cvtColor(np.ascontiguousarray(pixels[:, :, 0]), cv2.COLOR_GRAY2BGR)  # mono8


def compressed_msg_to_bgr(msg: Any, max_pixels: int = 0) -> np.ndarray:
    """A sensor_msgs/CompressedImage (JPEG, PNG, ...) -> BGR uint8 HxWx3 array; an image over ``max_pixels``
    pixels (0: no limit) is refused, before decoding where its header tells the size."""
    fmt = str(msg.format)
    if any(tag in fmt.lower() for tag in _UNDECODABLE_COMPRESSED):
        raise ImageConversionError(f"unsupported compressed format '{fmt}' (depth images cannot be tracked)")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageConversionError("empty compressed image: no data")
    size = compressed_image_size(data[:65536].tobytes()) if max_pixels > 0 else None
    if size is not None:
        check_image_size(size[0], size[1], max_pixels, f"compressed image ({fmt or 'unknown format'})")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageConversionError(
            f"corrupt compressed image: OpenCV cannot decode {data.size} bytes (format '{fmt or 'unknown'}')"
        )
    if image.size == 0:
        raise ImageConversionError("empty compressed image: decoded to 0 pixels")
    if size is None and max_pixels > 0 and image.shape[0] * image.shape[1] > max_pixels:
        height, width = image.shape[:2]
        del image  # a format whose header was not read: refused once decoded
        raise ImageConversionError(
            f"compressed image ({fmt or 'unknown format'}) is too large: {width}x{height} = {width * height} pixels "
            f"> max_image_pixels {max_pixels}")
    return _to_uint8_bgr(image, f"compressed image ({fmt or 'unknown format'})")


def fill_image_msg(msg: Any, image_bgr: np.ndarray) -> Any:
    """Fill a sensor_msgs/Image with a BGR uint8 image (encoding bgr8, no padding); returns ``msg``."""
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ImageConversionError(f"expected a BGR uint8 HxWx3 image, got {image_bgr.dtype} {image_bgr.shape}")
    image_bgr = np.ascontiguousarray(image_bgr)
    msg.height, msg.width = int(image_bgr.shape[0]), int(image_bgr.shape[1])
    msg.encoding = "bgr8"
    msg.is_bigendian = 0
    msg.step = int(image_bgr.shape[1] * 3)
    msg.data = image_bgr.tobytes()
    return msg


def encode_compressed(image_bgr: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """BGR uint8 image -> JPEG/PNG bytes (what image_transport's compressed plugin publishes)."""
    ext = ".png" if fmt.lower() == "png" else ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext == ".jpg" else []
    ok, buffer = cv2.imencode(ext, image_bgr, params)
    if not ok:
        raise ImageConversionError(f"cannot encode image as {fmt}")
    return buffer.tobytes()


class ImageConverter:
    """Converts the node's input messages to BGR; uses cv_bridge when a working one is installed."""

    def __init__(self, bridge: Any | None = None, max_pixels: int = 0) -> None:
        self._bridge = bridge
        self.backend = "cv_bridge" if bridge is not None else "built-in"
        self.max_pixels = int(max_pixels)  # larger images are refused (0: no limit)

    def to_bgr(self, msg: Any, compressed: bool) -> np.ndarray:
        if compressed:
            # cv_bridge's compressed_imgmsg_to_cv2 is cv2.imdecode as well; one implementation is enough.
            return compressed_msg_to_bgr(msg, self.max_pixels)
        check_image_size(int(msg.width), int(msg.height), self.max_pixels, "image")
        encoding = str(msg.encoding).strip().lower()
        if encoding not in SUPPORTED_ENCODINGS:
            raise ImageConversionError(
                f"unsupported image encoding '{msg.encoding}'; supported: {', '.join(SUPPORTED_ENCODINGS)}"
            )
        if self._bridge is None:
            return image_msg_to_bgr(msg, self.max_pixels)
        try:
            image = self._bridge.imgmsg_to_cv2(msg, desired_encoding="bgr8")
        except Exception as exc:  # CvBridgeError and numpy errors for malformed messages
            raise ImageConversionError(f"cv_bridge cannot convert the image: {exc}") from exc
        return np.ascontiguousarray(image)


def make_converter(image_msg_factory: Callable[[], Any] | None = None, log: Callable[[str], None] | None = None
                   ) -> ImageConverter:
    """An :class:`ImageConverter` using cv_bridge if it imports AND converts a test image like we do."""
    if image_msg_factory is None:
        return ImageConverter()
    try:
        from cv_bridge import CvBridge  # type: ignore[import-not-found]

        bridge = CvBridge()
        probe = fill_image_msg(image_msg_factory(), np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3))
        probe.encoding = "rgb8"
        converted = np.asarray(bridge.imgmsg_to_cv2(probe, desired_encoding="bgr8"))
        if not np.array_equal(converted, image_msg_to_bgr(probe)):
            raise RuntimeError("its rgb8 -> bgr8 conversion differs from the expected one")
    except Exception as exc:  # ImportError, or the ROS 1 port failing on ROS 2 messages / numpy 2
        if log is not None and not isinstance(exc, ImportError):
            log(f"cv_bridge is installed but does not work ({exc}); using the built-in image conversion")
        return ImageConverter()
    return ImageConverter(bridge)
