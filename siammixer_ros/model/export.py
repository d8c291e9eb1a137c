"""Export a SiamMixer network to one model file (siammixer_ros/core/model_file.py format).

    python -m siammixer_ros.model.export --variant s --checkpoint CKPT --out models/siammixer_s.onnx
    python -m siammixer_ros.model.export --variant xs --random-init --out /tmp/xs_random.onnx   # tests/benchmarks ONLY

The file's main graph is the whole network (template + search -> response); the parts the runtime
executes separately (template, search, search_patch, search_global, head) are embedded in its metadata.
Export runs in eval mode, so BatchNorm is folded into the preceding convolutions by the exporter, and the
input normalisation is folded into MB1's first convolution (:func:`fold_input_normalisation`).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from siammixer_ros.core.memory import NORMALISATION
from siammixer_ros.core.model_file import (
    ARCHITECTURE_KEY,
    BOX_OUTPUT_LTRB,
    BOX_OUTPUT_NAME,
    PART_HEAD,
    PART_SEARCH,
    PART_SEARCH_GLOBAL,
    PART_SEARCH_PATCH,
    PART_SEARCH_PATCH_INTERIOR,
    PART_TEMPLATE,
    SEARCH_OUTPUT_HIDDEN,
    ModelInfo,
    write_model_file,
)
from siammixer_ros.model.network import SiamMixer, fold_input_normalisation, load_model_state

OPSET = 17
RANDOM_PROVENANCE = {"training": "random initialisation, NOT TRAINED", "warning": "for tests and benchmarks only"}


class _Template(nn.Module):
    def __init__(self, m: SiamMixer) -> None:
        super().__init__()
        self.m = m

    def forward(self, template: torch.Tensor) -> torch.Tensor:
        return self.m.template_features(template)


class _Search(_Template):
    # Search parts stop before MB4's linear projection; the head applies it to the template side.
    def forward(self, search: torch.Tensor) -> torch.Tensor:
        return self.m.search_hidden(search)


class _SearchPatch(_Template):
    def forward(self, patches: torch.Tensor, patch_masks: torch.Tensor) -> torch.Tensor:
        return self.m.search_patch_features(patches, patch_masks)


class _SearchPatchInterior(_Template):
    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.m.search_patch_interior_features(patches)


class _SearchGlobal(_Template):
    def forward(self, patch_grid: torch.Tensor) -> torch.Tensor:
        return self.m.deep_hidden(patch_grid)


class _Head(_Template):
    def forward(self, template_features: torch.Tensor, search_features: torch.Tensor) -> torch.Tensor:
        return self.m.head_from_hidden(template_features, search_features)


class _HeadWithBox(_Template):
    def forward(self, template_features: torch.Tensor, search_features: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.m.head_from_hidden(template_features, search_features),
                self.m.box_from_hidden(template_features, search_features))


class _Main(_Template):
    def forward(self, template: torch.Tensor, search: torch.Tensor) -> torch.Tensor:
        return self.m(template, search)


class _MainWithBox(_Template):
    def forward(self, template: torch.Tensor, search: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zf, xf = self.m.template_features(template), self.m.search_features(search)
        return self.m.head(zf, xf), self.m.box(zf, xf)


def _to_onnx(module: nn.Module, args: tuple[torch.Tensor, ...], inputs: list[str], outputs: list[str],
             dynamic: dict[str, dict[int, str]]) -> Any:
    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The legacy (TorchScript) exporter warns that it is deprecated and that the head's
        # "template batch == 1" branch is traced as a constant: both are intended here.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buffer, dynamo=False, opset_version=OPSET, input_names=inputs,
                          output_names=outputs, dynamic_axes=dynamic, do_constant_folding=True)
    return onnx.load_from_string(buffer.getvalue())


def build_parts(model: SiamMixer) -> tuple[Any, dict[str, Any]]:
    """The main graph and the parts as onnx.ModelProto (model in eval mode)."""
    t, s = model.template_size, model.search_size
    before, after = model.halo()
    q = model.patch_size + before + after
    g = s // model.patch_size
    gg = g * model.patch_feature_size
    zf_c = model.config.mb4[1]
    z = torch.zeros(1, 3, t, t)
    x = torch.zeros(2, 3, s, s)
    with torch.no_grad():
        zf = model.template_features(z)
        xf = model.search_hidden(x)
    parts = {
        PART_TEMPLATE: _to_onnx(_Template(model), (z,), ["template"], ["template_features"], {}),
        PART_SEARCH: _to_onnx(_Search(model), (x,), ["search"], ["search_features"],
                              {"search": {0: "batch"}, "search_features": {0: "batch"}}),
        PART_SEARCH_PATCH: _to_onnx(
            _SearchPatch(model), (torch.zeros(3, 3, q, q), torch.ones(3, 1, q, q)), ["patches", "patch_masks"],
            ["patch_features"], {"patches": {0: "patches"}, "patch_masks": {0: "patches"},
                                 "patch_features": {0: "patches"}}),
        # Optional, an addition the format tolerates: patches wholly inside the image without mask ops.
        PART_SEARCH_PATCH_INTERIOR: _to_onnx(
            _SearchPatchInterior(model), (torch.zeros(3, 3, q, q),), ["patches"], ["patch_features"],
            {"patches": {0: "patches"}, "patch_features": {0: "patches"}}),
        PART_SEARCH_GLOBAL: _to_onnx(
            _SearchGlobal(model), (torch.zeros(2, model.patch_feature_channels, gg, gg),), ["patch_grid"],
            ["search_features"], {"patch_grid": {0: "batch"}, "search_features": {0: "batch"}}),
    }
    # With the box branch the head (and the main graph) return a second output, "box" (l, t, r, b per cell).
    box = model.box_head is not None
    outputs = ["response"] + ([BOX_OUTPUT_NAME] if box else [])
    batch_axes = {name: {0: "batch"} for name in outputs}
    parts[PART_HEAD] = _to_onnx((_HeadWithBox if box else _Head)(model), (zf, xf),
                                ["template_features", "search_features"], outputs,
                                {"search_features": {0: "batch"}, **batch_axes})
    assert zf.shape[1] == zf_c
    main = _to_onnx((_MainWithBox if box else _Main)(model), (z, x), ["template", "search"], outputs,
                    {"search": {0: "batch"}, **batch_axes})
    return main, parts


def export_model(model: SiamMixer, path: str | Path, provenance: dict[str, Any] | None = None,
                 variant: str | None = None, model_version: str = "untrained") -> Path:
    """Export ``model`` (any mode; exported in eval mode) to one model file at ``path``.

    ``provenance``: how the weights were made (dataset, epochs, checkpoint, commit...); it is stored in
    the file. Random weights must say so (see ``RANDOM_PROVENANCE``).
    """
    import onnx

    if provenance is None:
        raise ValueError("export_model needs a provenance (how the weights were trained, or RANDOM_PROVENANCE)")
    # A folded eval-mode copy: the caller's model (maybe mid-training) is left untouched.
    main, parts = build_parts(fold_input_normalisation(model))
    before, after = model.halo()
    info = ModelInfo(
        variant=variant or model.variant,
        template_size=model.template_size,
        search_size=model.search_size,
        stride=model.stride,
        response_size=model.response_size,
        normalisation=NORMALISATION,
        model_version=model_version,
        patch_size=model.patch_size,
        halo_before=before,
        halo_after=after,
        patch_feature_size=model.patch_feature_size,
        patch_feature_channels=model.patch_feature_channels,
        provenance=dict(provenance),
        search_output=SEARCH_OUTPUT_HIDDEN,  # the search parts and head built above
        box_output=BOX_OUTPUT_LTRB if model.box_head is not None else "",
    )
    path = write_model_file(path, main, parts, info)
    # One extra entry the format tolerates (readers ignore unknown keys): the widths, so that memory
    # accounting of a file does not depend on the variant defaults of the installed code.
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = ARCHITECTURE_KEY, json.dumps(model.config.to_dict(), sort_keys=True)
    onnx.save(proto, str(path))
    return path


def load_checkpoint(model: SiamMixer, checkpoint: str | Path, grow_depth: bool = False) -> dict[str, Any]:
    """Load weights saved as a state_dict or as {"model": state_dict, ...}; returns the checkpoint's extras.

    ``grow_depth``: a shallower variant's weights may start a deeper model (see ``load_model_state``)."""
    data = torch.load(str(checkpoint), map_location="cpu", weights_only=False)
    extras: dict[str, Any] = {}
    if isinstance(data, dict) and "model" in data and isinstance(data["model"], dict):
        extras = {k: v for k, v in data.items() if k != "model" and isinstance(v, (str, int, float, bool))}
        data = data["model"]
    if not isinstance(data, dict):
        raise ValueError(f"{checkpoint} holds no state_dict")
    # A checkpoint without the box branch loads into a model with it (the branch keeps its initialisation).
    load_model_state(model, data, grow_depth)
    return extras


def checkpoint_has_box_head(checkpoint: str | Path) -> bool:
    """Whether a checkpoint's weights include the box branch (then the model is built with it)."""
    try:
        data = torch.load(str(checkpoint), map_location="cpu", weights_only=False)
    except Exception:  # unreadable: load_checkpoint reports it
        return False
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    return isinstance(data, dict) and any(str(k).startswith("box_head.") for k in data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="xs", choices=["xs", "s", "m", "l"])
    parser.add_argument("--box-head", action="store_true",
                        help="build the box regression branch (automatic for a checkpoint that has its weights; "
                             "with --random-init: a random branch)")
    parser.add_argument("--checkpoint", help="trained weights (torch.save of a state_dict or {'model': ...})")
    parser.add_argument("--random-init", action="store_true",
                        help="random weights, for tests and benchmarks ONLY (marked NOT TRAINED in the file)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-init")
    parser.add_argument("--model-version", default=None, help="version string stored in the file")
    parser.add_argument("--out", required=True, help="output .onnx path")
    args = parser.parse_args(argv)
    if bool(args.checkpoint) == bool(args.random_init):
        parser.error("give exactly one of --checkpoint or --random-init")
    out = Path(args.out)
    if args.random_init and out.resolve().parent.name == "models":
        parser.error("random weights are never written into models/; use a path under /tmp")
    torch.manual_seed(args.seed)
    box_head = args.box_head
    if args.checkpoint and Path(args.checkpoint).is_file():
        box_head = box_head or checkpoint_has_box_head(args.checkpoint)
    model = SiamMixer(args.variant, box_head=box_head)
    if args.random_init:
        provenance = dict(RANDOM_PROVENANCE, seed=args.seed)
        version = "untrained"
    else:
        ckpt = Path(args.checkpoint)
        if not ckpt.is_file():
            print(f"error: checkpoint not found: {ckpt}", file=sys.stderr)
            return 2
        try:
            extras = load_checkpoint(model, ckpt)
        except (RuntimeError, ValueError, OSError) as exc:
            print(f"error: cannot load {ckpt} into SiamMixer-{args.variant.upper()}: {exc}", file=sys.stderr)
            return 2
        provenance = {"checkpoint": ckpt.name, **extras}
        version = args.model_version or str(extras.get("model_version", "1"))
    if args.model_version and args.random_init:
        version = args.model_version + "-untrained"
    path = export_model(model, out, provenance=provenance, variant=args.variant, model_version=version)
    print(f"wrote {path} (SiamMixer-{args.variant.upper()}, model_version {version})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
