"""siammixer-model-info MODEL.onnx: what a SiamMixer model file is and what it costs.

Prints the model's facts, parameters, MACs (one template + 1/3/5 search scales), the feature-map
memory of the search branch layer by layer for every execution mode (the paper's Eq. 6/8 accounting,
int8 and float32, and a "live" accounting: layer input + output + residual + assembled grid), the peaks,
the reduction of patch-by-patch against whole-image inference beside the paper's 4.26x, and, with
``--measure``, the measured growth of process memory when onnxruntime runs each mode.

No torch: numpy + onnxruntime (+ the architecture stored in the file).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from siammixer_ros.core import memory
from siammixer_ros.core.memory import MODES, PAPER_PEAK_BYTES, PAPER_REDUCTION, SiamMixerConfig
from siammixer_ros.core.model_file import (
    ARCHITECTURE_KEY,
    SEARCH_OUTPUT_HIDDEN,
    ModelError,
    ModelInfo,
    read_model_file,
)

PAPER_PARAMS = {"xs": 0.286e6, "s": 0.389e6, "m": 0.593e6, "l": 1.003e6}  # Table 4


def read_architecture(path: str | Path, info: ModelInfo) -> tuple[SiamMixerConfig, str]:
    """The widths stored in the file (``siammixer.architecture``), else the variant's defaults."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    raw = session.get_modelmeta().custom_metadata_map.get(ARCHITECTURE_KEY)
    if raw:
        return SiamMixerConfig.from_dict(json.loads(raw)), "stored in the model file"
    return SiamMixerConfig.for_variant(info.variant), f"defaults of variant {info.variant} (not stored in the file)"


def _rss_kib() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def measure_mode_memory(model_path: str, mode: str, scales: int = 1, threads: int = 1) -> dict[str, Any]:
    """Process memory growth (RSS and peak RSS, KiB): reading the model file and creating the sessions,
    then the first and a second run (template + ``scales`` search images + correlation).

    Run in a fresh process per mode (see :func:`measure_all`) so that modes do not share allocator arenas.
    """
    import numpy as np
    import onnxruntime  # noqa: F401  (imported before the first reading: its import is not the model's cost)

    from siammixer_ros.core.runtime import RuntimeOptions, SiamMixerRuntime

    before = _rss_kib()
    rt = SiamMixerRuntime(model_path, RuntimeOptions(mode=mode, intra_op_threads=threads))
    created = _rss_kib()
    s = rt.info.search_size
    x = np.random.default_rng(0).uniform(0, 255, (scales, 3, s, s)).astype(np.float32)
    z = np.random.default_rng(1).uniform(0, 255, (1, 3, rt.info.template_size, rt.info.template_size))
    zf = rt.template_features(z.astype(np.float32))
    rt.response(zf, rt.search_features(x))
    rt.response(zf, rt.search_features(x))
    after = _rss_kib()
    return {"mode": mode, "scales": scales,
            "session_rss_kib": created["VmRSS"] - before["VmRSS"],
            "run_rss_kib": after["VmRSS"] - created["VmRSS"],
            "run_peak_rss_kib": after["VmHWM"] - created["VmHWM"],
            "total_peak_rss_kib": after["VmHWM"] - before["VmRSS"]}


def measure_all(model_path: str, modes: tuple[str, ...], scales: int = 1) -> list[dict[str, Any]]:
    results = []
    for mode in modes:
        code = ("import json,sys; from siammixer_ros.tools.model_info import measure_mode_memory as m; "
                f"print(json.dumps(m({model_path!r}, {mode!r}, {scales})))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            results.append({"mode": mode, "error": proc.stderr.strip().splitlines()[-1:]})
        else:
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def model_report(path: str | Path, measure: bool = False) -> dict[str, Any]:
    info, _ = read_model_file(path)
    cfg, cfg_source = read_architecture(path, info)
    report: dict[str, Any] = {
        "model": str(path), "info": {k: v for k, v in info.__dict__.items()}, "architecture_source": cfg_source,
        "architecture": cfg.to_dict(), "params": memory.count_parameters(cfg),
        "macs": {str(n): memory.count_macs(cfg, info.template_size, info.search_size, n) for n in (1, 3, 5)},
        "halo": memory.patch_halo(cfg, info.patch_size or memory.PATCH_SIZE),
    }
    if cfg.box_head:
        report["box_params"] = sum(layer.params for layer in memory.box_layers(cfg))
    if info.search_output == SEARCH_OUTPUT_HIDDEN:  # MB4's projection on the template side (docs/network.md)
        report["executed_macs"] = {str(n): memory.executed_macs(cfg, info.template_size, info.search_size, n)
                                   for n in (1, 3, 5)}
    modes = MODES if info.has_patch_parts else ("whole",)
    mem: dict[str, Any] = {}
    for mode in modes:
        mem[mode] = {str(b): memory.feature_memory(cfg, mode, b, info.search_size, info.patch_size or 16)
                     for b in (1, 4)}
    report["feature_memory"] = mem
    report["template_memory"] = {str(b): memory.template_memory(cfg, b, info.template_size) for b in (1, 4)}
    if "patch" in mem:
        whole, patch = mem["whole"]["1"]["paper_peak_bytes"], mem["patch"]["1"]["paper_peak_bytes"]
        report["reduction_patch_vs_whole"] = whole / patch
        report["patch_peak_vs_paper"] = patch / PAPER_PEAK_BYTES
    if measure:
        report["measured"] = measure_all(str(path), modes)
    return report


def _kb(n: float) -> str:
    return f"{n / 1000:.1f} kB"


def _quantization_lines(quant: dict[str, Any]) -> list[str]:
    """What an INT8 file (siammixer-quantize) says about its quantisation; nothing for a float file."""
    if not quant:
        return []
    method, calib = quant.get("method", {}), quant.get("calibration", {})
    parts = ", ".join(f"{name} {p.get('precision')}" for name, p in sorted(quant.get("parts", {}).items()))
    lines = [f"  quantised: {method.get('format', '?').split(' ')[0]}, weights {method.get('weights')}, activations "
             f"{method.get('activations')}, {method.get('calibration_method')} ranges",
             f"  calibration: {calib.get('template_crops')} templates, {calib.get('search_crops')} search crops from "
             f"{len(calib.get('sequences', []))} sequences of {calib.get('dataset')} ({calib.get('split')})",
             f"  parts: {parts}"]
    for layer, why in quant.get("float_layers", {}).items():
        lines.append(f"  kept float: {layer}: {why}")
    final = quant.get("check", {}).get("this_file")
    if final:
        lines.append(f"  response error vs float: {final['relative_rms']:.4f} relative RMS, peak agreement "
                     f"{final['peak_agreement']:.2f} ({final['samples']} samples)")
    return lines


def format_report(r: dict[str, Any], per_layer: bool = True) -> str:
    info = r["info"]
    lines = [
        f"SiamMixer model {r['model']}",
        f"  variant {info['variant']}, model_version {info['model_version']}, "
        f"provenance {json.dumps(info['provenance'])}",
        f"  template {info['template_size']}, search {info['search_size']}, stride {info['stride']}, "
        f"response {info['response_size']}x{info['response_size']}, parts {', '.join(info['parts'])}",
        f"  patch size {info['patch_size']}, halo before/after {info['halo_before']}/{info['halo_after']}",
        "  box output: " + (f"yes, head output 'box' ({info['box_output']}: l, t, r, b per response cell)"
                            if info.get("box_output") else "none (the box comes from the scale search only)"),
        f"  normalisation: {info['normalisation']}",
        f"  architecture: {r['architecture_source']}",
        *_quantization_lines(info.get("quantization") or {}),
        "",
        f"Parameters: {r['params']:,} ({r['params'] / 1e6:.3f} M; paper "
        f"{PAPER_PARAMS.get(info['variant'], float('nan')) / 1e6:.3f} M for {info['variant'].upper()})"
        + (f"; box branch {r['box_params']:,} of them" if "box_params" in r else ""),
        "MACs (template + search scales + correlation" + (" + box branch" if "box_params" in r else "") + "):",
    ]
    for n, m in r["macs"].items():
        box = f", of which box branch {m['box'] / 1e6:.1f} M" if "box" in m else ""
        head = "head" if box else "correlation"
        lines.append(f"  {n} scale(s): {m['total'] / 1e6:8.1f} M  (template {m['template'] / 1e6:.1f} M, "
                     f"search {m['search'] / 1e6:.1f} M, {head} {m['head'] / 1e6:.1f} M{box})")
    if "executed_macs" in r:
        lines.append("  as this file runs them (MB4's projection moved to the template side of the correlation): "
                     + ", ".join(f"{n} scale(s) {m['total'] / 1e6:.1f} M" for n, m in r["executed_macs"].items()))
    mem = r["feature_memory"]
    modes = list(mem)
    if per_layer:
        lines += ["", "Search-branch feature memory per layer, paper accounting (Eq. 6/8), int8 bytes "
                  "[copies computed at once in patch modes]:"]
        header = f"  {'layer':38s}" + "".join(f"{m:>16s}" for m in modes)
        lines.append(header)
        rows: dict[str, dict[str, str]] = {}
        for m in modes:
            for row in mem[m]["1"]["layers"]:
                key = row["name"] if row["stage"] != "search_global" else row["name"]
                label = f"{row['paper_bytes']:,}" + (f" [{row['copies']}]" if row["copies"] > 1 else "")
                rows.setdefault(key, {})[m] = label
        for name, cells in rows.items():
            lines.append(f"  {name:38s}" + "".join(f"{cells.get(m, '-'):>16s}" for m in modes))
    lines += ["", "Peak feature memory of the search branch (one image):",
              f"  {'mode':8s} {'paper int8':>12s} {'paper fp32':>12s} {'live int8':>12s} {'live fp32':>12s}  "
              "peak layer (paper / live)"]
    for m in modes:
        a, b = mem[m]["1"], mem[m]["4"]
        lines.append(f"  {m:8s} {_kb(a['paper_peak_bytes']):>12s} {_kb(b['paper_peak_bytes']):>12s} "
                     f"{_kb(a['live_peak_bytes']):>12s} {_kb(b['live_peak_bytes']):>12s}  "
                     f"{a['paper_peak_layer']} / {a['live_peak_layer']}")
    t1, t4 = r["template_memory"]["1"], r["template_memory"]["4"]
    lines.append(f"  template branch (whole image): paper {_kb(t1['paper_peak_bytes'])} int8 / "
                 f"{_kb(t4['paper_peak_bytes'])} fp32 at {t1['paper_peak_layer']}")
    if "reduction_patch_vs_whole" in r:
        lines += ["",
                  f"Patch-by-patch peak (int8, paper accounting, computed from the layer shapes): "
                  f"{_kb(mem['patch']['1']['paper_peak_bytes'])} "
                  f"= {r['patch_peak_vs_paper'] * 100:.1f} % of the paper's 196 kB",
                  f"Reduction whole-image -> patch-by-patch: {r['reduction_patch_vs_whole']:.2f}x "
                  f"(paper: {PAPER_REDUCTION}x)"]
    if "measured" in r:
        lines += ["", "Measured process memory growth in onnxruntime (fresh process per mode, 1 search image, KiB):",
                  f"  {'mode':8s} {'session':>10s} {'runs RSS':>10s} {'runs peak':>10s} {'total peak':>11s}"]
        for m in r["measured"]:
            if "error" in m:
                lines.append(f"  {m['mode']:8s} error: {m['error']}")
            else:
                lines.append(f"  {m['mode']:8s} {m['session_rss_kib']:>10,} {m['run_rss_kib']:>10,} "
                             f"{m['run_peak_rss_kib']:>10,} {m['total_peak_rss_kib']:>11,}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="siammixer-model-info", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="SiamMixer model file (.onnx)")
    parser.add_argument("--measure", action="store_true",
                        help="also measure onnxruntime's process memory growth per mode (a few seconds)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--no-layers", action="store_true", help="omit the per-layer table")
    args = parser.parse_args(argv)
    try:
        report = model_report(args.model, measure=args.measure)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1, default=str) if args.json else format_report(report, not args.no_layers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
