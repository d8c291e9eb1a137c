"""Resident memory and CPU time of SiamMixerTracker.update() alone (no ROS), one configuration per fresh process.

    python -m siammixer_ros.tools.bench_tracker_memory --model models/siammixer_s.onnx --search-batch 1 0

For each ``--search-batch`` value (RuntimeOptions.search_batch: search images per onnxruntime call, 0 = the whole
batch in one call) a fresh interpreter loads the model, starts a track on a synthetic 640x480 frame and runs
``--updates`` updates (3 scales: the state machine is disabled, every frame counts as confident), then reports the
process's VmRSS (from /proc, which machine load does not distort) before the updates and every 10 updates (median,
min, max), its peak (VmHWM),
the CPU time per update (``time.process_time``: far less distorted by other jobs than wall time) and minor page
faults per update. The boxes of every configuration are compared with the first one's.

A fresh process per configuration: the configurations must not share glibc's heap, whose kept pages are what is
measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from siammixer_ros.core.model_file import SHIPPED_MODEL_NAMES
from siammixer_ros.tools.bench_node import node_memory_mib


def measure(model: str, search_batch: int, updates: int, threads: int, width: int, height: int) -> dict[str, Any]:
    """One configuration, in this process (see the module docstring)."""
    from siammixer_ros.core.runtime import RuntimeOptions
    from siammixer_ros.core.tracker import SiamMixerTracker
    from siammixer_ros.testing.synthetic import render_sequence

    boxes = [(300 + 40 * math.sin(i / 9), 200 + 20 * math.cos(i / 7), 60, 50) for i in range(21)]
    seq = render_sequence(boxes, size=(width, height), seed=0)
    params = {"tracking_score": 0.0, "tracking_psr": -1e9, "lost_score": 0.0, "lost_psr": -1e9}
    before_model = node_memory_mib(os.getpid())
    tracker = SiamMixerTracker(model, params=params,
                               runtime_options=RuntimeOptions(intra_op_threads=threads, search_batch=search_batch))
    tracker.init(seq.frames[0], seq.boxes[0])
    loaded = node_memory_mib(os.getpid())
    cpu: list[float] = []
    rss: list[float] = []
    out_boxes: list[list[float]] = []
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for i in range(updates):
        frame = seq.frames[1 + i % (len(seq) - 1)]
        c0 = time.process_time()
        result = tracker.update(frame)
        cpu.append(time.process_time() - c0)
        out_boxes.append([float(v) for v in result.box])
        if i % 10 == 9:
            rss.append(node_memory_mib(os.getpid())["rss"])
        if (i + 1) % (len(seq) - 1) == 0:  # restart so the target stays where the frames put it
            tracker.init(seq.frames[0], seq.boxes[0])
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    end = node_memory_mib(os.getpid())
    return {"search_batch": search_batch, "updates": updates, "threads": threads, "frame": [width, height],
            "rss_before_model_mib": before_model["rss"], "rss_loaded_mib": loaded["rss"],
            "rss_end_mib": end["rss"], "anon_end_mib": end["anon"], "file_end_mib": end["file"],
            "rss_min_mib": min(rss), "rss_median_mib": statistics.median(rss), "rss_max_mib": max(rss),
            "hwm_mib": end["hwm"],
            "updates_rss_mib": statistics.median(rss) - loaded["rss"],
            "cpu_ms_median": 1000 * statistics.median(cpu), "cpu_ms_mean": 1000 * statistics.fmean(cpu),
            "minor_faults_per_update": faults / updates, "boxes": out_boxes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=f"models/{SHIPPED_MODEL_NAMES['float']}")
    parser.add_argument("--search-batch", type=int, nargs="+", default=[1, 0],
                        help="RuntimeOptions.search_batch values, one fresh process each (default: 1 0)")
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--_one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._one is not None:
        print(json.dumps(measure(args.model, args._one, args.updates, args.threads, args.width, args.height)))
        return 0
    results = []
    for sb in args.search_batch:
        cmd = [sys.executable, "-m", "siammixer_ros.tools.bench_tracker_memory", "--model", args.model,
               "--updates", str(args.updates), "--threads", str(args.threads), "--width", str(args.width),
               "--height", str(args.height), "--_one", str(sb)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    ref = results[0]["boxes"]
    load = os.getloadavg()[0]
    print(f"load average (1 min) at the end: {load:.2f}")
    print("search_batch  RSS loaded  RSS median (min..max)  HWM  updates' MiB  CPU ms/update median (mean)  "
          "faults/update  max |box diff| px")
    for r in results:
        diff = max(abs(a - b) for ra, rb in zip(ref, r["boxes"], strict=True) for a, b in zip(ra, rb, strict=True))
        r["max_box_diff_px"] = diff
        print(f"{r['search_batch']:>12}  {r['rss_loaded_mib']:10.1f}  {r['rss_median_mib']:6.1f} "
              f"({r['rss_min_mib']:.1f}..{r['rss_max_mib']:.1f})  {r['hwm_mib']:5.1f}  {r['updates_rss_mib']:12.1f}  "
              f"{r['cpu_ms_median']:6.2f} ({r['cpu_ms_mean']:.2f})  {r['minor_faults_per_update']:8.1f}  {diff:.2e}")
    if args.out is not None:
        for r in results:
            r.pop("boxes")
        args.out.write_text(json.dumps({"command": " ".join(sys.argv), "load_average_1min": load,
                                        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "results": results},
                                       indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
