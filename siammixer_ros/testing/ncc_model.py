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

Box output (``build_ncc_model(..., box_output=True)``, the committed ``ncc_box_s16.onnx``): a test fixture for the
tracker's box-regression modes, NOT a learnt regression. It measures the extent of saturated colour in the search
crop: pixels whose channels differ by more than ``box_saturation`` (100) (the synthetic target of
:func:`siammixer_ros.testing.synthetic.saturated_texture`; the low-contrast background never does) are averaged
per ``s x s`` block (block rows/columns under 10 % covered are ignored: stray pixels); the crop's colour box is
then exact for an axis-aligned target at least ``2 s`` pixels high and wide (width = ``s`` times the sum over
block columns of their largest coverage; left edge from the first covered column's coverage), and every cell
reports its (l, t, r, b) distances to that one box. Its search features carry the block coverage as a second
channel (the NCC head reads the first).

Building a model needs the ``onnx`` package; the models the tests and benchmarks use (template 128,
search 256, strides 8 and 16, default gain and offset, 4 kB each) are committed under ``models/testing/`` and
returned by :func:`ncc_model_path` (the box model, stride 16, by :func:`ncc_box_model_path`), so that tests run
on a base install (onnxruntime only).
``python -m siammixer_ros.testing.ncc_model`` rewrites them; a test checks they equal a fresh build.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from siammixer_ros.core.model_file import BOX_OUTPUT_LTRB, ModelInfo, models_dir, write_model_file

__all__ = ["COMMITTED_STRIDES", "NCC_VARIANT", "build_ncc_model", "ncc_box_model_path", "ncc_model_info",
           "ncc_model_path"]

NCC_VARIANT = "ncc-test"
COMMITTED_STRIDES = (8, 16)
BOX_STRIDE = 16  # the committed box model's stride (the real model's)
BOX_SATURATION = 100.0
BOX_MIN_COVERAGE = 0.1  # block columns/rows less covered are ignored (stray pixels)
OPSET = 17
IR_VERSION = 8
_GRAY_BGR = (0.114, 0.587, 0.299)


def ncc_model_info(template_size: int = 128, search_size: int = 256, stride: int = 8, box_output: bool = False
                   ) -> ModelInfo:
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
            **({"box": "extent of saturated colour in the search crop (a test fixture, not a regression)"}
               if box_output else {}),
        },
        box_output=BOX_OUTPUT_LTRB if box_output else "",
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


def _search_box_graph(helper, numpy_helper, stride: int, saturation: float, prefix: str = ""):
    """Search features with a second channel: the block coverage of saturated colour (see the module docstring)."""
    p = prefix
    nodes = _features_nodes(helper, "search", p + "gray_pooled", stride, prefix) + [
        helper.make_node("ReduceMax", ["search"], [p + "cmax"], axes=[1], keepdims=1),
        helper.make_node("ReduceMin", ["search"], [p + "cmin"], axes=[1], keepdims=1),
        helper.make_node("Sub", [p + "cmax", p + "cmin"], [p + "spread"]),
        helper.make_node("Greater", [p + "spread", p + "saturation"], [p + "saturated"]),
        helper.make_node("Cast", [p + "saturated"], [p + "mask"], to=1),
        helper.make_node("AveragePool", [p + "mask"], [p + "coverage"], kernel_shape=[stride, stride],
                         strides=[stride, stride]),
        helper.make_node("Concat", [p + "gray_pooled", p + "coverage"], ["search_features"], axis=1),
    ]
    inits = [_gray_initializer(numpy_helper, prefix), numpy_helper.from_array(np.float32(saturation), p + "saturation")]
    return nodes, inits


def _extent_nodes(helper, p: str, coverage: str, reduce_axis: int, axis: int, name: str) -> list:
    """Start (pixels, left/top edge) and length of the covered blocks along ``axis`` (3: x, 2: y)."""
    q = p + name
    return [
        helper.make_node("ReduceMax", [coverage], [q + "profile_raw"], axes=[reduce_axis], keepdims=1),
        helper.make_node("Greater", [q + "profile_raw", p + "tiny"], [q + "covered"]),
        helper.make_node("Cast", [q + "covered"], [q + "covered_f"], to=1),
        helper.make_node("Mul", [q + "profile_raw", q + "covered_f"], [q + "profile"]),
        helper.make_node("ReduceSum", [q + "profile", q + "axes"], [q + "blocks"], keepdims=1),
        helper.make_node("Mul", [q + "blocks", p + "stride"], [q + "length"]),
        helper.make_node("ArgMax", [q + "covered_f"], [q + "first"], axis=axis, keepdims=1),
        helper.make_node("GatherElements", [q + "profile", q + "first"], [q + "first_cov"], axis=axis),
        helper.make_node("Cast", [q + "first"], [q + "first_f"], to=1),
        # The first covered block's far edge minus its covered part: the box's near edge.
        helper.make_node("Add", [q + "first_f", p + "one_b"], [q + "first_end"]),
        helper.make_node("Sub", [q + "first_end", q + "first_cov"], [q + "start_blocks"]),
        helper.make_node("Mul", [q + "start_blocks", p + "stride"], [q + "start"]),
    ]


def _head_graph(helper, numpy_helper, gain: float, offset: float, prefix: str = "",
                box: tuple[int, int, int] | None = None):
    """The NCC head; with ``box`` = (stride, response size, search size) also the colour box output (the search
    features then have 2 channels)."""
    p = prefix
    gray = "search_features"
    nodes = []
    inits = []
    if box is not None:
        gray = p + "search_gray"
        nodes += [
            helper.make_node("Slice", ["search_features", p + "c0", p + "c1", p + "c_axis"], [gray]),
            helper.make_node("Slice", ["search_features", p + "c1", p + "c2", p + "c_axis"], [p + "coverage"]),
        ]
    nodes += _ncc_nodes(helper, p, gray)
    inits += [
        numpy_helper.from_array(np.float32(0.0), p + "zero"),
        numpy_helper.from_array(np.float32(1.0), p + "one"),
        numpy_helper.from_array(np.float32(offset), p + "offset"),
        numpy_helper.from_array(np.float32(gain), p + "gain"),
    ]
    if box is not None:
        stride, r, search_size = box
        points = _points(search_size, stride, r)
        nodes += _extent_nodes(helper, p, p + "coverage", 2, 3, "x_")
        nodes += _extent_nodes(helper, p, p + "coverage", 3, 2, "y_")
        # Cell points (pixel-centre coordinates of the crop) and the box's continuous edges (a pixel spans +-0.5).
        nodes += [
            helper.make_node("Sub", [p + "points_x", p + "x_start"], [p + "l_raw"]),
            helper.make_node("Add", [p + "l_raw", p + "half"], [p + "l"]),
            helper.make_node("Sub", [p + "points_y", p + "y_start"], [p + "t_raw"]),
            helper.make_node("Add", [p + "t_raw", p + "half"], [p + "t"]),
            helper.make_node("Add", [p + "x_start", p + "x_length"], [p + "x_end"]),
            helper.make_node("Sub", [p + "x_end", p + "points_x"], [p + "r_raw"]),
            helper.make_node("Sub", [p + "r_raw", p + "half"], [p + "r"]),
            helper.make_node("Add", [p + "y_start", p + "y_length"], [p + "y_end"]),
            helper.make_node("Sub", [p + "y_end", p + "points_y"], [p + "b_raw"]),
            helper.make_node("Sub", [p + "b_raw", p + "half"], [p + "b"]),
            helper.make_node("Concat", [p + "l", p + "t", p + "r", p + "b"], ["box"], axis=1),
        ]
        inits += [
            numpy_helper.from_array(np.array([0], np.int64), p + "c0"),
            numpy_helper.from_array(np.array([1], np.int64), p + "c1"),
            numpy_helper.from_array(np.array([2], np.int64), p + "c2"),
            numpy_helper.from_array(np.array([1], np.int64), p + "c_axis"),
            numpy_helper.from_array(np.array([2, 3], np.int64), p + "x_axes"),
            numpy_helper.from_array(np.array([2, 3], np.int64), p + "y_axes"),
            numpy_helper.from_array(np.float32(stride), p + "stride"),
            numpy_helper.from_array(np.float32(BOX_MIN_COVERAGE), p + "tiny"),
            numpy_helper.from_array(np.float32(1.0), p + "one_b"),
            numpy_helper.from_array(np.float32(0.5), p + "half"),
            numpy_helper.from_array(np.tile(points[None, :], (r, 1)).reshape(1, 1, r, r), p + "points_x"),
            numpy_helper.from_array(np.tile(points[:, None], (1, r)).reshape(1, 1, r, r), p + "points_y"),
        ]
    return nodes, inits


def _points(search_size: int, stride: int, r: int) -> np.ndarray:
    """Crop coordinates of the response cells' points along one axis."""
    return ((search_size - 1) / 2.0 + stride * (np.arange(r) - (r - 1) / 2.0)).astype(np.float32)


def _ncc_nodes(helper, p: str, gray: str) -> list:
    return [
        helper.make_node("Conv", [gray, "template_features"], [p + "num"]),
        # A ones kernel of the template's shape, built from it so that the head works for any size.
        helper.make_node("Mul", ["template_features", p + "zero"], [p + "zeros"]),
        helper.make_node("Add", [p + "zeros", p + "one"], [p + "ones"]),
        helper.make_node("ReduceSum", [p + "ones"], [p + "n"], keepdims=0),
        helper.make_node("Conv", [gray, p + "ones"], [p + "sx"]),
        helper.make_node("Mul", [gray, gray], [p + "xx"]),
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
    box_output: bool = False,
    box_saturation: float = BOX_SATURATION,
) -> Path:
    """Write the NCC test model (see module docstring) to ``path`` in the SiamMixer model-file format.

    ``stride`` is the average-pooling factor (search pixels per response cell); template and search sizes
    must be multiples of it. The response size is ``(search_size - template_size) / stride + 1``.
    ``box_output``: the head also returns ``box``, the colour-extent test fixture of the module docstring.
    Returns the path. Needs the ``onnx`` package.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    info = ncc_model_info(template_size, search_size, stride, box_output)
    t, f, r = template_size // stride, search_size // stride, info.response_size
    template_in = helper.make_tensor_value_info("template", TensorProto.FLOAT, [1, 3, template_size, template_size])
    search_in = helper.make_tensor_value_info("search", TensorProto.FLOAT, ["B", 3, search_size, search_size])
    zf = helper.make_tensor_value_info("template_features", TensorProto.FLOAT, [1, 1, t, t])
    xf = helper.make_tensor_value_info("search_features", TensorProto.FLOAT, ["B", 2 if box_output else 1, f, f])
    resp = helper.make_tensor_value_info("response", TensorProto.FLOAT, ["B", 1, r, r])
    outputs = [resp] + ([helper.make_tensor_value_info("box", TensorProto.FLOAT, ["B", 4, r, r])] if box_output else [])
    box = (stride, r, search_size) if box_output else None

    def search_graph(prefix: str = ""):
        if box_output:
            return _search_box_graph(helper, numpy_helper, stride, box_saturation, prefix)
        return _search_graph(helper, numpy_helper, stride, prefix)

    tn, ti = _template_graph(helper, numpy_helper, stride)
    sn, si = search_graph()
    hn, hi = _head_graph(helper, numpy_helper, response_gain, response_offset, box=box)
    parts = {
        "template": _model(helper, tn, ti, [template_in], [zf], "ncc_template"),
        "search": _model(helper, sn, si, [search_in], [xf], "ncc_search"),
        "head": _model(helper, hn, hi, [zf, xf], outputs, "ncc_head"),
    }
    # Main graph: the three parts chained (names prefixed so the two gray kernels do not clash).
    mtn, mti = _template_graph(helper, numpy_helper, stride, prefix="t_")
    msn, msi = search_graph(prefix="s_")
    mhn, mhi = _head_graph(helper, numpy_helper, response_gain, response_offset, prefix="h_", box=box)
    main = _model(helper, mtn + msn + mhn, mti + msi + mhi, [template_in, search_in], outputs, "ncc_tracker_test")
    for model in (main, *parts.values()):
        onnx.checker.check_model(model)
    return write_model_file(path, main, parts, info)


def ncc_model_path(stride: int = 8) -> Path:
    """The committed NCC test model (template 128, search 256, default gain and offset) for ``stride`` 8 or 16."""
    if stride not in COMMITTED_STRIDES:
        raise ValueError(f"no committed NCC model for stride {stride}; build one with build_ncc_model (needs onnx)")
    return models_dir() / "testing" / f"ncc_s{stride}.onnx"


def ncc_box_model_path() -> Path:
    """The committed NCC test model with the colour-extent box output (stride 16, template 128, search 256)."""
    return models_dir() / "testing" / f"ncc_box_s{BOX_STRIDE}.onnx"


def main() -> int:
    """Rewrite the committed models (after a change to the graphs above)."""
    for stride in COMMITTED_STRIDES:
        print(build_ncc_model(ncc_model_path(stride), stride=stride))
    print(build_ncc_model(ncc_box_model_path(), stride=BOX_STRIDE, box_output=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
