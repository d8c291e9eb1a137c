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


def _bn_conv_model(kernel: int, pads: int, shared_by_second_conv: bool = False):
    """x -> BatchNorm -> Conv(kernel, pads) [-> a second 1x1 Conv on the same BatchNorm output], as the mixers'
    pre-norm layers are exported."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    c, o = 6, 5
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in [
        (rng.uniform(0.5, 2.0, c), "gamma"), (rng.normal(size=c), "beta"), (rng.normal(size=c), "mean"),
        (rng.uniform(0.2, 3.0, c), "var"), (rng.normal(size=(o, c, kernel, kernel)), "w"), (rng.normal(size=o), "b"),
        (rng.normal(size=(o, c, 1, 1)), "w2")]]
    nodes = [helper.make_node("BatchNormalization", ["x", "gamma", "beta", "mean", "var"], ["n"], name="bn",
                              epsilon=1e-3),
             helper.make_node("Conv", ["n", "w", "b"], ["y"], name="conv", pads=[pads] * 4)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if shared_by_second_conv:
        nodes.append(helper.make_node("Conv", ["n", "w2"], ["y2"], name="conv2"))
        outputs.append(helper.make_tensor_value_info("y2", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "bn_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                               [1, c, 7, 7])], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("shared", [False, True])
def test_batchnorm_before_a_1x1_conv_is_folded_exactly(shared):
    import onnxruntime as ort

    from siammixer_ros.tools.quantize import fold_batchnorm_into_next_conv

    model = _bn_conv_model(kernel=1, pads=0, shared_by_second_conv=shared)
    x = np.random.default_rng(4).normal(size=(1, 6, 7, 7)).astype(np.float32) * 3
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    assert fold_batchnorm_into_next_conv(model) == ["bn"]
    assert [n.op_type for n in model.graph.node] == ["Conv"] * (2 if shared else 1)
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    for a, b in zip(before, after, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-4)


def test_batchnorm_before_a_padded_conv_is_not_folded():
    # zero padding is applied after the BatchNorm: folding would change the border outputs, so it must stay
    from siammixer_ros.tools.quantize import fold_batchnorm_into_next_conv

    model = _bn_conv_model(kernel=3, pads=1)
    assert fold_batchnorm_into_next_conv(model) == []
    assert [n.op_type for n in model.graph.node] == ["BatchNormalization", "Conv"]


def test_profile_parts_counts_int8_kernels_only_in_the_int8_file(int8_ncc):
    from siammixer_ros.tools.profile_parts import QDQ, profile_files, to_markdown

    path, _ = int8_ncc
    result = profile_files([str(ncc_model_path(8)), str(path)], "search", scales=1, repeats=3)
    float_ops = {op for ops in result["kernel_ms"][str(ncc_model_path(8))].values() for op in ops}
    int8_ops = {op for ops in result["kernel_ms"][str(path)].values() for op in ops}
    assert not any(op.startswith("QLinear") or op in ("QuantizeLinear", "DequantizeLinear") for op in float_ops)
    assert any(op.startswith("QLinear") for op in int8_ops) and QDQ in result["kernel_ms"][str(path)]
    table = to_markdown(result)
    assert path.name in table and "speed-up vs" in table


def test_int8_benchmarks_state_the_cpu_they_ran_on_not_an_assumed_one():
    # int8 speed hinges on VNNI-class dot products; the tables once said avx512_vnni on a CPU without them
    from siammixer_ros.tools.machine import cpu_label, cpu_summary, parse_cpuinfo

    amd = parse_cpuinfo("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx fma avx2 bmi2\n"
                        "processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx fma avx2 bmi2\n")
    assert amd == {"model": "AMD EPYC", "int8_flags": ["avx2"]}
    assert "no VNNI-class int8 dot product" in cpu_label({"cpu_count": 2, **amd})
    xeon = parse_cpuinfo("model name\t: Intel Xeon\nflags\t\t: avx2 avx512f avx512bw avx512_vnni\n")
    assert xeon["int8_flags"] == ["avx2", "avx512f", "avx512bw", "avx512_vnni"]
    assert "VNNI" not in cpu_label({"cpu_count": 2, **xeon}) and "avx512_vnni" in cpu_label({"cpu_count": 2, **xeon})
    arm = parse_cpuinfo("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\nCPU part\t: 0xd4b\n")
    assert arm["int8_flags"] == ["asimddp", "i8mm"]
    assert "not recorded" in cpu_label({"cpu_count": 2})  # results written before the flags were recorded
    here = cpu_summary()
    assert here["cpu_count"] and isinstance(here["int8_flags"], list)
