"""The segments of a long run as a Markdown table (docs/training.md keeps it), from the run's own files.

    python -m siammixer_ros.train.segments training/siammixer_xs_0.2

One row per invocation (``segments.csv``, written by the trainer), with the last tracking validation inside the
segment (``val.csv``: ``val_track_auc`` on the split the run's config validates on). No torch needed.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def segments_markdown(run_dir: Path) -> str:
    """The table: segment, start (UTC), pairs from-to, hours, pairs per hour, where, what changed, tracking AUC."""
    run_dir = Path(run_dir)
    segments = _rows(run_dir / "segments.csv")
    if not segments:
        raise FileNotFoundError(f"no segments.csv in {run_dir}")
    validations = [r for r in _rows(run_dir / "val.csv") if r.get("val_track_auc")]
    lines = ["| segment | started (UTC) | pairs | hours | pairs/hour | where | what changed | last tracking AUC |",
             "|---|---|---|---|---|---|---|---|"]
    for seg in segments:
        start = int(seg["start_pairs"])
        end = int(seg["end_pairs"]) if seg.get("end_pairs") else None
        inside = [v for v in validations if start < int(v["pairs"]) <= (end if end is not None else 10**12)]
        auc = f"{float(inside[-1]['val_track_auc']):.3f} at {int(inside[-1]['pairs']):,}" if inside else "—"
        pairs = f"{start:,} - {end:,}" if end is not None else f"{start:,} - (running or killed)"
        hours = f"{float(seg['train_hours']):.2f}" if seg.get("train_hours") else ""
        per_hour = f"{int(float(seg['pairs_per_hour'])):,}" if seg.get("pairs_per_hour") else ""
        where = f"{seg.get('device', '')}, {seg.get('threads', '')} threads, `{seg.get('git_commit', '')}`"
        lines.append(f"| {seg['segment']} | {seg['started_at'][:16].replace('T', ' ')} | {pairs} | {hours} | "
                     f"{per_hour} | {where} | {seg.get('note', '')} | {auc} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the run directory (e.g. training/siammixer_xs_0.2)")
    args = parser.parse_args(argv)
    print(segments_markdown(args.run), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
