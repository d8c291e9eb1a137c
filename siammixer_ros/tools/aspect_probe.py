"""Does the network's response say how the target's aspect ratio changed? A probe for an aspect search.

    python -m siammixer_ros.tools.aspect_probe --model models/siammixer_s.onnx --out benchmarks/aspect_probe

The tracker's scale search keeps the first frame's aspect ratio, and on the selection split most of the AUC it
loses is the box's fit (docs/tracker.md). An aspect search would try stretched crops and keep the aspect whose
peak scores highest, as the scale search does for size. This measures, before building one, whether the peak
score carries that information. For every 5th annotated frame of the selection sequences (training sequences
the long run never trained on), a search crop is cut as the tracker would cut it if it had the right centre
(shifted by up to 16 crop pixels) and the right area, but the first frame's aspect ratio, and is scored with
five aspect changes ``a`` (target width x sqrt(a), height / sqrt(a)) applied

- on the template side: five first-frame templates cut with the stretch (one search crop; cheap at run time),
- on the search side: five stretched search crops against the first-frame template (five backbone passes).

The estimate is the softmax-weighted mean of log(a) over the five peak logits (and the arg-max). Reported: its
correlation with the true log aspect change, the slope and intercept of estimate vs truth (an aspect search
smoothed by a learning rate settles where the estimate is zero, so a small slope beside a bias means a biased
aspect), and per sequence.

``--linear`` asks the same of the features rather than the response: a ridge regression from the search features'
template-sized window at the target (and the template features), each reduced to 16 channels by PCA, to the log
aspect change, fitted on pairs of the fit split (training sequences minus selection) and scored on pairs of the
selection split; also with the search window alone and the template alone. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from siammixer_ros.core.crop import box_center, image_mean, to_nchw
from siammixer_ros.core.model_file import SHIPPED_MODEL_NAMES
from siammixer_ros.core.runtime import RuntimeOptions, SiamMixerRuntime
from siammixer_ros.tools import write_result
from siammixer_ros.train.data import context_side, crop_linear, warp_crop

ASPECTS = (1 / 1.3, 1 / 1.14, 1.0, 1.14, 1.3)


def stretched_crop(image: np.ndarray, center: tuple[float, float], width: float, height: float, out: int,
                   pad: tuple[float, ...]) -> np.ndarray:
    """A ``width x height`` window centred at ``center`` resized to ``out x out`` (the square crops' mapping of
    core.crop, per axis; outside the image: ``pad``): the training crops' warp with a stretch."""
    return warp_crop(image, np.asarray(center, dtype=np.float64),
                     crop_linear(width, out, stretch=(1.0, height / width)), out, pad)


def search_side_at_aspect(box: np.ndarray, aspect: float, search_size: int, template_size: int) -> float:
    """The search crop side the tracker would cut for ``box``'s true area at another aspect ratio (w / h)."""
    w = math.sqrt(box[2] * box[3] * aspect)
    return context_side(w, box[2] * box[3] / w) * search_size / template_size


def probe(model: str, dataset: str, names: list[str], step: int, seed: int) -> dict[str, Any]:
    from siammixer_ros.eval.datasets import load_dataset

    runtime = SiamMixerRuntime(model, RuntimeOptions(mode="whole", intra_op_threads=2))
    t_size, s_size = runtime.info.template_size, runtime.info.search_size
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for seq in load_dataset(dataset, split="train", names=names):
        first = seq.first_annotated
        image0, box0 = seq.frames[first], seq.boxes[first]
        side0, mean0 = context_side(box0[2], box0[3]), image_mean(image0)
        templates = [runtime.template_features(to_nchw(stretched_crop(
            image0, box_center(box0), side0 / math.sqrt(a), side0 * math.sqrt(a), t_size, mean0)[None])
        ).copy() for a in ASPECTS]
        aspect0 = box0[2] / box0[3]
        for t in range(first + step, len(seq), step):
            if not seq.present[t]:
                continue
            box, image = seq.boxes[t], seq.frames[t]
            side = search_side_at_aspect(box, aspect0, s_size, t_size)
            cx, cy = box_center(box)
            dx, dy = rng.uniform(-16, 16, 2) * side / s_size
            center, mean = (cx + dx, cy + dy), image_mean(image)
            search = runtime.search_features(to_nchw(stretched_crop(image, center, side, side, s_size, mean)[None]))
            template_side = [float(runtime.response(z, search).max()) for z in templates]
            crops = np.stack([stretched_crop(image, center, side * math.sqrt(a), side / math.sqrt(a), s_size, mean)
                              for a in ASPECTS])
            search_side = runtime.response(templates[ASPECTS.index(1.0)], runtime.search_features(to_nchw(crops)))
            rows.append({"sequence": seq.name, "frame": t, "true_log_change": math.log(box[2] / box[3] / aspect0),
                         "template_side": template_side,
                         "search_side": search_side.reshape(len(ASPECTS), -1).max(axis=1).tolist()})
    return {"model": model, "aspects": list(ASPECTS), "step": step, "seed": seed, "sequences": names, "rows": rows,
            "summary": summarise(rows)}


def feature_pairs(runtime: SiamMixerRuntime, sequences: list[Any], per_sequence: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Template features of one frame and search features of a later one (up to 150 frames), the search crop cut
    at the later frame's true area with the earlier frame's aspect, centred within 8 crop pixels of the target:
    the template-sized window of the search features at the target, the template features, the true log aspect
    change, the sequence of each pair."""
    t_size, s_size = runtime.info.template_size, runtime.info.search_size
    windows, templates, truth, names = [], [], [], []
    for seq in sequences:
        present = np.flatnonzero(seq.present)
        pairs = []
        for _ in range(per_sequence):
            first = int(rng.choice(present[: max(1, len(present) // 2)]))
            later = present[(present > first) & (present <= first + 150)]
            if len(later):
                pairs.append((first, int(rng.choice(later)), rng.uniform(-8, 8, 2)))
        for first, t, shift in sorted(pairs, key=lambda p: p[0]):  # in frame order: videos decode faster
            box0, box = seq.boxes[first], seq.boxes[t]
            image0, image = seq.frames[first], seq.frames[t]
            side0 = context_side(box0[2], box0[3])
            template = stretched_crop(image0, box_center(box0), side0, side0, t_size, image_mean(image0))
            aspect0 = box0[2] / box0[3]
            side = search_side_at_aspect(box, aspect0, s_size, t_size)
            cx, cy = box_center(box)
            center = (cx + shift[0] * side / s_size, cy + shift[1] * side / s_size)
            search = runtime.search_features(to_nchw(stretched_crop(image, center, side, side, s_size,
                                                                    image_mean(image))[None]))[0]
            cells = runtime.info.response_size  # window offset of the target: the crop's centre less the shift
            col = min(max(int(round((cells - 1) / 2 - shift[0] / runtime.info.stride)), 0), cells - 1)
            row = min(max(int(round((cells - 1) / 2 - shift[1] / runtime.info.stride)), 0), cells - 1)
            span = search.shape[-1] - cells + 1
            windows.append(np.array(search[:, row:row + span, col:col + span]))
            templates.append(np.array(runtime.template_features(to_nchw(template[None]))[0]))
            truth.append(math.log(box[2] / box[3] / aspect0))
            names.append(seq.name)
    return np.stack(windows), np.stack(templates), np.array(truth), names


def linear_probe(model: str, dataset: str, per_sequence: int, seed: int, channels: int = 16,
                 alpha: float = 3000.0) -> dict[str, Any]:
    from siammixer_ros.eval.datasets import load_dataset

    runtime = SiamMixerRuntime(model, RuntimeOptions(mode="whole", intra_op_threads=2))
    rng = np.random.default_rng(seed)
    fit = feature_pairs(runtime, load_dataset(dataset, split="fit"), per_sequence, rng)
    held = feature_pairs(runtime, load_dataset(dataset, split="selection"), per_sequence, rng)

    def reduce(maps: np.ndarray, basis: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        mean, components = basis
        return np.einsum("nchw,kc->nkhw", maps - mean[None, :, None, None], components).reshape(len(maps), -1)

    def pca(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat = maps.transpose(0, 2, 3, 1).reshape(-1, maps.shape[1])
        mean = flat.mean(axis=0)
        return mean, np.linalg.svd(flat[::7] - mean, full_matrices=False)[2][:channels]

    bases = {"search window": pca(fit[0]), "template": pca(fit[1])}
    result: dict[str, Any] = {"model": model, "channels": channels, "alpha": alpha, "pairs_fit": len(fit[2]),
                              "pairs_selection": len(held[2]), "inputs": {}}
    for inputs in (("search window", "template"), ("search window",), ("template",)):
        train = np.concatenate([reduce(fit[0 if k == "search window" else 1], bases[k]) for k in inputs], axis=1)
        test = np.concatenate([reduce(held[0 if k == "search window" else 1], bases[k]) for k in inputs], axis=1)
        mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
        train, test = (train - mean) / std, (test - mean) / std
        offset = fit[2].mean()
        weights = np.linalg.solve(train.T @ train + alpha * np.eye(train.shape[1]), train.T @ (fit[2] - offset))
        predicted = test @ weights + offset
        slope, intercept = np.polyfit(held[2], predicted, 1)
        per_seq = {}
        for name in sorted(set(held[3])):
            m = np.array([n == name for n in held[3]])
            per_seq[name] = float(np.corrcoef(predicted[m], held[2][m])[0, 1]) if held[2][m].std() > 0 else None
        result["inputs"][" + ".join(inputs)] = {
            "corr_fit": float(np.corrcoef(train @ weights + offset, fit[2])[0, 1]),
            "corr_selection": float(np.corrcoef(predicted, held[2])[0, 1]), "slope": float(slope),
            "intercept": float(intercept), "per_sequence": per_seq}
    return result


def _estimates(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    log_a = np.log(np.asarray(ASPECTS))
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (weights * log_a).sum(axis=1) / weights.sum(axis=1), log_a[logits.argmax(axis=1)]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    truth = np.array([r["true_log_change"] for r in rows])
    out: dict[str, Any] = {"frames": len(rows)}
    for side in ("template_side", "search_side"):
        soft, best = _estimates(np.array([r[side] for r in rows]))
        slope, intercept = np.polyfit(truth, soft, 1)
        still = np.abs(truth) < 0.05
        per_sequence = {}
        for name in sorted({r["sequence"] for r in rows}):
            m = np.array([r["sequence"] == name for r in rows])
            per_sequence[name] = {"frames": int(m.sum()), "true_mean": float(truth[m].mean()),
                                  "true_std": float(truth[m].std()),
                                  "corr": float(np.corrcoef(soft[m], truth[m])[0, 1]) if truth[m].std() > 0 else None}
        out[side] = {"corr_soft": float(np.corrcoef(soft, truth)[0, 1]),
                     "corr_argmax": float(np.corrcoef(best, truth)[0, 1]), "slope": float(slope),
                     "intercept": float(intercept), "still_frames": int(still.sum()),
                     "still_mean_estimate": float(soft[still].mean()) if still.any() else None,
                     "per_sequence": per_sequence}
    return out


def to_markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = ["# Aspect probe: does the peak score tell the target's aspect change?", "",
             f"Model `{result['model']}`; every {result['step']}th annotated frame of {', '.join(result['sequences'])}"
             f" ({s['frames']} frames); aspect changes {', '.join(f'{a:.3f}' for a in result['aspects'])}. "
             "Estimate: softmax-weighted mean of log(a) over the peak logits. "
             "Command: `python -m siammixer_ros.tools.aspect_probe --model MODEL --out OUT`.", "",
             "| side | corr (soft) | corr (arg-max) | slope | intercept | estimate where the aspect held (frames) |",
             "|---|---|---|---|---|---|"]
    for side in ("template_side", "search_side"):
        r = s[side]
        still = "n/a" if r["still_mean_estimate"] is None else f"{r['still_mean_estimate']:+.3f} ({r['still_frames']})"
        lines.append(f"| {side.replace('_', ' ')} | {r['corr_soft']:.2f} | {r['corr_argmax']:.2f} | {r['slope']:.3f} | "
                     f"{r['intercept']:+.3f} | {still} |")
    lines += ["", "| sequence | frames | true log change, mean / std | corr template side | corr search side |",
              "|---|---|---|---|---|"]
    for name, r in s["template_side"]["per_sequence"].items():
        other = s["search_side"]["per_sequence"][name]
        corr = ["n/a" if v is None else f"{v:.2f}" for v in (r["corr"], other["corr"])]
        lines.append(f"| {name} | {r['frames']} | {r['true_mean']:+.3f} / {r['true_std']:.3f} | {corr[0]} | "
                     f"{corr[1]} |")
    if "linear" in result:
        lin = result["linear"]
        lines += ["", f"Features, not the response (`--linear`): ridge regression (alpha {lin['alpha']:g}, "
                  f"{lin['channels']} PCA channels per input) fitted on {lin['pairs_fit']} pairs of the fit split, "
                  f"scored on {lin['pairs_selection']} pairs of the selection split.", "",
                  "| inputs | corr (fit) | corr (selection) | slope | intercept | per-sequence corr (selection) |",
                  "|---|---|---|---|---|---|"]
        for inputs, r in lin["inputs"].items():
            per_seq = ", ".join(f"{k} {'n/a' if v is None else f'{v:.2f}'}" for k, v in r["per_sequence"].items())
            lines.append(f"| {inputs} | {r['corr_fit']:.2f} | {r['corr_selection']:.2f} | {r['slope']:.2f} | "
                         f"{r['intercept']:+.3f} | {per_seq} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from siammixer_ros.eval.datasets import SELECTION_SEQUENCES

    parser = argparse.ArgumentParser(prog="python -m siammixer_ros.tools.aspect_probe",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=f"models/{SHIPPED_MODEL_NAMES['float']}")
    parser.add_argument("--dataset", default="../shared/data/sequences")
    parser.add_argument("--sequences", default=",".join(SELECTION_SEQUENCES),
                        help="training-split sequences (default: the selection split)")
    parser.add_argument("--step", type=int, default=5, help="every STEP-th frame")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--linear", action="store_true", help="also the ridge probe on the features (fit split -> "
                        "selection split; several minutes: the frames are read at random)")
    parser.add_argument("--pairs-per-sequence", type=int, default=80, help="pairs per sequence of --linear")
    parser.add_argument("--out", default=None, help="write OUT.json and OUT.md (default: print the table)")
    args = parser.parse_args(argv)
    if not Path(args.dataset).is_dir():
        parser.error(f"dataset folder {args.dataset} not found (the probe needs ../shared/data)")
    result = probe(args.model, args.dataset, args.sequences.split(","), args.step, args.seed)
    if args.linear:
        result["linear"] = linear_probe(args.model, args.dataset, args.pairs_per_sequence, args.seed)
    write_result(args.out, result, to_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
