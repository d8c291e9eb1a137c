"""siammixer-bench-quantization: float vs INT8 model files, measured in one run.

Writes ``benchmarks/quantization.json`` and ``benchmarks/quantization.md``:

- latency of search + correlation (the per-frame work of the tracker) at 1 and 3 scales, 1 and 2 intra-op
  threads, in each inference mode (whole, row, patch), for both files: medians of repeated runs, every
  configuration of one thread count timed round-robin in the same loop, so that the shared machine's load weighs on
  all alike; the int8/float speed-up of each;
- the model file sizes;
- the peak feature-map bytes of patch-by-patch inference, MEASURED: onnxruntime's profiler records the size of
  every tensor each kernel writes (``output_size``, in the dtype it actually has: uint8 after a fused integer
  kernel, float32 elsewhere); the largest over the patch parts' nodes when one patch, then the stride-8 grid, is run,
  beside the paper's 196 kB (int8, computed by the paper from the layer shapes);
- validation AUC of both files with the same tracker, read from two ``siammixer-eval`` result folders
  (``--eval-float``/``--eval-int8``; the runner is not called from here, each model is evaluated once).

    siammixer-bench-quantization --float models/siammixer_s.onnx --int8 models/siammixer_s_int8.onnx \\
        --eval-float results/val_float --eval-int8 results/val_int8
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from siammixer_ros.core.memory import PAPER_PEAK_BYTES
from siammixer_ros.core.model_file import (
    PART_SEARCH_GLOBAL,
    PART_SEARCH_PATCH,
    PART_SEARCH_PATCH_INTERIOR,
    read_model_file,
)
from siammixer_ros.core.runtime import RuntimeOptions, SiamMixerRuntime, make_patches, patch_grid_size
from siammixer_ros.tools.bench_network import _summary
from siammixer_ros.tools.machine import cpu_label, cpu_summary

MODES = ("whole", "row", "patch")
SCALES = (1, 3)
THREADS = (1, 2)


def bench_latency(models: dict[str, str], threads_list: tuple[int, ...], modes: tuple[str, ...],
                  repeats: int) -> list[dict[str, Any]]:
    """Search + correlation medians for every (model, mode, scales), round-robin per thread count."""
    rng = np.random.default_rng(0)
    first = SiamMixerRuntime(next(iter(models.values())))
    info = first.info
    z = rng.uniform(0, 255, (1, 3, info.template_size, info.template_size)).astype(np.float32)
    xs = {n: rng.uniform(0, 255, (n, 3, info.search_size, info.search_size)).astype(np.float32) for n in SCALES}
    rows = []
    for threads in threads_list:
        tasks = []
        for label, path in models.items():
            for mode in modes:
                rt = SiamMixerRuntime(path, RuntimeOptions(mode=mode, intra_op_threads=threads))
                zf = rt.template_features(z)
                for n in SCALES:
                    tasks.append(((label, mode, n),
                                  lambda rt=rt, zf=zf, x=xs[n]: rt.response(zf, rt.search_features(x))))
        times: dict[int, list[float]] = {i: [] for i in range(len(tasks))}
        for r in range(repeats + 3):
            for i, (_, fn) in enumerate(tasks):
                t0 = time.perf_counter()
                fn()
                if r >= 3:  # warm-up rounds are not timed
                    times[i].append((time.perf_counter() - t0) * 1e3)
        for i, ((label, mode, n), _) in enumerate(tasks):
            stats = _summary(times[i])
            rows.append({"model": label, "mode": mode, "threads": threads, "scales": n, **stats})
            print(f"threads {threads} {label:6s} {mode:6s} scales {n}: {stats['median_ms']:7.2f} ms", flush=True)
    return rows


def _profiled_outputs(part: bytes, feeds: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Every kernel's output tensor sizes when ``part`` runs once on ``feeds`` (onnxruntime's profiler)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(os.environ.get("TMPDIR", "/tmp")) / f"siammixer_quant_profile_{os.getpid()}")
    # The arena off, as the runtime runs (RuntimeOptions.cpu_memory_arena).
    so.enable_cpu_mem_arena = False
    session = ort.InferenceSession(part, so, providers=["CPUExecutionProvider"])
    session.run(None, feeds)
    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    out = []
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            args = e["args"]
            shapes = [next(iter(t.items())) for t in args.get("output_type_shape", [])]
            out.append({"node": e["name"][: -len("_kernel_time")], "op": args.get("op_name"),
                        "output_bytes": int(args.get("output_size", 0)),
                        "input_bytes": int(args.get("activation_size", 0)),
                        "outputs": [f"{dtype} {shape}" for dtype, shape in shapes]})
    return out


def measured_patch_peak(path: str) -> dict[str, Any]:
    """The largest tensor a kernel writes in patch-by-patch inference of one search image (paper accounting: the
    largest map one layer writes) and the largest input + output of one kernel (live), measured."""
    info, parts = read_model_file(path)
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, info.search_size, info.search_size)).astype(np.float32)
    patches, masks = make_patches(x, info.patch_size, info.halo_before, info.halo_after)
    g = patch_grid_size(info.search_size, info.patch_size)
    interior = int(np.argmax(masks.reshape(len(masks), -1).min(axis=1)))  # one patch wholly inside the image
    runs = {PART_SEARCH_PATCH: {"patches": patches[:1], "patch_masks": masks[:1]},
            PART_SEARCH_GLOBAL: {"patch_grid": np.zeros(
                (1, info.patch_feature_channels, g * info.patch_feature_size, g * info.patch_feature_size),
                np.float32)}}
    if PART_SEARCH_PATCH_INTERIOR in parts:
        runs[PART_SEARCH_PATCH_INTERIOR] = {"patches": patches[interior:interior + 1]}
    nodes = []
    for name, feeds in runs.items():
        for row in _profiled_outputs(parts[name], feeds):
            nodes.append({"part": name, **row})
    peak = max(nodes, key=lambda r: r["output_bytes"])
    live = max(nodes, key=lambda r: r["output_bytes"] + r["input_bytes"])
    integer = [r for r in nodes if r["outputs"] and all(o.split()[0] in ("uint8", "int8") for o in r["outputs"])]
    out = {"paper_accounting_peak_bytes": peak["output_bytes"], "paper_accounting_peak_node": peak,
           "live_peak_bytes": live["output_bytes"] + live["input_bytes"], "live_peak_node": live,
           "nodes": len(nodes), "largest": sorted(nodes, key=lambda r: -r["output_bytes"])[:6]}
    if integer:
        top = max(integer, key=lambda r: r["output_bytes"])
        out.update(int8_peak_bytes=top["output_bytes"], int8_peak_node=top)
    return out


def eval_auc(folder: str | None) -> dict[str, Any] | None:
    """Mean success AUC (and per sequence) of tracker siammixer from a siammixer-eval result folder."""
    if not folder:
        return None
    report = json.loads((Path(folder) / "report.json").read_text())
    return {"folder": str(folder), **_siammixer_summary(report)}


def _siammixer_summary(report: dict[str, Any]) -> dict[str, Any]:
    tracker = report["trackers"]["siammixer"]
    per_seq = {name: s["success_auc"] for name, s in tracker["per_sequence"].items()}
    return {"auc": tracker["subsets"]["all"]["success_auc"], "sequences": per_seq,
            "n_sequences": tracker["subsets"]["all"]["sequences"]}


def to_markdown(r: dict[str, Any]) -> str:
    lines = [f"# Float vs INT8 SiamMixer model files (onnxruntime {r['onnxruntime']})", "",
             f"Machine: {r['machine']['platform']}, {cpu_label(r['machine'])}. Medians of "
             f"{r['repeats']} runs of search + correlation (random crops; latency does not depend on the pixels), "
             f"every configuration of one thread count timed round-robin in the same loop. Load average "
             f"{r['load_average_start'][0]:.1f} at the start, {r['load_average_end'][0]:.1f} at the end.", "",
             f"Files: float `{r['files']['float']['path']}` {r['files']['float']['bytes']:,} bytes; int8 "
             f"`{r['files']['int8']['path']}` {r['files']['int8']['bytes']:,} bytes "
             f"({r['files']['int8']['bytes'] / r['files']['float']['bytes'] * 100:.0f} %). Layers kept float in the "
             f"int8 file: {', '.join(r['float_layers']) or 'none'}.", "",
             "| mode | threads | scales | float ms | int8 ms | speed-up (float / int8) | float p10 ms | int8 p10 ms "
             "| speed-up of p10 |", "|---|---|---|---|---|---|---|---|---|"]
    by = {(x["model"], x["mode"], x["threads"], x["scales"]): x for x in r["latency"]}
    for threads in sorted({x["threads"] for x in r["latency"]}):
        for mode in MODES:
            for n in SCALES:
                f, q = by.get(("float", mode, threads, n)), by.get(("int8", mode, threads, n))
                if f and q:
                    lines.append(f"| {mode} | {threads} | {n} | {f['median_ms']:.2f} | {q['median_ms']:.2f} | "
                                 f"{f['median_ms'] / q['median_ms']:.2f}x | {f['p10_ms']:.2f} | {q['p10_ms']:.2f} | "
                                 f"{f['p10_ms'] / q['p10_ms']:.2f}x |")
    m = r["patch_peak"]
    lines += ["", "Peak feature-map bytes of patch-by-patch inference of one search image, measured (onnxruntime "
              "profiler: bytes each kernel wrote, in the dtype it wrote), against the paper's 196 kB (int8, computed):",
              "", "| file | largest tensor one kernel wrote | node | largest input + output of one kernel | node |",
              "|---|---|---|---|---|"]
    for label in ("float", "int8"):
        p = m[label]
        node = p["paper_accounting_peak_node"]
        lines.append(f"| {label} | {p['paper_accounting_peak_bytes']:,} B | {node['part']}: {node['node']} "
                     f"({', '.join(node['outputs'])}) | {p['live_peak_bytes']:,} B | {p['live_peak_node']['part']}: "
                     f"{p['live_peak_node']['node']} |")
    lines.append(f"| paper (Sec. 4.2) | {PAPER_PEAK_BYTES:,} B | | | |")
    if "int8_peak_bytes" in m["int8"]:
        top = m["int8"]["int8_peak_node"]
        larger = [f"{r['part']}: {r['node']} {r['output_bytes']:,} B ({', '.join(r['outputs'])})"
                  for r in m["int8"]["largest"] if r["output_bytes"] > m["int8"]["int8_peak_bytes"]]
        lines += ["", f"Largest 8-bit map in the int8 file's patch mode: {m['int8']['int8_peak_bytes']:,} B "
                  f"({m['int8']['int8_peak_bytes'] / PAPER_PEAK_BYTES * 100:.1f} % of the paper's 196 kB) at "
                  f"{top['part']}: {top['node']} ({', '.join(top['outputs'])}). Larger tensors of the int8 file are "
                  "float32: " + "; ".join(larger) + " (the parts' float interface and the layers kept float)."]
    if r.get("auc"):
        a = r["auc"]
        lines += ["", "Validation AUC (siammixer-eval, same tracker and settings, validation split):", "",
                  f"- float: {a['float']['auc']:.3f}; int8: {a['int8']['auc']:.3f}; difference "
                  f"{a['int8']['auc'] - a['float']['auc']:+.3f} (ship criterion: within 0.01)", "",
                  "| sequence | float | int8 |", "|---|---|---|"]
        for name, v in sorted(a["float"]["sequences"].items()):
            lines.append(f"| {name} | {v:.3f} | {a['int8']['sequences'].get(name, float('nan')):.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="siammixer-bench-quantization", description=__doc__.split("\n\n")[0])
    parser.add_argument("--float", dest="float_model", required=True, help="float model file")
    parser.add_argument("--int8", dest="int8_model", required=True, help="its INT8 copy (siammixer-quantize)")
    parser.add_argument("--eval-float", default=None, help="siammixer-eval result folder of the float file")
    parser.add_argument("--eval-int8", default=None, help="siammixer-eval result folder of the int8 file")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default="benchmarks")
    parser.add_argument("--name", default="quantization")
    args = parser.parse_args(argv)
    import onnxruntime as ort

    models = {"float": args.float_model, "int8": args.int8_model}
    int8_info, _ = read_model_file(args.int8_model)
    if not int8_info.is_quantized:
        parser.error(f"{args.int8_model} is not a quantised model file")
    results: dict[str, Any] = {"load_average_start": os.getloadavg(), "onnxruntime": ort.__version__,
                               "repeats": args.repeats,
                               "machine": cpu_summary(),
                               "files": {k: {"path": v, "bytes": os.path.getsize(v)} for k, v in models.items()},
                               "float_layers": sorted(int8_info.quantization.get("float_layers", {}))}
    results["patch_peak"] = {k: measured_patch_peak(v) for k, v in models.items()}
    results["paper_peak_bytes"] = PAPER_PEAK_BYTES
    results["latency"] = bench_latency(models, tuple(int(t) for t in args.threads.split(",")),
                                       tuple(args.modes.split(",")), args.repeats)
    results["load_average_end"] = os.getloadavg()
    if args.eval_float and args.eval_int8:
        results["auc"] = {"float": eval_auc(args.eval_float), "int8": eval_auc(args.eval_int8)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(results, indent=1))
    (out / f"{args.name}.md").write_text(to_markdown(results))
    print(to_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
