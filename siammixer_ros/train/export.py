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


def export_checkpoint(checkpoint: str | Path, out: str | Path, run_dir: str | Path | None = None,
                      model_version: str | None = None) -> dict[str, Any]:
    """Export ``checkpoint`` (a trainer checkpoint) to ``out``; returns the provenance and sha256."""
    import torch

    from siammixer_ros.model.export import export_model
    from siammixer_ros.model.network import SiamMixer

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{checkpoint} is not a training checkpoint (no 'model' entry)")
    run_dir = Path(run_dir) if run_dir else checkpoint.parent.parent
    model = SiamMixer(variant=state.get("variant", "xs"),
                          box_head=any(k.startswith("box_head.") for k in state["model"]))
    model.load_state_dict(state["model"])
    model.eval()
    provenance = provenance_of(state, run_dir, checkpoint)
    provenance["command"] = " ".join(["python -m siammixer_ros.train.cli", "--config", str(run_dir / "config.yaml"),
                                      "--out", str(run_dir)])
    version = model_version or f"train-{run_dir.name}-pairs{provenance['pairs_seen']}"
    out = Path(out)
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
    parser.add_argument("--out", type=Path, help="output .onnx (default <run>/export/siammixer_<variant>.onnx)")
    parser.add_argument("--model-version", help="version string stored in the file")
    args = parser.parse_args(argv)
    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        ckpt = args.run / "checkpoints" / args.checkpoint
    out = args.out or args.run / "export" / f"siammixer_xs_{ckpt.stem}.onnx"
    try:
        result = export_checkpoint(ckpt, out, args.run, args.model_version)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    p = result["provenance"]
    print(f"{result['path']}  sha256 {result['sha256']}  (step {p['step']}, {p['pairs_seen']} pairs, "
          f"selected by {p['selected_by'] or '-'}={p['selected_value']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
