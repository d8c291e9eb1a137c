"""Reports over a results folder: report.json (every number), report.md (tables), success.png, precision.png."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from siammixer_ros.eval import metrics
from siammixer_ros.eval.datasets import Sequence
from siammixer_ros.eval.runner import load_results, result_paths

TABLE_KEYS = (("success_auc", "AUC"), ("precision", "P@20"), ("norm_precision", "nP"), ("success_50", "SR50"))


def subsets_of(sequences: list[Sequence], extra: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Named subsets: "all", plus "aerial"/"ground" when meta.json says, plus any extra ones."""
    names = [s.name for s in sequences]
    subsets = {"all": names}
    if any("aerial" in s.meta for s in sequences):
        subsets["aerial"] = [s.name for s in sequences if s.meta.get("aerial") is True]
        subsets["ground"] = [s.name for s in sequences if s.meta.get("aerial") is False]
    subsets.update(extra or {})
    return {name: members for name, members in subsets.items() if members}


def evaluate(out_dir: Path, trackers: list[str], sequences: list[Sequence],
             subsets: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Metrics per tracker: per sequence and for each subset (mean over its finished sequences)."""
    subsets = subsets or subsets_of(sequences)
    report: dict[str, Any] = {"conventions": metrics.__doc__.strip(), "iou_thresholds": metrics.IOU_THRESHOLDS.tolist(),
                              "precision_thresholds": metrics.PRECISION_THRESHOLDS.tolist(),
                              "norm_precision_thresholds": metrics.NORM_PRECISION_THRESHOLDS.tolist(),
                              "sequences": [s.name for s in sequences], "subsets": subsets, "trackers": {}}
    for tracker in trackers:
        per_sequence: dict[str, Any] = {}
        missing = []
        for sequence in sequences:
            if not result_paths(out_dir, tracker, sequence.name)["done"].is_file():
                missing.append(sequence.name)
                continue
            results = load_results(out_dir, tracker, sequence.name)
            count = len(results["boxes"])
            per_sequence[sequence.name] = metrics.sequence_metrics(
                results["boxes"], sequence.boxes[:count], results["info"]["init_frame"], results["times"])
        if not per_sequence:
            continue
        report["trackers"][tracker] = {
            "per_sequence": per_sequence, "missing": missing,
            "subsets": {name: metrics.aggregate(per_sequence, members) for name, members in subsets.items()},
        }
    return report


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown(report: dict[str, Any], title: str = "Evaluation", command: str | None = None) -> str:
    trackers = list(report["trackers"])
    lines = [f"# {title}", ""]
    if command:
        lines += ["Command:", "", "```", command, "```", ""]
    lines += ["AUC = success AUC over 21 IoU thresholds; P@20 = precision at 20 px; nP = normalised precision "
              "(AUC over 0..0.5); SR50 = success at IoU 0.5; "
              "ms/frame = total update() time / updated frames (init excluded), "
              "median ms = median over sequences of the per-sequence median update() time. "
              "Means over sequences; init frame and absent-target frames not scored.", ""]
    for subset in report["subsets"]:
        lines += [f"## Subset: {subset}", "",
                  "| tracker | seqs | AUC | P@20 | nP | SR50 | ms/frame | median ms | fps |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for tracker in trackers:
            s = report["trackers"][tracker]["subsets"].get(subset)
            if s is None:
                continue
            lines.append(f"| {tracker} | {s['sequences']} | " + " | ".join(_fmt(s[k]) for k, _ in TABLE_KEYS)
                         + f" | {_fmt(s['ms_per_frame'], 2)} | {_fmt(s['median_ms'], 2)} | {_fmt(s['fps'], 1)} |")
        lines.append("")
    lines += _per_sequence_table(report, trackers, "## Per sequence (AUC / P@20)",
                                 lambda per: f"{_fmt(per['success_auc'])} / {_fmt(per['precision'])}")
    lines += _per_sequence_table(report, trackers, "## Per sequence speed (ms per update, mean)",
                                 lambda per: _fmt(per["ms_per_frame"], 2))
    return "\n".join(lines)


def _per_sequence_table(report: dict[str, Any], trackers: list[str], title: str,
                        cell: Callable[[dict[str, Any]], str]) -> list[str]:
    """Markdown lines: a titled table, one row per sequence, one ``cell(per-sequence scores)`` per tracker."""
    lines = [title, "", "| sequence | " + " | ".join(trackers) + " |", "|---|" + "---|" * len(trackers)]
    for name in report["sequences"]:
        cells = []
        for tracker in trackers:
            per = report["trackers"][tracker]["per_sequence"].get(name)
            cells.append("missing" if per is None else cell(per))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def plot(report: dict[str, Any], out_dir: Path, subset: str = "all") -> list[Path]:
    """success.png and precision.png for one subset, one curve per tracker (legend sorted by the metric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    specs = (("success", "success_curve", "success_auc", report["iou_thresholds"], "overlap threshold (IoU)",
              "success rate", "AUC"),
             ("precision", "precision_curve", "precision", report["precision_thresholds"],
              "centre error threshold (px)", "precision", "P@20"))
    for stem, curve_key, metric_key, thresholds, xlabel, ylabel, label in specs:
        figure, axes = plt.subplots(figsize=(6, 4.5), dpi=110)
        entries = [(tracker, data["subsets"][subset]) for tracker, data in report["trackers"].items()
                   if subset in data["subsets"] and data["subsets"][subset][curve_key]]
        entries.sort(key=lambda e: -np.nan_to_num(e[1][metric_key], nan=-1))
        for tracker, values in entries:
            axes.plot(thresholds, values[curve_key], label=f"{tracker} [{label} {_fmt(values[metric_key])}]")
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.set_ylim(0, 1)
        axes.set_xlim(min(thresholds), max(thresholds))
        axes.grid(alpha=0.3)
        axes.set_title(f"{stem} plot ({subset}, {len(report['subsets'][subset])} sequences)")
        if entries:
            axes.legend(loc="lower left" if stem == "success" else "lower right", fontsize=8)
        path = Path(out_dir) / f"{stem}.png" if subset == "all" else Path(out_dir) / f"{stem}_{subset}.png"
        figure.tight_layout()
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written


def json_safe(value: Any) -> Any:
    """NaN/inf -> None so that report.json is strict JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(report: dict[str, Any], out_dir: Path, title: str = "Evaluation", command: str | None = None,
                 plots: bool = True) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {**report, "command": command}
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    json_path.write_text(json.dumps(json_safe(report), indent=1, allow_nan=False) + "\n")
    md_path.write_text(markdown(report, title, command))
    written = [json_path, md_path]
    if plots:
        for subset in report["subsets"]:
            if report["subsets"][subset]:
                written += plot(report, out_dir, subset)
    return written
