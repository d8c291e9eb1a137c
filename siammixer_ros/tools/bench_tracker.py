"""Benchmark of SiamMixerTracker.update(): median time per stage (crop, inference, post-processing) on
synthetic 640x360 frames, compared with the network alone on the same batch.

    python -m siammixer_ros.tools.bench_tracker [--model M.onnx] [--threads 1] [--scales 3] [--frames 300]
    python -m siammixer_ros.tools.bench_tracker --model M.onnx --memories config/tune/ablation.yaml

``--memories GRID`` measures instead what each configuration of a tracker-configuration grid (the one the
validation ablation runs, see siammixer_ros/tools/tune_tracker.py) costs per update: every configuration gets
the same frames, round-robin (so all see the same machine load), at 1 and 2 threads; results in
``benchmarks/tracker_memories.{json,md}``.

    python -m siammixer_ros.tools.bench_tracker --compare A.onnx B.onnx

``--compare`` times the tracker with its default parameters on each model file the same way (round-robin on the
same frames, 1 and 2 threads): what one model costs against another, measured in one run;
``benchmarks/tracker_models.{json,md}``.

Without --model, a SiamMixer-XS with RANDOM weights is exported to a temporary file (needs the training
extra, torch); with --ncc, the NCC test model (stride 16, the XS geometry) is used instead. Random or test
weights are fine here: the time does not depend on the weights. The state machine is disabled (every frame
counts as confident) so that every update searches ``--scales`` scales, as when tracking.

Writes ``benchmarks/tracker.json`` and ``benchmarks/tracker.md`` (medians of repeated calls; the machine
may be shared, so compare runs made in the same conditions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from siammixer_ros.testing.synthetic import SyntheticSequence

STAGES = ("crop", "inference", "postprocess", "total")
TARGET_CROP_POST_S = 0.002
TARGET_OVERHEAD = 0.10


def _random_xs_model(directory: Path) -> Path:
    out = directory / "siammixer_xs_random.onnx"
    cmd = [sys.executable, "-m", "siammixer_ros.model.export", "--variant", "xs", "--random-init", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(
            "cannot export a random-weight SiamMixer-XS (is the training extra with torch installed?); "
            f"pass --model or --ncc.\n{proc.stderr.strip()}"
        )
    return out


def _synthetic_sequence(width: int, height: int) -> SyntheticSequence:
    """60 frames of a textured target wandering and slowly changing size, the benchmarks' input."""
    from siammixer_ros.testing.synthetic import render_sequence

    boxes = [(300 + 40 * np.sin(i / 9), 150 + 20 * np.cos(i / 7), 60 + 5 * np.sin(i / 11), 50) for i in range(60)]
    return render_sequence(boxes, size=(width, height), seed=0)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run_benchmark(
    model: Path, threads: int, scales: int, frames: int, warmup: int, width: int, height: int, mode: str | None
) -> dict:
    from siammixer_ros.core.runtime import RuntimeOptions
    from siammixer_ros.core.tracker import SiamMixerTracker

    params = {
        "scale_num": scales,
        # Every frame counts as confident: the benchmark measures tracking, not re-detection.
        "tracking_score": 0.0, "tracking_psr": -1e9, "lost_score": 0.0, "lost_psr": -1e9,
    }
    # Without --mode: the runtime's default, the fastest mode on a CPU ("whole"; see docs/network.md).
    options = RuntimeOptions(intra_op_threads=threads)
    if mode is not None:
        options = RuntimeOptions(mode=mode, intra_op_threads=threads)
    tracker = SiamMixerTracker(model, params=params, runtime_options=options)
    seq = _synthetic_sequence(width, height)
    n_distinct = len(seq)
    tracker.init(seq.frames[0], seq.boxes[0])
    runtime = tracker.runtime
    info = runtime.info
    batch = np.random.default_rng(1).uniform(0, 255, (scales, 3, info.search_size, info.search_size)).astype(np.float32)
    records: list[dict[str, float]] = []
    network: list[float] = []
    for i in range(warmup + frames):
        result = tracker.update(seq.frames[1 + i % (n_distinct - 1)])
        # The network alone on a batch of the same shape (what the network benchmark measures), interleaved
        # with the updates so that both see the same machine load.
        zf = tracker._target.template_features
        t0 = time.perf_counter()
        runtime.response(zf, runtime.search_features(batch))
        t1 = time.perf_counter()
        if i >= warmup:
            records.append(result.timings)
            network.append(t1 - t0)
        if (i + 1) % (n_distinct - 1) == 0:  # restart the sequence so the target stays where the frames put it
            tracker.init(seq.frames[0], seq.boxes[0])
    stages = {s: statistics.median(r[s] for r in records) for s in STAGES}
    crop_post = statistics.median(r["crop"] + r["postprocess"] for r in records)
    network_median = statistics.median(network)
    overhead = stages["total"] / network_median - 1.0
    extra = sorted({k for r in records for k in r} - set(STAGES))
    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "model": {"path": str(model), "variant": info.variant, "model_version": info.model_version,
                  "template": info.template_size, "search": info.search_size, "stride": info.stride,
                  "response": info.response_size},
        "runtime": {"mode": runtime.mode, "threads": threads, "providers": list(getattr(runtime, "providers", []))},
        "frame": [width, height], "scales": scales, "frames": frames, "warmup": warmup,
        "median_s": stages | {k: statistics.median(r.get(k, 0.0) for r in records) for k in extra},
        "p90_s": {s: _percentile([r[s] for r in records], 90) for s in STAGES},
        "crop_plus_postprocess_median_s": crop_post,
        "network_only_median_s": network_median,
        "update_overhead_vs_network": overhead,
        "targets": {
            "crop_plus_postprocess_le_2ms": crop_post <= TARGET_CROP_POST_S,
            "update_within_10pct_of_network": overhead <= TARGET_OVERHEAD,
        },
    }


def _round_robin(trackers: dict[str, Any], frames_list: list, first_box: tuple, frames: int, warmup: int
                 ) -> dict[str, dict[str, float]]:
    """Update every tracker on the same frame in turn (so all see the same machine load); per-tracker median / mean /
    p90 update time and the memories' own time. The frames repeat, each tracker restarted on the first."""
    n_distinct = len(frames_list)
    records: dict[str, list[dict[str, float]]] = {name: [] for name in trackers}
    for i in range(warmup + frames):
        index = i % (n_distinct - 1)
        for name, tracker in trackers.items():
            if index == 0:  # restart the sequence so the target stays where the frames put it
                tracker.init(frames_list[0], first_box)
            result = tracker.update(frames_list[1 + index])
            if i >= warmup:
                records[name].append(result.timings)
    out = {}
    for name, recs in records.items():
        totals = [r["total"] for r in recs]
        memory = [r.get("memory", 0.0) + r.get("inference_template", 0.0) for r in recs]
        out[name] = {"median_s": statistics.median(totals), "mean_s": statistics.fmean(totals),
                     "p90_s": _percentile(totals, 90), "memory_median_s": statistics.median(memory),
                     "memory_mean_s": statistics.fmean(memory)}
    return out


def _benchmark_frames(width: int, height: int, frames: int, sequence: Path | None) -> tuple[list, tuple]:
    """The frames to track and the first box: a synthetic target, or a real ``sequence`` folder's frames."""
    if sequence is None:
        seq = _synthetic_sequence(width, height)
        return list(seq.frames), seq.boxes[0]
    from siammixer_ros.eval.datasets import load_dataset

    (real,) = load_dataset(sequence)
    n_distinct = min(len(real), frames + 1)
    return [real.frames[i] for i in range(n_distinct)], tuple(float(v) for v in real.boxes[0])


def run_memory_costs(model: Path, grid: Path, threads: int, frames: int, warmup: int, width: int,
                     height: int, sequence: Path | None = None) -> dict:
    """Median / mean / p90 update() time and the memories' own time per configuration of ``grid``, round-robin, on
    a synthetic target or on the frames of a real ``sequence`` folder (where look-alikes make the memories work)."""
    import yaml

    from siammixer_ros.core.runtime import RuntimeOptions, SiamMixerRuntime
    from siammixer_ros.core.tracker import SiamMixerTracker
    from siammixer_ros.tools.tune_tracker import configurations

    configs = configurations(yaml.safe_load(grid.read_text()))
    runtime = SiamMixerRuntime(model, RuntimeOptions(intra_op_threads=threads))
    frames_list, first_box = _benchmark_frames(width, height, frames, sequence)
    trackers = {name: SiamMixerTracker(runtime=runtime, params=values) for name, values in configs.items()}
    results = _round_robin(trackers, frames_list, first_box, frames, warmup)
    return {name: {"params": configs[name], **results[name]} for name in configs}


def run_model_costs(models: list[Path], threads: int, frames: int, warmup: int, width: int, height: int) -> dict:
    """update() time of the tracker with its defaults on each model file, round-robin on the same synthetic frames:
    the ratio of two models measured in one run."""
    from siammixer_ros.core.runtime import RuntimeOptions
    from siammixer_ros.core.tracker import SiamMixerTracker

    frames_list, first_box = _benchmark_frames(width, height, frames, None)
    trackers = {str(m): SiamMixerTracker(m, runtime_options=RuntimeOptions(intra_op_threads=threads)) for m in models}
    return _round_robin(trackers, frames_list, first_box, frames, warmup)


def write_memory_reports(results: dict[int, dict], command: str, model: Path | None, frames: int, out_dir: Path,
                         size: tuple[int, int], sequence: Path | None = None) -> tuple[Path, Path]:
    """The tables of run_memory_costs (``model`` given) or of run_model_costs (``model`` None: one row per file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if model is None:
        stem, title, row = "tracker_models", "# Tracker update() per model file, measured in one run", "model file"
        subject = "The tracker with its default parameters on each model file"
        memory_note = "`memory` = the default memories' own time (template-branch inference included)."
    else:
        stem = "tracker_memories" if sequence is None else f"tracker_memories_{sequence.name}"
        title, row, subject = "# Cost of the tracker's memories per update()", "configuration", f"Model {model.name}"
        memory_note = ("`memory` = the online model, distractors and template memory (template-branch inference "
                       "included).")
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    payload = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "model": str(model) if model else None,
               "frames": frames, "frame": list(size), "cpus": os.cpu_count(), "platform": platform.platform(),
               "threads": {str(t): r for t, r in results.items()}}
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    unit = "configuration" if model is not None else "file"
    lines = [title, "",
             f"`{command}` — {payload['date']}, {payload['cpus']} CPUs (shared machine)", "",
             f"{subject}; "
             + (f"synthetic {size[0]}x{size[1]} frames" if sequence is None else f"the frames of {sequence}")
             + f", {frames} timed updates per {unit} and thread count, all {unit}s round-robin on the same frames; "
             f"the state machine as configured (3 scales while tracking). {memory_note}", "",
             f"| {row} | threads | median ms | mean ms | p90 ms | memory median ms | memory mean ms | "
             "median vs first |", "|---|---|---|---|---|---|---|---|"]
    for threads, res in results.items():
        first = next(iter(res.values()))["median_s"]
        for name, r in res.items():
            lines.append(f"| {name} | {threads} | {1000 * r['median_s']:.2f} | {1000 * r['mean_s']:.2f} | "
                         f"{1000 * r['p90_s']:.2f} | {1000 * r['memory_median_s']:.2f} | "
                         f"{1000 * r['memory_mean_s']:.2f} | {1000 * (r['median_s'] - first):+.2f} ms "
                         f"({r['median_s'] / first:.2f}x) |")
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def write_reports(result: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "tracker.json", out_dir / "tracker.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    ms = {k: 1000 * v for k, v in result["median_s"].items()}
    p90 = {k: 1000 * v for k, v in result["p90_s"].items()}
    m = result["model"]
    lines = [
        "# Tracker update() benchmark",
        "",
        f"`{result['command']}` — {result['date']}, {result['machine']['cpus']} CPUs, {result['machine']['platform']}",
        "",
        f"Model: {m['variant']} ({m['model_version']}), template {m['template']}, search {m['search']}, stride "
        f"{m['stride']}, response {m['response']}x{m['response']}; runtime mode {result['runtime']['mode']}, "
        f"{result['runtime']['threads']} thread(s); frames {result['frame'][0]}x{result['frame'][1]}, "
        f"{result['scales']} scales, {result['frames']} timed updates (after {result['warmup']} warm-up).",
        "",
        "| stage | median (ms) | p90 (ms) |",
        "|---|---:|---:|",
    ]
    for s in STAGES:
        lines.append(f"| {s} | {ms[s]:.3f} | {p90[s]:.3f} |")
    for k in sorted(set(ms) - set(STAGES)):
        lines.append(f"| &nbsp;&nbsp;{k} | {ms[k]:.3f} | |")
    t = result["targets"]
    lines += [
        "",
        f"- crop + post-processing: **{1000 * result['crop_plus_postprocess_median_s']:.3f} ms** median "
        f"(target <= 2 ms: {'met' if t['crop_plus_postprocess_le_2ms'] else 'NOT met'})",
        f"- network alone on the same batch: {1000 * result['network_only_median_s']:.3f} ms median; whole update "
        f"{100 * result['update_overhead_vs_network']:+.1f} % (target <= +10 %: "
        f"{'met' if t['update_within_10pct_of_network'] else 'NOT met'})",
        "",
    ]
    md_path.write_text("\n".join(lines))
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model file (default: SiamMixer-XS with random weights)")
    parser.add_argument("--ncc", action="store_true", help="use the NCC test model (stride 16) instead")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    parser.add_argument("--mode", default=None, help="runtime mode (default: the runtime's default, whole)")
    parser.add_argument("--scales", type=int, default=3, choices=(1, 3, 5))
    parser.add_argument("--frames", type=int, default=300, help="timed update() calls (default 300)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks"))
    parser.add_argument("--memories", type=Path, default=None, metavar="GRID",
                        help="measure the configurations of this grid YAML at 1 and 2 threads instead (needs --model)")
    parser.add_argument("--sequence", type=Path, default=None,
                        help="with --memories: a sequence folder (e.g. ../shared/data/sequences/Football1) instead of "
                             "synthetic frames")
    parser.add_argument("--compare", type=Path, nargs="+", default=None, metavar="MODEL",
                        help="time the tracker (default parameters) on each of these model files, round-robin on "
                             "the same frames, at 1 and 2 threads (benchmarks/tracker_models.md): their ratio in one "
                             "run")
    args = parser.parse_args(argv)
    command = " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)])
    if args.compare is not None:
        if len(args.compare) < 2:
            parser.error("--compare needs at least two model files")
        results = {threads: run_model_costs(args.compare, threads, args.frames, args.warmup, args.width,
                                            args.height) for threads in (1, 2)}
        paths = write_memory_reports(results, command, None, args.frames, args.out_dir, (args.width, args.height))
        print(paths[1].read_text())
        return 0
    if args.memories is not None:
        if args.model is None:
            parser.error("--memories needs --model (a trained model: the memories' gates depend on its scores)")
        results = {threads: run_memory_costs(args.model, args.memories, threads, args.frames, args.warmup,
                                             args.width, args.height, args.sequence) for threads in (1, 2)}
        paths = write_memory_reports(results, command, args.model, args.frames, args.out_dir,
                                     (args.width, args.height), args.sequence)
        print(paths[1].read_text())
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is not None:
            model = args.model
        elif args.ncc:
            from siammixer_ros.testing.ncc_model import ncc_model_path

            model = ncc_model_path(16)
        else:
            model = _random_xs_model(Path(tmp))
        result = run_benchmark(model, args.threads, args.scales, args.frames, args.warmup, args.width, args.height,
                               args.mode)
        if args.model is None:
            result["model"]["path"] = "random-weight XS export (temporary)" if not args.ncc else "NCC test model"
    json_path, md_path = write_reports(result, args.out_dir)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
