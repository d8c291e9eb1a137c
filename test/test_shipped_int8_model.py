"""The INT8 model shipped in models/: the documented file, quantised from the shipped float file on training crops only,
selected by the node's model_precision, and tracking like the float model."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from ros_helpers import requires_rclpy, unique_namespace

from siammixer_ros.core import SiamMixerTracker
from siammixer_ros.core.model_file import SHIPPED_MODEL_NAMES, read_model_file
from siammixer_ros.eval.datasets import SHARED_VAL_SEQUENCES
from siammixer_ros.testing.synthetic import iou, render_sequence

REPO = Path(__file__).resolve().parents[1]
FLOAT_MODEL = REPO / "models" / SHIPPED_MODEL_NAMES["float"]
MODEL = REPO / "models" / SHIPPED_MODEL_NAMES["int8"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_shipped_int8_model_matches_its_documented_sha256():
    assert MODEL.is_file(), f"the shipped INT8 model {MODEL} is missing"
    digest = _sha256(MODEL)
    recorded = MODEL.with_suffix(".onnx.sha256").read_text().split()[0]
    assert digest == recorded, f"{MODEL.name} changed: update its .sha256 and models/README.md"
    readme = (REPO / "models" / "README.md").read_text()
    assert digest in re.findall(r"[0-9a-f]{64}", readme), "models/README.md does not name the INT8 file's sha256"


def test_shipped_int8_model_is_the_float_model_quantised_on_training_crops():
    info, parts = read_model_file(MODEL)
    float_info, _ = read_model_file(FLOAT_MODEL)
    quant = info.quantization
    assert quant["source"]["sha256"] == _sha256(FLOAT_MODEL), "quantised from another float file: quantise again"
    assert info.model_version == f"{float_info.model_version}-int8"
    assert set(parts) == set(float_info.parts) and info.has_patch_parts
    assert {p["precision"] for p in quant["parts"].values()} == {"int8"}
    calibrated_on = set(quant["calibration"]["sequences"])
    assert calibrated_on and not calibrated_on & set(SHARED_VAL_SEQUENCES)
    assert quant["calibration"]["split"].startswith("train")


def test_node_model_precision_selects_the_int8_file():
    pytest.importorskip("rclpy")
    from siammixer_ros.ros.node import default_model_path

    assert default_model_path("int8").resolve() == MODEL.resolve()
    assert default_model_path().resolve() == FLOAT_MODEL.resolve()


@pytest.mark.parametrize("seed", [0, 1])
def test_shipped_int8_model_tracks_a_synthetic_moving_target(seed):
    boxes = [(80 + 3 * i, 70 + 20 * np.sin(i / 5) * 1.5, 48, 40) for i in range(40)]
    seq = render_sequence(boxes, size=(320, 240), seed=seed)
    tracker = SiamMixerTracker(MODEL)
    tracker.init(seq.frames[0], seq.boxes[0])
    ious = [iou(tracker.update(frame).box, box) for frame, box in zip(seq.frames[1:], seq.boxes[1:], strict=True)]
    assert np.mean(ious) > 0.7, f"mean IoU {np.mean(ious):.3f} on a synthetic sequence (seed {seed})"


@requires_rclpy
def test_node_starts_with_the_int8_model_when_model_precision_says_so(ros_processes):
    process = ros_processes.start_python_module(
        "siammixer_ros.ros.node", "--ros-args", "-r", f"__ns:={unique_namespace('int8')}",
        "-p", "model_precision:=int8", name="int8_node")
    process.wait_for_output(r"tracking on /")
    assert f"{MODEL.name} (variant s, version 0.3.0-int8)" in process.output()


@requires_rclpy
def test_node_refuses_an_unknown_model_precision(ros_processes):
    process = ros_processes.start_python_module("siammixer_ros.ros.node", "--ros-args", "-p", "model_precision:=int4",
                                                name="int4_node")
    process.popen.wait(60)
    output = process.output()
    assert process.popen.returncode == 1, output
    assert "model_precision" in output and "int8" in output and "Traceback" not in output
