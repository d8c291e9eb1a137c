"""Benchmark of SiamMixerTracker.update(): median time per stage (crop, inference, post-processing) on
synthetic 640x360 frames, compared with the network alone on the same batch.

    python -m siammixer_ros.tools.bench_tracker [--model M.onnx] [--threads 1] [--scales 3] [--frames 300]

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

import numpy as np

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


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run_benchmark(
    model: Path, threads: int, scales: int, frames: int, warmup: int, width: int, height: int, mode: str | None
) -> dict:
    from siammixer_ros.core.runtime import RuntimeOptions
    from siammixer_ros.core.tracker import SiamMixerTracker
    from siammixer_ros.testing.synthetic import render_sequence

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
    n_distinct = 60
    boxes = [(300 + 40 * np.sin(i / 9), 150 + 20 * np.cos(i / 7), 60 + 5 * np.sin(i / 11), 50)
             for i in range(n_distinct)]
    seq = render_sequence(boxes, size=(width, height), seed=0)
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
    args = parser.parse_args(argv)
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
