"""Where the time of a model file's part goes, per network block and operator, float vs INT8, measured in one run.

    python -m siammixer_ros.tools.profile_parts models/siammixer_s.onnx models/siammixer_s_int8.onnx \\
        --out benchmarks/int8_profile

For each file the part (default ``search``, at the tracker's 3 scales in one batch, 1 thread) runs on the same random
crops (the latency does not depend on the pixels): first all files round-robin with plain sessions (wall-clock
medians), then again round-robin with onnxruntime's profiler on (``SessionOptions.enable_profiling``), whose
per-kernel times are summed per network block (from the node names onnxruntime gives the kernels after its
fusions) and per operator: float kernels (Conv in the blocked NCHWc layout), integer kernels (QLinearConv,
QLinearAdd, fused from the QDQ pairs), the layout changes between them (ReorderInput/ReorderOutput, Transpose) and
the QuantizeLinear/DequantizeLinear left where float and int8 operators meet. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from siammixer_ros.core.model_file import read_model_file
from siammixer_ros.tools import write_result
from siammixer_ros.tools.machine import cpu_label, cpu_summary

BLOCKS = ("mb1", "mb2", "mixer1", "mb3", "mixer2")
LAYOUT_OPS = ("ReorderInput", "ReorderOutput", "Transpose")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
LAYOUT = "layout changes (NCHWc reorders, NHWC transposes)"
QDQ = "QuantizeLinear / DequantizeLinear"
OTHER = "mb4 / head (kernels named without a block)"


def kernel_group(node_name: str, op: str) -> str:
    """The row a kernel's time is counted in: a layout change, a quantise/dequantise, or the block it belongs to."""
    if op in LAYOUT_OPS:
        return LAYOUT
    if op in QDQ_OPS:
        return QDQ
    name = node_name[3:] if node_name.startswith("/m/") else node_name.lstrip("/")
    block = name.split("/")[0]
    return block if block in BLOCKS else OTHER


def _session(data: bytes, profile_prefix: str | None = None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def _feeds(part: str, info: Any, rng: np.random.Generator, scales: int) -> dict[str, np.ndarray]:
    if part == "template":
        return {"template": rng.uniform(0, 255, (1, 3, info.template_size, info.template_size)).astype(np.float32)}
    if part == "search":
        return {"search": rng.uniform(0, 255, (scales, 3, info.search_size, info.search_size)).astype(np.float32)}
    raise SystemExit(f"profile_parts: part {part!r} not supported (template or search)")


def profile_files(files: list[str], part: str, scales: int, repeats: int) -> dict[str, Any]:
    datas, feeds = {}, {}
    for f in files:
        info, parts = read_model_file(f)
        datas[f] = parts[part]
        feeds[f] = _feeds(part, info, np.random.default_rng(0), scales)
    sessions = {f: _session(d) for f, d in datas.items()}
    for f, s in sessions.items():
        s.run(None, feeds[f])
    load_start = os.getloadavg()
    times: dict[str, list[float]] = {f: [] for f in files}
    for _ in range(repeats):
        for f, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, feeds[f])
            times[f].append(time.perf_counter() - t0)
    rows: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="siammixer_profile_") as tmp:
        profiled = {f: _session(datas[f], str(Path(tmp) / f"p{i}")) for i, f in enumerate(files)}
        for _ in range(repeats):  # round-robin here too: a load spike hits every file alike
            for f, s in profiled.items():
                s.run(None, feeds[f])
        for f, s in profiled.items():
            events = json.loads(Path(s.end_profiling()).read_text())
            per_kernel: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
            for e in events:
                if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                    per_kernel[(e["name"][: -len("_kernel_time")], e["args"].get("op_name", "?"))].append(e["dur"])
            groups: dict[str, dict[str, float]] = collections.defaultdict(lambda: collections.defaultdict(float))
            for (name, op), durations in per_kernel.items():
                groups[kernel_group(name, op)][op] += float(np.median(durations)) / 1000.0
            rows[f] = {g: dict(ops) for g, ops in groups.items()}
    load_end = os.getloadavg()
    return {
        "part": part, "scales": scales, "threads": 1, "repeats": repeats,
        "machine": cpu_summary(),
        "load_average_start": load_start, "load_average_end": load_end,
        "wall_ms": {f: {"median": float(np.median(t)) * 1e3, "p10": float(np.percentile(t, 10)) * 1e3}
                    for f, t in times.items()},
        "kernel_ms": rows,
    }


def to_markdown(result: dict[str, Any]) -> str:
    files = list(result["wall_ms"])
    names = [Path(f).name for f in files]
    order = [*BLOCKS, OTHER, LAYOUT, QDQ]
    lines = [f"# Kernel time per block: part `{result['part']}`, {result['scales']} scales in one batch, 1 thread",
             "",
             f"Machine: {result['machine']['platform']}, {cpu_label(result['machine'])}. Load average "
             f"{result['load_average_start'][0]:.1f} at the start, {result['load_average_end'][0]:.1f} at the end. "
             f"{result['repeats']} runs per file: wall-clock round-robin over the files, then round-robin again with "
             "onnxruntime's profiler (median kernel time, summed per block; a block's operators in brackets, those "
             "of at least 0.02 ms).",
             "",
             "| | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(files)]
    for group in order:
        cells = []
        for f in files:
            ops = result["kernel_ms"][f].get(group, {})
            detail = ", ".join(f"{op} {t:.2f}" for op, t in sorted(ops.items(), key=lambda kv: -kv[1]) if t >= 0.02)
            cells.append(f"{sum(ops.values()):.2f}" + (f" ({detail})" if detail else ""))
        lines.append(f"| {group} ms | " + " | ".join(cells) + " |")
    totals = [sum(sum(ops.values()) for ops in result["kernel_ms"][f].values()) for f in files]
    lines.append("| sum of kernel medians ms | " + " | ".join(f"**{t:.2f}**" for t in totals) + " |")
    lines.append("| wall-clock median (p10) ms, round-robin | " + " | ".join(
        f"{result['wall_ms'][f]['median']:.2f} ({result['wall_ms'][f]['p10']:.2f})" for f in files) + " |")
    ref = result["wall_ms"][files[0]]
    lines.append(f"| speed-up vs {names[0]}, median (p10) | " + " | ".join(
        f"{ref['median'] / result['wall_ms'][f]['median']:.2f}x ({ref['p10'] / result['wall_ms'][f]['p10']:.2f}x)"
        for f in files) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m siammixer_ros.tools.profile_parts",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model files (the first is the reference of the speed-up)")
    parser.add_argument("--part", default="search", choices=("search", "template"))
    parser.add_argument("--scales", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--out", default=None, help="write OUT.json and OUT.md (default: print the table)")
    args = parser.parse_args(argv)
    result = profile_files(args.models, args.part, args.scales, args.repeats)
    write_result(args.out, result, to_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
