"""The crop function: centre convention, exact copies, padding outside the image, batching."""

import numpy as np
import pytest

from siammixer_ros.core.crop import box_center, center_box, get_subwindow, get_subwindows, image_mean, to_nchw


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


def test_half_pixel_error_in_the_centre_changes_the_crop(image):
    box = (13, 7, 31, 31)
    cx, cy = box_center(box)
    shifted = get_subwindow(image, (cx + 0.5, cy), 31, 31, (0, 0, 0))
    assert np.abs(shifted.astype(int) - image[7:38, 13:44]).mean() > 5


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
