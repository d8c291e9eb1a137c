"""A frame cache for training: each annotated video decoded once into JPEG files.

Training samples frames at random; seeking in an H.264 file costs a decode from the previous key frame,
so every frame is stored once as a JPEG (quality 95) under ``<cache_dir>/frames/<sequence>/<index>.jpg``
next to a copy of its ground truth. A ``done.json`` per sequence records the source file's size and
mtime, so a changed video is decoded again and a finished one is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

JPEG_QUALITY = 95


def default_data_dir() -> Path:
    """``$SIAMMIXER_DATA`` or ``../shared/data`` beside the repository root."""
    env = os.environ.get("SIAMMIXER_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def default_cache_dir() -> Path:
    """``$SIAMMIXER_CACHE`` or ``~/.cache/siammixer_ros`` (outside the repository)."""
    env = os.environ.get("SIAMMIXER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "siammixer_ros"


def read_groundtruth(path: Path) -> np.ndarray:
    """``(N, 4)`` float array of x,y,w,h; NaN rows for absent targets."""
    rows = []
    for line_no, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.replace("\t", ",").replace(" ", ",").split(",")
        parts = [p for p in parts if p]
        if len(parts) != 4:
            raise ValueError(f"{path}:{line_no}: expected 4 values x,y,w,h, got {line!r}")
        rows.append([float(p) for p in parts])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


@dataclass
class CachedSequence:
    """One sequence in the cache: frame files and ground truth (x, y, w, h per frame, NaN = absent)."""

    name: str
    directory: Path
    boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)

    def frame_path(self, index: int) -> Path:
        return self.directory / f"{index:05d}.jpg"

    def frame(self, index: int) -> np.ndarray:
        path = self.frame_path(index)
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"cached frame missing or corrupt: {path} (rebuild with "
                                    f"python -m siammixer_ros.train.cache --force)")
        return image

    def valid_indices(self, min_size: float = 2.0) -> np.ndarray:
        """Frames whose target is present and at least ``min_size`` pixels wide and high."""
        ok = np.isfinite(self.boxes).all(axis=1) & (self.boxes[:, 2] >= min_size) & (self.boxes[:, 3] >= min_size)
        return np.flatnonzero(ok)


def _source_stamp(video: Path, gt: Path) -> dict[str, float]:
    return {"video_size": video.stat().st_size, "video_mtime": video.stat().st_mtime,
            "gt_size": gt.stat().st_size, "gt_mtime": gt.stat().st_mtime}


def cache_sequence(seq_dir: Path, cache_dir: Path, force: bool = False) -> CachedSequence:
    """Decode ``seq_dir/video.mp4`` into ``cache_dir/frames/<name>/`` unless already done."""
    seq_dir = Path(seq_dir)
    name = seq_dir.name
    video, gt_path = seq_dir / "video.mp4", seq_dir / "groundtruth.txt"
    if not video.is_file() or not gt_path.is_file():
        raise FileNotFoundError(f"{seq_dir} lacks video.mp4 or groundtruth.txt")
    out = Path(cache_dir) / "frames" / name
    done = out / "done.json"
    stamp = _source_stamp(video, gt_path)
    boxes = read_groundtruth(gt_path)
    if not force and done.is_file():
        try:
            if json.loads(done.read_text()).get("stamp") == stamp:
                return CachedSequence(name, out, boxes)
        except json.JSONDecodeError:
            pass
    out.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise RuntimeError(f"cannot open video {video}")
    count = 0
    try:
        while count < len(boxes):
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            cv2.imwrite(str(out / f"{count:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            count += 1
    finally:
        capture.release()
    if count < len(boxes):
        raise RuntimeError(f"{video} has {count} frames but its ground truth has {len(boxes)} lines")
    np.savetxt(out / "groundtruth.txt", boxes, delimiter=",", fmt="%.3f")
    done.write_text(json.dumps({"stamp": stamp, "frames": count}))
    return CachedSequence(name, out, boxes)


def load_cached_sequences(data_dir: Path, cache_dir: Path, names: list[str] | None = None,
                          build: bool = True) -> list[CachedSequence]:
    """Cached sequences of ``data_dir/sequences`` (all, or ``names``), building missing ones when ``build``."""
    seq_root = Path(data_dir) / "sequences"
    if not seq_root.is_dir():
        raise FileNotFoundError(f"no sequences folder at {seq_root} (set --data or $SIAMMIXER_DATA)")
    available = sorted(p.name for p in seq_root.iterdir() if (p / "video.mp4").is_file())
    wanted = available if names is None else list(names)
    missing = [n for n in wanted if n not in available]
    if missing:
        raise FileNotFoundError(f"sequences not found in {seq_root}: {', '.join(missing)}")
    result = []
    for name in wanted:
        done = Path(cache_dir) / "frames" / name / "done.json"
        if build or done.is_file():
            result.append(cache_sequence(seq_root / name, cache_dir))
        else:
            raise FileNotFoundError(f"sequence {name} is not cached in {cache_dir}; run "
                                    f"python -m siammixer_ros.train.cache --cache {cache_dir}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Decode the shared training sequences into a JPEG frame cache.")
    parser.add_argument("--data", type=Path, default=default_data_dir(), help="the shared data folder")
    parser.add_argument("--cache", type=Path, default=default_cache_dir(), help="cache folder (outside the repo)")
    parser.add_argument("--force", action="store_true", help="decode again even when cached")
    parser.add_argument("names", nargs="*", help="sequence names (default: all)")
    args = parser.parse_args(argv)
    seq_root = args.data / "sequences"
    names = args.names or sorted(p.name for p in seq_root.iterdir() if (p / "video.mp4").is_file())
    for name in names:
        seq = cache_sequence(seq_root / name, args.cache, force=args.force)
        print(f"{name}: {len(seq)} frames in {seq.directory}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
