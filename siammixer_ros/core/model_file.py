"""The SiamMixer model file: one ONNX file that carries every part of the network.

ONNX Runtime executes every node of a graph whatever outputs are requested (checked with
onnxruntime 1.31), so running the template branch, the search branch patch by patch and the
correlation head separately needs separate graphs. A model file therefore holds:

- its main graph: the whole network, ``template`` (1,3,T,T) + ``search`` (B,3,S,S) -> ``response``
  (B,1,R,R), so that any ONNX tool can open, inspect and run the file as it is;
- each part as a serialised ONNX model, base64-encoded in the metadata under ``siammixer.part.<name>``;
- the facts a runtime needs (sizes, stride, normalisation, version, provenance) as ``siammixer.*``
  metadata entries.

A user copies one file; the runtime loads the parts it needs with onnxruntime alone (no ``onnx``
package is needed to read a model, only to write one).

Every image input is float32 NCHW, BGR, values 0..255: normalisation happens inside the graphs.

Parts and their tensors (names are part of the format):

=================  ==========================================================  ==========================
part               inputs                                                      outputs
=================  ==========================================================  ==========================
``template``       ``template`` (1,3,T,T)                                      ``template_features``
``search``         ``search`` (B,3,S,S) (whole-image inference)                ``search_features``
``search_patch``   ``patches`` (N,3,Q,Q), ``patch_masks`` (N,1,Q,Q)            ``patch_features`` (N,C,g,g)
``search_global``  ``patch_grid`` (B,C,G,G)                                    ``search_features``
``search_patch_interior``  ``patches`` (N,3,Q,Q)                              ``patch_features`` (N,C,g,g)
``head``           ``template_features``, ``search_features``                  ``response`` (B,1,R,R)
                                                                               [+ ``box`` (B,4,R,R)]
=================  ==========================================================  ==========================

``Q = patch_size + halo_before + halo_after``: a patch with the halo its convolutions need; the
mask is 1 where the halo lies inside the search image and 0 outside, so that patch-by-patch
inference reproduces whole-image zero padding exactly. ``search_patch_interior`` is the same stage
without the mask operations, for patches whose halo lies wholly inside the image (same results, faster).
``search_patch``, ``search_global`` and ``search_patch_interior`` are optional: a model without the first
two runs in whole-image mode only.

An INT8 file (``siammixer-quantize``, siammixer_ros/tools/quantize.py) has the same parts with QDQ-quantised graphs
and the same float32 inputs and outputs, plus ``siammixer.quantization`` (JSON: method, calibration data, float
layers, per part its precision and sha256); :func:`check_quantization` refuses a file where it does not match.

``search_features`` is whatever the file's ``head`` part takes: a runtime only passes it from one part
to the other. Files written by this project's exporter stop the search branch before its last linear
layer (MB4's projection) and apply that layer to the template side inside ``head``, which is exact
because the correlation is linear (see ``SiamMixer.head_from_hidden``) and saves the layer's cost on
every search image.

Box output (optional; ``siammixer.box_output`` metadata, absent in files without it): the head part
returns a second output ``box`` (B,4,R,R), per response cell the distances (l, t, r, b), in search-crop
pixels, from the point the cell looks at (``(S - 1) / 2 + stride * (j - (R - 1) / 2)`` along each axis) to
the left, top, right and bottom edges of the target's box. Readers that know nothing of it use the first
output, ``response``, as before.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
META_PREFIX = "siammixer."
PART_PREFIX = META_PREFIX + "part."
# The variant's widths (JSON), written by the exporter for memory accounting (not part of ModelInfo).
ARCHITECTURE_KEY = META_PREFIX + "architecture"
# ModelInfo.search_output of files whose search parts stop before MB4's projection (see below).
SEARCH_OUTPUT_HIDDEN = "mb4_hidden"
# ModelInfo.box_output of files whose head also returns ``box`` (see the module docstring).
BOX_OUTPUT_LTRB = "ltrb_search_pixels"
BOX_OUTPUT_NAME = "box"

PART_TEMPLATE = "template"
PART_SEARCH = "search"
PART_SEARCH_PATCH = "search_patch"
PART_SEARCH_GLOBAL = "search_global"
# Optional: the patch stage without mask multiplications (they break onnxruntime's blocked layout) for
# patches whose halo lies wholly inside the image; border patches still go through ``search_patch``.
PART_SEARCH_PATCH_INTERIOR = "search_patch_interior"
PART_HEAD = "head"
REQUIRED_PARTS = (PART_TEMPLATE, PART_SEARCH, PART_HEAD)
PATCH_PARTS = (PART_SEARCH_PATCH, PART_SEARCH_GLOBAL)
# ModelInfo.quantization of an INT8 file (siammixer-quantize): how it was quantised, and per part its precision and the
# sha256 of its bytes, so that a reader can tell a part swapped or edited after quantisation.
QUANTIZATION_REQUIRED_KEYS = ("method", "calibration", "float_layers", "parts")
PART_PRECISIONS = ("int8", "float")
# An operator every QDQ-quantised ONNX graph holds; looked for in a part's serialised bytes (no onnx package needed).
_QDQ_OP = b"DequantizeLinear"


class ModelError(RuntimeError):
    """A model file is missing, unreadable or not a SiamMixer model."""


# The shipped model of each precision, in models/: one place for every default (node, launch, eval, tools). The INT8
# file is siammixer-quantize's copy of the float one (models/README.md).
SHIPPED_MODEL_NAMES = {"float": "siammixer_s.onnx", "int8": "siammixer_s_int8.onnx"}


def models_dir() -> Path:
    """The package's models/ folder: share/siammixer_ros/models of an installed package, else the source tree's."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("siammixer_ros")) / "models"
    except Exception:  # PackageNotFoundError, or ament_index missing: running from a source checkout
        return Path(__file__).resolve().parents[2] / "models"


@dataclass(frozen=True)
class ModelInfo:
    """What a runtime and a tracker need to know about a model, read from its metadata."""

    variant: str
    template_size: int
    search_size: int
    stride: int
    response_size: int
    normalisation: str = "bgr float32 0..255; mean/std applied inside the graph"
    model_version: str = "0"
    # Patch-based inference of the shallow layers; 0 when the model has no patch parts.
    patch_size: int = 0
    halo_before: int = 0
    halo_after: int = 0
    patch_feature_size: int = 0
    patch_feature_channels: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)
    # What the search parts return and the head takes: "features" (the branch's output) or
    # SEARCH_OUTPUT_HIDDEN (before MB4's projection, which the head applies to the template side).
    search_output: str = "features"
    parts: tuple[str, ...] = ()
    # Empty for a float file; for an INT8 file (siammixer-quantize), how it was quantised (see
    # check_quantization): written as ``siammixer.quantization`` only when not empty.
    quantization: dict[str, Any] = field(default_factory=dict)
    # "" (no box output) or BOX_OUTPUT_LTRB: the head part's second output ``box``. Not written when empty, so
    # files without the branch keep exactly the metadata they had.
    box_output: str = ""

    @property
    def has_patch_parts(self) -> bool:
        return all(p in self.parts for p in PATCH_PARTS) and self.patch_size > 0

    @property
    def is_quantized(self) -> bool:
        return bool(self.quantization)

    @property
    def has_box_output(self) -> bool:
        return bool(self.box_output)

    def to_metadata(self) -> dict[str, str]:
        """The ``siammixer.*`` metadata entries (without the parts themselves)."""
        out = {META_PREFIX + "format_version": str(FORMAT_VERSION)}
        for key, value in asdict(self).items():
            if key == "box_output" and not value:
                continue
            if key == "parts":
                value = ",".join(value)
            elif key == "quantization":
                if not value:
                    continue
                value = json.dumps(value, sort_keys=True)
            elif key == "provenance":
                value = json.dumps(value, sort_keys=True)
            out[META_PREFIX + key] = str(value)
        return out

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str = "model") -> ModelInfo:
        if META_PREFIX + "format_version" not in meta:
            raise ModelError(
                f"{source} is an ONNX file but not a SiamMixer model: it has no "
                f"'{META_PREFIX}format_version' metadata (export models with siammixer-export)"
            )
        version = int(meta[META_PREFIX + "format_version"])
        if version > FORMAT_VERSION:
            raise ModelError(
                f"{source} uses model format {version}; this siammixer_ros reads up to {FORMAT_VERSION}"
            )
        kwargs: dict[str, Any] = {}
        for name, f in cls.__dataclass_fields__.items():
            key = META_PREFIX + name
            if key not in meta:
                continue
            raw = meta[key]
            if name == "parts":
                kwargs[name] = tuple(p for p in raw.split(",") if p)
            elif name == "provenance":
                kwargs[name] = json.loads(raw) if raw else {}
            elif name == "quantization":
                try:
                    kwargs[name] = json.loads(raw) if raw else {}
                except ValueError as exc:
                    raise ModelError(f"{source}: its quantisation metadata ({key}) is not valid JSON: {exc}") from exc
                if not isinstance(kwargs[name], dict) or not kwargs[name]:
                    raise ModelError(f"{source}: its quantisation metadata ({key}) must be a non-empty JSON object, "
                                     f"got {raw[:80]!r}")
            elif f.type in ("int", int):
                kwargs[name] = int(raw)
            else:
                kwargs[name] = raw
        missing = [n for n in ("variant", "template_size", "search_size", "stride", "response_size") if n not in kwargs]
        if missing:
            raise ModelError(f"{source} lacks required metadata: {', '.join(META_PREFIX + m for m in missing)}")
        if kwargs.get("box_output", "") not in ("", BOX_OUTPUT_LTRB):
            raise ModelError(f"{source}: unknown box output format {kwargs['box_output']!r}; this siammixer_ros "
                             f"reads {BOX_OUTPUT_LTRB!r}")
        return cls(**kwargs)


def encode_part(model_bytes: bytes) -> str:
    return base64.b64encode(model_bytes).decode("ascii")


def read_model_file(path: str | Path) -> tuple[ModelInfo, dict[str, bytes]]:
    """Read a model file's facts and its parts (serialised ONNX models) with onnxruntime only.

    Raises :class:`ModelError` with a message a user can act on when the file is missing,
    is not ONNX, or is not a SiamMixer model.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # The main graph is loaded only to read the metadata: no optimisation, one thread.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several exception types for bad files
        raise ModelError(f"{path} is not a loadable ONNX model: {exc}") from exc
    meta = dict(session.get_modelmeta().custom_metadata_map)
    del session
    info = ModelInfo.from_metadata(meta, source=str(path))
    parts: dict[str, bytes] = {}
    for name in info.parts:
        key = PART_PREFIX + name
        if key not in meta:
            raise ModelError(f"{path} lists part '{name}' but does not contain it")
        try:
            parts[name] = base64.b64decode(meta[key], validate=True)
        except ValueError as exc:
            raise ModelError(f"{path}: part '{name}' is corrupt: {exc}") from exc
    missing = [p for p in REQUIRED_PARTS if p not in parts]
    if missing:
        raise ModelError(f"{path} lacks required parts: {', '.join(missing)}")
    check_quantization(info, parts, str(path))
    return info, parts


def part_sha256(part: bytes) -> str:
    return hashlib.sha256(part).hexdigest()


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks (model files' checksums and provenance)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_quantization(info: ModelInfo, parts: dict[str, bytes], source: str = "model") -> None:
    """Refuse a file whose quantisation metadata does not match its parts (raises :class:`ModelError`).

    A float file must hold no quantised part. An INT8 file's ``siammixer.quantization`` must have the keys of
    :data:`QUANTIZATION_REQUIRED_KEYS`, list every part of the file and no other, give each a precision of
    :data:`PART_PRECISIONS` that its graph has (an "int8" part holds QuantizeLinear/DequantizeLinear nodes, a
    "float" part none), and the sha256 of the part's bytes as written (a part replaced or edited since does not match).
    """
    quant = info.quantization
    if not quant:
        quantized = sorted(name for name, data in parts.items() if _QDQ_OP in data)
        if quantized:
            raise ModelError(f"{source}: parts {', '.join(quantized)} are quantised (DequantizeLinear nodes) but "
                             f"the file has no '{META_PREFIX}quantization' metadata saying how; write INT8 files with "
                             "siammixer-quantize")
        return
    where = f"{source}: inconsistent quantisation metadata ({META_PREFIX}quantization)"
    missing = [k for k in QUANTIZATION_REQUIRED_KEYS if k not in quant]
    if missing:
        raise ModelError(f"{where}: missing {', '.join(missing)}")
    listed = quant["parts"]
    if not isinstance(listed, dict):
        raise ModelError(f"{where}: 'parts' must map each part to its precision and sha256")
    unlisted, absent = sorted(set(parts) - set(listed)), sorted(set(listed) - set(parts))
    if unlisted or absent:
        raise ModelError(f"{where}: " + "; ".join(
            ([f"parts {', '.join(unlisted)} are in the file but not in the metadata"] if unlisted else [])
            + ([f"parts {', '.join(absent)} are in the metadata but not in the file"] if absent else [])))
    for name, data in parts.items():
        entry = listed[name]
        precision = entry.get("precision") if isinstance(entry, dict) else None
        if precision not in PART_PRECISIONS:
            raise ModelError(f"{where}: part '{name}' has precision {precision!r}, expected one of "
                             f"{', '.join(PART_PRECISIONS)}")
        has_qdq = _QDQ_OP in data
        if precision == "int8" and not has_qdq:
            raise ModelError(f"{where}: part '{name}' is marked int8 but its graph holds no quantised node "
                             "(a float part in an INT8 file: quantise the float file again)")
        if precision == "float" and has_qdq:
            raise ModelError(f"{where}: part '{name}' is marked float but its graph holds quantised nodes")
        if entry.get("sha256") != part_sha256(data):
            raise ModelError(f"{where}: part '{name}' does not match the sha256 recorded when it was quantised "
                             "(the part was replaced or edited afterwards: quantise the float file again)")


def write_model_file(
    path: str | Path, main_model: Any, parts: dict[str, Any], info: ModelInfo
) -> Path:
    """Write a model file: ``main_model`` is an ``onnx.ModelProto``, ``parts`` are ``onnx.ModelProto`` objects
    or their serialised bytes.

    Needs the ``onnx`` package (export and tests only, never the node).
    """
    import onnx

    missing = [p for p in REQUIRED_PARTS if p not in parts]
    if missing:
        raise ValueError(f"cannot write a model without parts: {', '.join(missing)}")
    info_with_parts = ModelInfo(**{**asdict(info), "parts": tuple(sorted(parts))})
    meta = info_with_parts.to_metadata()
    for name, proto in parts.items():
        meta[PART_PREFIX + name] = encode_part(proto if isinstance(proto, bytes) else proto.SerializeToString())
    del main_model.metadata_props[:]
    for key, value in sorted(meta.items()):
        entry = main_model.metadata_props.add()
        entry.key = key
        entry.value = value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(main_model, str(path))
    return path
