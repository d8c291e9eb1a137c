"""The one-command demo: the shipped clip -> a rosbag -> the real node tracking it live -> a short report.

    scripts/demo.sh                       # sets up .venv, then runs this module
    python -m siammixer_ros.bag.demo [--model PATH] [--out results/demo] [--rate 1.0]

Steps: write ``demo/vtest_clip.mp4`` + ``demo/vtest_clip_groundtruth.txt`` as a bag (JPEG CompressedImage,
ground truth as vision_msgs/Detection2D), replay it at the camera's rate into the tracker node with the
shipped model (``models/siammixer_s.onnx``), record and score the node's detections, run the same
tracker offline for comparison, print the report (success AUC, fps, latency, drops, memory) and write an
annotated video and a contact sheet (green: ground truth, red: the node's detection on that frame,
orange: the previous detection held on a frame the node skipped).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from siammixer_ros.bag.live_eval import (
    DEFAULT_MODEL,
    REPO_ROOT,
    LiveEvalConfig,
    LiveEvalError,
    parse_node_params,
    run_live_eval,
    summary_lines,
)
from siammixer_ros.bag.make_bag import load_sequence, write_bag
from siammixer_ros.bag.reader import BagError
from siammixer_ros.eval.datasets import VideoFrames

DEMO_DIR = REPO_ROOT / "demo"
CLIP = DEMO_DIR / "vtest_clip.mp4"
CLIP_GROUNDTRUTH = DEMO_DIR / "vtest_clip_groundtruth.txt"
LABEL = "person"
GREEN, RED, ORANGE = (0, 200, 0), (0, 0, 255), (0, 165, 255)


def _draw(frame: np.ndarray, groundtruth: np.ndarray, predicted: np.ndarray, own: bool, index: int) -> np.ndarray:
    image = frame.copy()
    if np.all(np.isfinite(groundtruth)):
        x, y, w, h = groundtruth
        cv2.rectangle(image, (int(x), int(y)), (int(x + w), int(y + h)), GREEN, 2)
    if np.all(np.isfinite(predicted)):
        x, y, w, h = predicted
        cv2.rectangle(image, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))),
                      RED if own else ORANGE, 2)
    cv2.putText(image, f"frame {index}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    return image


def render_outputs(clip: Path, report: dict[str, Any], out_dir: Path, sheet_frames: int = 12) -> tuple[Path, Path]:
    """Annotated video (every frame) and a contact sheet (``sheet_frames`` frames evenly spread after init)."""
    groundtruth = np.asarray(report["groundtruth"], dtype=np.float64)
    predicted = np.asarray(report["predicted"], dtype=np.float64)
    own = report["own_output"]
    frames = list(VideoFrames(clip, len(groundtruth)))
    height, width = frames[0].shape[:2]
    video_path = out_dir / "demo_tracking.mp4"
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), float(report["camera_fps"]),
                             (width, height))
    drawn = [_draw(f, groundtruth[i], predicted[i], own[i], i) for i, f in enumerate(frames)]
    for image in drawn:
        writer.write(image)
    writer.release()
    start = int(report["init_frame"])
    picks = np.linspace(start, len(drawn) - 1, sheet_frames).round().astype(int)
    tiles = [cv2.resize(drawn[i], (width // 2, height // 2)) for i in picks]
    columns = 4
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    sheet = np.vstack([np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)])
    sheet_path = out_dir / "demo_contact_sheet.png"
    cv2.imwrite(str(sheet_path), sheet)
    return video_path, sheet_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m siammixer_ros.bag.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="model file (default: the shipped model)")
    parser.add_argument("--out", default=str(REPO_ROOT / "results" / "demo"), help="output folder")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed multiple (1.0 = camera rate)")
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE")
    parser.add_argument("--no-offline", action="store_true", help="skip the offline comparison run")
    parser.add_argument("--raw", action="store_true",
                        help="raw bgr8 images instead of JPEG (large frames over best-effort DDS: see docs/rosbag.md)")
    args = parser.parse_args(argv)
    model = Path(args.model)
    if not model.is_file():
        hint = (" — the shipped SiamMixer-XS model is not in this checkout yet (train and export one, see "
                "docs/training.md), or run the demo with --model PATH") if model == DEFAULT_MODEL else ""
        print(f"demo: error: model file not found: {model}{hint}", file=sys.stderr)
        return 2
    for path in (CLIP, CLIP_GROUNDTRUTH):
        if not path.is_file():
            print(f"demo: error: demo file missing: {path}", file=sys.stderr)
            return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        sequence = load_sequence(CLIP, name="vtest_clip", groundtruth=CLIP_GROUNDTRUTH)
        summary = write_bag(sequence, out_dir / "bag", label=LABEL, compressed=not args.raw, overwrite=True)
        print(f"bag: {summary.path} ({summary.frames} frames {summary.width}x{summary.height} at {summary.fps:g} Hz, "
              f"{summary.annotated_frames} annotated, {summary.bytes / 2**20:.1f} MiB)")
        config = LiveEvalConfig(bag=Path(summary.path), out_dir=out_dir / "live", model=model, rate=args.rate,
                                node_params=parse_node_params(args.node_param), offline=not args.no_offline,
                                overwrite=True)
        report = run_live_eval(config)
    except (LiveEvalError, BagError, ValueError, OSError) as error:
        print(f"demo: error: {error}", file=sys.stderr)
        return 2
    video, sheet = render_outputs(CLIP, report, out_dir)
    print()
    print("\n".join(summary_lines(report)))
    print(f"annotated video: {video}\ncontact sheet:   {sheet}\nreport:          {out_dir / 'live' / 'live_report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
