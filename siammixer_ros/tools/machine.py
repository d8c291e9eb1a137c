"""What CPU a benchmark ran on, read from the machine rather than assumed.

INT8 speed depends on the instruction set far more than float speed does: onnxruntime's integer kernels use
VNNI dot products (``avx512_vnni``, ``avx_vnni``, ``amx_int8`` on x86; ``asimddp``/``i8mm`` on ARM) where the CPU
has them and slower 16-bit multiply-adds (AVX2) where it does not. The shared machines here are not all the same
CPU, so the int8 benchmarks record which of these flags the CPU that ran them had.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

# The flags (as /proc/cpuinfo spells them) that decide which integer kernels onnxruntime can use.
INT8_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm", "sve")
DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """Model name and the INT8-relevant flags of the first processor in a /proc/cpuinfo text."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:  # x86 says flags, ARM says Features
            flags = set(value.split())
    return {"model": model, "int8_flags": [f for f in INT8_FLAGS if f in flags]}


def cpu_summary(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """Platform, CPU count, CPU model and INT8-relevant flags of this machine (flags empty where unreadable)."""
    try:
        info = parse_cpuinfo(cpuinfo.read_text())
    except OSError:
        info = {"model": platform.processor(), "int8_flags": []}
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(), **info}


def cpu_label(summary: dict[str, Any]) -> str:
    """One line for a benchmark table: '2 CPUs, AMD EPYC (avx2; no VNNI-class dot product)'."""
    flags = summary.get("int8_flags")
    if flags is None:  # a result written before the flags were recorded
        return f"{summary.get('cpu_count', summary.get('cpus', '?'))} CPUs (instruction set not recorded)"
    dot = [f for f in flags if f in DOT_PRODUCT_FLAGS]
    flag_text = ", ".join(flags) if flags else "none of the INT8-relevant flags"
    dot_text = "" if dot else "; no VNNI-class int8 dot product"
    model = summary.get("model") or "unknown CPU"
    return f"{summary.get('cpu_count', '?')} CPUs, {model} ({flag_text}{dot_text})"
