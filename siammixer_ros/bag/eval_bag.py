"""Evaluate tracking on rosbags, offline, with the evaluation toolkit's runner and metrics.

Two modes:

1. **Run a tracker on a bag** (images + ``/ground_truth``): the bag becomes a toolkit Sequence
   (:func:`siammixer_ros.bag.reader.load_bag_sequence`) and goes through the same runner and metrics as
   ``siammixer-eval`` — one-pass, init on the first annotated frame, every frame processed (no real-time
   constraint). On a raw-image bag the numbers equal those of the sequence the bag was made from.

       siammixer-eval-bag BAG --model models/siammixer_s.onnx --out results/bag_eval

2. **Score recorded detections** (a bag recorded from the node, e.g. by live evaluation) against the
   ground truth of another bag: ``siammixer-eval-bag GT_BAG --detections OUT_BAG``.

   Scoring of recorded output (real-time semantics): for each camera frame the prediction is the
   tracker's *latest output at that frame's stamp*: the detection carrying the frame's stamp if there is
   one, else the last earlier output (a frame the node dropped keeps the previous box; a frame after
   a "lost" status has no box). Outputs are matched by ``header.stamp``. The init frame (the one the target
   was set on) is not scored, as in the toolkit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from siammixer_ros.bag import reader
from siammixer_ros.core.tracker import TrackState
from siammixer_ros.eval import metrics
from siammixer_ros.eval.report import evaluate, json_safe, write_report
from siammixer_ros.eval.runner import run_sequence
from siammixer_ros.eval.trackers import DEFAULT_MODEL, TrackerConfig
from siammixer_ros.ros.messages import STATUS_CODES

TRACKER_STATUS = "siammixer_interfaces/msg/TrackerStatus"
LOST_STATE = STATUS_CODES[TrackState.LOST]


@dataclass
class Output:
    """One tracker output at an image stamp: a box, or None for "no box" (lost)."""

    stamp_ns: int
    box: tuple[float, float, float, float] | None
    receive_ns: int = 0


# ---------------------------------------------------------------- mode 1: run a tracker on a bag

def evaluate_bag(bag: str | Path, out_dir: str | Path, *, tracker: str = "siammixer",
                 config: TrackerConfig | None = None, image_topic: str | None = None,
                 gt_topic: str = reader.DEFAULT_GT_TOPIC, force: bool = True, progress: bool = False) -> dict[str, Any]:
    """Run ``tracker`` frame by frame over the bag's images and score it: the toolkit's report dict."""
    sequence = reader.load_bag_sequence(bag, image_topic, gt_topic)
    config = config or TrackerConfig()
    out_dir = Path(out_dir)
    status = run_sequence(tracker, sequence, out_dir, config, force=force, progress=progress)
    if status["status"] == "error":
        raise RuntimeError(f"{tracker} failed on bag {bag}: {status['error']}")
    report = evaluate(out_dir, [tracker], [sequence])
    report["bag"] = {"path": str(bag), "image_topic": sequence.meta["image_topic"], "gt_topic": gt_topic,
                     "frames": len(sequence), "fps": sequence.meta["fps"]}
    return report


# ---------------------------------------------------------------- mode 2: score recorded output

def predictions_from_outputs(frame_stamps: list[int], outputs: list[Output], init_frame: int,
                             init_box: tuple[float, float, float, float]) -> tuple[np.ndarray, dict[str, int]]:
    """(N, 4) predicted boxes under the "latest output at the frame's stamp" rule (NaN = no box).

    Also counts: frames with their own output (``matched``), frames that held an earlier output
    (``held``), outputs whose stamp is no frame's (``unmatched_outputs``), duplicate stamps.
    """
    predicted = np.full((len(frame_stamps), 4), np.nan)
    index_of = {stamp: i for i, stamp in enumerate(frame_stamps)}
    by_frame: dict[int, Output] = {}
    unmatched = duplicates = 0
    for output in outputs:
        index = index_of.get(output.stamp_ns)
        if index is None:
            unmatched += 1
            continue
        if index in by_frame:
            duplicates += 1
        by_frame[index] = output  # the last one received wins
    current: tuple[float, float, float, float] | None = tuple(float(v) for v in init_box)
    matched = held = 0
    for index in range(init_frame, len(frame_stamps)):
        if index == init_frame:
            predicted[index] = current
            continue
        output = by_frame.get(index)
        if output is not None:
            current = output.box
            matched += 1
        else:
            held += 1
        if current is not None:
            predicted[index] = current
    return predicted, {"matched": matched, "held": held, "unmatched_outputs": unmatched,
                       "duplicate_outputs": duplicates}


def score_outputs(frame_stamps: list[int], groundtruth: np.ndarray, outputs: list[Output],
                  init_frame: int | None = None) -> dict[str, Any]:
    """Toolkit metrics of recorded outputs against per-frame ground truth (NaN rows = absent)."""
    groundtruth = np.asarray(groundtruth, dtype=np.float64).reshape(-1, 4)
    if init_frame is None:
        annotated = np.flatnonzero(metrics.scored_mask(groundtruth, -1))
        if annotated.size == 0:
            raise ValueError("the ground truth has no annotated frame")
        init_frame = int(annotated[0])
    predicted, counts = predictions_from_outputs(frame_stamps, outputs, init_frame,
                                                 tuple(groundtruth[init_frame]))
    result = metrics.sequence_metrics(predicted, groundtruth, init_frame)
    result.update(counts)
    result["init_frame"] = init_frame
    result["predicted"] = predicted
    return result


def outputs_from_bag(path: str | Path, detection_topic: str | None = None,
                     status_topic: str | None = None) -> list[Output]:
    """Detections (and "lost" statuses, when a TrackerStatus topic is named) of a recorded bag."""
    exclude = (reader.DEFAULT_GT_TOPIC,)
    outputs = [Output(d.stamp_ns, d.box, d.receive_ns)
               for d in reader.read_detections(path, detection_topic, exclude=exclude)]
    if status_topic:
        bag = reader.open_reader(path)
        try:
            connections = [c for c in bag.connections if c.topic == status_topic]
            if not connections:
                raise reader.BagError(f"bag {path} has no topic {status_topic}")
            stamped = {o.stamp_ns for o in outputs}
            for connection, bag_time, raw in bag.messages(connections=connections):
                msg = bag.deserialize(raw, connection.msgtype)
                stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
                if int(msg.state) == LOST_STATE and stamp not in stamped:
                    outputs.append(Output(stamp, None, int(bag_time)))
        finally:
            bag.close()
    return outputs


def score_detection_bag(gt_bag: str | Path, detection_bag: str | Path, *, detection_topic: str | None = None,
                        status_topic: str | None = None, image_topic: str | None = None,
                        gt_topic: str = reader.DEFAULT_GT_TOPIC) -> dict[str, Any]:
    """Score a bag of recorded Detection2D output against the ground truth (and frames) of ``gt_bag``."""
    available = reader.topics(gt_bag)
    has_images = any(m in reader.IMAGE_TYPES for m, _ in available.values())
    ground_truth = reader.read_ground_truth(gt_bag, reader.find_topic(gt_bag, reader.DETECTION_TYPES, gt_topic))
    # Frames are the bag's images; a bag with ground truth only is scored on its annotated frames.
    stamps = reader.image_stamps(gt_bag, image_topic) if has_images else sorted(ground_truth)
    boxes = np.full((len(stamps), 4), np.nan)
    index_of = {s: i for i, s in enumerate(stamps)}
    for stamp, box in ground_truth.items():
        if stamp in index_of:
            boxes[index_of[stamp]] = box
    outputs = outputs_from_bag(detection_bag, detection_topic, status_topic)
    result = score_outputs(stamps, boxes, outputs)
    result["frames_in_bag"] = len(stamps)
    result["outputs"] = len(outputs)
    return result


# ---------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siammixer-eval-bag", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bag", help="bag with images and ground truth (ground truth only with --detections)")
    parser.add_argument("--detections", metavar="BAG", help="score this bag's recorded Detection2D output instead "
                                                             "of running a tracker")
    parser.add_argument("--detection-topic", help="Detection2D topic in --detections (default: the only one)")
    parser.add_argument("--status-topic", help="TrackerStatus topic in --detections (lost frames have no box)")
    parser.add_argument("--tracker", default="siammixer", help="toolkit tracker name (default siammixer)")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="SiamMixer model file")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--image-topic")
    parser.add_argument("--gt-topic", default=reader.DEFAULT_GT_TOPIC)
    parser.add_argument("--out", default="results/bag_eval", help="results folder (runner files + report)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "siammixer-eval-bag " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        if args.detections:
            result = score_detection_bag(args.bag, args.detections, detection_topic=args.detection_topic,
                                         status_topic=args.status_topic, image_topic=args.image_topic,
                                         gt_topic=args.gt_topic)
            result.pop("predicted")
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            (out / "detections_score.json").write_text(json.dumps(json_safe(result), indent=1) + "\n")
            print(f"success AUC {result['success_auc']:.3f}  precision@20 {result['precision']:.3f}  "
                  f"scored {result['scored_frames']} frames: {result['matched']} with their own detection, "
                  f"{result['held']} held the previous output; {result['unmatched_outputs']} outputs matched no frame")
            return 0
        config = TrackerConfig(model_path=Path(args.model), threads=args.threads)
        report = evaluate_bag(args.bag, args.out, tracker=args.tracker, config=config, image_topic=args.image_topic,
                              gt_topic=args.gt_topic)
        write_report(report, Path(args.out), title=f"Offline evaluation of {args.bag}", command=command, plots=False)
        scores = next(iter(report["trackers"][args.tracker]["per_sequence"].values()))
        fps_text = f"  {scores['fps']:.1f} fps" if math.isfinite(scores["fps"]) else ""
        print(f"success AUC {scores['success_auc']:.3f}  precision@20 {scores['precision']:.3f}  "
              f"{scores['scored_frames']} scored frames{fps_text}")
        return 0
    except (reader.BagError, RuntimeError, ValueError, OSError) as error:
        print(f"siammixer-eval-bag: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
