"""siammixer-eval: run trackers one-pass on a dataset and report how well and how fast they track.

Example::

    siammixer-eval --dataset ../shared/data/sequences --split val \\
        --trackers siammixer,csrt,nanotrack_v2 --out results/val
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from siammixer_ros.core.errors import TrackerParamsError
from siammixer_ros.core.params import TrackerParams
from siammixer_ros.eval.datasets import FORMATS, SPLITS, DatasetError, load_dataset
from siammixer_ros.eval.report import evaluate, subsets_of, write_report
from siammixer_ros.eval.runner import run_experiment
from siammixer_ros.eval.trackers import DEFAULT_MODEL, DEFAULT_PEERS_DIR, REGISTRY, TrackerConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siammixer-eval", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", required=True, type=Path, help="dataset folder (or one sequence folder)")
    parser.add_argument("--format", default="auto", choices=("auto",) + FORMATS, help="dataset layout")
    parser.add_argument("--split", default="all", choices=SPLITS,
                        help="split of ../shared/data/sequences: val, train (README), selection (held back from "
                             "training to choose models), fit (train minus selection); 'all' for other datasets")
    parser.add_argument("--sequences", default="", help="comma-separated sequence names to keep")
    parser.add_argument("--trackers", default="siammixer",
                        help=f"comma-separated: {', '.join(REGISTRY)} or package.module:factory")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="SiamMixer model file (tracker siammixer)")
    parser.add_argument("--tracker-params", type=Path, default=None,
                        help="YAML of TrackerParams for siammixer (a flat mapping, or a node params file's "
                             "tracker section)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="one TrackerParams value for siammixer, after --tracker-params (repeatable)")
    parser.add_argument("--peers-dir", type=Path, default=DEFAULT_PEERS_DIR, help="folder of peer tracker models")
    parser.add_argument("--out", type=Path, required=True, help="results folder (results/<name>)")
    parser.add_argument("--jobs", type=int, default=1, help="sequences run in parallel processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per tracker (onnxruntime/OpenCV/OpenVINO)")
    parser.add_argument("--force", action="store_true", help="rerun sequences that already have results")
    parser.add_argument("--max-frames", type=int, default=None, help="run only the first N frames of each sequence")
    parser.add_argument("--report-only", action="store_true", help="do not run, only report existing results")
    parser.add_argument("--no-plots", action="store_true", help="skip success.png/precision.png")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--title", default=None, help="report title")
    parser.add_argument("--copy-to", type=Path, default=None,
                        help="also write the report as <copy-to>.md/.json (e.g. benchmarks/eval_val)")
    return parser


def tracker_params_from_args(path: Path | None, assignments: list[str]) -> dict[str, Any]:
    """The TrackerParams values that differ from the defaults' source: a YAML file (a flat mapping, or a node
    params file, whose ``<node>.ros__parameters.tracker`` section is used), then ``NAME=VALUE`` assignments.
    Checked by building TrackerParams; raises TrackerParamsError naming the problem."""
    values: dict[str, Any] = {}
    if path is not None:
        data = yaml.safe_load(path.read_text()) if path.is_file() else None
        if not isinstance(data, dict):
            raise TrackerParamsError(f"--tracker-params {path}: not a YAML mapping (or no such file)")
        for section in data.values():  # node params file: {node: {ros__parameters: {tracker: {...}}}}
            if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
                data = section["ros__parameters"].get("tracker", {})
                break
        values.update(data)
    for item in assignments:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise TrackerParamsError(f"--set {item!r}: expected NAME=VALUE")
        values[name.strip()] = yaml.safe_load(text)
    TrackerParams.from_dict(values)
    return values


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "siammixer-eval " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    if args.jobs < 1 or args.threads < 1:
        print("error: --jobs and --threads must be >= 1", file=sys.stderr)
        return 2
    try:
        names = [n for n in args.sequences.split(",") if n] or None
        sequences = load_dataset(args.dataset, args.format, args.split, names)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    trackers = [t.strip() for t in args.trackers.split(",") if t.strip()]
    try:
        params = tracker_params_from_args(args.tracker_params, args.set)
    except TrackerParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    config = TrackerConfig(peers_dir=args.peers_dir, model_path=args.model, threads=args.threads,
                           tracker_params=tuple(sorted(params.items())))
    print(f"{len(sequences)} sequences, trackers: {', '.join(trackers)}, results in {args.out}")
    skipped: dict[str, str] = {}
    if not args.report_only:
        summary = run_experiment(trackers, sequences, args.out, config, jobs=args.jobs, force=args.force,
                                 max_frames=args.max_frames, progress=not args.no_progress)
        skipped = summary.skipped_trackers
        done = sum(s["status"] == "done" for s in summary.statuses)
        already = sum(s["status"] == "skipped" for s in summary.statuses)
        print(f"ran {done}, already done {already}, failed {len(summary.errors)}")
    report = evaluate(args.out, [t for t in trackers if t not in skipped], sequences, subsets_of(sequences))
    report["skipped_trackers"] = skipped
    report["max_frames"] = args.max_frames
    report["threads"] = args.threads
    report["tracker_params"] = params
    report["jobs"] = args.jobs
    if not report["trackers"]:
        print("no results to report", file=sys.stderr)
        return 1
    title = args.title or f"Evaluation: {args.dataset.name} ({args.split})"
    written = write_report(report, args.out, title, command, plots=not args.no_plots)
    if args.copy_to is not None:
        args.copy_to.parent.mkdir(parents=True, exist_ok=True)
        args.copy_to.with_suffix(".md").write_text((args.out / "report.md").read_text())
        args.copy_to.with_suffix(".json").write_text((args.out / "report.json").read_text())
        written += [args.copy_to.with_suffix(".md"), args.copy_to.with_suffix(".json")]
    print((args.out / "report.md").read_text().split("## Per sequence")[0])
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
