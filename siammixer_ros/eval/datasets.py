"""Readers for single-object tracking datasets.

A :class:`Sequence` is a name, lazily decoded BGR frames and one ground-truth box per frame as an
``(N, 4)`` float array of ``(x, y, w, h)`` pixels (top-left, 0-based). A row of NaN means the target
is absent in that frame; such frames are never scored.

Supported layouts (``load_dataset(path, fmt="auto")`` detects them):

- ``video``: ``<root>/<seq>/video.mp4 + groundtruth.txt (+ meta.json)`` (the layout of ../shared/data/sequences)
- ``otb``: ``<root>/<seq>/img/*.jpg + groundtruth_rect.txt`` (comma, tab or space separated;
  ``groundtruth_rect.1.txt``/``.2.txt`` give sequences ``<seq>.1``/``<seq>.2``)
- ``uav123``: ``<root>/data_seq/**/<seq>/*.jpg + <root>/anno/**/<seq>.txt`` (NaN rows = absent)
- ``got10k``: ``<root>/<seq>/*.jpg + groundtruth.txt + absence.label`` (1 = absent)
- ``vot``: ``<root>/<seq>/(color/)*.jpg + groundtruth.txt`` with 8-value polygons (converted to the
  axis-aligned box that encloses them) or 4-value boxes
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
FORMATS = ("video", "otb", "uav123", "got10k", "vot")

# Split of ../shared/data/sequences (its README). Sub-sequences cut from one video must stay on one side,
# otherwise validation frames leak into training; VIDEO_GROUPS lists them and split_names() checks it.
SHARED_VAL_SEQUENCES = (
    "building4", "wakeboard7", "BikerDrone", "Football1", "DragonBaby", "Skiing", "MotorRolling",
    "bag", "ball1", "antiuav_ir_4", "antiuav_ir_5",
    "davis_camel", "davis_goat", "davis_dog", "davis_car-roundabout", "davis_soapbox",
)
VIDEO_GROUPS = (("group1_1", "group1_3", "group1_4"), ("truck4_1", "truck4_2"))
# Training sequences held back from training to select checkpoints and settings, so that the validation split only
# reports (choosing on it would flatter the reported numbers). One or two of each kind, each its own video.
SELECTION_SEQUENCES = (
    "person12_1", "wakeboard10",                 # UAV123 (aerial)
    "Crossing", "antiuav_ir_35",                 # OTB, thermal IR
    "davis_parkour", "davis_breakdance",         # DAVIS
)
# "train": the README's training split (selection included); "fit": what training uses (train minus selection).
SPLITS = ("val", "train", "selection", "fit", "all")

# OTB100 sequences whose image folder holds more frames than their annotation covers (OTB configSeqs).
_OTB_FRAME_RANGES = {"david": (300, 770), "football1": (1, 74), "freeman3": (1, 460), "freeman4": (1, 283),
                     "diving": (1, 215)}


class DatasetError(RuntimeError):
    """A dataset folder, annotation file or frame is missing or malformed."""


class ImageFrames(SequenceABC):
    """Frames stored as image files, decoded on access."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = [Path(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        path = self.paths[index]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"cannot decode image {path} (missing, empty or corrupt)")
        return image

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self)):
            yield self[index]


class VideoFrames(SequenceABC):
    """Frames of one video file, decoded sequentially by cv2.VideoCapture (random access seeks)."""

    def __init__(self, path: Path, frame_count: int) -> None:
        self.path = Path(path)
        self.frame_count = int(frame_count)
        self._capture: cv2.VideoCapture | None = None
        self._next_index = 0

    def __getstate__(self) -> dict[str, Any]:
        # A VideoCapture cannot cross process boundaries; workers reopen the file.
        return {"path": self.path, "frame_count": self.frame_count}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["frame_count"])  # type: ignore[misc]

    def __len__(self) -> int:
        return self.frame_count

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise DatasetError(f"cannot open video {self.path} (missing or not a video OpenCV can decode)")
        return capture

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        if not 0 <= index < self.frame_count:
            raise IndexError(f"frame {index} out of range 0..{self.frame_count - 1} of {self.path}")
        if self._capture is None or index != self._next_index:
            if self._capture is not None:
                self._capture.release()
            self._capture = self._open()
            if index:
                self._capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = self._capture.read()
        if not ok or frame is None:
            raise DatasetError(f"cannot decode frame {index} of {self.path} (video shorter than its annotation "
                               f"of {self.frame_count} frames, or corrupt)")
        self._next_index = index + 1
        return frame

    def __iter__(self) -> Iterator[np.ndarray]:
        capture = self._open()
        try:
            for index in range(self.frame_count):
                ok, frame = capture.read()
                if not ok or frame is None:
                    raise DatasetError(f"cannot decode frame {index} of {self.path} (video shorter than its "
                                       f"annotation of {self.frame_count} frames, or corrupt)")
                yield frame
        finally:
            capture.release()

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


@dataclass
class Sequence:
    """One tracking sequence: lazily decoded frames and per-frame ground truth (NaN rows = absent)."""

    name: str
    frames: ImageFrames | VideoFrames
    boxes: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        if len(self.frames) != len(self.boxes):
            raise DatasetError(f"sequence {self.name}: {len(self.frames)} frames but {len(self.boxes)} "
                               "ground-truth boxes")

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def present(self) -> np.ndarray:
        """Boolean mask of frames whose target is annotated (finite box with positive size)."""
        finite = np.all(np.isfinite(self.boxes), axis=1)
        return finite & (np.nan_to_num(self.boxes[:, 2]) > 0) & (np.nan_to_num(self.boxes[:, 3]) > 0)

    @property
    def first_annotated(self) -> int:
        """Index of the frame a tracker is initialised on."""
        indices = np.flatnonzero(self.present)
        if indices.size == 0:
            raise DatasetError(f"sequence {self.name} has no annotated frame to initialise a tracker on")
        return int(indices[0])


# ---------------------------------------------------------------- annotation parsing

def read_box_file(path: Path) -> np.ndarray:
    """Read one box per line, values separated by commas, tabs or spaces; NaN stays NaN.

    Lines with 8 values are polygons (VOT) and become the enclosing axis-aligned box.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"annotation file {path} not found")
    rows = []
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("m"):
            raise DatasetError(f"{path}:{line_number}: VOT mask annotations are not supported, only boxes/polygons")
        try:
            values = [float(v) for v in re.split(r"[,\s]+", line) if v]
        except ValueError as error:
            raise DatasetError(f"{path}:{line_number}: not a list of numbers: {line!r}") from error
        if len(values) == 4:
            rows.append(values)
        elif len(values) >= 6 and len(values) % 2 == 0:
            rows.append(polygon_to_box(np.asarray(values)))
        else:
            raise DatasetError(f"{path}:{line_number}: expected 4 values (x,y,w,h) or a polygon, got {len(values)}")
    if not rows:
        raise DatasetError(f"annotation file {path} is empty")
    return np.asarray(rows, dtype=np.float64)


def polygon_to_box(polygon: np.ndarray) -> list[float]:
    """Axis-aligned box (x, y, w, h) enclosing a polygon given as x1,y1,x2,y2,...; NaN polygon -> NaN box."""
    polygon = np.asarray(polygon, dtype=np.float64)
    if not np.all(np.isfinite(polygon)):
        return [np.nan] * 4
    xs, ys = polygon[0::2], polygon[1::2]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min()), float(ys.max() - ys.min())]


def _image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def _sorted_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name)


# ---------------------------------------------------------------- readers

def load_video_sequence(folder: Path) -> Sequence:
    """A sequence stored as ``video.mp4 + groundtruth.txt (+ meta.json)``."""
    folder = Path(folder)
    videos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".mp4", ".avi", ".mkv"))
    if not videos:
        raise DatasetError(f"no video file (.mp4/.avi/.mkv) in {folder}")
    boxes = read_box_file(folder / "groundtruth.txt")
    meta: dict[str, Any] = {}
    if (folder / "meta.json").is_file():
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except json.JSONDecodeError as error:
            raise DatasetError(f"{folder / 'meta.json'} is not valid JSON: {error}") from error
    return Sequence(meta.get("name", folder.name), VideoFrames(videos[0], len(boxes)), boxes, meta)


def load_otb(root: Path) -> list[Sequence]:
    sequences = []
    for folder in _sorted_dirs(Path(root)):
        gt_files = sorted(folder.glob("groundtruth_rect*.txt"))
        if not gt_files or not (folder / "img").is_dir():
            continue
        images = _image_files(folder / "img")
        frame_range = _OTB_FRAME_RANGES.get(folder.name.lower())
        if frame_range is not None and len(images) > frame_range[1] - frame_range[0] + 1:
            images = images[frame_range[0] - 1:frame_range[1]]
        for gt_file in gt_files:
            suffix = gt_file.name[len("groundtruth_rect"):-len(".txt")]  # "" or ".1", ".2"
            boxes = read_box_file(gt_file)
            if len(images) != len(boxes):
                raise DatasetError(f"OTB sequence {folder.name}: {len(images)} images in img/ but {len(boxes)} boxes "
                                   f"in {gt_file.name}")
            sequences.append(Sequence(folder.name + suffix, ImageFrames(images), boxes,
                                      {"name": folder.name + suffix, "benchmark": "OTB100"}))
    return sequences


def load_uav123(root: Path) -> list[Sequence]:
    root = Path(root)
    anno_root, data_root = root / "anno", root / "data_seq"
    if not anno_root.is_dir() or not data_root.is_dir():
        raise DatasetError(f"UAV123 layout needs {anno_root} and {data_root}")
    folders = {p.name: p for p in data_root.rglob("*") if p.is_dir()}
    sequences = []
    for anno in sorted(anno_root.rglob("*.txt"), key=lambda p: p.stem):
        if "att" in anno.relative_to(anno_root).parts[:-1]:
            continue  # attribute files, not boxes
        folder = folders.get(anno.stem)
        if folder is None:
            raise DatasetError(f"UAV123 sequence {anno.stem}: no image folder data_seq/**/{anno.stem} "
                               "(sub-sequences need their frames cut into their own folder)")
        boxes = read_box_file(anno)
        images = _image_files(folder)
        if len(images) != len(boxes):
            raise DatasetError(f"UAV123 sequence {anno.stem}: {len(images)} images but {len(boxes)} boxes")
        sequences.append(Sequence(anno.stem, ImageFrames(images), boxes,
                                  {"name": anno.stem, "benchmark": "UAV123", "aerial": True}))
    return sequences


def load_got10k(root: Path) -> list[Sequence]:
    sequences = []
    for folder in _sorted_dirs(Path(root)):
        if not (folder / "groundtruth.txt").is_file():
            continue
        images = _image_files(folder)
        boxes = read_box_file(folder / "groundtruth.txt")
        if len(boxes) == 1 and len(images) > 1:
            # GOT-10k test split: only the first box is public; the rest cannot be scored.
            boxes = np.vstack([boxes, np.full((len(images) - 1, 4), np.nan)])
        absence_file = folder / "absence.label"
        if absence_file.is_file():
            absent = np.loadtxt(absence_file, dtype=np.int64, ndmin=1)
            if len(absent) != len(boxes):
                raise DatasetError(f"{absence_file}: {len(absent)} labels but {len(boxes)} boxes")
            boxes[absent.astype(bool)] = np.nan
        meta = {"name": folder.name, "benchmark": "GOT-10k"}
        sequences.append(Sequence(folder.name, ImageFrames(images), boxes, meta))
    return sequences


def load_vot(root: Path) -> list[Sequence]:
    sequences = []
    for folder in _sorted_dirs(Path(root)):
        if not (folder / "groundtruth.txt").is_file():
            continue
        image_folder = folder / "color" if (folder / "color").is_dir() else folder
        images = _image_files(image_folder)
        boxes = read_box_file(folder / "groundtruth.txt")
        if len(images) != len(boxes):
            raise DatasetError(f"VOT sequence {folder.name}: {len(images)} images but {len(boxes)} boxes")
        sequences.append(Sequence(folder.name, ImageFrames(images), boxes, {"name": folder.name, "benchmark": "VOT"}))
    return sequences


def detect_format(path: Path) -> str:
    """Guess the layout of a dataset folder (see the module docstring)."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"dataset folder {path} not found")
    if (path / "anno").is_dir() and (path / "data_seq").is_dir():
        return "uav123"
    children = [path] + _sorted_dirs(path)
    for child in children:
        if (child / "groundtruth.txt").is_file() and any(child.glob("video.*")):
            return "video"
    for child in children:
        if (child / "img").is_dir() and any(child.glob("groundtruth_rect*.txt")):
            return "otb"
    for child in children:
        if (child / "absence.label").is_file() or (child / "meta_info.ini").is_file():
            return "got10k"
    for child in children:
        if (child / "groundtruth.txt").is_file():
            first = (child / "groundtruth.txt").read_text().split("\n", 1)[0]
            if len([v for v in re.split(r"[,\s]+", first.strip()) if v]) >= 6 or (child / "color").is_dir():
                return "vot"
            return "got10k"
    raise DatasetError(f"cannot tell the layout of {path}: expected one of {', '.join(FORMATS)} (see "
                       "siammixer_ros/eval/datasets.py)")


def split_names(names: list[str], split: str) -> list[str]:
    """Names of ../shared/data/sequences in one split: "val", "train" (the README's), "selection" (held back from
    training to choose models), "fit" (train minus selection) or "all"."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    for held_out in (SHARED_VAL_SEQUENCES, SELECTION_SEQUENCES):  # guard against an edit splitting one video
        for group in VIDEO_GROUPS:
            if len({name in held_out for name in group}) > 1:
                raise AssertionError(f"sub-sequences of one video on both sides of a split: {group}")
    if set(SELECTION_SEQUENCES) & set(SHARED_VAL_SEQUENCES):
        raise AssertionError("a selection sequence is also a validation sequence")
    if split == "all":
        return list(names)
    listed = {"val": SHARED_VAL_SEQUENCES, "selection": SELECTION_SEQUENCES}.get(split)
    if listed is not None:
        missing = [name for name in listed if name not in names]
        if missing:
            raise DatasetError(f"{split} sequences missing from the dataset: {', '.join(missing)}")
        return [name for name in names if name in listed]
    held_out = set(SHARED_VAL_SEQUENCES) | (set(SELECTION_SEQUENCES) if split == "fit" else set())
    return [name for name in names if name not in held_out]


def load_dataset(path: str | Path, fmt: str = "auto", split: str = "all",
                 names: list[str] | None = None) -> list[Sequence]:
    """Load every sequence of a dataset folder (or a single sequence folder).

    ``split`` selects the README split of ../shared/data/sequences ("val"/"train"); other datasets use "all".
    ``names`` keeps only the listed sequences (error if one is missing).
    """
    path = Path(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "video":
        folders = [path] if (path / "groundtruth.txt").is_file() else [
            d for d in _sorted_dirs(path) if (d / "groundtruth.txt").is_file()]
        sequences = [load_video_sequence(folder) for folder in folders]
    elif fmt == "otb":
        sequences = load_otb(path.parent if (path / "img").is_dir() else path)
        if (path / "img").is_dir():
            sequences = [s for s in sequences if s.name.split(".")[0] == path.name]
    elif fmt == "uav123":
        sequences = load_uav123(path)
    elif fmt == "got10k":
        sequences = load_got10k(path.parent if (path / "groundtruth.txt").is_file() else path)
        if (path / "groundtruth.txt").is_file():
            sequences = [s for s in sequences if s.name == path.name]
    elif fmt == "vot":
        sequences = load_vot(path.parent if (path / "groundtruth.txt").is_file() else path)
        if (path / "groundtruth.txt").is_file():
            sequences = [s for s in sequences if s.name == path.name]
    else:
        raise DatasetError(f"unknown dataset format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")
    if not sequences:
        raise DatasetError(f"no sequences found in {path} (format {fmt})")
    by_name = {s.name: s for s in sequences}
    kept = split_names(list(by_name), split)
    if names:
        missing = [n for n in names if n not in by_name]
        if missing:
            raise DatasetError(f"sequences not in {path}: {', '.join(missing)}")
        kept = [n for n in kept if n in names]
    return [by_name[n] for n in kept]
