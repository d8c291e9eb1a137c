"""The committed NCC test models: what a fresh build writes, and usable where the onnx package is absent."""

from __future__ import annotations

import subprocess
import sys

import pytest

from siammixer_ros.testing.ncc_model import (
    BOX_STRIDE,
    COMMITTED_STRIDES,
    build_ncc_model,
    ncc_box_model_path,
    ncc_model_path,
)


@pytest.mark.parametrize("stride", COMMITTED_STRIDES)
def test_committed_models_equal_a_fresh_build(tmp_path, stride):
    pytest.importorskip("onnx", reason="building the NCC test model needs onnx (scripts/setup.sh --extras train)")
    fresh = build_ncc_model(tmp_path / "fresh.onnx", stride=stride)
    assert fresh.read_bytes() == ncc_model_path(stride).read_bytes(), (
        "the NCC graphs changed: run python -m siammixer_ros.testing.ncc_model")


def test_committed_box_model_equals_a_fresh_build(tmp_path):
    pytest.importorskip("onnx", reason="building the NCC test model needs onnx (scripts/setup.sh --extras train)")
    fresh = build_ncc_model(tmp_path / "fresh.onnx", stride=BOX_STRIDE, box_output=True)
    assert fresh.read_bytes() == ncc_box_model_path().read_bytes(), (
        "the NCC graphs changed: run python -m siammixer_ros.testing.ncc_model")


def test_box_model_measures_the_saturated_target_exactly():
    # The box output is a test fixture: the extent of the saturated colour. For an axis-aligned target it is the
    # target's box (anti-aliased edges: within a pixel), from every cell.
    import numpy as np

    from siammixer_ros.core.runtime import SiamMixerRuntime
    from siammixer_ros.testing.synthetic import render_sequence

    runtime = SiamMixerRuntime(ncc_box_model_path())
    x0, y0, w, h = 90.0, 101.0, 61.0, 37.0  # the box covers pixels x0 .. x0 + w - 1
    image = render_sequence([(x0, y0, w, h)], size=(256, 256), seed=2, saturated=True).frames[0]
    search = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
    response, box = runtime.response_and_box(runtime.template_features(search[:, :, :128, :128]),
                                             runtime.search_features(search))
    r = runtime.info.response_size
    points = 127.5 + 16 * (np.arange(r) - (r - 1) / 2)
    edges = np.stack([points[None, :] - box[0, 0], points[:, None] - box[0, 1],
                      points[None, :] + box[0, 2], points[:, None] + box[0, 3]])
    want = np.array([x0 - 0.5, y0 - 0.5, x0 + w - 0.5, y0 + h - 0.5])
    assert np.abs(edges - want[:, None, None]).max() < 1.0


def test_committed_models_track_without_the_onnx_package():
    # A base install has onnxruntime but not onnx: block its import and track with both committed models.
    code = """
import sys
sys.modules["onnx"] = None
from siammixer_ros.core.tracker import SiamMixerTracker
from siammixer_ros.testing.ncc_model import ncc_model_path
from siammixer_ros.testing.synthetic import iou, render_sequence
for stride in (8, 16):
    boxes = [(80.0 + 3 * i, 70.0 + 2 * i, 56.0, 48.0) for i in range(8)]
    seq = render_sequence(boxes, size=(320, 240), seed=1)
    tracker = SiamMixerTracker(ncc_model_path(stride))
    tracker.init(seq.frames[0], seq.boxes[0])
    worst = min(iou(tracker.update(f).box, b) for f, b in zip(seq.frames[1:], seq.boxes[1:]))
    assert tracker.info.stride == stride and worst > 0.7, (stride, worst)
print("tracked")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "tracked" in result.stdout, result.stderr


def test_only_the_committed_strides_have_files():
    with pytest.raises(ValueError, match="build one with build_ncc_model"):
        ncc_model_path(4)
