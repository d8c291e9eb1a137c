"""Re-estimate a checkpoint's BatchNorm statistics per Siamese branch (what export and eval mode use).

    python -m siammixer_ros.train.bn_stats training/siammixer_xs_0.2/checkpoints/best.pt --out /tmp/best_bn.pt

Why: checkpoints made before :class:`~siammixer_ros.model.network.BranchBatchNorm2d` hold one running average
that blends the template and search branches, and their exported maps peak at corner cells (docs/training.md,
"BatchNorm"). With the weights fixed, every BatchNorm's statistics are recomputed as exact averages over a fixed,
seeded set of clean pairs from the checkpoint's *training* sequences: template crops for the template branch,
search crops for the search branch and the box branch. Runs trained since keep per-branch running averages
themselves; re-estimating them as well gives averages of the final weights rather than of the last steps'.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

DEFAULT_PAIRS = 1024
DEFAULT_SEED = 20261202


@torch.no_grad()
def estimate_branch_statistics(model: nn.Module, batches: Iterable[dict[str, np.ndarray]]) -> int:
    """Replace every BatchNorm's running statistics of ``model`` (in place) by exact averages over ``batches``
    (``collate`` output: ``template`` and ``search`` NCHW BGR 0..255). Weights are untouched; returns the number of
    batches. The model is left in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches, not an exponential one
    model.train()
    count = 0
    try:
        for batch in batches:
            zf = model.template_features(torch.from_numpy(batch["template"]))
            xf = model.search_features(torch.from_numpy(batch["search"]))
            if getattr(model, "box_head", None) is not None:
                model.box(zf, xf)
            count += 1
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.eval()
    if count == 0:
        raise ValueError("no batches to estimate the BatchNorm statistics from")
    return count


def statistics_batches(train_sequences: list[str], pairs: int = DEFAULT_PAIRS, seed: int = DEFAULT_SEED,
                       batch_size: int = 32, data_dir: Path | None = None, cache_dir: Path | None = None
                       ) -> list[dict[str, np.ndarray]]:
    """Clean pairs (80 % video pairs, 20 % negatives; shift jitter only) of ``train_sequences``, collated."""
    from siammixer_ros.train.cache import default_cache_dir, default_data_dir, load_cached_sequences
    from siammixer_ros.train.data import collate
    from siammixer_ros.train.validate import validation_pairs

    if not train_sequences:
        raise ValueError("the checkpoint names no training sequences to estimate the statistics on")
    sequences = load_cached_sequences(data_dir or default_data_dir(), cache_dir or default_cache_dir(),
                                      list(train_sequences))
    drawn = validation_pairs(sequences, pairs, seed)
    return [collate(drawn[i:i + batch_size]) for i in range(0, len(drawn), batch_size)]


def model_from_checkpoint_state(state: dict[str, Any], bn_pairs: int | None = None, data_dir: Path | None = None,
                                cache_dir: Path | None = None) -> nn.Module:
    """The SiamMixer of a trainer checkpoint ``state`` (eval mode). ``bn_pairs``: re-estimate its BatchNorm
    statistics on that many pairs first (:func:`reestimate_checkpoint_state`); None: only for a checkpoint without
    per-branch statistics (made before they existed), on :data:`DEFAULT_PAIRS`; 0: never."""
    from siammixer_ros.model.network import SiamMixer, has_branch_statistics, load_model_state

    if bn_pairs is None:
        bn_pairs = 0 if has_branch_statistics(state["model"]) or state.get("bn_statistics") else DEFAULT_PAIRS
    if bn_pairs > 0:
        return reestimate_checkpoint_state(state, bn_pairs, data_dir=data_dir, cache_dir=cache_dir)
    model = SiamMixer(variant=state.get("variant", "xs"),
                      box_head=any(k.startswith("box_head.") for k in state["model"]))
    load_model_state(model, state["model"])
    return model.eval()


def reestimate_checkpoint_state(state: dict[str, Any], pairs: int = DEFAULT_PAIRS, seed: int = DEFAULT_SEED,
                                data_dir: Path | None = None, cache_dir: Path | None = None) -> nn.Module:
    """The model of a trainer checkpoint ``state`` with its statistics re-estimated on its training sequences;
    records how in ``state["bn_statistics"]``."""
    model = model_from_checkpoint_state(state, bn_pairs=0)
    # The run's own data and cache folders unless told otherwise (then $SIAMMIXER_DATA or ../shared/data).
    cfg = state.get("config") or {}
    data_dir = data_dir or (Path(cfg["data_dir"]) if cfg.get("data_dir") else None)
    cache_dir = cache_dir or (Path(cfg["cache_dir"]) if cfg.get("cache_dir") else None)
    try:
        batches = statistics_batches(list(state.get("train_sequences", [])), pairs, seed, data_dir=data_dir,
                                     cache_dir=cache_dir)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{exc} (needed to re-estimate the BatchNorm statistics; with --bn-pairs 0 the "
                                "checkpoint's own statistics are used as they are)") from exc
    estimate_branch_statistics(model, batches)
    state["model"] = model.state_dict()
    state["bn_statistics"] = (f"re-estimated per branch on {pairs} clean pairs of the training sequences "
                              f"(seed {seed}; siammixer_ros.train.bn_stats)")
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="trainer checkpoint (.pt)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the checkpoint with new statistics")
    parser.add_argument("--pairs", type=int, default=DEFAULT_PAIRS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    if args.out.resolve() == args.checkpoint.resolve():
        parser.error("--out must differ from the checkpoint (keep the original)")
    torch.set_num_threads(args.threads)
    try:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or "model" not in state:
            raise ValueError(f"{args.checkpoint} is not a training checkpoint (no 'model' entry)")
        reestimate_checkpoint_state(state, args.pairs, args.seed)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state.pop("optimizer", None)  # the statistics change nothing the optimiser holds; resume from the original
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    print(f"{args.out}: {state['bn_statistics']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
