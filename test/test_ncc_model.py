"""The committed NCC test models: what a fresh build writes, and usable where the onnx package is absent."""

from __future__ import annotations

import subprocess
import sys

import pytest

from siammixer_ros.testing.ncc_model import COMMITTED_STRIDES, build_ncc_model, ncc_model_path


@pytest.mark.parametrize("stride", COMMITTED_STRIDES)
def test_committed_models_equal_a_fresh_build(tmp_path, stride):
    pytest.importorskip("onnx", reason="building the NCC test model needs onnx (scripts/setup.sh --extras train)")
    fresh = build_ncc_model(tmp_path / "fresh.onnx", stride=stride)
    assert fresh.read_bytes() == ncc_model_path(stride).read_bytes(), (
        "the NCC graphs changed: run python -m siammixer_ros.testing.ncc_model")


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
