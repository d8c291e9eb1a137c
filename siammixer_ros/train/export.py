"""Export a training run's checkpoint to a model file with provenance (``siammixer_ros.model.export``).

    python -m siammixer_ros.train.export --run /work/runs/xs_001                 # best.pt -> <run>/export/
    python -m siammixer_ros.train.export --run /work/runs/xs_001 --checkpoint last.pt --out /tmp/x.onnx

The provenance stored in the file says what made the weights: the run, checkpoint, step and pairs seen,
the training and validation sequences, the other data sources, the loss and teacher, the validation
metrics the checkpoint was selected by, and the command. A ``.sha256`` file is written next to the model.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

from siammixer_ros.core.model_file import file_sha256

REPO_ROOT = Path(__file__).resolve().parents[2]


def provenance_of(state: dict[str, Any], run_dir: Path, checkpoint: Path) -> dict[str, Any]:
    import torch

    cfg = state.get("config", {})
    loss = cfg.get("loss", {})
    pairs_cfg = cfg.get("pairs", {})
    teacher = "none"
    if loss.get("distill_weight", 0) > 0:
        teacher = (f"NanoTrack v2 (../shared/peers/nanotrack_v2), {loss.get('distill_mode')} distillation, "
                   f"weight {loss.get('distill_weight')}, T {loss.get('distill_temperature')}")
    return {
        "training": "siammixer_ros.train (docs/training.md)",
        "run": str(run_dir),
        "checkpoint": checkpoint.name,
        "step": int(state.get("step", 0)),
        "pairs_seen": int(state.get("pairs_seen", 0)),
        "train_seconds": round(float(state.get("elapsed_s", 0.0)), 1),
        "saved_at": state.get("saved_at", ""),
        "train_sequences": list(state.get("train_sequences", [])),
        "val_sequences_never_trained_on": list(state.get("val_sequences", [])),
        "other_data": "../shared/data/still_images (still + paste pairs, raccoon boxes)",
        "pair_sources": pairs_cfg.get("sources", {}),
        "loss": f"logistic + {loss.get('triplet_weight')} x triplet (paper Eqs. 1-3)",
        "teacher": teacher,
        "optimiser": cfg.get("optim", {}),
        "seed": cfg.get("seed"),
        "selected_by": state.get("selected_by", ""),
        "selected_value": state.get("selected_value", None),
        "val_metrics": {k: v for k, v in (state.get("val_metrics") or {}).items() if isinstance(v, (int, float))},
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def initialisation_of(state: dict[str, Any]) -> dict[str, Any] | None:
    """The weights a run started from (config ``init_checkpoint``): path, variant and the pairs they had seen.

    Runs record it at their start; for a run from before that, the file is read now (``read_at_export``)."""
    if state.get("initialised_from"):
        return dict(state["initialised_from"])
    init = state.get("config", {}).get("init_checkpoint")
    if not init:
        return None
    record: dict[str, Any] = {"checkpoint": str(init)}
    path = Path(init)
    if not path.is_absolute() and not path.is_file():
        path = REPO_ROOT / path
    if path.is_file():
        import torch

        start = torch.load(path, map_location="cpu", weights_only=False)
        record.update(variant=start.get("variant"), pairs_seen=int(start.get("pairs_seen", 0)), read_at_export=True)
    return record


def export_checkpoint(checkpoint: str | Path, out: str | Path | None, run_dir: str | Path | None = None,
                      model_version: str | None = None, bn_pairs: int | None = None,
                      selected_by: str | None = None, selected_value: float | None = None,
                      drop_box_head: bool = False, search_size: int | None = None) -> dict[str, Any]:
    """Export ``checkpoint`` (a trainer checkpoint) to ``out``; returns the provenance and sha256.

    ``out`` None: ``<run>/export/siammixer_<variant>_<checkpoint name>.onnx``, the variant the checkpoint holds.

    ``bn_pairs``: re-estimate the BatchNorm statistics per branch on that many pairs of the training sequences
    first (``siammixer_ros.train.bn_stats``); None: only for a checkpoint without per-branch statistics (made
    before they existed), with the default count; 0: never (the checkpoint's statistics as they are).
    ``selected_by`` / ``selected_value``: a selection made after the run (e.g. ``train.validate --starts 3`` on the
    selection split), recorded in the provenance in place of the run's own.
    ``drop_box_head``: leave the box regression branch out of the file (the head then returns the response only).
    ``search_size``: export for another search crop size (a multiple of 16 above the template size; the network is
    fully convolutional, the response grows with it); None: the size it was trained at.
    """
    import torch

    from siammixer_ros.model.export import export_model
    from siammixer_ros.model.network import PATCH_SIZE, TEMPLATE_SIZE, has_branch_statistics
    from siammixer_ros.train.bn_stats import model_from_checkpoint_state

    # Whole patches, and a response at least one cell wide (the template slides over the search features).
    if search_size is not None and (search_size % PATCH_SIZE or search_size <= TEMPLATE_SIZE):
        raise ValueError(f"search size {search_size} must be a multiple of {PATCH_SIZE} above the template size "
                         f"{TEMPLATE_SIZE}")
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{checkpoint} is not a training checkpoint (no 'model' entry)")
    run_dir = Path(run_dir) if run_dir else checkpoint.parent.parent
    dropped_box = drop_box_head and any(k.startswith("box_head.") for k in state["model"])
    if dropped_box:
        state["model"] = {k: v for k, v in state["model"].items() if not k.startswith("box_head.")}
    model = model_from_checkpoint_state(state, bn_pairs)
    if search_size is not None:
        model.search_size = search_size
    if selected_by:
        state["selected_by"], state["selected_value"] = selected_by, selected_value
    provenance = provenance_of(state, run_dir, checkpoint)
    provenance["bn_statistics"] = state.get("bn_statistics") or (
        "per-branch running averages of training" if has_branch_statistics(state["model"])
        else "one running average blending both branches (checkpoint from before per-branch statistics)")
    initialised_from = initialisation_of(state)
    if initialised_from:
        provenance["initialised_from"] = initialised_from
    if state.get("souped_from"):  # a weight average (train.soup): its ingredients
        provenance["souped_from"] = state["souped_from"]
    if dropped_box:
        provenance["box_branch"] = "trained, but left out of this file (export --drop-box-head)"
    provenance["command"] = " ".join(["python -m siammixer_ros.train.cli", "--config", str(run_dir / "config.yaml"),
                                      "--out", str(run_dir)])
    version = model_version or f"train-{run_dir.name}-pairs{provenance['pairs_seen']}"
    out = Path(out) if out else run_dir / "export" / f"siammixer_{model.variant}_{checkpoint.stem}.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    export_model(model, out, provenance=provenance, variant=model.variant, model_version=version)
    digest = file_sha256(out)
    out.with_suffix(out.suffix + ".sha256").write_text(f"{digest}  {out.name}\n")
    out.with_suffix(".provenance.json").write_text(json.dumps(provenance, indent=1, sort_keys=True))
    return {"path": str(out), "sha256": digest, "provenance": provenance}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="run directory (holds checkpoints/)")
    parser.add_argument("--checkpoint", default="best.pt", help="file in <run>/checkpoints or a path")
    parser.add_argument("--out", type=Path,
                        help="output .onnx (default <run>/export/siammixer_<variant>_<checkpoint>.onnx)")
    parser.add_argument("--model-version", help="version string stored in the file")
    parser.add_argument("--bn-pairs", type=int, default=None,
                        help="re-estimate the BatchNorm statistics per branch on N pairs of the training sequences "
                             "(default: only for a checkpoint without per-branch statistics, on 1024; 0: never)")
    parser.add_argument("--selected-by", help="how this checkpoint was chosen, if not by the run itself "
                                              "(stored in the provenance)")
    parser.add_argument("--selected-value", type=float, help="the value it was chosen by")
    parser.add_argument("--drop-box-head", action="store_true",
                        help="leave the box regression branch out of the file (when the tracker's box modes "
                             "are not used)")
    parser.add_argument("--search-size", type=int, help="search crop size of the exported file (default: the "
                                                         "trained one, 256; a multiple of 16)")
    args = parser.parse_args(argv)
    if args.bn_pairs is not None and args.bn_pairs < 0:
        parser.error("--bn-pairs must be 0 or more")
    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        ckpt = args.run / "checkpoints" / args.checkpoint
    try:
        result = export_checkpoint(ckpt, args.out, args.run, args.model_version, args.bn_pairs, args.selected_by,
                                   args.selected_value, args.drop_box_head, args.search_size)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    p = result["provenance"]
    print(f"{result['path']}  sha256 {result['sha256']}  (step {p['step']}, {p['pairs_seen']} pairs, "
          f"selected by {p['selected_by'] or '-'}={p['selected_value']}; BatchNorm: {p['bn_statistics']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
