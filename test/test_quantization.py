"""INT8 model files (siammixer-quantize): a quantised NCC test model tracks like the float one, and the runtime refuses
a file whose quantisation metadata does not match its parts.

Quantising needs onnx and onnxruntime's quantisation tooling (the train extra); calibration uses synthetic training
sequences written to a temporary folder (OTB layout), so no shared data is needed.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from siammixer_ros.core import SiamMixerTracker
from siammixer_ros.core.model_file import META_PREFIX, ModelError, read_model_file
from siammixer_ros.core.runtime import RuntimeOptions, SiamMixerRuntime
from siammixer_ros.testing.ncc_model import ncc_model_path
from siammixer_ros.testing.synthetic import iou, render_sequence

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

PLAIN = {"distractor_subtract": 0.0, "template_weight": 0.0, "online_weight": 0.0}
TRANSLATION = [(100 + 3 * i, 80 + 20 * np.sin(i / 5), 48, 40) for i in range(40)]


def _write_otb_sequence(folder, seq):
    (folder / "img").mkdir(parents=True)
    for i, frame in enumerate(seq.frames):
        cv2.imwrite(str(folder / "img" / f"{i + 1:04d}.png"), frame)
    rows = [f"{x:.2f},{y:.2f},{w:.2f},{h:.2f}\n" for x, y, w, h in seq.boxes]
    (folder / "groundtruth_rect.txt").write_text("".join(rows))


@pytest.fixture(scope="module")
def int8_ncc(tmp_path_factory):
    from siammixer_ros.tools.quantize import QuantizeOptions, quantize_model_file

    root = tmp_path_factory.mktemp("quant")
    data = root / "train"
    for k in range(3):  # calibration: other textures and paths than the tracked sequence
        boxes = [(60 + 4 * i + 10 * k, 60 + 15 * np.cos(i / 4 + k), 40 + k * 6, 36 + k * 4) for i in range(16)]
        _write_otb_sequence(data / f"synthetic{k}", render_sequence(boxes, seed=100 + k))
    out = root / "ncc_s8_int8.onnx"
    quant = quantize_model_file(ncc_model_path(8), out, QuantizeOptions(dataset=str(data), calibration_frames=6,
                                                                        check_frames=2, quiet=True))
    return out, quant


def _track(model, seq):
    tracker = SiamMixerTracker(runtime=SiamMixerRuntime(model, RuntimeOptions(mode="whole")), params=PLAIN)
    tracker.init(seq.frames[0], seq.boxes[0])
    return [tracker.update(frame).box for frame in seq.frames[1:]]


def test_quantised_ncc_model_is_int8_and_says_how(int8_ncc):
    path, quant = int8_ncc
    info, parts = read_model_file(path)
    assert info.is_quantized and info.model_version == "test-int8"
    assert info.quantization == quant
    assert quant["calibration"]["split"].startswith("train")
    assert quant["calibration"]["sequences"] == ["synthetic0", "synthetic1", "synthetic2"]
    assert quant["check"]["frames_shared_with_calibration"] == 0
    assert {p["precision"] for p in quant["parts"].values()} == {"int8"}
    assert set(quant["parts"]) == set(parts)
    assert quant["method"]["weights"].startswith("int8") and quant["method"]["format"].startswith("QDQ")
    for name, data in parts.items():
        assert b"DequantizeLinear" in data, f"part {name} was not quantised"


def test_quantised_ncc_model_tracks_the_synthetic_sequence_like_the_float_one(int8_ncc):
    seq = render_sequence(TRANSLATION, seed=1)
    float_boxes = _track(ncc_model_path(8), seq)
    int8_boxes = _track(int8_ncc[0], seq)
    truth = seq.boxes[1:]
    float_iou = np.array([iou(b, t) for b, t in zip(float_boxes, truth, strict=True)])
    int8_iou = np.array([iou(b, t) for b, t in zip(int8_boxes, truth, strict=True)])
    assert float_iou.mean() > 0.95
    assert int8_iou.min() > 0.85 and int8_iou.mean() > float_iou.mean() - 0.03, (int8_iou, float_iou)
    agreement = np.array([iou(a, b) for a, b in zip(int8_boxes, float_boxes, strict=True)])
    assert agreement.mean() > 0.9, agreement


def _rewrite(src, dst, edit):
    """Copy the model file with its metadata changed by ``edit(meta: dict) -> None``."""
    proto = onnx.load(str(src))
    meta = {p.key: p.value for p in proto.metadata_props}
    edit(meta)
    del proto.metadata_props[:]
    for key, value in sorted(meta.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(dst))
    return dst


def _edit_quant(change):
    def edit(meta):
        quant = json.loads(meta[META_PREFIX + "quantization"])
        change(quant)
        meta[META_PREFIX + "quantization"] = json.dumps(quant)
    return edit


def test_runtime_refuses_a_float_part_swapped_into_an_int8_file(int8_ncc, tmp_path):
    float_meta = {p.key: p.value for p in onnx.load(str(ncc_model_path(8))).metadata_props}

    def swap(meta):
        meta[META_PREFIX + "part.search"] = float_meta[META_PREFIX + "part.search"]

    bad = _rewrite(int8_ncc[0], tmp_path / "swapped.onnx", swap)
    with pytest.raises(ModelError, match="part 'search' is marked int8 but its graph holds no quantised node"):
        SiamMixerRuntime(bad)


@pytest.mark.parametrize("change, message", [
    (lambda q: q["parts"].pop("head"), r"parts head are in the file but not in the metadata"),
    (lambda q: q.pop("calibration"), r"missing calibration"),
    (lambda q: q["parts"]["template"].update(precision="float"), "part 'template' is marked float but its graph holds"),
    (lambda q: q["parts"]["template"].update(precision="int4"), "part 'template' has precision 'int4'"),
    (lambda q: q["parts"]["head"].update(sha256="0" * 64), "part 'head' does not match the sha256"),
])
def test_runtime_refuses_inconsistent_quantisation_metadata(int8_ncc, tmp_path, change, message):
    bad = _rewrite(int8_ncc[0], tmp_path / "bad.onnx", _edit_quant(change))
    with pytest.raises(ModelError, match="inconsistent quantisation metadata") as err:
        SiamMixerRuntime(bad)
    assert err.match(message)


def test_runtime_refuses_quantised_parts_without_quantisation_metadata(int8_ncc, tmp_path):
    bad = _rewrite(int8_ncc[0], tmp_path / "unmarked.onnx", lambda meta: meta.pop(META_PREFIX + "quantization"))
    with pytest.raises(ModelError, match="are quantised .* but the file has no 'siammixer.quantization' metadata"):
        SiamMixerRuntime(bad)


def test_runtime_refuses_quantisation_metadata_that_is_not_json(int8_ncc, tmp_path):
    bad = _rewrite(int8_ncc[0], tmp_path / "garbled.onnx",
                   lambda meta: meta.__setitem__(META_PREFIX + "quantization", "{int8"))
    with pytest.raises(ModelError, match="quantisation metadata .* is not valid JSON"):
        SiamMixerRuntime(bad)


def test_quantising_an_int8_file_again_is_refused(int8_ncc, tmp_path):
    from siammixer_ros.tools.quantize import QuantizeOptions, quantize_model_file

    with pytest.raises(ModelError, match="already quantised"):
        quantize_model_file(int8_ncc[0], tmp_path / "again.onnx", QuantizeOptions(quiet=True))
