"""``siammixer-train``: train SiamMixer from a YAML config into a run directory (resumable).

    python -m siammixer_ros.train.cli --config siammixer_ros/train/configs/xs.yaml --out /work/runs/xs_001
    python -m siammixer_ros.train.cli --out /work/runs/xs_001 --resume      # continues from checkpoints/last.pt

SIGINT/SIGTERM save ``checkpoints/last.pt`` before exiting; ``--resume`` continues with the same batches.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="YAML training config (required unless --resume)")
    parser.add_argument("--out", type=Path, required=True,
                        help="run directory (e.g. /work/runs/x; the project's long runs live in training/ of the repo)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.pt")
    parser.add_argument("--threads", type=int, help="override the config's torch threads")
    parser.add_argument("--total-pairs", type=int, help="override schedule.total_pairs (e.g. to extend a run)")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps in this invocation")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs still written)")
    parser.add_argument("--device", help="override the config's device (cpu, cuda)")
    parser.add_argument("--note", default="", help="what changed in this segment of the run (segments.csv)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set schedule.tracking_val_every_pairs=0 (repeatable)")
    parser.add_argument("--max-minutes", type=float, help="stop (saving last.pt) after this many minutes of training")
    args = parser.parse_args(argv)

    try:
        import torch  # noqa: F401
    except ImportError:
        print("error: training needs torch (pip install '.[train]', torch==2.13.0)", file=sys.stderr)
        return 2
    from siammixer_ros.train.config import apply_overrides, config_from_dict, load_config
    from siammixer_ros.train.trainer import Trainer

    if args.resume:
        import torch

        last = args.out / "checkpoints" / "last.pt"
        if not last.is_file():
            print(f"error: --resume but no checkpoint at {last}", file=sys.stderr)
            return 2
        cfg = load_config(args.config) if args.config else config_from_dict(
            torch.load(last, map_location="cpu", weights_only=False)["config"])
    else:
        if args.config is None:
            parser.error("--config is required for a new run")
        cfg = load_config(args.config)
    if args.threads:
        cfg.threads = args.threads
    if args.total_pairs:
        cfg.schedule.total_pairs = args.total_pairs
    if args.device:
        cfg.device = args.device
    try:
        cfg = apply_overrides(cfg, args.set)
        trainer = Trainer(cfg, args.out, resume=args.resume, progress=not args.no_progress, note=args.note)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"run {args.out}: {len(trainer.train_names)} training sequences; in-training validation on "
          f"{cfg.val.split} ({', '.join(trainer.check_names)}); never trained on: {', '.join(trainer.val_names)}; "
          f"step {trainer.step}, pairs {trainer.pairs_seen}", flush=True)
    result = trainer.run(max_steps=args.max_steps,
                         max_seconds=args.max_minutes * 60 if args.max_minutes is not None else None)
    print(f"stopped at step {result['step']} ({result['pairs_seen']} pairs), finished={result['finished']}, "
          f"best {cfg.val.select_metric}={result['best_metric']:.4f} at step {result['best_step']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
