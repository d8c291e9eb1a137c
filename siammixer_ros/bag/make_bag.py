"""Turn a tracking sequence into a rosbag2 bag (sqlite3 or mcap) that ``ros2 bag play`` replays.

Topics (defaults):

- ``/camera/image_raw`` sensor_msgs/Image ``bgr8``, or with ``--compressed``
  ``/camera/image_raw/compressed`` sensor_msgs/CompressedImage (JPEG, image_transport's format string)
- ``/camera/camera_info`` sensor_msgs/CameraInfo with ``--camera-info`` (uncalibrated, K = 0, unless a
  calibration YAML in the camera_calibration format is given)
- ``/ground_truth`` vision_msgs/Detection2D per annotated frame, header = the image's header (same stamp),
  center-based bbox, ``results[0].hypothesis.class_id`` = label (score 1), ``id`` = sequence name; frames
  whose target is absent (NaN row) get no message.

Frame ``i`` is stamped ``start + i / fps`` (header stamp and bag receive time alike). Written with rosbags
(bag format version 9: metadata.yaml with offered QoS and RIHS01 type hashes, message definitions
embedded) so ``ros2 bag info/play`` of Jazzy/Kilted read it.

    python -m siammixer_ros.bag.make_bag ../shared/data/sequences/boat1 /tmp/boat1_bag
    python -m siammixer_ros.bag.make_bag demo/vtest_clip.mp4 /tmp/demo_bag \\
        --groundtruth demo/vtest_clip_groundtruth.txt --label person --storage mcap --compressed
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from siammixer_ros.bag import convert
from siammixer_ros.bag.msgtypes import CAMERA_INFO, COMPRESSED_IMAGE, DETECTION_2D, IMAGE, typestore
from siammixer_ros.eval.datasets import DatasetError, Sequence, VideoFrames, load_dataset, read_box_file

DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_CAMERA_INFO_TOPIC = "/camera/camera_info"
DEFAULT_GT_TOPIC = "/ground_truth"
DEFAULT_FRAME_ID = "camera"
# A fixed default start (2023-11-14T22:13:20Z) keeps bags reproducible; stamp 0 would read as "unset".
DEFAULT_START_NS = 1_700_000_000 * convert.NS_PER_S
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
CUSTOM_DATA_PREFIX = "siammixer."

_ZERO = QosTime(sec=0, nsec=0)
# What a default rclpy publisher offers (reliable, volatile, keep last 10); `ros2 bag play` replays with it,
# and a reliable publisher serves reliable and best-effort subscribers alike.
DEFAULT_QOS = Qos(history=QosHistory.KEEP_LAST, depth=10, reliability=QosReliability.RELIABLE,
                  durability=QosDurability.VOLATILE, deadline=_ZERO, lifespan=_ZERO,
                  liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=_ZERO,
                  avoid_ros_namespace_conventions=False)


class BagWriteError(RuntimeError):
    """A bag cannot be written (bad arguments, existing output, unreadable sequence)."""


@dataclass
class BagSummary:
    path: str
    storage: str
    sequence: str
    frames: int
    annotated_frames: int
    fps: float
    start_ns: int
    image_topic: str
    image_type: str
    ground_truth_topic: str
    camera_info_topic: str | None
    width: int
    height: int
    bytes: int


def load_sequence(path: str | Path, name: str | None = None, groundtruth: str | Path | None = None) -> Sequence:
    """One sequence: a dataset folder/sequence folder (any layout of the eval toolkit) or a video + box file."""
    path = Path(path)
    if path.is_file():
        if groundtruth is None:
            raise BagWriteError(f"{path} is a video file: give its ground truth with --groundtruth FILE "
                                "(one x,y,w,h line per frame, NaN,NaN,NaN,NaN where the target is absent)")
        boxes = read_box_file(Path(groundtruth))
        meta: dict[str, Any] = {"name": name or path.stem}
        meta_file = path.with_name(path.stem + "_meta.json")
        if meta_file.is_file():
            meta.update(json.loads(meta_file.read_text()))
        return Sequence(name or meta.get("name", path.stem), VideoFrames(path, len(boxes)), boxes, meta)
    if groundtruth is not None:
        raise BagWriteError("--groundtruth is for a video file; a sequence folder carries its own annotation")
    sequences = load_dataset(path, names=[name] if name else None)
    if len(sequences) != 1:
        names = ", ".join(s.name for s in sequences[:20])
        raise BagWriteError(f"{path} holds {len(sequences)} sequences ({names}...): choose one with --name")
    return sequences[0]


def sequence_fps(sequence: Sequence, fps: float | None) -> float:
    """--fps, else meta.json's fps, else the video container's frame rate."""
    if fps is None:
        fps = sequence.meta.get("fps")
    if fps is None and isinstance(sequence.frames, VideoFrames):
        capture = cv2.VideoCapture(str(sequence.frames.path))
        fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else None
        capture.release()
    if fps is None or not np.isfinite(float(fps)) or float(fps) <= 0:
        raise BagWriteError(f"sequence {sequence.name}: frame rate unknown or invalid ({fps!r}); give --fps")
    return float(fps)


def write_bag(sequence: Sequence, out: str | Path, *, fps: float | None = None, storage: str = "sqlite3",
              compressed: bool = False, jpeg_quality: int = 90, camera_info: bool = False,
              calibration: dict[str, Any] | None = None, start_ns: int = DEFAULT_START_NS,
              frame_id: str = DEFAULT_FRAME_ID, label: str = "target", image_topic: str | None = None,
              gt_topic: str = DEFAULT_GT_TOPIC, camera_info_topic: str = DEFAULT_CAMERA_INFO_TOPIC,
              max_frames: int | None = None, overwrite: bool = False) -> BagSummary:
    """Write ``sequence`` as a bag at ``out`` (a new folder); returns what was written."""
    out = Path(out)
    if storage not in STORAGES:
        raise BagWriteError(f"unknown storage {storage!r}; expected one of {', '.join(STORAGES)}")
    if not 1 <= int(jpeg_quality) <= 100:
        raise BagWriteError(f"JPEG quality {jpeg_quality} outside 1..100")
    fps = sequence_fps(sequence, fps)
    if out.exists():
        if not overwrite:
            raise BagWriteError(f"{out} exists already; remove it or pass --overwrite")
        shutil.rmtree(out)
    image_topic = image_topic or (DEFAULT_IMAGE_TOPIC + "/compressed" if compressed else DEFAULT_IMAGE_TOPIC)
    image_type = COMPRESSED_IMAGE if compressed else IMAGE
    frame_count = len(sequence) if max_frames is None else min(len(sequence), int(max_frames))
    store = typestore()

    writer = Writer(out, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage])
    writer.set_custom_data(CUSTOM_DATA_PREFIX + "sequence", sequence.name)
    writer.set_custom_data(CUSTOM_DATA_PREFIX + "fps", repr(fps))
    writer.set_custom_data(CUSTOM_DATA_PREFIX + "frames", str(frame_count))
    writer.set_custom_data(CUSTOM_DATA_PREFIX + "label", label)
    writer.set_custom_data(CUSTOM_DATA_PREFIX + "image_topic", image_topic)
    writer.set_custom_data(CUSTOM_DATA_PREFIX + "ground_truth_topic", gt_topic)
    annotated = 0
    width = height = 0
    try:
        writer.open()
        image_conn = writer.add_connection(image_topic, image_type, typestore=store, offered_qos_profiles=[DEFAULT_QOS])
        info_conn = (writer.add_connection(camera_info_topic, CAMERA_INFO, typestore=store,
                                           offered_qos_profiles=[DEFAULT_QOS]) if camera_info else None)
        gt_conn = writer.add_connection(gt_topic, DETECTION_2D, typestore=store, offered_qos_profiles=[DEFAULT_QOS])
        present = sequence.present
        written = 0
        for index, image in enumerate(sequence.frames):
            if index >= frame_count:
                break
            stamp = int(start_ns) + round(index * convert.NS_PER_S / fps)
            height, width = image.shape[:2]
            msg = (convert.compressed_image_message(image, stamp, frame_id, jpeg_quality) if compressed
                   else convert.image_message(image, stamp, frame_id))
            writer.write(image_conn, stamp, store.serialize_cdr(msg, image_type))
            if info_conn is not None:
                info = convert.camera_info_message(width, height, stamp, frame_id, calibration)
                writer.write(info_conn, stamp, store.serialize_cdr(info, CAMERA_INFO))
            if present[index]:
                det = convert.detection_message(tuple(sequence.boxes[index]), stamp, frame_id, label, sequence.name)
                writer.write(gt_conn, stamp, store.serialize_cdr(det, DETECTION_2D))
                annotated += 1
            written += 1
        if written != frame_count:
            raise BagWriteError(f"sequence {sequence.name} yielded {written} frames, expected {frame_count}")
        writer.close()
    except BaseException:
        if writer.storage is not None:
            writer.abort()
        shutil.rmtree(out, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return BagSummary(str(out), storage, sequence.name, frame_count, annotated, fps, int(start_ns), image_topic,
                      image_type, gt_topic, camera_info_topic if camera_info else None, width, height, size)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siammixer-make-bag", description="Write a tracking sequence as a rosbag2 bag (images + ground truth).")
    parser.add_argument("sequence", help="sequence folder (video.mp4+groundtruth.txt, OTB, UAV123, GOT-10k, VOT "
                                         "layouts), dataset folder with --name, or a video file with --groundtruth")
    parser.add_argument("out", help="output bag folder (must not exist unless --overwrite)")
    parser.add_argument("--name", help="sequence name inside a dataset folder")
    parser.add_argument("--groundtruth", help="box file for a video file: x,y,w,h per frame, NaN row = absent")
    parser.add_argument("--fps", type=float, help="frame rate for the stamps (default: meta.json or the video's)")
    parser.add_argument("--storage", choices=sorted(STORAGES), default="sqlite3", help="bag storage (default sqlite3)")
    parser.add_argument("--compressed", action="store_true", help="JPEG CompressedImage instead of raw bgr8 Image")
    parser.add_argument("--jpeg-quality", type=int, default=90)
    parser.add_argument("--camera-info", nargs="?", const="", default=None, metavar="CALIBRATION_YAML",
                        help="also write CameraInfo; uncalibrated (K=0) unless a camera_calibration YAML is given")
    parser.add_argument("--label", default="target", help="class id of the ground-truth detections")
    parser.add_argument("--frame-id", default=DEFAULT_FRAME_ID)
    parser.add_argument("--image-topic", help=f"default {DEFAULT_IMAGE_TOPIC} (+/compressed)")
    parser.add_argument("--gt-topic", default=DEFAULT_GT_TOPIC)
    parser.add_argument("--camera-info-topic", default=DEFAULT_CAMERA_INFO_TOPIC)
    parser.add_argument("--start", type=float, default=DEFAULT_START_NS / convert.NS_PER_S,
                        help="stamp of the first frame in seconds since the epoch")
    parser.add_argument("--max-frames", type=int, help="write only the first N frames")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        calibration = None
        if args.camera_info:
            calibration = yaml.safe_load(Path(args.camera_info).read_text())
        sequence = load_sequence(args.sequence, args.name, args.groundtruth)
        summary = write_bag(
            sequence, args.out, fps=args.fps, storage=args.storage, compressed=args.compressed,
            jpeg_quality=args.jpeg_quality, camera_info=args.camera_info is not None, calibration=calibration,
            start_ns=round(args.start * convert.NS_PER_S), frame_id=args.frame_id, label=args.label,
            image_topic=args.image_topic, gt_topic=args.gt_topic, camera_info_topic=args.camera_info_topic,
            max_frames=args.max_frames, overwrite=args.overwrite)
    except (BagWriteError, DatasetError, OSError, ValueError, KeyError) as error:
        print(f"siammixer-make-bag: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(summary), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
