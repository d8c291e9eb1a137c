"""Average the weights of runs that share a starting point (a uniform "model soup"), then re-estimate BatchNorm.

    python -m siammixer_ros.train.soup training/siammixer_s_0.{3,4,5}/checkpoints/best.pt --out soup.pt

Why: runs fine-tuned from the same weights with different recipes stay in one basin of the loss, and the average of
their weights often generalises better than any one of them (Wortsman et al., "Model soups", ICML 2022). Each run
here changed one thing from SiamMixer-S 0.3.0 and none beat it on the selection split alone; their average asks
whether what each learnt adds up. Only checkpoints of the same variant, with the same parameters and the same
training sequences, are averaged (a soup of runs that saw different sequences would hide which data it learnt
from). BatchNorm's running statistics belong to one set of weights, not to an average, so they are re-estimated per
branch on the training sequences (``siammixer_ros.train.bn_stats``), as export does for older checkpoints.

The result is a trainer checkpoint (``model``, ``variant``, ``config`` and sequences of the first ingredient,
``souped_from`` naming every ingredient) that ``train.validate`` scores and ``train.export`` exports; it holds no
optimiser, so it does not resume a run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

from siammixer_ros.train.bn_stats import DEFAULT_PAIRS, DEFAULT_SEED, reestimate_checkpoint_state


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts with the same keys and shapes; integer buffers (BatchNorm's batch
    counters) are the first's. Raises ValueError naming the first key that differs."""
    if not states:
        raise ValueError("nothing to average")
    keys = list(states[0])
    for i, state in enumerate(states[1:], start=2):
        if set(state) != set(keys):
            missing = sorted(set(keys) ^ set(state))[0]
            raise ValueError(f"ingredient {i} has different parameters from the first (e.g. {missing!r})")
        for key in keys:
            if state[key].shape != states[0][key].shape:
                raise ValueError(f"ingredient {i}: {key!r} is {tuple(state[key].shape)}, the first's "
                                 f"{tuple(states[0][key].shape)}")
    out = {}
    for key in keys:
        first = states[0][key]
        if first.is_floating_point():
            out[key] = torch.stack([s[key].to(torch.float64) for s in states]).mean(0).to(first.dtype)
        else:
            out[key] = first.clone()
    return out


def soup_state(checkpoints: list[Path], bn_pairs: int = DEFAULT_PAIRS, seed: int = DEFAULT_SEED
               ) -> dict[str, Any]:
    """The trainer-checkpoint state of the uniform soup of ``checkpoints`` (see the module docstring)."""
    if len(checkpoints) < 2:
        raise ValueError("a soup needs at least two checkpoints")
    loaded = []
    for path in checkpoints:
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or "model" not in state:
            raise ValueError(f"{path} is not a training checkpoint (no 'model' entry)")
        loaded.append(state)
    first = loaded[0]
    for path, state in zip(checkpoints[1:], loaded[1:], strict=True):
        if state.get("variant") != first.get("variant"):
            raise ValueError(f"{path} is variant {state.get('variant')!r}, {checkpoints[0]} is "
                             f"{first.get('variant')!r}")
        if list(state.get("train_sequences", [])) != list(first.get("train_sequences", [])):
            raise ValueError(f"{path} was trained on other sequences than {checkpoints[0]}")
    soup = {
        "model": average_states([s["model"] for s in loaded]),
        "variant": first.get("variant"),
        "config": first.get("config", {}),
        "train_sequences": list(first.get("train_sequences", [])),
        "val_sequences": list(first.get("val_sequences", [])),
        "pairs_seen": int(sum(int(s.get("pairs_seen", 0)) for s in loaded)),
        "elapsed_s": float(sum(float(s.get("elapsed_s", 0.0)) for s in loaded)),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "souped_from": [{"checkpoint": str(p), "pairs_seen": int(s.get("pairs_seen", 0)),
                         "initialised_from": s.get("initialised_from")} for p, s in zip(checkpoints, loaded,
                                                                                       strict=True)],
    }
    reestimate_checkpoint_state(soup, bn_pairs, seed)
    return soup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", type=Path, nargs="+", help="trainer checkpoints (.pt) of one starting point")
    parser.add_argument("--out", type=Path, required=True, help="where to write the soup's checkpoint")
    parser.add_argument("--bn-pairs", type=int, default=DEFAULT_PAIRS,
                        help="clean training pairs to re-estimate BatchNorm's statistics on")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.bn_pairs < 1:
        parser.error("--bn-pairs must be at least 1 (averaged running statistics fit no set of weights)")
    if any(args.out.resolve() == p.resolve() for p in args.checkpoints):
        parser.error("--out must differ from every ingredient")
    torch.set_num_threads(args.threads)
    try:
        state = soup_state(args.checkpoints, args.bn_pairs, args.seed)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    print(f"{args.out}: mean of {len(args.checkpoints)} checkpoints; {state['bn_statistics']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
