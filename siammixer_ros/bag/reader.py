"""Read images, ground truth and recorded detections back from a rosbag2 bag (rosbags AnyReader).

A bag of images + ``/ground_truth`` becomes an evaluation-toolkit :class:`Sequence` (frames decoded
lazily, one box per image, NaN where no ground-truth message carries the image's stamp), so every
metric and runner of ``siammixer_ros.eval`` applies to it unchanged.

Messages are matched by ``header.stamp`` (the image's stamp), never by bag receive time: a recorder
writes receive time, which differs from the camera stamp by the tracker's latency.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader

from siammixer_ros.bag import convert
from siammixer_ros.bag.msgtypes import COMPRESSED_IMAGE, DETECTION_2D, DETECTION_2D_ARRAY, IMAGE, typestore
from siammixer_ros.eval.datasets import Sequence
from siammixer_ros.ros.image_conversion import ImageConverter
from siammixer_ros.ros.messages import detection_score, detection_to_box, stamp_to_ns

IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
DETECTION_TYPES = (DETECTION_2D, DETECTION_2D_ARRAY)
DEFAULT_GT_TOPIC = "/ground_truth"


class BagError(RuntimeError):
    """A bag is missing, corrupt, or lacks the topic asked for."""


@dataclass
class Detection:
    """One Detection2D read from a bag: image stamp, top-left box, score, and the bag's receive time."""

    stamp_ns: int
    box: tuple[float, float, float, float]
    score: float
    label: str
    track_id: str
    receive_ns: int


def open_reader(path: str | Path) -> AnyReader:
    """An opened AnyReader, or a BagError saying what is wrong with the bag."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {path} not found")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise BagError(f"{path} is not a rosbag2 bag: it has no metadata.yaml")
    reader = AnyReader([path], default_typestore=typestore())
    try:
        reader.open()
    except Exception as error:  # rosbags raises several error types for corrupt bags
        raise BagError(f"cannot read bag {path}: {error} (corrupt, truncated or not a rosbag2 bag?)") from error
    return reader


def topics(path: str | Path) -> dict[str, tuple[str, int]]:
    """topic -> (message type, message count)."""
    reader = open_reader(path)
    try:
        return {name: (info.msgtype or "", info.msgcount) for name, info in reader.topics.items()}
    finally:
        reader.close()


def custom_data(path: str | Path) -> dict[str, str]:
    """metadata.yaml custom_data (make_bag writes the sequence name, fps, label there)."""
    import yaml

    meta_file = Path(path) / "metadata.yaml"
    if not meta_file.is_file():
        return {}
    info = (yaml.safe_load(meta_file.read_text()) or {}).get("rosbag2_bagfile_information", {})
    return dict(info.get("custom_data") or {})


def find_topic(path: str | Path, msgtypes: tuple[str, ...], topic: str | None = None,
               exclude: tuple[str, ...] = ()) -> str:
    """The topic to read: ``topic`` if given (checked), else the only topic of one of ``msgtypes``."""
    available = topics(path)
    if topic is not None:
        if topic not in available:
            raise BagError(f"bag {path} has no topic {topic}; it has: "
                           + ", ".join(f"{t} ({m})" for t, (m, _) in sorted(available.items())))
        if available[topic][0] not in msgtypes:
            raise BagError(f"topic {topic} in {path} is {available[topic][0]}, expected {' or '.join(msgtypes)}")
        return topic
    candidates = sorted(t for t, (m, _) in available.items() if m in msgtypes and t not in exclude)
    if len(candidates) != 1:
        what = "no" if not candidates else f"{len(candidates)} ({', '.join(candidates)})"
        raise BagError(f"bag {path} has {what} topics of type {' or '.join(msgtypes)}; name the one to use")
    return candidates[0]


def iter_images(path: str | Path, topic: str | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(header stamp ns, BGR image) for every image message, in bag order.

    Decoded by the node's built-in converter (cv_bridge's semantics), so the bag tools accept exactly the
    encodings the node accepts; a frame it cannot use raises ImageConversionError.
    """
    topic = find_topic(path, IMAGE_TYPES, topic)
    converter = ImageConverter()
    reader = open_reader(path)
    try:
        connections = [c for c in reader.connections if c.topic == topic]
        for connection, _, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, connection.msgtype)
            yield stamp_to_ns(msg.header.stamp), converter.to_bgr(msg, connection.msgtype == COMPRESSED_IMAGE)
    finally:
        reader.close()


def image_stamps(path: str | Path, topic: str | None = None) -> list[int]:
    """Header stamps of every image message, in bag order (decodes headers only, not pixels)."""
    return [stamp for stamp, _ in _iter_headers(path, find_topic(path, IMAGE_TYPES, topic))]


def _iter_headers(path: str | Path, topic: str) -> Iterator[tuple[int, int]]:
    """(header stamp ns, bag time ns) of each message on ``topic``; the header leads every CDR message."""
    reader = open_reader(path)
    try:
        connections = [c for c in reader.connections if c.topic == topic]
        for connection, bag_time, raw in reader.messages(connections=connections):
            stamp = convert.cdr_header_stamp(raw)
            if stamp is None:
                stamp = stamp_to_ns(reader.deserialize(raw, connection.msgtype).header.stamp)
            yield stamp, bag_time
    finally:
        reader.close()


def read_detections(path: str | Path, topic: str | None = None, exclude: tuple[str, ...] = ()) -> list[Detection]:
    """Every Detection2D on ``topic`` (Detection2DArray: its highest-scoring detection), in bag order."""
    topic = find_topic(path, DETECTION_TYPES, topic, exclude=exclude)
    reader = open_reader(path)
    out = []
    try:
        connections = [c for c in reader.connections if c.topic == topic]
        for connection, bag_time, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, connection.msgtype)
            if connection.msgtype == DETECTION_2D_ARRAY:
                if not msg.detections:
                    continue
                det = max(msg.detections, key=lambda d: np.nan_to_num(detection_score(d), nan=-1.0))
                det_stamp = stamp_to_ns(msg.header.stamp)
            else:
                det = msg
                det_stamp = stamp_to_ns(msg.header.stamp)
            label = det.results[0].hypothesis.class_id if len(det.results) else ""
            out.append(Detection(det_stamp, detection_to_box(det), detection_score(det), label,
                                 str(det.id), int(bag_time)))
    finally:
        reader.close()
    return out


def read_ground_truth(path: str | Path, topic: str = DEFAULT_GT_TOPIC) -> dict[int, tuple[float, float, float, float]]:
    """Ground-truth boxes by image stamp (ns)."""
    boxes: dict[int, tuple[float, float, float, float]] = {}
    for det in read_detections(path, topic):
        if det.stamp_ns in boxes:
            raise BagError(f"two ground-truth messages on {topic} in {path} carry stamp {det.stamp_ns}")
        boxes[det.stamp_ns] = det.box
    return boxes


class BagFrames(SequenceABC):
    """Images of one bag topic, decoded on access (sequential access streams; random access re-reads)."""

    def __init__(self, path: str | Path, topic: str, stamps: list[int]) -> None:
        self.path = Path(path)
        self.topic = topic
        self.stamps = list(stamps)
        self._stream: Iterator[tuple[int, np.ndarray]] | None = None
        self._next_index = 0

    def __len__(self) -> int:
        return len(self.stamps)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        if not 0 <= index < len(self.stamps):
            raise IndexError(f"frame {index} out of range 0..{len(self.stamps) - 1} of {self.path}")
        if self._stream is None or index < self._next_index:
            self._stream = iter_images(self.path, self.topic)
            self._next_index = 0
        while True:
            try:
                stamp, image = next(self._stream)
            except StopIteration:
                self._stream = None
                raise BagError(f"bag {self.path} ended before frame {index} of {self.topic}") from None
            self._next_index += 1
            if self._next_index - 1 == index:
                if stamp != self.stamps[index]:
                    raise BagError(f"bag {self.path} changed while reading: frame {index} has stamp {stamp}")
                return image

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, image in iter_images(self.path, self.topic):
            yield image

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "topic": self.topic, "stamps": self.stamps}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["topic"], state["stamps"])  # type: ignore[misc]


def load_bag_sequence(path: str | Path, image_topic: str | None = None, gt_topic: str = DEFAULT_GT_TOPIC,
                      name: str | None = None) -> Sequence:
    """The bag's images and ground truth as an evaluation-toolkit Sequence.

    ``meta`` carries ``stamps`` (image header stamps, ns), ``fps`` (from custom_data, or from the stamps),
    ``image_topic``, ``gt_topic`` and ``bag``. Ground truth whose stamp matches no image is an error.
    """
    path = Path(path)
    image_topic = find_topic(path, IMAGE_TYPES, image_topic)
    stamps = image_stamps(path, image_topic)
    if not stamps:
        raise BagError(f"bag {path} has no messages on {image_topic}")
    if len(set(stamps)) != len(stamps):
        raise BagError(f"images on {image_topic} in {path} share stamps; frames must have distinct stamps")
    ground_truth = read_ground_truth(path, find_topic(path, DETECTION_TYPES, gt_topic))
    index_of = {stamp: i for i, stamp in enumerate(stamps)}
    unmatched = [s for s in ground_truth if s not in index_of]
    if unmatched:
        raise BagError(f"{len(unmatched)} ground-truth messages on {gt_topic} in {path} carry stamps of no image "
                       f"on {image_topic} (first: {unmatched[0]})")
    boxes = np.full((len(stamps), 4), np.nan)
    for stamp, box in ground_truth.items():
        boxes[index_of[stamp]] = box
    extra = custom_data(path)
    fps = float(extra["siammixer.fps"]) if "siammixer.fps" in extra else (
        (len(stamps) - 1) * convert.NS_PER_S / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0]
        else math.nan)
    meta = {"name": name or extra.get("siammixer.sequence", path.name), "fps": fps, "stamps": stamps,
            "image_topic": image_topic, "gt_topic": gt_topic, "bag": str(path),
            "label": extra.get("siammixer.label", "")}
    return Sequence(meta["name"], BagFrames(path, image_topic, stamps), boxes, meta)
