"""Object cut-outs from the DAVIS masks, pasted as distractors into search crops.

The ``davis_*`` training sequences carry a segmentation mask per frame (``masks.npz`` beside the video, uint8
0/1 of the stored frame size). :class:`InstancePool` cuts the object out of every ``frame_step``-th frame (the
frame's pixels inside the mask's tight box, and the mask as alpha), and :func:`paste_instance` alpha-blends one
of them into a search crop near the target. Only training sequences are read: the pool refuses a sequence of
the validation split, and a pair never receives a cut-out of its own sequence (or of another sub-sequence of
the same video), so a distractor is never a copy of the target itself.

Cut-outs whose mask fills less than ``min_fill`` of its box (kite-surf and paragliding-launch, where DAVIS
segments the kite or glider lines too) or covers fewer than ``min_area`` pixels are skipped: pasted at the
target's size they would be thin lines, not objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from siammixer_ros.eval.datasets import SHARED_VAL_SEQUENCES, VIDEO_GROUPS
from siammixer_ros.train.cache import CachedSequence

# Coarse object classes of the training sequences (by name), so that a distractor can be of the target's
# own kind ("same-class ones where there are several"). Riders are person + bike/horse as one DAVIS object.
SEQUENCE_CLASSES = {
    "davis_breakdance": "person", "davis_dance-twirl": "person", "davis_parkour": "person",
    "davis_kite-surf": "person", "davis_paragliding-launch": "person",
    "davis_bmx-trees": "rider", "davis_horsejump-high": "rider", "davis_motocross-jump": "rider",
    "davis_scooter-black": "rider",
    "davis_car-shadow": "car", "davis_drift-chicane": "car", "davis_drift-straight": "car",
    "davis_blackswan": "animal", "davis_cows": "animal", "davis_libby": "animal",
    "car10": "car", "car14": "car", "truck4_1": "car", "truck4_2": "car",
    "group1_1": "person", "group1_3": "person", "group1_4": "person", "group2_2": "person", "group3_2": "person",
    "person12_1": "person", "wakeboard3": "person", "wakeboard4": "person", "wakeboard10": "person",
    "Couple": "person", "Crossing": "person", "Human3": "person",
}


def same_video(a: str, b: str) -> bool:
    """True for one name, or two sub-sequences cut from one video (``group1_*``, ``truck4_*``)."""
    return a == b or any(a in group and b in group for group in VIDEO_GROUPS)


@dataclass
class Instance:
    """One cut-out: the object's pixels in its mask's tight box and the mask as alpha (0..1)."""

    sequence: str
    frame: int
    image: np.ndarray   # (h, w, 3) uint8 BGR
    alpha: np.ndarray   # (h, w) float32 in [0, 1]

    @property
    def label(self) -> str:
        return f"{self.sequence}:{self.frame}"


class InstancePool:
    """Cut-outs from the masks of training sequences, drawn by the pair sampler."""

    def __init__(self, instances: list[Instance]) -> None:
        if not instances:
            raise ValueError("the instance pool is empty: no training sequence with masks.npz and usable masks")
        self.instances = instances
        self.sequences = sorted({i.sequence for i in instances})

    @classmethod
    def build(cls, sequences: list[CachedSequence], data_dir: Path, frame_step: int = 3, max_side: int = 160,
              min_fill: float = 0.15, min_area: int = 256) -> InstancePool:
        """Cut-outs of every ``frame_step``-th frame of each sequence with ``<data_dir>/sequences/<name>/masks.npz``.

        ``sequences`` are the sampler's (training) sequences; one of the validation split raises ValueError.
        Cut-outs are shrunk to at most ``max_side`` px (a pasted one is the target's size in a 256 px crop).
        """
        instances: list[Instance] = []
        for seq in sorted(sequences, key=lambda s: s.name):
            path = Path(data_dir) / "sequences" / seq.name / "masks.npz"
            if not path.is_file():
                continue
            if seq.name in SHARED_VAL_SEQUENCES:
                raise ValueError(f"{seq.name} belongs to the validation split: its objects must not be pasted")
            masks = np.load(path)["masks"]
            if len(masks) != len(seq):
                raise ValueError(f"{path} has {len(masks)} masks for {len(seq)} frames")
            for index in range(0, len(masks), max(1, frame_step)):
                cut = _cut_out(seq, index, masks[index], max_side, min_fill, min_area)
                if cut is not None:
                    instances.append(cut)
        return cls(instances)

    def draw(self, rng: np.random.Generator, target_sequence: str, same_class_prob: float = 0.5) -> Instance | None:
        """A cut-out of another video than ``target_sequence``: of the target's class with ``same_class_prob``
        when the pool has one, else of any class. Sequences are drawn uniformly, then a frame. None: no other video."""
        others = [s for s in self.sequences if not same_video(s, target_sequence)]
        if not others:
            return None
        cls = SEQUENCE_CLASSES.get(target_sequence.split("#")[0])
        same = [s for s in others if cls is not None and SEQUENCE_CLASSES.get(s) == cls]
        pool = same if same and rng.random() < same_class_prob else others
        name = pool[int(rng.integers(len(pool)))]
        candidates = [i for i in self.instances if i.sequence == name]
        return candidates[int(rng.integers(len(candidates)))]


def _cut_out(seq: CachedSequence, index: int, mask: np.ndarray, max_side: int, min_fill: float,
             min_area: int) -> Instance | None:
    ys, xs = np.nonzero(mask)
    if len(xs) < min_area:
        return None
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    if len(xs) / float((x1 - x0) * (y1 - y0)) < min_fill:
        return None
    image = seq.frame(index)
    if image.shape[:2] != mask.shape:
        raise ValueError(f"{seq.name} frame {index}: mask {mask.shape} and frame {image.shape[:2]} differ")
    crop = image[y0:y1, x0:x1].copy()
    alpha = mask[y0:y1, x0:x1].astype(np.float32)
    scale = max_side / max(crop.shape[:2])
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
    return Instance(seq.name, index, crop, alpha)


def paste_instance(canvas: np.ndarray, instance: Instance, target_xy: np.ndarray, target_wh: np.ndarray,
                   rng: np.random.Generator, scale_jitter: float = 0.3, attempts: int = 8,
                   keep_clear: float = 0.25, inside: np.ndarray | None = None) -> np.ndarray | None:
    """Alpha-blend ``instance`` into ``canvas`` (in place) near the target; returns the pasted alpha (canvas-sized,
    float32) or None when no placement left the target's centre clear.

    The cut-out is scaled so that ``sqrt(w h)`` matches the target's times ``exp(U(-s, s))``, flipped at random,
    and centred at 0.6-1.6 target-plus-instance half sizes from the target centre in a random direction. The
    pasted alpha must stay below 0.05 within ``keep_clear`` times the target's smaller side of its centre.
    ``inside`` (canvas-sized bool): where the crop shows the image, not padding; 90 % of the pasted object must
    lie there (objects floating in the padding would be an easy tell).
    """
    th, tw = float(target_wh[1]), float(target_wh[0])
    ih, iw = instance.alpha.shape
    scale = math.sqrt(max(tw * th, 16.0) / float(iw * ih)) * math.exp(rng.uniform(-scale_jitter, scale_jitter))
    pw, ph = max(4, round(iw * scale)), max(4, round(ih * scale))
    # Never larger than the canvas (a huge target in a small crop).
    fit = min(1.0, canvas.shape[1] / pw, canvas.shape[0] / ph)
    pw, ph = max(4, int(pw * fit)), max(4, int(ph * fit))
    patch = cv2.resize(instance.image, (pw, ph), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    alpha = cv2.resize(instance.alpha, (pw, ph), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        patch, alpha = patch[:, ::-1], alpha[:, ::-1]
    # Soft edges (about one pixel): a hard binary edge would mark pasted objects as such.
    alpha = cv2.GaussianBlur(np.ascontiguousarray(alpha), (0, 0), 0.8)
    ch, cw = canvas.shape[:2]
    t = np.asarray(target_xy, dtype=np.float64)
    clear = max(2.0, keep_clear * min(tw, th))
    yy, xx = np.mgrid[0:ch, 0:cw]
    near_centre = (xx - t[0]) ** 2 + (yy - t[1]) ** 2 <= clear ** 2
    reach = 0.5 * (math.hypot(tw, th) + math.hypot(pw, ph))
    for _ in range(attempts):
        angle = rng.uniform(0, 2 * math.pi)
        c = t + reach * rng.uniform(0.6, 1.6) * np.array([math.cos(angle), math.sin(angle)])
        x0, y0 = round(c[0] - (pw - 1) / 2), round(c[1] - (ph - 1) / 2)
        full = np.zeros((ch, cw), np.float32)
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + pw, cw), min(y0 + ph, ch)
        if xb - xa < pw // 3 or yb - ya < ph // 3:
            continue  # mostly outside the crop
        full[ya:yb, xa:xb] = alpha[ya - y0:yb - y0, xa - x0:xb - x0]
        if (full[near_centre] >= 0.05).any():
            continue
        if inside is not None and full[inside].sum() < 0.9 * full.sum():
            continue
        region = canvas[ya:yb, xa:xb].astype(np.float32)
        a = full[ya:yb, xa:xb, None]
        canvas[ya:yb, xa:xb] = np.clip(region * (1 - a) + patch[ya - y0:yb - y0, xa - x0:xb - x0] * a + 0.5,
                                       0, 255).astype(np.uint8)
        return full
    return None
