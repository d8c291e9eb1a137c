"""Pack the training data a run needs into one small folder, for a machine that has no ``../shared``.

The GPU machine lent by the ``device`` tool receives the working tree plus at most 64 MiB of ignored folders and
reaches nothing else. A pack is a frame cache in miniature that the trainer reads in place of ``../shared/data``
(``pack_dir`` in the config, or ``--set pack_dir=...``):

    <pack>/manifest.json            what is inside, how it was made, and every sequence's boxes (NaN = not packed)
    <pack>/frames/<seq>/<i>.jpg     a subset of the frames of the training and selection sequences, downscaled
    <pack>/still_images/*.jpg       a subset of the still images, with still_image_boxes.csv beside the folder
    <pack>/teacher/*.onnx           the NanoTrack v2 teacher
    <pack>/site/                    pure-Python packages the trainer imports that the GPU machine lacks (yaml, tqdm)

Frames are spread evenly over each sequence, in proportion to sqrt(annotated frames) as the sampler draws them;
frames that are not packed get NaN boxes, so the sampler never picks them. The validation split is never packed.

    python -m siammixer_ros.train.pack --config siammixer_ros/train/configs/xs_02.yaml --out gpu_pack --max-mib 55
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from siammixer_ros.train.cache import CachedSequence, default_cache_dir, default_data_dir, load_cached_sequences

MANIFEST = "manifest.json"
PURE_PYTHON_PACKAGES = ("yaml", "tqdm")
TEACHER_FILES = ("nanotrack_backbone_sim.onnx", "nanotrack_backbone_sim_z127.onnx", "nanotrack_head_sim.onnx")


def _encode(image: np.ndarray, max_side: int, quality: int) -> tuple[bytes, float]:
    """JPEG bytes of ``image`` scaled so that its longer side is at most ``max_side``, and the scale used."""
    scale = min(1.0, max_side / max(image.shape[:2]))
    if scale < 1.0:
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                           interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes(), scale


def _spread(indices: np.ndarray, count: int) -> np.ndarray:
    """``count`` of ``indices`` evenly spaced (all of them when there are fewer)."""
    if count >= len(indices):
        return indices
    return indices[np.round(np.linspace(0, len(indices) - 1, count)).astype(int)]


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build_pack(sequences: list[CachedSequence], data_dir: Path, teacher_dir: Path | None, out: Path, max_mib: float,
               max_side: int = 512, quality: int = 85, still_share: float = 0.12, description: str = "") -> dict:
    """Write a pack to ``out`` (which must not exist) within ``max_mib``; returns its manifest."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; remove it or choose another --out")
    out.mkdir(parents=True)
    budget = int(max_mib * 2**20)
    # Fixed parts first: the teacher and the pure-Python packages.
    for name in TEACHER_FILES if teacher_dir is not None else ():  # None: a run without distillation
        source = teacher_dir / name
        if not source.is_file():
            raise FileNotFoundError(f"teacher file missing: {source}")
        (out / "teacher").mkdir(exist_ok=True)
        shutil.copy2(source, out / "teacher" / name)
    for package in PURE_PYTHON_PACKAGES:
        module = __import__(package)
        source = Path(module.__file__).parent
        shutil.copytree(source, out / "site" / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "*.c"))
    remaining = budget - _size(out) - 64 * 1024  # room for the manifest

    # Still images: the listed (raccoon) ones first, then others, up to their share of the budget.
    stills_budget = int(remaining * still_share)
    stills: list[str] = []
    still_root = data_dir / "still_images"
    if still_root.is_dir() and stills_budget > 0:
        listed: dict[str, list[dict[str, str]]] = {}
        csv_path = data_dir / "still_image_boxes.csv"
        if csv_path.is_file():
            with csv_path.open() as f:
                for row in csv.DictReader(f):
                    listed.setdefault(row["file"], []).append(row)
        files = sorted(p for p in still_root.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        rng = np.random.default_rng(0)
        others = [p for p in files if p.name not in listed]
        order = [p for p in files if p.name in listed] + [others[i] for i in rng.permutation(len(others))]
        (out / "still_images").mkdir()
        rows, used = [], 0
        for path in order:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                continue
            data, scale = _encode(image, max_side, quality)
            if used + len(data) > stills_budget:
                break
            name = path.stem + ".jpg"
            (out / "still_images" / name).write_bytes(data)
            used += len(data)
            stills.append(name)
            for row in listed.get(path.name, []):
                rows.append({"file": name, **{k: f"{float(row[k]) * scale:.2f}" for k in ("x", "y", "w", "h")}})
        with (out / "still_image_boxes.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["file", "x", "y", "w", "h"])
            writer.writeheader()
            writer.writerows(rows)
        remaining -= used

    # Frames: estimate the bytes per frame on a sample, then spread the count over the sequences.
    sample = [seq.frame(int(seq.valid_indices()[len(seq.valid_indices()) // 2])) for seq in sequences
              if len(seq.valid_indices())]
    per_frame = float(np.mean([len(_encode(im, max_side, quality)[0]) for im in sample])) if sample else 1.0
    total_frames = int(remaining / per_frame * 0.92)  # frames vary in size: leave a margin
    valid = [seq.valid_indices() for seq in sequences]
    weights = np.array([len(v) for v in valid], dtype=np.float64) ** 0.5
    counts = np.maximum(2, np.floor(total_frames * weights / weights.sum())).astype(int)
    manifest: dict = {"created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "description": description,
                      "max_side": max_side, "jpeg_quality": quality, "sequences": {}, "still_images": stills,
                      "teacher": list(TEACHER_FILES) if teacher_dir is not None else [],
                      "site_packages": list(PURE_PYTHON_PACKAGES)}
    used = 0
    for seq, indices, count in zip(sequences, valid, counts, strict=True):
        chosen = _spread(indices, int(count))
        folder = out / "frames" / seq.name
        folder.mkdir(parents=True)
        boxes = np.full_like(seq.boxes, np.nan)
        scale = 1.0
        for index in chosen:
            data, scale = _encode(seq.frame(int(index)), max_side, quality)
            if used + len(data) > remaining:
                break
            (folder / f"{int(index):05d}.jpg").write_bytes(data)
            used += len(data)
            # Scaling a box by s keeps the crop geometry's pixel-centre convention to within s/2 of a pixel.
            boxes[index] = seq.boxes[index] * scale
        packed = int(np.isfinite(boxes).all(axis=1).sum())
        manifest["sequences"][seq.name] = {"frames": len(seq), "packed": packed, "scale": scale,
                                           "boxes": [[None if not np.isfinite(v) else round(float(v), 3) for v in b]
                                                     for b in boxes]}
    manifest["bytes"] = _size(out)
    (out / MANIFEST).write_text(json.dumps(manifest))
    return manifest


@dataclass
class PackedSequence(CachedSequence):
    """A sequence with only some frames packed. A frame that is not packed reads as the nearest packed one: pairs
    drawn from annotated frames never ask for one, but pseudo pairs take "a frame up to N later" of any frame."""

    packed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    def __post_init__(self) -> None:
        self._packed_set = frozenset(int(i) for i in self.packed)

    def frame_path(self, index: int) -> Path:
        if len(self.packed) and index not in self._packed_set:
            index = int(self.packed[np.argmin(np.abs(self.packed - index))])
        return super().frame_path(index)


def load_pack(pack_dir: Path, names: list[str]) -> list[CachedSequence]:
    """The packed sequences ``names`` as cached sequences (frames that are not packed have NaN boxes)."""
    manifest = json.loads((Path(pack_dir) / MANIFEST).read_text())
    missing = [n for n in names if n not in manifest["sequences"]]
    if missing:
        raise FileNotFoundError(f"sequences not in the pack {pack_dir}: {', '.join(missing)}")
    result = []
    for name in names:
        rows = manifest["sequences"][name]["boxes"]
        boxes = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64)
        boxes = boxes.reshape(-1, 4)
        result.append(PackedSequence(name, Path(pack_dir) / "frames" / name, boxes,
                                     np.flatnonzero(np.isfinite(boxes).all(axis=1))))
    return result


def pack_sequence_names(pack_dir: Path) -> list[str]:
    return sorted(json.loads((Path(pack_dir) / MANIFEST).read_text())["sequences"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="the run's training config (its split)")
    parser.add_argument("--out", type=Path, required=True, help="pack folder (an ignored one, e.g. gpu_pack)")
    parser.add_argument("--max-mib", type=float, default=55.0, help="size limit of the whole pack")
    parser.add_argument("--max-side", type=int, default=512, help="frames are downscaled to this longer side")
    parser.add_argument("--quality", type=int, default=85, help="JPEG quality")
    args = parser.parse_args(argv)

    from siammixer_ros.train.config import load_config
    from siammixer_ros.train.teacher import default_teacher_dir
    from siammixer_ros.train.trainer import choose_sequences

    cfg = load_config(args.config)
    data_dir = Path(cfg.data_dir) if cfg.data_dir else default_data_dir()
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    names = sorted(p.name for p in (data_dir / "sequences").iterdir() if (p / "video.mp4").is_file())
    train, val, selection = choose_sequences(cfg, names)
    sequences = load_cached_sequences(data_dir, cache_dir, train + selection)
    teacher_dir = Path(cfg.loss.teacher_dir) if cfg.loss.teacher_dir else default_teacher_dir()
    if cfg.loss.distill_weight <= 0 and cfg.loss.feature_distill_weight <= 0:
        teacher_dir = None
    manifest = build_pack(sequences, data_dir, teacher_dir, args.out, args.max_mib, args.max_side, args.quality,
                          description=f"{args.config.name}: {len(train)} training + {len(selection)} selection "
                                      f"sequences; validation ({len(val)}) not packed")
    frames = sum(s["packed"] for s in manifest["sequences"].values())
    print(f"{args.out}: {manifest['bytes'] / 2**20:.1f} MiB, {frames} frames of {len(manifest['sequences'])} "
          f"sequences, "
          f"{len(manifest['still_images'])} still images", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
