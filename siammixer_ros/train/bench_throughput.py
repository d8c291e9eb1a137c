"""Training throughput: pairs per hour of the real training loop, variants measured round-robin in one run.

Each variant is the run's config with a few values changed; each round runs every variant for ``--steps`` steps
(data, teacher, forward, backward, optimiser, logging: the loop as it trains) and the report gives the median over
rounds and each variant's ratio to the first, measured under the same load. Writes ``<out>.json`` and ``<out>.md``.

    python -m siammixer_ros.train.bench_throughput --config siammixer_ros/train/configs/xs_02.yaml \\
        --threads 2 --rounds 3 --steps 4 --out benchmarks/train_throughput
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Changes to the benchmarked config (xs_02.yaml: the long run). The first row is the reference of the ratios.
VARIANTS: dict[str, dict[str, Any]] = {
    "the 0.1.x loop (no box branch)": {"box_head": False, "loss": {"box_weight": 0.0}},
    "the long run (box branch)": {},
    "the long run, bf16 autocast": {"autocast_bf16": True},
    "the long run, no teacher (its cost)": {"loss": {"distill_weight": 0.0, "box_weight": 0.0},
                                            "pairs": {"sources": {"pseudo": 0.0}}, "box_head": False},
}


def _load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def measure(config: Path, threads: int, rounds: int, steps: int,
            variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    import torch

    from siammixer_ros.train.config import config_from_dict, config_to_dict, load_config, merge_config_dicts
    from siammixer_ros.train.trainer import Trainer

    base = config_to_dict(load_config(config))
    trainers: dict[str, Trainer] = {}
    with tempfile.TemporaryDirectory(prefix="siammixer-throughput-") as tmp:
        for i, (name, changes) in enumerate(variants.items()):
            values = merge_config_dicts(base, changes)
            values.update(threads=threads)
            values["schedule"] = {**values["schedule"], "val_every_pairs": 10**9, "tracking_val_every_pairs": 0,
                                  "checkpoint_every_s": 1e9}
            trainers[name] = Trainer(config_from_dict(values), Path(tmp) / f"v{i}", progress=False)
        for trainer in trainers.values():  # warm-up: first-call allocations, the prefetch thread's first batch
            trainer.run(max_steps=1)
        times: dict[str, list[float]] = {name: [] for name in trainers}
        loads = [_load()]
        for _ in range(rounds):
            for name, trainer in trainers.items():
                t0 = time.perf_counter()
                trainer.run(max_steps=steps)
                times[name].append(time.perf_counter() - t0)
            loads.append(_load())
        for trainer in trainers.values():
            trainer.batches.close()
    batch = next(iter(trainers.values())).cfg.optim.batch_size
    rows = []
    first = None
    for name, seconds in times.items():
        per_hour = [steps * batch / s * 3600 for s in seconds]
        median = statistics.median(per_hour)
        first = first or median
        rows.append({"variant": name, "changes": variants[name], "pairs_per_hour_median": round(median),
                     "pairs_per_hour_rounds": [round(v) for v in per_hour], "ratio_to_first": round(median / first, 3)})
    return {"config": str(config), "threads": threads, "rounds": rounds, "steps_per_round": steps,
            "batch_size": batch, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "load_average_1_5_15_per_round": loads,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Training throughput, `{result['config']}`, {result['threads']} torch threads, batch "
             f"{result['batch_size']}, {result['cores']} cores, torch {result['torch']}, {result['measured_at']}.",
             f"Median of {result['rounds']} rounds of {result['steps_per_round']} steps per variant, variants "
             "round-robin in one run (ratios compare under the same load). Load average (1/5/15 min) after each "
             f"round: {'; '.join(result['load_average_1_5_15_per_round'])}.", "",
             "| variant | pairs per hour (median) | per round | ratio |", "|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['variant']} | {row['pairs_per_hour_median']:,} | "
                     f"{', '.join(f'{v:,}' for v in row['pairs_per_hour_rounds'])} | {row['ratio_to_first']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("siammixer_ros/train/configs/xs_02.yaml"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="steps per variant and round")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/train_throughput"),
                        help="writes <out>.json and <out>.md")
    args = parser.parse_args(argv)
    result = measure(args.config, args.threads, args.rounds, args.steps, VARIANTS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    args.out.with_suffix(".md").write_text("# Training throughput\n\n" + text)
    print(text, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
