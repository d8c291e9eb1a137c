"""A SiamMixer-format ONNX test model whose response is the zero-mean normalised cross-correlation
(NCC) of raw grayscale pixels, so that its peak lies exactly where the template is.

It has the interface of a real SiamMixer model file (parts ``template``, ``search``, ``head``; no patch
parts, so runtimes run it in mode ``"whole"``; float32 NCHW BGR 0..255 inputs) and lets tests check the
tracker's geometry end to end (crop, stride, offsets, scales) without a trained network. It is a test
model, not a tracker: the metadata says so (variant ``ncc-test``, model_version ``test``).

Graphs (``s`` = stride, ``t = T / s``, ``F = S / s``, ``R = F - t + 1``):

* template: gray = 0.114 B + 0.587 G + 0.299 R; ``z = AveragePool_s(gray)`` (1,1,t,t); features
  ``(z - mean(z)) / ||z - mean(z)||`` (zero mean, unit norm);
* search: ``x = AveragePool_s(gray)`` (B,1,F,F);
* head: ``ncc = Conv(x, zf) / sqrt(Σx² - (Σx)²/n + n)`` over every t x t window (Σ via Conv with a ones
  kernel, ``n = t²``; the ``+ n`` keeps flat windows at ncc ≈ 0), response
  ``(ncc - response_offset) * response_gain`` (B,1,R,R).

With the defaults (offset 0.5, gain 10), a perfect match gives logit 5 (sigmoid 0.993), ncc 0.5 gives 0.5,
an uncorrelated window (ncc ≈ 0) gives -5 (0.007), so the tracker's confidence spans [0, 1] usefully.
Response cell ``(R - 1) / 2`` is zero displacement and one cell is ``s`` search pixels, as in the real model.

Building a model needs the ``onnx`` package; the two models the tests and benchmarks use (template 128,
search 256, strides 8 and 16, default gain and offset, 4 kB each) are committed under ``models/testing/`` and
returned by :func:`ncc_model_path`, so that tests run on a base install (onnxruntime only).
``python -m siammixer_ros.testing.ncc_model`` rewrites them; a test checks they equal a fresh build.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from siammixer_ros.core.model_file import ModelInfo, models_dir, write_model_file

__all__ = ["COMMITTED_STRIDES", "NCC_VARIANT", "build_ncc_model", "ncc_model_info", "ncc_model_path"]

NCC_VARIANT = "ncc-test"
COMMITTED_STRIDES = (8, 16)
OPSET = 17
IR_VERSION = 8
_GRAY_BGR = (0.114, 0.587, 0.299)


def ncc_model_info(template_size: int = 128, search_size: int = 256, stride: int = 8) -> ModelInfo:
    """The ModelInfo of the NCC test model with these sizes (raises ValueError for impossible sizes)."""
    if template_size % stride or search_size % stride:
        raise ValueError(f"template ({template_size}) and search ({search_size}) sizes must be multiples of {stride}")
    if search_size <= template_size:
        raise ValueError(f"search size {search_size} must exceed template size {template_size}")
    response_size = (search_size - template_size) // stride + 1
    return ModelInfo(
        variant=NCC_VARIANT,
        template_size=template_size,
        search_size=search_size,
        stride=stride,
        response_size=response_size,
        normalisation="bgr float32 0..255; grayscale + average pooling inside the graph",
        model_version="test",
        provenance={
            "kind": "test model, not a tracker and not trained",
            "response": "zero-mean normalised cross-correlation of average-pooled grayscale pixels",
            "builder": "siammixer_ros.testing.ncc_model.build_ncc_model",
        },
    )


def _features_nodes(helper, image: str, out: str, stride: int, prefix: str) -> list:
    return [
        helper.make_node("Conv", [image, prefix + "gray_w"], [prefix + "gray"]),
        helper.make_node(
            "AveragePool", [prefix + "gray"], [out], kernel_shape=[stride, stride], strides=[stride, stride]
        ),
    ]


def _gray_initializer(numpy_helper, prefix: str):
    return numpy_helper.from_array(np.array(_GRAY_BGR, dtype=np.float32).reshape(1, 3, 1, 1), prefix + "gray_w")


def _template_graph(helper, numpy_helper, stride: int, prefix: str = ""):
    nodes = _features_nodes(helper, "template", prefix + "z", stride, prefix)
    nodes += [
        helper.make_node("ReduceMean", [prefix + "z"], [prefix + "z_mean"], axes=[2, 3], keepdims=1),
        helper.make_node("Sub", [prefix + "z", prefix + "z_mean"], [prefix + "z_c"]),
        helper.make_node("ReduceSumSquare", [prefix + "z_c"], [prefix + "z_ss"], axes=[2, 3], keepdims=1),
        helper.make_node("Add", [prefix + "z_ss", prefix + "eps"], [prefix + "z_ss_eps"]),
        helper.make_node("Sqrt", [prefix + "z_ss_eps"], [prefix + "z_norm"]),
        helper.make_node("Div", [prefix + "z_c", prefix + "z_norm"], ["template_features"]),
    ]
    inits = [_gray_initializer(numpy_helper, prefix), numpy_helper.from_array(np.float32(1e-6), prefix + "eps")]
    return nodes, inits


def _search_graph(helper, numpy_helper, stride: int, prefix: str = ""):
    nodes = _features_nodes(helper, "search", "search_features", stride, prefix)
    return nodes, [_gray_initializer(numpy_helper, prefix)]


def _head_graph(helper, numpy_helper, gain: float, offset: float, prefix: str = ""):
    p = prefix
    nodes = [
        helper.make_node("Conv", ["search_features", "template_features"], [p + "num"]),
        # A ones kernel of the template's shape, built from it so that the head works for any size.
        helper.make_node("Mul", ["template_features", p + "zero"], [p + "zeros"]),
        helper.make_node("Add", [p + "zeros", p + "one"], [p + "ones"]),
        helper.make_node("ReduceSum", [p + "ones"], [p + "n"], keepdims=0),
        helper.make_node("Conv", ["search_features", p + "ones"], [p + "sx"]),
        helper.make_node("Mul", ["search_features", "search_features"], [p + "xx"]),
        helper.make_node("Conv", [p + "xx", p + "ones"], [p + "sxx"]),
        helper.make_node("Mul", [p + "sx", p + "sx"], [p + "sx2"]),
        helper.make_node("Div", [p + "sx2", p + "n"], [p + "sx2_n"]),
        helper.make_node("Sub", [p + "sxx", p + "sx2_n"], [p + "var_raw"]),
        helper.make_node("Relu", [p + "var_raw"], [p + "var"]),
        helper.make_node("Add", [p + "var", p + "n"], [p + "var_eps"]),
        helper.make_node("Sqrt", [p + "var_eps"], [p + "den"]),
        helper.make_node("Div", [p + "num", p + "den"], [p + "ncc"]),
        helper.make_node("Sub", [p + "ncc", p + "offset"], [p + "ncc_c"]),
        helper.make_node("Mul", [p + "ncc_c", p + "gain"], ["response"]),
    ]
    inits = [
        numpy_helper.from_array(np.float32(0.0), p + "zero"),
        numpy_helper.from_array(np.float32(1.0), p + "one"),
        numpy_helper.from_array(np.float32(offset), p + "offset"),
        numpy_helper.from_array(np.float32(gain), p + "gain"),
    ]
    return nodes, inits


def _model(helper, nodes, inits, inputs, outputs, name: str):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="siammixer_ros-test")
    model.ir_version = IR_VERSION
    return model


def build_ncc_model(
    path: str | Path,
    template_size: int = 128,
    search_size: int = 256,
    stride: int = 8,
    response_gain: float = 10.0,
    response_offset: float = 0.5,
) -> Path:
    """Write the NCC test model (see module docstring) to ``path`` in the SiamMixer model-file format.

    ``stride`` is the average-pooling factor (search pixels per response cell); template and search sizes
    must be multiples of it. The response size is ``(search_size - template_size) / stride + 1``.
    Returns the path. Needs the ``onnx`` package.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    info = ncc_model_info(template_size, search_size, stride)
    t, f, r = template_size // stride, search_size // stride, info.response_size
    template_in = helper.make_tensor_value_info("template", TensorProto.FLOAT, [1, 3, template_size, template_size])
    search_in = helper.make_tensor_value_info("search", TensorProto.FLOAT, ["B", 3, search_size, search_size])
    zf = helper.make_tensor_value_info("template_features", TensorProto.FLOAT, [1, 1, t, t])
    xf = helper.make_tensor_value_info("search_features", TensorProto.FLOAT, ["B", 1, f, f])
    resp = helper.make_tensor_value_info("response", TensorProto.FLOAT, ["B", 1, r, r])

    tn, ti = _template_graph(helper, numpy_helper, stride)
    sn, si = _search_graph(helper, numpy_helper, stride)
    hn, hi = _head_graph(helper, numpy_helper, response_gain, response_offset)
    parts = {
        "template": _model(helper, tn, ti, [template_in], [zf], "ncc_template"),
        "search": _model(helper, sn, si, [search_in], [xf], "ncc_search"),
        "head": _model(helper, hn, hi, [zf, xf], [resp], "ncc_head"),
    }
    # Main graph: the three parts chained (names prefixed so the two gray kernels do not clash).
    mtn, mti = _template_graph(helper, numpy_helper, stride, prefix="t_")
    msn, msi = _search_graph(helper, numpy_helper, stride, prefix="s_")
    mhn, mhi = _head_graph(helper, numpy_helper, response_gain, response_offset, prefix="h_")
    main = _model(helper, mtn + msn + mhn, mti + msi + mhi, [template_in, search_in], [resp], "ncc_tracker_test")
    for model in (main, *parts.values()):
        onnx.checker.check_model(model)
    return write_model_file(path, main, parts, info)


def ncc_model_path(stride: int = 8) -> Path:
    """The committed NCC test model (template 128, search 256, default gain and offset) for ``stride`` 8 or 16."""
    if stride not in COMMITTED_STRIDES:
        raise ValueError(f"no committed NCC model for stride {stride}; build one with build_ncc_model (needs onnx)")
    return models_dir() / "testing" / f"ncc_s{stride}.onnx"


def main() -> int:
    """Rewrite the committed models (after a change to the graphs above)."""
    for stride in COMMITTED_STRIDES:
        print(build_ncc_model(ncc_model_path(stride), stride=stride))
    return 0


if __name__ == "__main__":
    sys.exit(main())
