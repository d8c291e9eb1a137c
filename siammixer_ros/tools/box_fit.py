"""How well the boxes fit where the target was found: mean IoU over the *tracked* frames of evaluation runs.

The evaluation report's ``mean_iou`` counts every scored frame, so a tracker that loses the target early scores low
whatever its boxes look like. The fit of the box (issue #15: the regression's point) shows in the frames where the
tracker is on the target: here, scored frames with IoU > 0. Per sequence and mean over sequences, for each run:

    python -m siammixer_ros.tools.box_fit --dataset ../shared/data/sequences --split val \
        --run scale=results/val_box_scale --run regression=results/val_box_regression \
        --run both=results/val_box_both --out benchmarks/eval_val_box_fit

Each run is a ``siammixer-eval`` results folder (``<run>/<tracker>/<sequence>.txt``); writes ``<out>.json`` and
``<out>.md``.

Where the size goes wrong (the scale search's part): ``size_error`` is the median over the tracked frames of
``|ln sqrt(predicted area / true area)|`` (0.1: the box's side about 10 % off), and ``auc_true_area`` the success
AUC the run would score with the true area at its own centre and aspect ratio, beside its own ``auc``: the gap is what
a perfect size estimate would add.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from siammixer_ros.eval import metrics
from siammixer_ros.eval.datasets import SPLITS, DatasetError, load_dataset
from siammixer_ros.eval.runner import load_results, result_paths


def box_fit(run_dir: Path, sequences: list[Any], tracker: str = "siammixer") -> dict[str, dict[str, float]]:
    """``{sequence: {tracked_iou, tracked_share, mean_iou}}`` of one run (unfinished sequences are left out)."""
    out = {}
    for sequence in sequences:
        if not result_paths(run_dir, tracker, sequence.name)["done"].is_file():
            continue
        results = load_results(run_dir, tracker, sequence.name)
        predicted = np.asarray(results["boxes"], dtype=np.float64)
        truth = np.asarray(sequence.boxes[:len(predicted)], dtype=np.float64)
        mask = metrics.scored_mask(truth, results["info"]["init_frame"])
        ious = metrics.iou(predicted[mask], truth[mask])
        tracked = ious > 0
        area_ratio = (predicted[mask, 2] * predicted[mask, 3]) / (truth[mask, 2] * truth[mask, 3])
        size_error = np.abs(0.5 * np.log(area_ratio[tracked]))
        out[sequence.name] = {"tracked_iou": float(ious[tracked].mean()) if tracked.any() else float("nan"),
                              "tracked_share": float(tracked.mean()) if ious.size else float("nan"),
                              "mean_iou": float(ious.mean()) if ious.size else float("nan"),
                              "size_error": float(np.median(size_error)) if tracked.any() else float("nan"),
                              "auc": float(metrics.success_curve(ious).mean()) if ious.size else float("nan"),
                              "auc_true_area": float(metrics.success_curve(metrics.iou(
                                  with_area(predicted[mask], truth[mask]), truth[mask])).mean())
                              if ious.size else float("nan")}
    return out


def with_area(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``predicted`` boxes (N, 4) resized about their centres to the area of ``truth``'s, aspect ratio kept."""
    factor = np.sqrt((truth[:, 2] * truth[:, 3]) / (predicted[:, 2] * predicted[:, 3]))
    size = predicted[:, 2:] * factor[:, None]
    return np.hstack([metrics.centers(predicted) - size / 2, size])


def _mean(rows: dict[str, dict[str, float]], key: str) -> float:
    values = [r[key] for r in rows.values() if np.isfinite(r[key])]
    return float(np.mean(values)) if values else float("nan")


def markdown(report: dict[str, Any], command: str) -> str:
    runs = list(report["runs"])
    lines = ["# Box fit: mean IoU over the tracked frames (IoU > 0)", "", f"`{command}`", "",
             "tracked IoU = mean IoU over the scored frames where the box overlaps the truth; tracked = their share of "
             "the scored frames; IoU = mean over all scored frames (the evaluation report's mean_iou); size error = "
             "median over the tracked frames of |ln sqrt(area / true area)|; AUC with the true area = the success AUC "
             "of the run's boxes resized to the true area about their centres (aspect ratio kept), beside the run's "
             "AUC.", "",
             "| run | sequences | tracked IoU | tracked | IoU | size error | AUC | AUC with the true area |",
             "|---|---|---|---|---|---|---|---|"]
    for name in runs:
        m = report["runs"][name]["mean"]
        lines.append(f"| {name} | {report['runs'][name]['sequences']} | {m['tracked_iou']:.3f} | "
                     f"{m['tracked_share']:.3f} | {m['mean_iou']:.3f} | {m['size_error']:.3f} | {m['auc']:.3f} | "
                     f"{m['auc_true_area']:.3f} |")
    lines += ["", "## Per sequence (tracked IoU)", "", "| sequence | " + " | ".join(runs) + " |",
              "|---|" + "---|" * len(runs)]
    names = sorted({s for name in runs for s in report["runs"][name]["per_sequence"]})
    for seq in names:
        cells = []
        for name in runs:
            row = report["runs"][name]["per_sequence"].get(seq)
            cells.append("-" if row is None or not np.isfinite(row["tracked_iou"]) else f"{row['tracked_iou']:.3f}")
        lines.append(f"| {seq} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m siammixer_ros.tools.box_fit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, required=True, help="the dataset the runs were made on")
    parser.add_argument("--split", default="all", choices=SPLITS)
    parser.add_argument("--run", action="append", required=True, metavar="NAME=DIR",
                        help="a siammixer-eval results folder, named (repeatable)")
    parser.add_argument("--tracker", default="siammixer", help="the tracker's folder inside each run")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args(argv)
    try:
        sequences = load_dataset(args.dataset, "auto", args.split)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"dataset": str(args.dataset), "split": args.split, "runs": {}}
    for item in args.run:
        name, sep, folder = item.partition("=")
        if not sep or not Path(folder).is_dir():
            print(f"error: --run {item!r}: expected NAME=DIR with an existing DIR", file=sys.stderr)
            return 2
        rows = box_fit(Path(folder), sequences, args.tracker)
        report["runs"][name] = {"folder": folder, "sequences": len(rows), "per_sequence": rows,
                                "mean": {k: _mean(rows, k) for k in ("tracked_iou", "tracked_share", "mean_iou",
                                                                     "size_error", "auc", "auc_true_area")}}
    command = " ".join(["python -m siammixer_ros.tools.box_fit", *(sys.argv[1:] if argv is None else argv)])
    report["command"] = command
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    text = markdown(report, command)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
