"""siammixer-tune-tracker: runs named TrackerParams configurations one-pass and tables them; a parameter search on
the training sequences (``--split train``, or ``selection``: the training sequences a model was not trained on), or
(``--split val``) the ablation that reports the chosen parameters on the validation split. Parameters are only ever
chosen from ``train`` or ``selection`` tables.

A grid file (YAML) names the configurations::

    base: {online_weight: 0.5}            # applied to every configuration (optional)
    configs:                              # named configurations, each a TrackerParams override
      defaults: {}
      wi_0.10: {window_influence: 0.10}
    sweeps:                               # one-at-a-time changes from base: one configuration per value
      online_rate: [0.05, 0.2]

``--peers DIR`` adds the per-sequence AUC of the peers of a ``siammixer-eval`` run on the same split (e.g.
``--trackers csrt,nanotrack_v2``) to the table, and the number of sequences on which each configuration beats
the first peer.

Each configuration runs the siammixer tracker one-pass with the evaluation toolkit (the same runner and metrics
as ``siammixer-eval``) in its own folder ``<out>/<name>``; finished sequences are skipped, so an interrupted search
resumes where it stopped. The table (mean AUC over sequences, aerial and ground subsets, P@20, ms per frame),
sorted by AUC, goes to ``<out>/table.md`` and ``<out>/table.json``. Where the model file's provenance lists the
sequences it was trained on (``train_sequences``) and the search ran on some of them and on others, every row also
has the mean over each group (``auc_trained_on``, ``auc_not_trained_on``): a setting that gains only on the
sequences the weights have seen is using the network's memory of them (docs/tracker.md, "A threshold on the
target's size"), so choose on the ones it has not seen.

Example::

    siammixer-tune-tracker --grid config/tune/search.yaml --out results/tune --max-frames 150 --jobs 2
    siammixer-tune-tracker --grid config/tune/ablation.yaml --split val --max-frames 0 --out results/ablation_val \
        --peers results/val_peers
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from siammixer_ros.core.errors import ModelError, TrackerParamsError
from siammixer_ros.core.model_file import read_model_file
from siammixer_ros.core.params import TrackerParams
from siammixer_ros.eval.datasets import DatasetError, load_dataset
from siammixer_ros.eval.report import evaluate, subsets_of
from siammixer_ros.eval.runner import run_experiment
from siammixer_ros.eval.trackers import DEFAULT_MODEL, TrackerConfig

TRACKER = "siammixer"


def configurations(grid: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: TrackerParams overrides}`` of a grid mapping (see the module docstring); each one is checked."""
    if not isinstance(grid, dict) or not set(grid) <= {"base", "configs", "sweeps"}:
        raise TrackerParamsError("a grid is a mapping with the keys base, configs and sweeps (all optional)")
    base = dict(grid.get("base") or {})
    out: dict[str, dict[str, Any]] = {}
    for name, values in (grid.get("configs") or {}).items():
        out[str(name)] = {**base, **(values or {})}
    for param, values in (grid.get("sweeps") or {}).items():
        for value in values:
            out[f"{param}={value}"] = {**base, param: value}
    if not out:
        raise TrackerParamsError("the grid names no configuration")
    for name, values in out.items():
        try:
            TrackerParams.from_dict(values)
        except TrackerParamsError as error:
            raise TrackerParamsError(f"configuration {name}: {error}") from None
    return out


def summary_row(name: str, report: dict[str, Any], tracker: str = TRACKER) -> dict[str, Any]:
    """A tracker's subset means (the evaluation report's) and per-sequence AUC, as one table row."""
    data = report["trackers"][tracker]
    row: dict[str, Any] = {"config": name}
    for subset in ("all", "aerial", "ground"):
        if subset in data["subsets"]:
            row[f"auc_{subset}"] = data["subsets"][subset]["success_auc"]
    row["precision"] = data["subsets"]["all"]["precision"]
    row["per_sequence"] = {seq: metrics["success_auc"] for seq, metrics in data["per_sequence"].items()}
    return row


def table_rows(results: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per configuration, best mean AUC first."""
    rows = [{**summary_row(name, report), "index": index, "params": params}
            for index, (name, (params, report)) in enumerate(results.items())]
    return sorted(rows, key=lambda r: -r["auc_all"])


def model_train_sequences(model: Path) -> set[str]:
    """The sequences a model file says it was trained on (its provenance's ``train_sequences``; empty if unknown)."""
    try:
        listed = read_model_file(model)[0].provenance.get("train_sequences", [])
    except ModelError:
        return set()  # the runs report the model's error themselves
    return {str(name) for name in listed} if isinstance(listed, list) else set()


def add_training_groups(rows: list[dict[str, Any]], trained_on: set[str]) -> bool:
    """Add each row's mean AUC over the sequences the model trained on and over the others; False (and nothing
    added) unless both groups hold sequences."""
    names = set(rows[0]["per_sequence"]) if rows else set()
    seen, unseen = sorted(names & trained_on), sorted(names - trained_on)
    if not seen or not unseen:
        return False
    for row in rows:
        aucs = row["per_sequence"]
        row["auc_trained_on"] = sum(aucs[s] for s in seen) / len(seen)
        row["auc_not_trained_on"] = sum(aucs[s] for s in unseen) / len(unseen)
        row["sequences_trained_on"], row["sequences_not_trained_on"] = len(seen), len(unseen)
    return True


def peer_rows(folder: Path, sequences: list[Any]) -> list[dict[str, Any]]:
    """Rows of the peers of a siammixer-eval results folder (its report.json) that ran exactly these sequences."""
    report = json.loads((folder / "report.json").read_text())
    names = {s.name for s in sequences}
    return [summary_row(tracker, report, tracker) for tracker, data in report["trackers"].items()
            if tracker != TRACKER and set(data["per_sequence"]) == names]


def markdown(rows: list[dict[str, Any]], command: str, sequences: list[Any], split: str, max_frames: int | None,
             peers: list[dict[str, Any]], order: str) -> str:
    frames = "all frames" if max_frames is None else f"first {max_frames} frames"
    aerial = {s.name for s in sequences if s.meta.get("aerial")}
    what = "ablation (reported, not used to choose)" if split == "val" else "parameter search"
    lines = [
        f"# Tracker configurations on the {split} split: {what}", "",
        f"Command: `{command}`", "",
        f"{len(sequences)} {split} sequences of ../shared/data/sequences ({frames} of each), one-pass, success AUC "
        "mean over sequences (aerial / ground subsets), P@20 mean. Speed is not compared here (configurations ran at "
        "different machine loads): `siammixer-bench-tracker --memories` measures cost.", "",
    ]
    groups = bool(rows) and "auc_trained_on" in rows[0]
    if groups:
        lines += [f"trained on / not trained on: the mean over the {rows[0]['sequences_trained_on']} sequences the "
                  f"model file's provenance lists as its training sequences and over the other "
                  f"{rows[0]['sequences_not_trained_on']}; a gain on the first group alone is the network's memory "
                  "of those sequences, not a better tracker.", ""]
    first_peer = peers[0] if peers else None
    header = "| config | AUC | aerial | ground | P@20 |" + (" trained on | not trained on |" if groups else "")
    if first_peer:
        header += f" seqs > {first_peer['config']} |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for r, is_peer in [(r, False) for r in rows] + [(p, True) for p in peers]:
        name = f"*{r['config']}*" if is_peer else r["config"]
        line = (f"| {name} | {r['auc_all']:.3f} | {r.get('auc_aerial', float('nan')):.3f} | "
                f"{r.get('auc_ground', float('nan')):.3f} | {r['precision']:.3f} |")
        if groups:
            line += (f" {r['auc_trained_on']:.3f} | {r['auc_not_trained_on']:.3f} |" if not is_peer else " | |")
        if first_peer and not is_peer:
            beaten = first_peer["per_sequence"]
            line += f" {sum(r['per_sequence'][s] > beaten[s] for s in beaten)} of {len(beaten)} |"
        elif first_peer:
            line += " |"
        lines.append(line)
    columns = [r["config"] for r in (rows if order == "auc" else sorted(rows, key=lambda r: r["index"]))]
    by_name = {r["config"]: r for r in rows}
    lines += ["", "Per sequence (success AUC; aerial sequences marked *):", "",
              "| sequence | " + " | ".join(columns + [p["config"] for p in peers]) + " |",
              "|---|" + "---|" * (len(columns) + len(peers))]
    for seq in sorted(s.name for s in sequences):
        cells = [f"{by_name[c]['per_sequence'].get(seq, float('nan')):.3f}" for c in columns]
        cells += [f"{p['per_sequence'][seq]:.3f}" for p in peers]
        lines.append(f"| {seq}{' *' if seq in aerial else ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siammixer-tune-tracker", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--grid", type=Path, required=True, help="grid YAML (see the module docstring)")
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/sequences"),
                        help="../shared/data/sequences (its README split)")
    parser.add_argument("--split", default="train", choices=("train", "selection", "val"),
                        help="train or selection (training sequences held back from training): the search; "
                             "val: report an ablation of parameters chosen on train or selection")
    parser.add_argument("--peers", type=Path, default=None,
                        help="siammixer-eval results folder of peers on the same split (columns in the table)")
    parser.add_argument("--order", default="auc", choices=("auc", "grid"),
                        help="row and column order of the table: best AUC first, or as in the grid")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="SiamMixer model file")
    parser.add_argument("--out", type=Path, required=True, help="results folder (one sub-folder per configuration)")
    parser.add_argument("--max-frames", type=int, default=150, help="first N frames of each sequence (0: all)")
    parser.add_argument("--sequences", default="", help="comma-separated training sequences to keep")
    parser.add_argument("--jobs", type=int, default=2, help="sequences run in parallel processes")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per tracker")
    parser.add_argument("--only", default="", help="comma-separated configuration names to run (default: all)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "siammixer-tune-tracker " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    try:
        configs = configurations(yaml.safe_load(args.grid.read_text()) if args.grid.is_file() else None)
    except (TrackerParamsError, yaml.YAMLError) as error:
        print(f"error: {args.grid}: {error}", file=sys.stderr)
        return 2
    only = [n for n in args.only.split(",") if n]
    unknown = sorted(set(only) - set(configs))
    if unknown:
        print(f"error: --only names unknown configurations: {', '.join(unknown)}", file=sys.stderr)
        return 2
    try:
        names = [n for n in args.sequences.split(",") if n] or None
        sequences = load_dataset(args.dataset, "auto", args.split, names)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    max_frames = args.max_frames or None
    results: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for name, params in configs.items():
        if only and name not in only:
            continue
        folder = args.out / name.replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        stored = folder / "params.json"
        if stored.is_file() and json.loads(stored.read_text()) != params:
            print(f"error: {folder} holds results of other parameters ({stored}); use another --out",
                  file=sys.stderr)
            return 2
        stored.write_text(json.dumps(params, indent=1, sort_keys=True))
        config = TrackerConfig(model_path=args.model, threads=args.threads,
                               tracker_params=tuple(sorted(params.items())))
        summary = run_experiment([TRACKER], sequences, folder, config, jobs=args.jobs, max_frames=max_frames,
                                 progress=False)
        if summary.errors:
            print(f"{name}: {len(summary.errors)} sequence(s) failed: {summary.errors[:1]}", file=sys.stderr)
        results[name] = (params, evaluate(folder, [TRACKER], sequences, subsets_of(sequences)))
        print(f"{name}: AUC {results[name][1]['trackers'][TRACKER]['subsets']['all']['success_auc']:.3f}",
              flush=True)
    rows = table_rows(results)
    if args.order == "grid":
        rows.sort(key=lambda r: r["index"])
    peers = peer_rows(args.peers, sequences) if args.peers is not None else []
    add_training_groups(rows, model_train_sequences(args.model))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(markdown(rows, command, sequences, args.split, max_frames, peers, args.order))
    (args.out / "table.json").write_text(json.dumps({"command": command, "split": args.split, "rows": rows,
                                                      "peers": peers}, indent=1))
    print((args.out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
