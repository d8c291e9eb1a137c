"""The crop function: centre convention, exact copies, padding outside the image, batching."""

import cv2
import numpy as np
import pytest

from siammixer_ros.core.crop import (
    box_center,
    center_box,
    crop_matrix,
    crop_window,
    get_subwindow,
    get_subwindows,
    image_mean,
    to_nchw,
)


@pytest.fixture
def image():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)


def test_box_center_is_the_middle_pixel_of_an_odd_box():
    # A 5-pixel-wide box starting at pixel 10 covers pixels 10..14: its centre pixel is 12.
    assert box_center((10, 20, 5, 7)) == (12.0, 23.0)
    assert center_box(12.0, 23.0, 5, 7) == (10.0, 20.0, 5, 7)


def test_crop_at_native_size_copies_the_box_pixels_exactly(image):
    box = (13, 7, 31, 31)
    crop = get_subwindow(image, box_center(box), 31, 31, image_mean(image))
    np.testing.assert_array_equal(crop, image[7:38, 13:44])


def test_crop_of_even_size_is_exact_too(image):
    box = (20, 10, 16, 16)  # centre on a half pixel (27.5, 17.5)
    crop = get_subwindow(image, box_center(box), 16, 16, (0, 0, 0))
    np.testing.assert_array_equal(crop, image[10:26, 20:36])


def test_half_pixel_error_in_the_centre_moves_the_crop_by_a_pixel(image):
    box = (13, 7, 31, 31)
    cx, cy = box_center(box)
    np.testing.assert_array_equal(get_subwindow(image, (cx + 0.4, cy), 31, 31, (0, 0, 0)), image[7:38, 13:44])
    np.testing.assert_array_equal(get_subwindow(image, (cx + 0.5, cy), 31, 31, (0, 0, 0)), image[7:38, 14:45])


def test_crop_window_snaps_to_whole_pixels_within_half_a_pixel():
    for center, size in [((28.0, 22.0), 31.0), ((27.3, 19.8), 26.3), ((0.49, -3.51), 7.6), ((100.25, 5.75), 1.2)]:
        window = crop_window(center, size)
        assert all(isinstance(v, int) for v in window)
        assert window.side == max(1, round(size))
        assert abs(window.center[0] - center[0]) <= 0.5 and abs(window.center[1] - center[1]) <= 0.5
        assert crop_window(window.center, window.side) == window  # idempotent
    # An odd side centred on a pixel and an even side centred between pixels are kept as they are.
    assert crop_window((28.0, 22.0), 31) == (13, 7, 31)
    assert crop_window((27.5, 17.5), 16) == (20, 10, 16)
    with pytest.raises(ValueError, match="centre"):
        crop_window((float("nan"), 1.0), 10)


@pytest.mark.parametrize("size", [13.0, 24.0, 37.4, 55.0])
def test_crop_inside_the_image_equals_the_warp_of_its_window(image, size):
    # Inside the image the crop is a cv2.resize of a view; it must sample the same points as the warp
    # of its snapped window (the path taken at the border), to OpenCV's fixed-point rounding.
    center = (40.2, 29.7)
    window = crop_window(center, size)
    fast = get_subwindow(image, center, size, 24, (0, 0, 0)).astype(int)
    warped = cv2.warpAffine(image, crop_matrix(window.center, window.side, 24), (24, 24),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP).astype(int)
    # When upsampling, resize replicates the window's edge pixels where the warp reads the neighbours
    # just outside it: compare the interior there.
    inner = slice(1, -1) if window.side < 24 else slice(None)
    assert np.abs(fast[inner, inner] - warped[inner, inner]).max() <= 1


def test_crop_outside_the_image_is_padded_with_the_given_value(image):
    pad = (11.0, 22.0, 33.0)
    # Centre at the top-left pixel: the crop's top-left quarter lies outside the image.
    crop = get_subwindow(image, (0.0, 0.0), 21, 21, pad)
    np.testing.assert_array_equal(crop[:10, :10], np.broadcast_to(np.array(pad, np.uint8), (10, 10, 3)))
    np.testing.assert_array_equal(crop[10:, 10:], image[:11, :11])
    # Entirely outside: all padding.
    far = get_subwindow(image, (500.0, -300.0), 40, 16, pad)
    assert (far == np.array(pad, np.uint8)).all()


def test_scaled_crop_maps_its_centre_pixel_to_the_requested_centre():
    # A one-pixel bright dot at (40, 30): crops of several sizes centred there show it at the centre.
    img = np.zeros((61, 81, 3), np.uint8)
    img[30, 40] = 255
    for size in (11.0, 21.0, 41.0):
        crop = get_subwindow(img, (40.0, 30.0), size, 21, (0, 0, 0))
        ys, xs = np.nonzero(crop[..., 0])
        weights = crop[ys, xs, 0].astype(float)
        assert np.average(xs, weights=weights) == pytest.approx(10.0, abs=1e-6)
        assert np.average(ys, weights=weights) == pytest.approx(10.0, abs=1e-6)


def test_batched_crops_equal_single_crops(image):
    centers = [(30.5, 20.0), (30.5, 20.0), (70.0, 55.0)]
    sizes = [20.0, 26.3, 33.0]
    batch = get_subwindows(image, centers, sizes, 24, image_mean(image))
    assert batch.shape == (3, 24, 24, 3) and batch.dtype == np.uint8
    for i in range(3):
        np.testing.assert_array_equal(batch[i], get_subwindow(image, centers[i], sizes[i], 24, image_mean(image)))
    # Reusing the output buffer writes in place.
    again = get_subwindows(image, centers[::-1], sizes[::-1], 24, image_mean(image), out=batch)
    assert again is batch
    np.testing.assert_array_equal(batch[0], get_subwindow(image, centers[2], sizes[2], 24, image_mean(image)))


def test_to_nchw_keeps_values_and_channel_order(image):
    crops = image[None, :24, :24]
    nchw = to_nchw(np.ascontiguousarray(crops))
    assert nchw.shape == (1, 3, 24, 24) and nchw.dtype == np.float32
    np.testing.assert_array_equal(nchw[0, 2], image[:24, :24, 2].astype(np.float32))


def test_invalid_crop_size_raises(image):
    with pytest.raises(ValueError, match="crop size"):
        get_subwindow(image, (10.0, 10.0), 0.0, 16, (0, 0, 0))


def test_aspect_probe_stretched_crop_is_the_tracker_crop_when_unstretched_and_stretches_per_axis():
    # the aspect probe (docs/tracker.md) judges stretched crops against the tracker's own: same mapping when square
    from siammixer_ros.tools.aspect_probe import stretched_crop

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    square = stretched_crop(image, (80.5, 60.5), 64.0, 64.0, 32, (0.0, 0.0, 0.0))  # a whole-pixel window
    tracker = get_subwindow(image, (80.5, 60.5), 64.0, 32, (0.0, 0.0, 0.0))
    assert np.abs(square.astype(int) - tracker.astype(int)).max() <= 1
    # a vertical bar 10 px wide: twice as wide a window makes it half as wide in the crop
    bar = np.zeros((100, 100, 3), np.uint8)
    bar[:, 45:55] = 255
    wide = stretched_crop(bar, (49.5, 49.5), 80.0, 40.0, 40, (0.0, 0.0, 0.0))
    narrow = stretched_crop(bar, (49.5, 49.5), 40.0, 40.0, 40, (0.0, 0.0, 0.0))
    assert wide[20, :, 0].sum() / narrow[20, :, 0].sum() == pytest.approx(0.5, abs=0.05)
