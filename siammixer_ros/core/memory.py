"""SiamMixer architecture facts and feature-map memory accounting, without torch.

This module holds the one definition of each variant's widths (:class:`SiamMixerConfig`, used by the
PyTorch network in siammixer_ros/model/network.py) and derives from it a layer table: every layer's
output shape, parameters and multiply-accumulates. Tests check the table against the PyTorch model
(same parameters, same MACs, same output shapes), so the accounting cannot drift from the network.

Feature-map memory, two accountings (bytes per element: 1 for int8, 4 for float32):

- ``paper``: the paper's Eq. 6 and 8 — the largest feature map a single layer writes (conv: its output
  map; mixer: tokens x hidden width). It assumes, as the paper does, that a layer's input is
  overwritten once the layer is computed. In patch modes the map of one call covers the patches of
  that call (1 patch, one row, all patches) and the assembled stride-8 grid counts as a map too.
- ``live``: what a straightforward runtime holds at once: a layer's input + its output + any tensor kept
  for a residual connection, plus (in patch modes) the stride-8 grid being assembled while the patch
  stage runs. This is an upper bound closer to a real float runtime.

Modes: ``whole`` (the search image at once), ``batched`` (all patches of one image in one call),
``row`` (one row of patches per call), ``patch`` (one patch per call).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

VARIANT_DEPTHS = {"xs": 1, "s": 2, "m": 4, "l": 8}
TEMPLATE_SIZE = 128
SEARCH_SIZE = 256
PATCH_SIZE = 16
STRIDE = 16
# ImageNet statistics in BGR order (inputs are BGR 0..255).
MEAN_BGR = (0.406, 0.456, 0.485)
STD_BGR = (0.225, 0.224, 0.229)
NORMALISATION = (
    f"float32 NCHW BGR 0..255; inside the graph x' = (x/255 - mean)/std with mean(BGR)={MEAN_BGR}, std(BGR)={STD_BGR}"
)
PAPER_PEAK_BYTES = 196_000  # "196 kB" (Sec. 4.2), int8 feature maps
PAPER_REDUCTION = 4.26  # patch-based vs whole-image peak (Sec. 4.2)
MODES = ("whole", "batched", "row", "patch")
BOX_FIELDS = ("box_head", "box_channels", "box_tower")


@dataclass(frozen=True)
class SiamMixerConfig:
    """Widths of one variant; the defaults are SiamMixer-XS. MB tuples: (in, out, expansion, stride)."""

    depth: int = 1
    kernel: int = 5
    mb1: tuple[int, int, int, int] = (3, 16, 4, 2)
    mb2: tuple[int, int, int, int] = (16, 32, 6, 2)
    mixer1_channels: int = 32
    mixer1_token_hidden: int = 8
    mixer1_channel_hidden: int = 128
    mb3: tuple[int, int, int, int] = (32, 64, 6, 1)
    mixer2_channels: int = 128
    mixer2_token_window: int = 7
    # Kept small: the token-mixing hidden map is channels*hidden*tokens; 4 keeps it under MB3's 196 kB.
    mixer2_token_hidden: int = 4
    # Chosen so that one Mixer2 layer costs ~102 k parameters, the paper's S/M/L step.
    mixer2_channel_hidden: int = 392
    mb4: tuple[int, int, int, int] = (128, 256, 2, 1)
    head_scale_init: float = 1e-3
    # Optional anchor-free box regression branch on depthwise-correlation features (off in the paper's variants):
    # 1x1 adjust convs to ``box_channels`` on both sides, depthwise correlation, ``box_tower`` depthwise-separable
    # 3x3 blocks, a 3x3 conv to (l, t, r, b) per response cell.
    box_head: bool = False
    box_channels: int = 64
    box_tower: int = 2

    @classmethod
    def for_variant(cls, variant: str, box_head: bool = False) -> SiamMixerConfig:
        key = variant.lower()
        if key not in VARIANT_DEPTHS:
            raise ValueError(f"unknown SiamMixer variant {variant!r}; choose one of {', '.join(VARIANT_DEPTHS)}")
        return cls(depth=VARIANT_DEPTHS[key], box_head=box_head)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.box_head:  # files of variants without the branch keep their architecture entry unchanged
            for key in BOX_FIELDS:
                out.pop(key)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SiamMixerConfig:
        known = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class Layer:
    """One layer of one stage, for one image (or one patch). Shapes are (channels, height, width)."""

    stage: str
    name: str
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    params: int
    macs: int
    held: int = 0  # elements kept alive for a residual while this layer runs
    map_elements: int = 0  # the paper's Eq. 6/8 map size when it differs from the output (0: the output)

    @property
    def input_elements(self) -> int:
        c, h, w = self.input_shape
        return c * h * w

    @property
    def output_elements(self) -> int:
        c, h, w = self.output_shape
        return c * h * w

    @property
    def paper_elements(self) -> int:
        return self.map_elements or self.output_elements

    @property
    def live_elements(self) -> int:
        return self.input_elements + self.output_elements + self.held


def _mb(stage: str, name: str, spec: tuple[int, int, int, int], k: int, h: int, valid: bool) -> list[Layer]:
    cin, cout, e, s = spec
    hid = cin * e
    ho = (h - k) // s + 1 if valid else (h + 2 * (k // 2) - k) // s + 1
    res = cin * h * h if (s == 1 and cin == cout) else 0
    return [
        Layer(stage, f"{name}.expand", (cin, h, h), (hid, h, h), cin * hid + 2 * hid, h * h * cin * hid, res),
        Layer(stage, f"{name}.depthwise", (hid, h, h), (hid, ho, ho), hid * k * k + 2 * hid, ho * ho * hid * k * k,
              res),
        Layer(stage, f"{name}.project", (hid, ho, ho), (cout, ho, ho), hid * cout + 2 * cout, ho * ho * hid * cout,
              res),
    ]


def _mixer(stage: str, name: str, cin: int, c: int, depth: int, th: int, window: int, sliding: bool, ch: int,
           h: int) -> list[Layer]:
    hm = h // 2
    t = hm * hm
    layers = [Layer(stage, f"{name}.merge", (cin, h, h), (c, hm, hm), cin * c * 4 + 2 * c, t * c * cin * 4)]
    for i in range(depth):
        p = f"{name}.layer{i}"
        x = (c, hm, hm)
        hw = hm if sliding else hm // window
        fc1_params = window * window * th + th
        fc2_params = (th + 1) if sliding else (th * window * window + 1)
        fc2_macs = c * hm * hm * th if sliding else c * hw * hw * th * window * window
        layers += [
            Layer(stage, f"{p}.token_norm", x, x, 2 * c, 0, c * t),
            Layer(stage, f"{p}.token_fc1", x, (c * th, hw, hw), fc1_params, c * hw * hw * th * window * window, c * t),
            Layer(stage, f"{p}.token_fc2", (c * th, hw, hw), x, fc2_params, fc2_macs, c * t),
            Layer(stage, f"{p}.channel_norm", x, x, 2 * c, 0, c * t),
            Layer(stage, f"{p}.channel_fc1", x, (ch, hm, hm), c * ch + ch, t * c * ch, c * t),
            Layer(stage, f"{p}.channel_fc2", (ch, hm, hm), x, ch * c + c, t * ch * c, c * t),
        ]
    return layers


def shallow_layers(cfg: SiamMixerConfig, size: int, valid: bool, stage: str) -> list[Layer]:
    """MB1 + MB2 + Mixer1 on a square input of ``size`` (an image, or a patch with halo when ``valid``)."""
    layers = [Layer(stage, "input", (3, size, size), (3, size, size), 0, 0)]
    layers += _mb(stage, "mb1", cfg.mb1, cfg.kernel, size, valid)
    h = layers[-1].output_shape[1]
    layers += _mb(stage, "mb2", cfg.mb2, cfg.kernel, h, valid)
    h = layers[-1].output_shape[1]
    layers += _mixer(stage, "mixer1", cfg.mb2[1], cfg.mixer1_channels, 1, cfg.mixer1_token_hidden, 2, False,
                     cfg.mixer1_channel_hidden, h)
    return layers


def deep_layers(cfg: SiamMixerConfig, h: int, stage: str) -> list[Layer]:
    """MB3 + Mixer2 + MB4 on the stride-8 map of side ``h``."""
    layers = _mb(stage, "mb3", cfg.mb3, cfg.kernel, h, False)
    layers += _mixer(stage, "mixer2", cfg.mb3[1], cfg.mixer2_channels, cfg.depth, cfg.mixer2_token_hidden,
                     cfg.mixer2_token_window, True, cfg.mixer2_channel_hidden, layers[-1].output_shape[1])
    layers += _mb(stage, "mb4", cfg.mb4, cfg.kernel, layers[-1].output_shape[1], False)
    return layers


def branch_layers(cfg: SiamMixerConfig, size: int, stage: str) -> list[Layer]:
    """A whole-image branch (template or search)."""
    shallow = shallow_layers(cfg, size, False, stage)
    return shallow + deep_layers(cfg, shallow[-1].output_shape[1], stage)


def head_layer(cfg: SiamMixerConfig, template_size: int = TEMPLATE_SIZE, search_size: int = SEARCH_SIZE) -> Layer:
    c = cfg.mb4[1]
    zt, xt = template_size // STRIDE, search_size // STRIDE
    r = xt - zt + 1
    return Layer("head", "correlation", (c, xt, xt), (1, r, r), 2, r * r * c * zt * zt)


def box_layers(cfg: SiamMixerConfig, template_size: int = TEMPLATE_SIZE, search_size: int = SEARCH_SIZE,
               scales: int = 1) -> list[Layer]:
    """The box branch of one head call on ``scales`` search maps ([] without the branch). Parameters count once;
    MACs: the template adjust once per call, the rest per search map."""
    if not cfg.box_head:
        return []
    cin, c = cfg.mb4[1], cfg.box_channels
    zt, xt = template_size // STRIDE, search_size // STRIDE
    r = xt - zt + 1
    n = scales
    layers = [
        Layer("box", "template_adjust", (cin, zt, zt), (c, zt, zt), cin * c + 2 * c, zt * zt * cin * c),
        Layer("box", "search_adjust", (cin, xt, xt), (c, xt, xt), cin * c + 2 * c, n * xt * xt * cin * c),
        Layer("box", "dw_correlation", (c, xt, xt), (c, r, r), 0, n * r * r * c * zt * zt),
    ]
    for i in range(cfg.box_tower):
        layers += [
            Layer("box", f"tower{i}.depthwise", (c, r, r), (c, r, r), 9 * c + 2 * c, n * r * r * c * 9),
            Layer("box", f"tower{i}.pointwise", (c, r, r), (c, r, r), c * c + 2 * c, n * r * r * c * c),
        ]
    layers.append(Layer("box", "predict", (c, r, r), (4, r, r), 9 * c * 4 + 4, n * r * r * 9 * c * 4))
    return layers


def patch_halo(cfg: SiamMixerConfig, patch_size: int = PATCH_SIZE) -> tuple[int, int]:
    """Pixels before / after a patch that MB1 and MB2 (strided kxk, padding k//2) need: (6, 3) for XS."""
    blocks = [cfg.mb1, cfg.mb2]
    total = 1
    for b in blocks:
        total *= b[3]
    lo, hi = 0, patch_size // total - 1
    for b in reversed(blocks):
        s, k = b[3], cfg.kernel
        lo, hi = s * lo - k // 2, s * hi - k // 2 + k - 1
    return -lo, hi - (patch_size - 1)


def count_parameters(cfg: SiamMixerConfig) -> int:
    """Trainable parameters (weights, biases, BN affine, head scale/bias), as PyTorch counts them."""
    layers = branch_layers(cfg, TEMPLATE_SIZE, "template") + [head_layer(cfg)] + box_layers(cfg)
    return sum(layer.params for layer in layers)


def count_macs(cfg: SiamMixerConfig, template_size: int = TEMPLATE_SIZE, search_size: int = SEARCH_SIZE,
               scales: int = 1) -> dict[str, int]:
    """MACs of one template + ``scales`` search images + their correlations (the paper's "FLOPs").

    With the box branch, ``head`` includes it (one head call on the ``scales`` maps) and ``box`` is its share."""
    t = sum(layer.macs for layer in branch_layers(cfg, template_size, "template"))
    s = sum(layer.macs for layer in branch_layers(cfg, search_size, "search")) * scales
    box = sum(layer.macs for layer in box_layers(cfg, template_size, search_size, scales))
    h = head_layer(cfg, template_size, search_size).macs * scales + box
    out = {"template": t, "search": s, "head": h, "total": t + s + h}
    if cfg.box_head:
        out["box"] = box
    return out


def executed_macs(cfg: SiamMixerConfig, template_size: int = TEMPLATE_SIZE, search_size: int = SEARCH_SIZE,
                  scales: int = 1) -> dict[str, int]:
    """MACs as an exported model file runs them: like :func:`count_macs`, but MB4's linear projection is
    applied once per head call to the template map instead of to every search map (exact, see
    ``SiamMixer.head_from_hidden``)."""
    macs = count_macs(cfg, template_size, search_size, scales)
    search = branch_layers(cfg, search_size, "search")
    template = branch_layers(cfg, template_size, "template")
    if search[-1].name != "mb4.project":
        return macs
    search_projection = search[-1].macs * scales
    template_projection = template[-1].macs  # (hidden x out) per template position, once per call
    macs["search"] -= search_projection
    macs["head"] += template_projection
    if cfg.box_head:
        # The box branch's search adjust takes MB4's projection folded in: hidden -> box_channels per position.
        xt = search_size // STRIDE
        hidden = cfg.mb4[0] * cfg.mb4[2]
        change = xt * xt * (hidden - cfg.mb4[1]) * cfg.box_channels * scales
        macs["head"] += change
        macs["box"] += change
    macs["total"] = macs["template"] + macs["search"] + macs["head"]
    return macs


def search_mode_layers(cfg: SiamMixerConfig, mode: str, search_size: int = SEARCH_SIZE,
                       patch_size: int = PATCH_SIZE) -> tuple[list[tuple[Layer, int]], int]:
    """The search branch as executed in ``mode``: [(layer, copies computed at once)], grid elements held.

    Patch modes run the shallow layers on ``copies`` patches at once while the stride-8 grid of the
    whole image (``grid`` elements) is being filled, then the deep layers on that grid.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "whole":
        return [(layer, 1) for layer in branch_layers(cfg, search_size, "search")], 0
    before, after = patch_halo(cfg, patch_size)
    g = search_size // patch_size
    copies = {"batched": g * g, "row": g, "patch": 1}[mode]
    shallow = shallow_layers(cfg, patch_size + before + after, True, "search_patch")
    c, gh, _ = shallow[-1].output_shape
    grid = c * gh * g * gh * g
    deep = deep_layers(cfg, gh * g, "search_global")
    return [(layer, copies) for layer in shallow] + [(layer, 1) for layer in deep], grid


def feature_memory(cfg: SiamMixerConfig, mode: str, bytes_per_element: int = 1, search_size: int = SEARCH_SIZE,
                   patch_size: int = PATCH_SIZE) -> dict[str, Any]:
    """Per-layer and peak feature-map bytes of the search branch of one image in ``mode``.

    Returns {"mode", "bytes_per_element", "layers": [{stage, name, copies, paper_bytes, live_bytes}],
    "paper_peak_bytes", "paper_peak_layer", "live_peak_bytes", "live_peak_layer", "grid_bytes"}.
    """
    layers, grid = search_mode_layers(cfg, mode, search_size, patch_size)
    rows = []
    for layer, copies in layers:
        in_patch_stage = layer.stage == "search_patch"
        paper = layer.paper_elements * copies
        live = layer.live_elements * copies + (grid if in_patch_stage else 0)
        rows.append({"stage": layer.stage, "name": layer.name, "copies": copies,
                     "output_shape": list(layer.output_shape),
                     "paper_bytes": paper * bytes_per_element, "live_bytes": live * bytes_per_element})
    if grid:
        rows.append({"stage": "search_patch", "name": "assembled grid", "copies": 1, "output_shape": [],
                     "paper_bytes": grid * bytes_per_element, "live_bytes": grid * bytes_per_element})
    paper_peak = max(rows, key=lambda r: r["paper_bytes"])
    live_peak = max(rows, key=lambda r: r["live_bytes"])
    return {
        "mode": mode, "bytes_per_element": bytes_per_element, "layers": rows,
        "paper_peak_bytes": paper_peak["paper_bytes"],
        "paper_peak_layer": f"{paper_peak['stage']}:{paper_peak['name']}",
        "live_peak_bytes": live_peak["live_bytes"], "live_peak_layer": f"{live_peak['stage']}:{live_peak['name']}",
        "grid_bytes": grid * bytes_per_element,
    }


def template_memory(cfg: SiamMixerConfig, bytes_per_element: int = 1,
                    template_size: int = TEMPLATE_SIZE) -> dict[str, Any]:
    """Peak feature bytes of the template branch (always whole-image in this runtime)."""
    layers = branch_layers(cfg, template_size, "template")
    paper = max(layers, key=lambda layer: layer.paper_elements)
    live = max(layers, key=lambda layer: layer.live_elements)
    return {"paper_peak_bytes": paper.paper_elements * bytes_per_element, "paper_peak_layer": paper.name,
            "live_peak_bytes": live.live_elements * bytes_per_element, "live_peak_layer": live.name}
