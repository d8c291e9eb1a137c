"""Image message -> BGR conversion without cv_bridge: cv_bridge's semantics for every accepted encoding,
padded rows, big-endian mono16, compressed images, and clear errors for bad messages."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from siammixer_ros.ros.image_conversion import (
    ImageConversionError,
    ImageConverter,
    compressed_image_size,
    compressed_msg_to_bgr,
    encode_compressed,
    fill_image_msg,
    image_msg_to_bgr,
    make_converter,
)


def _msg(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> SimpleNamespace:
    """An Image-like message from an HxW(xC) array, with ``pad`` bytes of padding per row."""
    h, w = pixels.shape[:2]
    raw = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<")).tobytes() if pixels.dtype.itemsize > 1 \
        else pixels.tobytes()
    row = len(raw) // h
    rows = [raw[i * row:(i + 1) * row] + b"\xee" * pad for i in range(h)]
    return SimpleNamespace(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=row + pad,
                           data=b"".join(rows))


@pytest.fixture(scope="module")
def bgr() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


def test_bgr8_is_copied_as_is(bgr):
    assert np.array_equal(image_msg_to_bgr(_msg(bgr, "bgr8")), bgr)


def test_rgb8_swaps_channels(bgr):
    assert np.array_equal(image_msg_to_bgr(_msg(bgr[:, :, ::-1].copy(), "rgb8")), bgr)


def test_bgra8_and_rgba8_drop_alpha(bgr):
    alpha = np.full(bgr.shape[:2] + (1,), 77, np.uint8)
    assert np.array_equal(image_msg_to_bgr(_msg(np.concatenate([bgr, alpha], 2), "bgra8")), bgr)
    assert np.array_equal(image_msg_to_bgr(_msg(np.concatenate([bgr[:, :, ::-1], alpha], 2), "rgba8")), bgr)


def test_mono8_becomes_three_equal_channels():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = image_msg_to_bgr(_msg(grey, "mono8"))
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    for c in range(3):
        assert np.array_equal(out[:, :, c], grey)


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_scales_like_cv_bridge(bigendian):
    # cv_bridge: convertTo(CV_8U, 255/65535) with rounding, then GRAY2BGR.
    grey = np.array([[0, 257, 65535, 1000], [32767, 32768, 128, 40000]], dtype=np.uint16)
    expected = np.rint(grey.astype(np.float64) * 255.0 / 65535.0).astype(np.uint8)
    out = image_msg_to_bgr(_msg(grey, "mono16", bigendian=bigendian))
    assert np.array_equal(out[:, :, 1], expected)
    assert out[0, 2, 0] == 255 and out[0, 1, 2] == 1


@pytest.mark.parametrize("encoding,channels", [("bgr8", 3), ("mono8", 1), ("mono16", 1), ("rgba8", 4)])
def test_padded_rows_are_skipped(encoding, channels):
    rng = np.random.default_rng(1)
    dtype = np.uint16 if encoding == "mono16" else np.uint8
    shape = (4, 6) if channels == 1 else (4, 6, channels)
    pixels = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    assert np.array_equal(image_msg_to_bgr(_msg(pixels, encoding, pad=10)), image_msg_to_bgr(_msg(pixels, encoding)))


def test_encoding_names_are_case_insensitive(bgr):
    assert np.array_equal(image_msg_to_bgr(_msg(bgr, "BGR8")), bgr)


@pytest.mark.parametrize("encoding", ["yuv422", "32FC1", "bayer_rggb8", "", "16UC1"])
def test_unsupported_encoding_names_it_and_the_supported_ones(bgr, encoding):
    with pytest.raises(ImageConversionError, match=r"unsupported image encoding .*supported: bgr8, rgb8"):
        image_msg_to_bgr(_msg(bgr, encoding))


def test_empty_image_is_an_error():
    msg = SimpleNamespace(height=0, width=0, encoding="bgr8", is_bigendian=0, step=0, data=b"")
    with pytest.raises(ImageConversionError, match="empty image"):
        image_msg_to_bgr(msg)


def test_truncated_data_is_an_error(bgr):
    msg = _msg(bgr, "bgr8")
    msg.data = msg.data[:-5]
    with pytest.raises(ImageConversionError, match="corrupt image: .* bytes of data, expected"):
        image_msg_to_bgr(msg)


def test_step_smaller_than_a_row_is_an_error(bgr):
    msg = _msg(bgr, "bgr8")
    msg.step = 3
    with pytest.raises(ImageConversionError, match="step 3 is smaller"):
        image_msg_to_bgr(msg)


def test_fill_image_msg_round_trips(bgr):
    msg = fill_image_msg(SimpleNamespace(), bgr)
    assert (msg.encoding, msg.step, msg.height, msg.width) == ("bgr8", 21, 5, 7)
    assert np.array_equal(image_msg_to_bgr(msg), bgr)


def test_compressed_png_is_lossless_and_jpeg_close():
    image = np.random.default_rng(2).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    png = SimpleNamespace(format="png", data=encode_compressed(image, "png"))
    assert np.array_equal(compressed_msg_to_bgr(png), image)
    smooth = cv2.GaussianBlur(image, (7, 7), 3)
    jpeg = SimpleNamespace(format="rgb8; jpeg compressed bgr8", data=encode_compressed(smooth, "jpeg", 95))
    assert np.abs(compressed_msg_to_bgr(jpeg).astype(int) - smooth).mean() < 4


def test_compressed_grey_and_16_bit_png_follow_the_same_rules():
    grey16 = np.array([[0, 65535], [257, 40000]], dtype=np.uint16)
    ok, buffer = cv2.imencode(".png", grey16)
    assert ok
    out = compressed_msg_to_bgr(SimpleNamespace(format="mono16; png compressed", data=buffer.tobytes()))
    expected = np.rint(grey16 * 255.0 / 65535.0).astype(np.uint8)
    assert out.shape == (2, 2, 3) and np.array_equal(out[:, :, 0], expected)


@pytest.mark.parametrize("data,match", [(b"", "empty compressed image"),
                                        (b"\xff\xd8 definitely not a jpeg", "corrupt compressed image")])
def test_bad_compressed_data_is_an_error(data, match):
    with pytest.raises(ImageConversionError, match=match):
        compressed_msg_to_bgr(SimpleNamespace(format="jpeg", data=data))


def test_compressed_depth_is_rejected_by_name():
    with pytest.raises(ImageConversionError, match="compressedDepth"):
        compressed_msg_to_bgr(SimpleNamespace(format="16UC1; compressedDepth png", data=b"123"))


def test_converter_without_cv_bridge_uses_the_builtin_conversion(bgr):
    converter = make_converter()
    assert converter.backend == "built-in"
    assert np.array_equal(converter.to_bgr(_msg(bgr[:, :, ::-1].copy(), "rgb8"), compressed=False), bgr)


def test_converter_checks_the_encoding_before_cv_bridge(bgr):
    class Bridge:  # a cv_bridge stand-in that would accept anything
        def imgmsg_to_cv2(self, msg, desired_encoding):
            return bgr

    with pytest.raises(ImageConversionError, match="unsupported image encoding"):
        ImageConverter(Bridge()).to_bgr(_msg(bgr, "yuv422"), compressed=False)


def test_broken_cv_bridge_falls_back_with_a_message(monkeypatch, bgr):
    import sys
    import types

    fake = types.ModuleType("cv_bridge")

    class CvBridge:
        def imgmsg_to_cv2(self, msg, desired_encoding):
            raise TypeError("numpy 2 is not supported")

    fake.CvBridge = CvBridge
    monkeypatch.setitem(sys.modules, "cv_bridge", fake)
    messages = []
    converter = make_converter(SimpleNamespace, log=messages.append)
    assert converter.backend == "built-in"
    assert messages and "cv_bridge is installed but does not work" in messages[0]


@pytest.mark.parametrize("ext,params", [(".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
                                        (".bmp", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
                                        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])])  # 101: lossless (VP8L)
def test_compressed_image_size_is_read_from_the_header(ext, params):
    ok, data = cv2.imencode(ext, np.zeros((48, 65, 3), np.uint8), params)
    assert ok and compressed_image_size(data.tobytes()) == (65, 48)


def _png_claiming(width: int, height: int) -> bytes:
    """A real PNG's bytes with the header's size changed (as a crafted or corrupt file would claim)."""
    ok, data = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(data.tobytes())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return bytes(data)


def test_a_huge_compressed_image_is_refused_before_decoding(monkeypatch):
    # A 97 kB PNG can decode to 10000x10000 (293 MiB that the process keeps): refused from its header, unread.
    def no_decode(*_args):
        raise AssertionError("cv2.imdecode was called on an image over the limit")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    msg = SimpleNamespace(format="png", data=_png_claiming(10000, 10000))
    with pytest.raises(ImageConversionError, match=r"too large: 10000x10000 = 100000000 pixels > max_image_pixels "
                                                   r"16777216; refused without decoding it"):
        ImageConverter(max_pixels=4096 * 4096).to_bgr(msg, compressed=True)


def test_a_huge_raw_image_is_refused_by_its_size_and_small_ones_pass(bgr):
    huge = SimpleNamespace(height=10000, width=10000, encoding="bgr8", is_bigendian=0, step=30000, data=b"\0" * 10)
    with pytest.raises(ImageConversionError, match="too large: 10000x10000"):
        ImageConverter(max_pixels=1_000_000).to_bgr(huge, compressed=False)
    assert np.array_equal(ImageConverter(max_pixels=35).to_bgr(_msg(bgr, "bgr8"), compressed=False), bgr)  # 7x5
    with pytest.raises(ImageConversionError, match="too large: 7x5 = 35 pixels > max_image_pixels 34"):
        ImageConverter(max_pixels=34).to_bgr(_msg(bgr, "bgr8"), compressed=False)
    png = SimpleNamespace(format="png", data=encode_compressed(bgr, "png"))
    with pytest.raises(ImageConversionError, match="too large: 7x5"):
        ImageConverter(max_pixels=34).to_bgr(png, compressed=True)
    assert np.array_equal(ImageConverter(max_pixels=0).to_bgr(png, compressed=True), bgr)  # 0: no limit
