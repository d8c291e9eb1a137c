"""NanoTrack v2 teacher: its score map, resampled to the student's 9x9 grid, peaks where our labels do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from siammixer_ros.train.data import (  # noqa: E402
    SEARCH_SIZE,
    TEMPLATE_SIZE,
    box_center,
    context_side,
    crop_linear,
    make_label,
    warp_crop,
)
from siammixer_ros.train.teacher import NanoTrackTeacher  # noqa: E402

PEERS = Path(__file__).resolve().parents[1].parent / "shared" / "peers" / "nanotrack_v2"


@pytest.fixture(scope="module")
def teacher() -> NanoTrackTeacher:
    if not (PEERS / "nanotrack_head_sim.onnx").is_file():
        pytest.skip(f"NanoTrack v2 teacher absent ({PEERS}); it lives in ../shared/peers")
    return NanoTrackTeacher(PEERS, threads=1)


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """A textured square target on a smooth background; box (x, y, w, h)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:400, 0:400]
    image = np.stack([100 + 30 * np.sin(xx / 40), 110 + 30 * np.cos(yy / 50), 120 + 0 * xx], -1).astype(np.uint8)
    target = (rng.integers(0, 4, (4, 4, 1)) * 80).repeat(10, 0).repeat(10, 1)
    target = np.concatenate([target, 255 - target, np.full_like(target, 200)], -1).astype(np.uint8)
    image[180:220, 180:220] = target
    return image, np.array([180.0, 180.0, 40.0, 40.0])


@pytest.mark.parametrize("shift", [(0, 0), (32, 0), (-48, 16), (16, -32), (48, 48)])
def test_teacher_peak_is_on_the_labelled_cell(teacher: NanoTrackTeacher, shift: tuple[int, int]) -> None:
    image, box = _scene()
    centre = box_center(box)
    side = context_side(box[2], box[3])
    template = warp_crop(image, centre, crop_linear(side, TEMPLATE_SIZE), TEMPLATE_SIZE)
    linear = crop_linear(2 * side, SEARCH_SIZE)
    search = warp_crop(image, centre - linear @ np.array(shift, float), linear, SEARCH_SIZE)
    logits = teacher.logits(template[None], search[None])[0]
    assert logits.shape == (9, 9)
    label = make_label(np.array([(SEARCH_SIZE - 1) / 2 + shift[0], (SEARCH_SIZE - 1) / 2 + shift[1]]), 8.0, 8.0)
    peak = np.unravel_index(int(np.argmax(logits)), logits.shape)
    assert label[peak] == 1, (peak, np.argwhere(label == 1))
    assert 1 / (1 + np.exp(-logits[peak])) > 0.5  # confident foreground at the target


def test_teacher_features_come_with_the_logits(teacher: NanoTrackTeacher) -> None:
    image, box = _scene()
    centre = box_center(box)
    side = context_side(box[2], box[3])
    template = warp_crop(image, centre, crop_linear(side, TEMPLATE_SIZE), TEMPLATE_SIZE)
    search = warp_crop(image, centre, crop_linear(2 * side, SEARCH_SIZE), SEARCH_SIZE)
    templates = np.stack([template, np.ascontiguousarray(template[::-1])])
    out = teacher.outputs(templates, np.stack([search, search]), features=True)
    assert out["logits"].shape == (2, 9, 9)
    assert out["template_features"].shape == (2, 48, 8, 8) and out["search_features"].shape == (2, 48, 16, 16)
    np.testing.assert_array_equal(out["logits"], teacher.logits(templates, np.stack([search, search])))
    # Same search crop, same search features; different templates, different template features.
    np.testing.assert_array_equal(out["search_features"][0], out["search_features"][1])
    assert np.abs(out["template_features"][0] - out["template_features"][1]).max() > 0.1
    assert "template_features" not in teacher.outputs(template[None], search[None])


def test_teacher_box_is_the_target_box_in_our_crop_pixels(teacher: NanoTrackTeacher) -> None:
    # The 40 x 40 target in a search crop of side 2 * context_side (80): 128 x 128 of our 256-crop pixels.
    image, box = _scene()
    centre = box_center(box)
    side = context_side(box[2], box[3])
    template = warp_crop(image, centre, crop_linear(side, TEMPLATE_SIZE), TEMPLATE_SIZE)
    search = warp_crop(image, centre, crop_linear(2 * side, SEARCH_SIZE), SEARCH_SIZE)
    out = teacher.outputs(template[None], search[None], box=True)
    assert out["box"].shape == (1, 4, 9, 9)
    left, top, right, bottom = out["box"][0, :, 4, 4]  # the centre cell, on the target's centre
    want = box[2] * SEARCH_SIZE / (2 * side)
    assert abs((left + right) - want) < 0.2 * want and abs((top + bottom) - want) < 0.2 * want, (out["box"][0, :, 4, 4],
                                                                                                want)
    assert abs((right - left) / 2) < 8 and abs((bottom - top) / 2) < 8  # centred on the cell's point
