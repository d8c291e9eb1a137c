"""siammixer-quantize IN OUT: a static INT8 copy of a SiamMixer model file, with the sensitive layers kept in float.

Every part of the file (template, search, patch parts, head) and its main graph are quantised with onnxruntime's
tooling: static quantisation, QDQ format (QuantizeLinear/DequantizeLinear around each quantised operator, which
onnxruntime fuses into integer kernels), weights int8 per output channel (symmetric), activations uint8 per tensor
(asymmetric, MinMax ranges). The ranges are calibrated on crops from the TRAINING sequences of the shared data
(``siammixer_ros.eval.datasets``: the validation split is never read), made by the core's own crop code
(``core.crop.get_subwindow``) around the ground-truth boxes, the way the tracker makes them: template crops with the
tracker's context, search crops at the tracker's scales around a displaced centre.

The per-layer check (the hybrid idea of ../shared/reference/hybrid_lightweight_tracking_paper.txt: a low-bit network
with the layers that need precision kept in full precision): each layer is quantised alone (template, search and
head parts in whole-image mode, every other layer float) and the response maps are compared with the float model's
on held-out training crops (other frames than the calibration's); a layer whose error exceeds ``--max-layer-error``
stays float in every part. The final file's response error is measured the same way and stored in its metadata.

The output is one model file of the same format (core/model_file.py) that the runtime and the tracker load
unchanged; ``siammixer.quantization`` says how it was made (the runtime refuses a file where it does not match the
parts). Needs the ``onnx`` package (the ``train`` extra), like siammixer-export.

    siammixer-quantize models/siammixer_s.onnx models/siammixer_s_int8.onnx
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from siammixer_ros.core.crop import box_center, get_subwindow, image_mean, to_nchw
from siammixer_ros.core.model_file import (
    ARCHITECTURE_KEY,
    PART_HEAD,
    PART_SEARCH,
    PART_SEARCH_GLOBAL,
    PART_SEARCH_PATCH,
    PART_SEARCH_PATCH_INTERIOR,
    PART_TEMPLATE,
    ModelError,
    ModelInfo,
    file_sha256,
    part_sha256,
    read_model_file,
    write_model_file,
)
from siammixer_ros.core.params import TrackerParams
from siammixer_ros.core.postprocess import scale_factors
from siammixer_ros.core.runtime import assemble_grid, make_patches, patch_grid_size, patch_masks

DEFAULT_DATASET = "../shared/data/sequences"
# A layer stays float when quantising it alone moves the response maps by more than this (relative RMS error,
# see response_error); chosen from the per-layer table of the shipped model (docs/network.md).
DEFAULT_MAX_LAYER_ERROR = 0.05
METHOD = {
    "tool": "onnxruntime.quantization.quantize_static",
    "format": "QDQ (QuantizeLinear/DequantizeLinear pairs, fused into integer kernels by onnxruntime)",
    "weights": "int8, symmetric, per output channel",
    "activations": "uint8, asymmetric, per tensor",
    "calibration_method": "MinMax",
}
# METHOD["pre_processing"] with --fold-batchnorm (without it the key is absent: files made before the option match)
FOLD_BATCHNORM_METHOD = ("onnxruntime quant_pre_process (shape inference, basic graph optimisations), then every "
                         "BatchNormalization feeding only 1x1 convolutions folded into their weights and biases "
                         "(exact: the mixers' pre-norm BatchNorms, which onnxruntime cannot fuse into the convolution "
                         "after them)")
# Operators the per-layer check treats as layers (the ones with arithmetic worth quantising).
LAYER_OPS = ("Conv", "ConvTranspose", "BatchNormalization", "Add", "Mul")
# Node names differ between parts for the same layer (the exporter names nodes by the module path it traced):
# the main graph's modules are under /m/ and its second branch's get a "_1" suffix; the search parts' MB4 (which
# stops before the projection) and the masked patch stage's valid depthwise convolutions are traced without the
# module name. Keys map them onto the template/search parts' names.
_ALIASES = {"/expand/Conv": "/mb4/expand/Conv", "/depthwise/Conv": "/mb4/depthwise/Conv",
            "/mb1/Conv": "/mb1/depthwise/Conv", "/mb2/Conv": "/mb2/depthwise/Conv"}


def is_float_layer(key: str, float_layers: Iterable[str]) -> bool:
    """Whether layer ``key`` is kept float: named, or inside a named block ("/mb1" keeps every MB1 node float)."""
    return any(key == f or key.startswith(f.rstrip("/") + "/") for f in float_layers)


def layer_key(node_name: str) -> str:
    """The name of the network layer an ONNX node belongs to, the same in every part of a file."""
    name = node_name[2:] if node_name.startswith("/m/") else node_name
    name = name.replace("/head_module", "")
    name = re.sub(r"_1(?=/)", "", name)
    return _ALIASES.get(name, name)


# ------------------------------------------------------------------------------------------------ calibration crops

@dataclass
class CropSet:
    """Template crops (N,3,T,T) and search crops (N,K,3,S,S) (K scales) from training sequences, float32 BGR 0..255."""

    templates: np.ndarray
    searches: np.ndarray
    frames: list[tuple[str, int, int]]  # (sequence, template frame, search frame)


def _progress(iterable: Iterable[Any], total: int | None, desc: str, quiet: bool) -> Iterable[Any]:
    if quiet:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with the train extra; without it, no bar
        return iterable
    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)


def training_crops(dataset: str | Path, info: ModelInfo, frames_per_sequence: int, offset: float, seed: int,
                   quiet: bool = False, avoid: CropSet | None = None) -> CropSet:
    """Crops from the training split of ``dataset`` (never its validation sequences), as the tracker makes them.

    Per sequence, ``frames_per_sequence`` annotated frames evenly spaced (shifted by ``offset`` of the spacing);
    frames that ``avoid`` used (template or search) are skipped for the next unused ones, so that a check set shares
    no frame with the calibration set. The template is cut around the frame's ground truth with
    the tracker's context; the search crops come from the annotated frame a few frames later, centred on the
    ground truth displaced by up to a quarter of the target size (the tracker's centre is last frame's estimate),
    at the tracker's 3 scales.
    """
    from siammixer_ros.eval.datasets import SHARED_VAL_SEQUENCES, load_dataset

    sequences = load_dataset(dataset, split="train")
    leaked = [s.name for s in sequences if s.name in SHARED_VAL_SEQUENCES]
    if leaked:  # load_dataset's split guarantees this; the check keeps calibration honest if that ever changes
        raise RuntimeError(f"validation sequences in the calibration set: {leaked}")
    params = TrackerParams()
    scales = scale_factors(3, params.scale_step)
    rng = np.random.default_rng(seed)
    t_size, s_size = info.template_size, info.search_size
    used = _frames_used(avoid) if avoid else set()
    templates, searches, frames = [], [], []
    for seq in _progress(sequences, len(sequences), "crops", quiet):
        present = np.array([i for i in np.flatnonzero(seq.present) if (seq.name, int(i)) not in used], dtype=int)
        if present.size < 2:
            continue
        step = present.size / frames_per_sequence
        picks = sorted({int(present[min(present.size - 2, int((k + offset) * step))])
                        for k in range(frames_per_sequence)})
        for index in picks:
            later = present[present > index]
            search_index = int(later[min(len(later) - 1, int(rng.integers(1, 6)))])
            image = seq.frames[index]
            x, y, w, h = seq.boxes[index]
            context = params.context_amount * (w + h)
            z_side = math.sqrt((w + context) * (h + context))
            templates.append(get_subwindow(image, box_center((x, y, w, h)), z_side, t_size, image_mean(image)))
            image = seq.frames[search_index]
            x, y, w, h = seq.boxes[search_index]
            cx, cy = box_center((x, y, w, h))
            cx, cy = cx + rng.uniform(-0.25, 0.25) * w, cy + rng.uniform(-0.25, 0.25) * h
            context = params.context_amount * (w + h)
            x_side = math.sqrt((w + context) * (h + context)) * s_size / t_size
            pad = image_mean(image)
            crops = [get_subwindow(image, (cx, cy), x_side * s, s_size, pad) for s in scales]
            searches.append(to_nchw(np.stack(crops)))
            frames.append((seq.name, index, search_index))
        if hasattr(seq.frames, "close"):
            seq.frames.close()
    if not frames:
        raise RuntimeError(f"no training sequence with two annotated frames in {dataset}")
    return CropSet(to_nchw(np.stack(templates)), np.stack(searches), frames)


def _frames_used(crops: CropSet) -> set[tuple[str, int]]:
    return {(s, i) for s, t, x in crops.frames for i in (t, x)}


# ------------------------------------------------------------------------------------------------ part inputs

def _session(model: bytes | str, threads: int = 1) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def part_inputs(info: ModelInfo, parts: dict[str, bytes], crops: CropSet, batch: int = 8) -> dict[str, list[dict]]:
    """Inputs of every part for ``crops``, in batches: the images themselves, the patches cut from the search crops
    the way the runtime cuts them, and, for the parts that take features, the float model's features."""
    out: dict[str, list[dict]] = {name: [] for name in parts}
    templates = crops.templates
    searches = crops.searches.reshape((-1,) + crops.searches.shape[2:])
    template_session, search_session = _session(parts[PART_TEMPLATE]), _session(parts[PART_SEARCH])
    for i in range(len(templates)):
        out[PART_TEMPLATE].append({"template": templates[i:i + 1]})
    for i in range(0, len(searches), batch):
        out[PART_SEARCH].append({"search": searches[i:i + batch]})
    k = crops.searches.shape[1]
    for i in range(len(templates)):  # one template with its K search scales, as the tracker calls the head
        zf = template_session.run(None, {"template": templates[i:i + 1]})[0]
        xf = search_session.run(None, {"search": crops.searches[i]})[0]
        out[PART_HEAD].append({"template_features": zf, "search_features": xf})
        assert xf.shape[0] == k
    if PART_SEARCH_PATCH in parts:
        g = patch_grid_size(info.search_size, info.patch_size)
        masks = patch_masks(info.search_size, info.patch_size, info.halo_before, info.halo_after)
        interior = masks.reshape(masks.shape[0], -1).min(axis=1) > 0
        patch_session = _session(parts[PART_SEARCH_PATCH])
        for i in range(0, len(searches), batch):
            images = searches[i:i + batch]
            patches, patch_mask = make_patches(images, info.patch_size, info.halo_before, info.halo_after)
            out[PART_SEARCH_PATCH].append({"patches": patches, "patch_masks": patch_mask})
            if PART_SEARCH_PATCH_INTERIOR in parts:
                flags = np.tile(interior, len(images))
                out[PART_SEARCH_PATCH_INTERIOR].append({"patches": np.ascontiguousarray(patches[flags])})
            features = patch_session.run(None, {"patches": patches, "patch_masks": patch_mask})[0]
            if PART_SEARCH_GLOBAL in parts:
                out[PART_SEARCH_GLOBAL].append({"patch_grid": assemble_grid(features, len(images), g)})
    return out


class _Reader:
    """onnxruntime CalibrationDataReader over a list of input dicts."""

    def __init__(self, feeds: list[dict]) -> None:
        self._feeds = feeds
        self._iter = iter(feeds)

    def get_next(self) -> dict | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self._feeds)

    def __len__(self) -> int:
        return len(self._feeds)


# ------------------------------------------------------------------------------------------------ quantisation

def fold_batchnorm_into_next_conv(model: Any) -> list[str]:
    """Fold every BatchNormalization whose output feeds only 1x1 convolutions (no padding, one group) into those
    convolutions' weights and biases, in place; returns the names of the folded BatchNorm nodes.

    Exact (same arithmetic up to float rounding): BN(x) = s * x + t per input channel with s = gamma / sqrt(var + eps),
    t = beta - mean * s, so W x' + b = (W * s) x + (b + W t) for a 1x1 convolution. Why: onnxruntime fuses a BatchNorm
    into the convolution BEFORE it, not after, so the mixers' pre-norm BatchNorms stay standalone float operators
    that the int8 graph brackets with DequantizeLinear/QuantizeLinear; folded, the convolution reads the int8 tensor.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    folded, removed = [], []
    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1 or bn.output[0] in outputs:
            continue
        if any(name not in inits for name in bn.input[1:5]):
            continue
        users = consumers.get(bn.output[0], [])
        if not users or not all(_is_foldable_1x1_conv(conv, inits) and conv.input[0] == bn.output[0]
                                for conv in users):
            continue
        gamma, beta, mean, var = (numpy_helper.to_array(inits[name]).astype(np.float64) for name in bn.input[1:5])
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        shift = beta - mean * scale
        for conv in users:
            weight = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
            bias = (numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if len(conv.input) > 2
                    and conv.input[2] else np.zeros(weight.shape[0]))
            w2 = weight[:, :, 0, 0]
            new_weight = (weight * scale[None, :, None, None]).astype(np.float32)
            new_bias = (bias + w2 @ shift).astype(np.float32)
            # new initializers (another node may share the old ones)
            w_name, b_name = f"{conv.name}_bnfolded_weight", f"{conv.name}_bnfolded_bias"
            graph.initializer.extend([numpy_helper.from_array(new_weight, w_name),
                                      numpy_helper.from_array(new_bias, b_name)])
            conv.input[0] = bn.input[0]
            conv.input[1] = w_name
            if len(conv.input) > 2:
                conv.input[2] = b_name
            else:
                conv.input.append(b_name)
        folded.append(bn.name)
        removed.append(bn)
    for bn in removed:
        graph.node.remove(bn)
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used]
    for t in unused:
        graph.initializer.remove(t)
    return folded


def _is_foldable_1x1_conv(node: Any, inits: dict[str, Any]) -> bool:
    if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
        return False
    shape = list(inits[node.input[1]].dims)
    attrs = {a.name: a for a in node.attribute}
    group = attrs["group"].i if "group" in attrs else 1
    pads = list(attrs["pads"].ints) if "pads" in attrs else []
    auto_pad = attrs["auto_pad"].s.decode() if "auto_pad" in attrs else "NOTSET"
    if len(node.input) > 2 and node.input[2] and node.input[2] not in inits:
        return False
    return len(shape) == 4 and shape[2:] == [1, 1] and group == 1 and not any(pads) and auto_pad in ("NOTSET",
                                                                                                        "VALID")


class PartQuantizer:
    """One part (or the main graph) prepared for quantisation: pre-processed once, ranges calibrated once
    (cached), then quantised with any set of layers kept float."""

    def __init__(self, name: str, model: bytes, feeds: list[dict], workdir: Path,
                 fold_batchnorm: bool = False) -> None:
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.name = name
        self.workdir = workdir
        raw = workdir / f"{name}_float.onnx"
        raw.write_bytes(model)
        self.path = workdir / f"{name}_pre.onnx"
        # Shape inference and onnxruntime's basic graph optimisations (constant folding of the shape arithmetic).
        quant_pre_process(str(raw), str(self.path), skip_symbolic_shape=False)
        self.model = onnx.load(str(self.path))
        self.folded_batchnorms = fold_batchnorm_into_next_conv(self.model) if fold_batchnorm else []
        if self.folded_batchnorms:
            onnx.save(self.model, str(self.path))
        unnamed = [n for n in self.model.graph.node if not n.name]
        if unnamed:  # layers are told apart by node name: give unnamed nodes one, unique to this part
            for i, node in enumerate(unnamed):
                node.name = f"{name}:{node.op_type}_{i}"
            onnx.save(self.model, str(self.path))
        self.cache = workdir / f"{name}_ranges.json"
        self.feeds = feeds
        self.nodes = [n for n in self.model.graph.node if n.op_type in LAYER_OPS]
        self.keys = {layer_key(n.name) for n in self.nodes}

    def quantize(self, float_keys: set[str] | None = None, only_keys: set[str] | None = None) -> bytes | None:
        """Serialised QDQ model with the layers of ``float_keys`` kept float (or only ``only_keys`` quantised);
        None when no node would be quantised."""
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        exclude, include = [], None
        if only_keys is not None:
            include = [n.name for n in self.nodes if layer_key(n.name) in only_keys]
            if not include:
                return None
        if float_keys:
            exclude = [n.name for n in self.model.graph.node if is_float_layer(layer_key(n.name), float_keys)]
        out = self.workdir / f"{self.name}_q.onnx"
        import logging

        logging.getLogger().setLevel(logging.ERROR)  # the quantiser warns about rank-1 BatchNorm weights per call
        quantize_static(str(self.path), str(out), _Reader(self.feeds), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=False, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_quantize=include, nodes_to_exclude=exclude,
                        calibration_cache_path=str(self.cache))
        data = out.read_bytes()
        return data if b"DequantizeLinear" in data else None


def response_maps(parts: dict[str, bytes], templates: np.ndarray, searches: np.ndarray) -> np.ndarray:
    """(N,K,R,R) responses of the whole-image chain template -> search -> head for N templates x K scales."""
    template, search, head = (_session(parts[p]) for p in (PART_TEMPLATE, PART_SEARCH, PART_HEAD))
    out = []
    for i in range(len(templates)):
        zf = template.run(None, {"template": templates[i:i + 1]})[0]
        xf = search.run(None, {"search": searches[i]})[0]
        out.append(head.run(None, {"template_features": zf, "search_features": xf})[0][:, 0])
    return np.stack(out)


def response_error(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """How far ``other`` responses are from ``reference`` (N,K,R,R): the RMS difference relative to the
    reference's spread (its standard deviation over the K x R x R cells of each sample; mean over samples), and
    the fraction of samples whose peak (over scales and cells) is the same cell."""
    n = reference.shape[0]
    ref, oth = reference.reshape(n, -1), other.reshape(n, -1)
    spread = ref.std(axis=1) + 1e-12
    rel = np.sqrt(((oth - ref) ** 2).mean(axis=1)) / spread
    return {"relative_rms": float(rel.mean()), "relative_rms_max": float(rel.max()),
            "peak_agreement": float((ref.argmax(axis=1) == oth.argmax(axis=1)).mean()), "samples": int(n)}


@dataclass
class QuantizeOptions:
    dataset: str = DEFAULT_DATASET
    calibration_frames: int = 4
    check_frames: int = 2
    max_layer_error: float = DEFAULT_MAX_LAYER_ERROR
    keep_float: tuple[str, ...] = ()
    keep_float_reason: str = "kept float by --keep-float"
    skip_layer_check: bool = False
    fold_batchnorm: bool = False
    seed: int = 0
    quiet: bool = False


def quantize_model_file(src: str | Path, dst: str | Path, options: QuantizeOptions) -> dict[str, Any]:
    """Write the INT8 copy of ``src`` to ``dst``; returns its quantisation metadata (also stored in the file)."""
    import onnx
    import onnxruntime as ort

    src, dst = Path(src), Path(dst)
    info, parts = read_model_file(src)
    if info.is_quantized:
        raise ModelError(f"{src} is already quantised ({info.model_version}); quantise its float file")
    source_meta = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    log = (lambda *a: None) if options.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    log(f"calibration crops: {options.calibration_frames} frames per training sequence of {options.dataset}")
    calib = training_crops(options.dataset, info, options.calibration_frames, 0.0, options.seed, options.quiet)
    check = training_crops(options.dataset, info, options.check_frames, 0.5, options.seed + 1, options.quiet,
                           avoid=calib)
    overlap = _frames_used(calib) & _frames_used(check)
    feeds = part_inputs(info, parts, calib)
    main_feeds = [{"template": calib.templates[i:i + 1], "search": calib.searches[i]}
                  for i in range(len(calib.templates))]
    float_keys: dict[str, str] = {key: options.keep_float_reason for key in options.keep_float}
    layer_table: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="siammixer_quantize_") as tmp:
        work = Path(tmp)
        names = list(parts)
        quantizers = {}
        for name in _progress(names, len(names), "prepare parts", options.quiet):
            quantizers[name] = PartQuantizer(name, parts[name], feeds[name], work, options.fold_batchnorm)
            quantizers[name].quantize()  # calibrates once (ranges cached for every later call)
        reference = response_maps(parts, check.templates, check.searches)
        chain = (PART_TEMPLATE, PART_SEARCH, PART_HEAD)
        if not options.skip_layer_check:
            ordered: list[str] = []
            for name in chain:  # network order: template part first (it holds every backbone layer), then the head
                for node in quantizers[name].nodes:
                    key = layer_key(node.name)
                    if key not in ordered:
                        ordered.append(key)
            for key in _progress(ordered, len(ordered), "per-layer check", options.quiet):
                trial = dict(parts)
                for name in chain:
                    data = quantizers[name].quantize(only_keys={key})
                    if data is not None:
                        trial[name] = data
                err = response_error(reference, response_maps(trial, check.templates, check.searches))
                op = next(n.op_type for name in chain for n in quantizers[name].nodes if layer_key(n.name) == key)
                row = {"layer": key, "op": op, **err}
                if err["relative_rms"] > options.max_layer_error and not is_float_layer(key, float_keys):
                    float_keys[key] = (f"quantised alone, the response maps move by {err['relative_rms']:.3f} of their "
                                       f"spread (> {options.max_layer_error}; peak agreement "
                                       f"{err['peak_agreement']:.2f})")
                row["kept_float"] = is_float_layer(key, float_keys)
                layer_table.append(row)
                log(f"  {key:60s} {op:18s} rel. RMS {err['relative_rms']:.4f}  peak agreement "
                    f"{err['peak_agreement']:.2f}{'  -> float' if row['kept_float'] else ''}")
        quantized: dict[str, bytes] = {}
        precision: dict[str, dict[str, Any]] = {}
        for name in _progress(names, len(names), "quantise parts", options.quiet):
            data = quantizers[name].quantize(float_keys=set(float_keys))
            quantized[name] = data if data is not None else parts[name]
            keys = {layer_key(n.name) for n in quantizers[name].nodes}
            kept = sorted(k for k in keys if is_float_layer(k, float_keys))
            precision[name] = {"precision": "int8" if data is not None else "float",
                               "sha256": part_sha256(quantized[name]), "float_layers": kept}
            if options.fold_batchnorm:
                precision[name]["folded_batchnorms"] = quantizers[name].folded_batchnorms if data is not None else []
        final = response_error(reference, response_maps(quantized, check.templates, check.searches))
        all_int8 = response_error(reference, response_maps(
            {n: quantizers[n].quantize() or parts[n] for n in chain}, check.templates, check.searches))
        main = PartQuantizer("main", onnx.load(str(src)).SerializeToString(), main_feeds, work,
                             options.fold_batchnorm)
        main_q = main.quantize(float_keys=set(float_keys))
        main_model = onnx.load_from_string(main_q) if main_q else onnx.load(str(src))
    quant = {
        "method": dict(METHOD, **({"pre_processing": FOLD_BATCHNORM_METHOD} if options.fold_batchnorm else {}),
                       onnxruntime=ort.__version__, per_layer_check="response maps of each layer quantised "
                       "alone vs float (template + search + head, whole-image mode)",
                       max_layer_error=options.max_layer_error),
        "calibration": {
            "dataset": str(options.dataset), "split": "train (the validation split of "
            "siammixer_ros/eval/datasets.py is never read)", "sequences": sorted({s for s, _, _ in calib.frames}),
            "frames_per_sequence": options.calibration_frames, "template_crops": len(calib.templates),
            "search_crops": int(calib.searches.shape[0] * calib.searches.shape[1]),
            "crops": "core.crop.get_subwindow around ground-truth boxes: templates with the tracker's context; "
                     "search crops a few frames later around the ground truth displaced by up to 1/4 of the target "
                     "size, at the tracker's 3 scales; patches cut by core.runtime.make_patches",
            "seed": options.seed},
        "check": {"frames": "other frames of the training sequences (check_frames per sequence)",
                  "frames_shared_with_calibration": len(overlap), "int8_all_layers": all_int8, "this_file": final},
        "float_layers": float_keys,
        "parts": precision,
        "source": {"file": src.name, "sha256": file_sha256(src), "model_version": info.model_version},
    }
    if layer_table:
        quant["layers"] = layer_table
    new_info = replace(info, model_version=f"{info.model_version}-int8", quantization=quant)
    assert asdict(new_info)["quantization"]
    write_model_file(dst, main_model, quantized, new_info)
    if ARCHITECTURE_KEY in source_meta:  # the widths, as the exporter writes them (readers ignore unknown keys)
        proto = onnx.load(str(dst))
        entry = proto.metadata_props.add()
        entry.key, entry.value = ARCHITECTURE_KEY, source_meta[ARCHITECTURE_KEY]
        onnx.save(proto, str(dst))
    read_model_file(dst)  # the file must pass the runtime's own checks
    log(f"wrote {dst} in {time.perf_counter() - t0:.0f} s: float layers {sorted(float_keys) or 'none'}; response "
        f"error vs float {final['relative_rms']:.4f} (all layers int8: {all_int8['relative_rms']:.4f}), peak "
        f"agreement {final['peak_agreement']:.2f}")
    return quant


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="siammixer-quantize", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="float SiamMixer model file")
    parser.add_argument("out", help="INT8 model file to write")
    parser.add_argument("--dataset", default=DEFAULT_DATASET,
                        help="sequences folder whose TRAINING split calibrates (default %(default)s)")
    parser.add_argument("--calibration-frames", type=int, default=4, help="frames per training sequence")
    parser.add_argument("--check-frames", type=int, default=2,
                        help="other frames per training sequence for the per-layer check")
    parser.add_argument("--max-layer-error", type=float, default=DEFAULT_MAX_LAYER_ERROR,
                        help="keep a layer float when quantising it alone moves the responses by more than this "
                             "(relative RMS)")
    parser.add_argument("--keep-float", default="",
                        help="comma-separated layers or blocks (e.g. /mb1) to keep float whatever the check says")
    parser.add_argument("--keep-float-reason", default="kept float by --keep-float",
                        help="why, recorded in the file's metadata")
    parser.add_argument("--skip-layer-check", action="store_true", help="quantise every layer (no per-layer check)")
    parser.add_argument("--fold-batchnorm", action="store_true",
                        help="fold each BatchNorm that feeds only 1x1 convolutions into them before quantising (exact; "
                             "removes the mixers' standalone float BatchNorms and their Quantize/Dequantize pairs; "
                             "measured no faster on x86 here, docs/network.md)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar or log")
    args = parser.parse_args(argv)
    if Path(args.out).resolve() == Path(args.model).resolve():
        parser.error("OUT must differ from IN")
    options = QuantizeOptions(dataset=args.dataset, calibration_frames=args.calibration_frames,
                              check_frames=args.check_frames, max_layer_error=args.max_layer_error,
                              keep_float=tuple(k for k in args.keep_float.split(",") if k),
                              keep_float_reason=args.keep_float_reason,
                              skip_layer_check=args.skip_layer_check, fold_batchnorm=args.fold_batchnorm,
                              seed=args.seed, quiet=args.quiet)
    try:
        quantize_model_file(args.model, args.out, options)
    except (ModelError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
