"""siammixer-bench-network: latency of the SiamMixer network in onnxruntime, every mode, 1 and 2 threads.

Writes ``benchmarks/network.json`` and ``benchmarks/network.md`` (medians of repeated runs):
template branch; search + correlation at 1, 3 and 5 scales, for each execution mode and thread count;
achieved GFLOP/s (2 x MACs / latency) as a fraction of this machine's matmul peak, measured in the same
run (onnxruntime MatMul and numpy, 1024x1024 float32, same thread counts).

    python -m siammixer_ros.tools.bench_network --model models/siammixer_s.onnx
    python -m siammixer_ros.tools.bench_network --random-init xs   # exports random weights to a temp dir (torch)

Latency does not depend on the weights' values, so a random-weight export is a fair benchmark model.
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
from typing import Any

import numpy as np

from siammixer_ros.core import memory
from siammixer_ros.core.model_file import SEARCH_OUTPUT_HIDDEN
from siammixer_ros.core.runtime import MODES, RuntimeOptions, SiamMixerRuntime
from siammixer_ros.tools.model_info import read_architecture

SCALES = (1, 3, 5)


def _median_ms(fn: Any, repeats: int, warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    q = statistics.quantiles(times, n=10) if len(times) >= 10 else [min(times)] * 9
    return {"median_ms": statistics.median(times), "p10_ms": q[0], "p90_ms": q[-1], "min_ms": min(times),
            "repeats": repeats}


def ort_matmul_peak(threads: int, n: int = 1024, repeats: int = 20) -> float:
    """GFLOP/s of an n x n x n float32 MatMul in onnxruntime with ``threads`` intra-op threads."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "mm", [a, b], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "1")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    stats = _median_ms(lambda: sess.run(None, {"a": x, "b": x}), repeats)
    return 2 * n**3 / (stats["min_ms"] * 1e-3) / 1e9


def numpy_matmul_peak(threads: int, n: int = 1024, repeats: int = 20) -> float:
    """GFLOP/s of numpy's float32 matmul, in a subprocess whose BLAS is limited to ``threads`` threads."""
    code = (f"import numpy as np,time; n={n}; a=np.random.rand(n,n).astype(np.float32); a@a; t=[]\n"
            f"for _ in range({repeats}):\n s=time.perf_counter(); a@a; t.append(time.perf_counter()-s)\n"
            "print(2*n**3/min(t)/1e9)")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    return float(out.stdout.strip()) if out.returncode == 0 else float("nan")


def _summary(times_ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times_ms, n=10)
    return {"median_ms": statistics.median(times_ms), "p10_ms": q[0], "p90_ms": q[-1], "min_ms": min(times_ms),
            "repeats": len(times_ms)}


def bench(model_path: str, threads_list: tuple[int, ...], modes: tuple[str, ...], repeats: int,
          spinning: bool) -> dict[str, Any]:
    """Round-robin timing: every repeat runs every (mode, scales) once, so that the load of a shared
    machine, which changes over time, weighs on all configurations alike."""
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {"runs": [], "matmul_peak_gflops": {}, "load_average_start": os.getloadavg()}
    rt0 = SiamMixerRuntime(model_path, RuntimeOptions(mode="whole"))
    info = rt0.info
    cfg, _ = read_architecture(model_path, info)
    del rt0
    z = rng.uniform(0, 255, (1, 3, info.template_size, info.template_size)).astype(np.float32)
    xs = {n: rng.uniform(0, 255, (n, 3, info.search_size, info.search_size)).astype(np.float32) for n in SCALES}
    # The work the model file does, for GFLOP/s (files from this project's exporter move MB4's projection
    # to the template side).
    count = memory.executed_macs if info.search_output == SEARCH_OUTPUT_HIDDEN else memory.count_macs
    macs = {n: count(cfg, info.template_size, info.search_size, n) for n in SCALES}
    for threads in threads_list:
        results["matmul_peak_gflops"][str(threads)] = {"onnxruntime": ort_matmul_peak(threads),
                                                       "numpy": numpy_matmul_peak(threads)}
        peak = results["matmul_peak_gflops"][str(threads)]["onnxruntime"]
        runtimes = {mode: SiamMixerRuntime(model_path, RuntimeOptions(mode=mode, intra_op_threads=threads,
                                                                      spinning=spinning and threads > 1))
                    for mode in modes}
        first = runtimes[modes[0]]
        zf = first.template_features(z)
        tasks: list[tuple[str, str, int, Any]] = [
            ("template", "whole", 1, lambda first=first: first.template_features(z))]
        for mode, rt in runtimes.items():
            for n in SCALES:
                tasks.append(("search+correlation", mode, n,
                              lambda rt=rt, x=xs[n], zf=zf: rt.response(zf, rt.search_features(x))))
        times: dict[int, list[float]] = {i: [] for i in range(len(tasks))}
        for r in range(repeats + 3):
            for i, (_, _, _, fn) in enumerate(tasks):
                t0 = time.perf_counter()
                fn()
                if r >= 3:  # warm-up rounds are not timed
                    times[i].append((time.perf_counter() - t0) * 1e3)
        for i, (part, mode, n, _) in enumerate(tasks):
            stats = _summary(times[i])
            work = macs[n]["template"] if part == "template" else macs[n]["search"] + macs[n]["head"]
            gflops = 2 * work / (stats["median_ms"] * 1e-3) / 1e9
            results["runs"].append({"part": part, "mode": mode, "threads": threads, "scales": n,
                                    "providers": runtimes[mode].providers, **stats, "gflops": gflops,
                                    "fraction_of_matmul_peak": gflops / peak})
            print(f"threads {threads} {part:18s} {mode:8s} scales {n}: {stats['median_ms']:7.2f} ms "
                  f"({gflops:.1f} GFLOP/s, {gflops / peak * 100:.0f} % of matmul peak)", flush=True)
    results["load_average_end"] = os.getloadavg()
    results["model"] = {"path": str(model_path), "variant": info.variant, "model_version": info.model_version,
                        "provenance": info.provenance}
    results["machine"] = {"platform": platform.platform(), "processor": platform.processor(),
                          "cpu_count": os.cpu_count(), "python": platform.python_version()}
    import onnxruntime as ort

    results["onnxruntime"] = ort.__version__
    results["settings"] = {"repeats": repeats, "spinning_with_2_threads": spinning,
                           "graph_optimization": "all", "order": "round-robin over configurations"}
    return results


def to_markdown(r: dict[str, Any]) -> str:
    lines = [f"# SiamMixer network benchmark ({r['model']['variant'].upper()}, onnxruntime {r['onnxruntime']})",
             "",
             f"Machine: {r['machine']['platform']}, {r['machine']['cpu_count']} CPUs. Model version "
             f"{r['model']['model_version']} (latency does not depend on weight values). Medians of "
             f"{r['settings']['repeats']} runs, configurations timed round-robin. Shared machine: load average "
             f"{r['load_average_start'][0]:.1f} at the start, {r['load_average_end'][0]:.1f} at the end "
             f"(on {r['machine']['cpu_count']} CPUs); other processes inflate medians, 2-thread ones most.",
             "",
             "Matmul peak (1024^3 float32, best run): " + "; ".join(
                 f"{t} thread(s): onnxruntime {p['onnxruntime']:.1f} GFLOP/s, numpy {p['numpy']:.1f} GFLOP/s"
                 for t, p in r["matmul_peak_gflops"].items()),
             "",
             "| part | mode | threads | scales | median ms | p10-p90 ms | GFLOP/s | % of matmul peak |",
             "|---|---|---|---|---|---|---|---|"]
    for run in r["runs"]:
        frac = run.get("fraction_of_matmul_peak")
        lines.append(f"| {run['part']} | {run['mode']} | {run['threads']} | {run['scales']} | "
                     f"{run['median_ms']:.2f} | {run['p10_ms']:.2f}-{run['p90_ms']:.2f} | {run['gflops']:.1f} | "
                     f"{'' if frac is None else f'{frac * 100:.0f} %'} |")
    fastest = {}
    for run in r["runs"]:
        if run["part"] == "search+correlation" and run["scales"] == 3:
            key = run["threads"]
            if key not in fastest or run["median_ms"] < fastest[key]["median_ms"]:
                fastest[key] = run
    lines += ["", "Fastest mode, search + correlation at 3 scales (targets: 25 ms on 1 thread, 12 ms on 2):", ""]
    for t, run in sorted(fastest.items()):
        lines.append(f"- {t} thread(s): {run['mode']} median {run['median_ms']:.2f} ms "
                     f"(p10 {run['p10_ms']:.2f} ms, min {run['min_ms']:.2f} ms)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="siammixer-bench-network", description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="SiamMixer model file")
    src.add_argument("--random-init", metavar="VARIANT", help="export a random-weight VARIANT to a temp dir (torch)")
    parser.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--repeats", type=int, default=50)
    # Off by default: configurations are timed round-robin with every session alive, and the spinning workers
    # of the sessions not being timed take the cores from the one that is (measured here, 3 scales, whole:
    # 2 threads 123 ms median with spinning in the round-robin, 19 ms without).
    parser.add_argument("--spinning", action="store_true", help="let worker threads spin with >1 thread")
    parser.add_argument("--out", default="benchmarks", help="output directory")
    parser.add_argument("--name", default="network", help="output file stem")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model
        if args.random_init:
            from siammixer_ros.model.export import RANDOM_PROVENANCE, export_model
            from siammixer_ros.model.network import SiamMixer

            model_path = str(export_model(SiamMixer(args.random_init), Path(tmp) / "random.onnx",
                                          provenance=RANDOM_PROVENANCE))
        results = bench(model_path, tuple(int(t) for t in args.threads.split(",")),
                        tuple(args.modes.split(",")), args.repeats, args.spinning)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(results, indent=1))
    (out / f"{args.name}.md").write_text(to_markdown(results))
    print(to_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
