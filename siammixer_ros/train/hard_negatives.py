"""On-policy hard negatives: frames of training sequences where the student tracker jumps to another object.

``python -m siammixer_ros.train.hard_negatives --out siammixer_ros/train/hard_negatives.json`` runs the
project's tracker (``siammixer_ros.core.tracker.SiamMixerTracker``, default parameters) with a model file
(default: the shipped model) over every training sequence of the shared README's split, initialised
on the first annotated frame. A frame is a *hard negative* when the ground truth is present, the predicted box
does not overlap it at all (IoU 0) and the tracker is confident (score >= ``--min-score``): it is following
something else and believes it. Each jump contributes at most ``--per-jump`` frames; then, and whenever the
IoU has stayed 0 for ``--reset-after`` frames, the tracker is re-initialised on the ground truth of the next
annotated frame, so one early failure does not hide the rest of the sequence.

The file holds (sequence, frame, wrong box, score) per hard frame, the counts per sequence and the model's
SHA-256, and is committed beside the pseudo tracks. The pair source ``hard_negative`` (``data.py``) builds
search crops that contain the wrong object (and the target where it is in view) with a template from a
ground-truth frame of the same sequence; labels come from the ground truth, and the teacher's map
supervises the same crops through the distillation term. Mine again after the student changes: the frames
are those *this* model fails on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from siammixer_ros.core.model_file import SHIPPED_MODEL_NAMES, file_sha256
from siammixer_ros.train.cache import default_data_dir

FORMAT = "siammixer-hard-negatives/1"
REPO_ROOT = Path(__file__).resolve().parents[2]


def default_hard_negatives_file() -> Path:
    return Path(__file__).resolve().with_name("hard_negatives.json")


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def mine_sequence(tracker_factory: Any, frames: Any, boxes: np.ndarray, min_score: float = 0.6,
                  per_jump: int = 5, reset_after: int = 10) -> tuple[list[dict[str, Any]], int]:
    """Hard frames of one sequence (``frames`` iterable of BGR images, ``boxes`` (N, 4) ground truth, NaN =
    absent) and the number of jumps (runs of hard frames). Each record: frame, wrong_box, score, jump."""
    present = np.isfinite(boxes).all(axis=1) & (np.nan_to_num(boxes[:, 2]) > 0) & (np.nan_to_num(boxes[:, 3]) > 0)
    records: list[dict[str, Any]] = []
    tracker, jumps, in_jump, zero_run = None, 0, 0, 0
    for index, frame in enumerate(frames):
        if tracker is None:
            if present[index]:
                tracker = tracker_factory()
                tracker.init(frame, tuple(float(v) for v in boxes[index]))
                in_jump = zero_run = 0
            continue
        result = tracker.update(frame)
        if not present[index]:
            continue
        box = np.asarray(result.box, dtype=np.float64)
        overlap = box_iou(box, boxes[index])
        zero_run = zero_run + 1 if overlap == 0 else 0
        if overlap == 0 and result.score >= min_score:
            if in_jump == 0:
                jumps += 1
            in_jump += 1
            records.append({"frame": index, "wrong_box": [round(float(v), 1) for v in box],
                            "score": round(float(result.score), 3), "jump": jumps})
        else:
            in_jump = 0
        if in_jump >= per_jump or zero_run >= reset_after:
            tracker = None  # re-initialised on the next annotated frame
    return records, jumps


def load_hard_negatives(path: Path) -> list[dict[str, Any]]:
    """The records of a hard-negative file: dicts with sequence, frame, wrong_box, score."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no hard-negative file at {path} (python -m siammixer_ros.train.hard_negatives "
                                f"--out {path})")
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file")
    return data["frames"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Frames of the training sequences where the student tracker "
                                                 "follows another object with confidence (JSON).")
    parser.add_argument("--out", type=Path, required=True,
                        help="output JSON (the committed one: siammixer_ros/train/hard_negatives.json)")
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / SHIPPED_MODEL_NAMES["float"])
    parser.add_argument("--data", type=Path, default=default_data_dir(), help="the shared data folder")
    parser.add_argument("--min-score", type=float, default=0.6)
    parser.add_argument("--per-jump", type=int, default=5)
    parser.add_argument("--reset-after", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--names", nargs="*", help="only these training sequences")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    from siammixer_ros.core.runtime import RuntimeOptions
    from siammixer_ros.core.tracker import SiamMixerTracker
    from siammixer_ros.eval.datasets import load_dataset

    if not args.model.is_file():
        print(f"model file not found: {args.model}", file=sys.stderr)
        return 2
    sequences = load_dataset(args.data / "sequences", fmt="video", split="train", names=args.names or None)
    options = RuntimeOptions(intra_op_threads=args.threads)

    def factory() -> SiamMixerTracker:
        return SiamMixerTracker(str(args.model), runtime_options=options)
    frames_out, summary = [], {}
    t0 = time.time()
    with tqdm(total=sum(len(s) for s in sequences), unit="frame", file=sys.stderr) as progress:
        for seq in sequences:
            def frames(seq: Any = seq) -> Any:
                for image in seq.frames:
                    yield image
                    progress.update(1)
            records, jumps = mine_sequence(factory, frames(), seq.boxes, args.min_score, args.per_jump,
                                           args.reset_after)
            frames_out += [{"sequence": seq.name, **r} for r in records]
            summary[seq.name] = {"frames": len(seq), "hard": len(records), "jumps": jumps}
            progress.set_postfix_str(f"{seq.name}: {len(records)} hard")
    try:
        model_name = str(args.model.resolve().relative_to(REPO_ROOT))
    except ValueError:
        model_name = str(args.model)
    command = " ".join(argv if argv is not None else sys.argv[1:])
    header = {"format": FORMAT, "generated": time.strftime("%Y-%m-%d", time.gmtime()),
              "command": f"python -m siammixer_ros.train.hard_negatives {command}",
              "model": model_name, "model_sha256": file_sha256(args.model),
              "tracker": "SiamMixerTracker, default TrackerParams",
              "criteria": {"iou": 0, "min_score": args.min_score, "per_jump": args.per_jump,
                           "reset_after": args.reset_after},
              "seconds": round(time.time() - t0), "sequences": summary}
    lines = ["{"] + [f"{json.dumps(k)}: {json.dumps(v)}," for k, v in header.items()]
    lines += ['"frames": [', ",\n".join(json.dumps(r) for r in frames_out), "]}"]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"{len(frames_out)} hard frames in {sum(1 for s in summary.values() if s['hard'])} of {len(summary)} "
          f"sequences -> {args.out}")
    for name, s in summary.items():
        print(f"  {name}: {s['hard']} hard frames in {s['jumps']} jumps ({s['frames']} frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
