"""Training pairs: SiamFC crops of a template and a search region, augmentation, and response labels.

Geometry (the same convention as ``siammixer_ros.core.crop``): pixel centres lie at integer
coordinates, a box ``(x, y, w, h)`` has its centre at ``(x + (w - 1) / 2, y + (h - 1) / 2)``, and a
crop of side ``s`` centred at ``c`` resized to ``S`` pixels maps output pixel ``u`` to image point
``c + A (u - (S - 1) / 2)``. Here ``A`` is ``s / S`` times a rotation, a horizontal flip and a small
anisotropic stretch (augmentation), so one ``cv2.warpAffine`` makes each augmented crop and the
target's position in the crop is exactly ``(S - 1) / 2 + A^-1 (t - c)``.

Crop sides follow SiamFC: with context ``p = 0.5 (w + h)``, the template side is
``s_z = sqrt((w + p)(h + p))`` resized to 128, the search side ``2 s_z`` resized to 256, so a
target keeps the same size in both crops.

Response cell ``(i, j)`` of the 9x9 map (stride 16) looks at search-crop point
``((S - 1) / 2 + 16 (j - 4), (S - 1) / 2 + 16 (i - 4))``: the correlation window of cell ``j``
covers crop pixels ``16 j .. 16 j + 127`` whose centre is ``16 j + 63.5``, and cell 4 sits at 127.5.

Sources of pairs (probabilities in :class:`PairConfig`):
  video     template and search frames of one training sequence at most ``max_gap`` frames apart
  still     one still image against an affine + photometric copy of itself, around a raccoon box or a
            random box
  paste     a box of one still image pasted (with distractor patches from other images) onto
            another image: the template comes from the source image, the search from the composite
  negative  template and search from different sequences/images, or a search crop of the same frame
            that does not contain the target: every response cell is negative
  pseudo    a random box in a frame of a training sequence (not its annotated target) as the template,
            the same place a few frames later as the search region: no ground truth, every cell is
            ignored by the logistic and triplet losses, and only the teacher's map and features supervise
            it. Any region of any frame becomes a target, which is the diversity 24 sequences lack.
  pseudo_video  template and search frames of one teacher pseudo-track on ``unlabeled_videos`` (NanoTrack v2
            tracks that passed a forward-backward check, ``pseudo_tracks.json``); labels from the track's boxes
  hard_negative  a frame where the student tracker jumped to another object (``hard_negatives.json``): the
            search crop holds that wrong object (and the target where it is in view), the template comes from
            a ground-truth frame of the same sequence, the labels are the ground truth's

Video and pseudo_video pairs get cut-outs of DAVIS objects from other training sequences pasted near the
target in their search crop with probability ``instance_distractor_prob`` (``instances.py``); labels unchanged.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from siammixer_ros.eval import metrics
from siammixer_ros.eval.datasets import SHARED_VAL_SEQUENCES, VIDEO_GROUPS
from siammixer_ros.train.cache import CachedSequence, default_data_dir
from siammixer_ros.train.instances import InstancePool, paste_instance

TEMPLATE_SIZE = 128
SEARCH_SIZE = 256
STRIDE = 16
RESPONSE_SIZE = (SEARCH_SIZE - TEMPLATE_SIZE) // STRIDE + 1
CONTEXT = 0.5

# The split of ../shared/data/sequences is defined once, in the evaluation toolkit (its README's split).
VAL_SEQUENCES = SHARED_VAL_SEQUENCES


def split_sequences(names: list[str], val_names: tuple[str, ...] = VAL_SEQUENCES) -> tuple[list[str], list[str]]:
    """``(train, val)`` names; raises when a video group would straddle the split (frames would leak)."""
    val = set(val_names)
    for group in VIDEO_GROUPS:
        present = [g for g in group if g in names]
        sides = {g in val for g in present}
        if len(sides) > 1:
            raise ValueError(f"sub-sequences of one video on both sides of the split: {', '.join(present)}")
    train = [n for n in names if n not in val]
    return train, [n for n in names if n in val]


# --- geometry ---------------------------------------------------------------------------------------

def box_center(box: np.ndarray | tuple[float, float, float, float]) -> np.ndarray:
    x, y, w, h = (float(v) for v in box)
    return np.array([x + (w - 1) / 2.0, y + (h - 1) / 2.0])


def context_side(w: float, h: float, context: float = CONTEXT) -> float:
    """SiamFC template crop side in image pixels."""
    p = context * (w + h)
    return math.sqrt((w + p) * (h + p))


def crop_linear(side: float, out_size: int, angle_deg: float = 0.0, flip: bool = False,
                stretch: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """2x2 matrix ``A``: output offset (pixels, from the crop centre) -> image offset."""
    k = side / out_size
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    flip_m = np.diag([-1.0 if flip else 1.0, 1.0])
    return k * rot @ flip_m @ np.diag(stretch)


def warp_crop(image: np.ndarray, center: np.ndarray, linear: np.ndarray, out_size: int,
              pad: tuple[float, ...] | None = None) -> np.ndarray:
    """Crop ``image`` through ``image_point = center + linear (u - (out-1)/2)``; pad with ``pad`` (image mean)."""
    half = (out_size - 1) / 2.0
    offset = np.asarray(center, dtype=np.float64) - linear @ np.array([half, half])
    matrix = np.hstack([linear, offset[:, None]])
    if pad is None:
        pad = tuple(cv2.mean(image)[:3])
    return cv2.warpAffine(image, matrix, (out_size, out_size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(float(v) for v in pad) + (0.0,))


def point_in_crop(point: np.ndarray, center: np.ndarray, linear: np.ndarray, out_size: int) -> np.ndarray:
    """Where image ``point`` lands in the crop (output pixel coordinates)."""
    half = (out_size - 1) / 2.0
    return np.linalg.solve(linear, np.asarray(point, dtype=np.float64) - center) + half


def response_positions(search_size: int = SEARCH_SIZE, response_size: int = RESPONSE_SIZE,
                       stride: int = STRIDE) -> np.ndarray:
    """``(R, R, 2)`` x, y search-crop coordinates that response cells look at."""
    half = (search_size - 1) / 2.0
    offsets = (np.arange(response_size) - (response_size - 1) / 2.0) * stride
    xs, ys = np.meshgrid(half + offsets, half + offsets)
    return np.stack([xs, ys], axis=-1)


def matched_size(box: np.ndarray) -> np.ndarray:
    """Size of ``box``'s target in a search crop cut at the box's own SiamFC side (``2 * context_side``)."""
    return np.array([box[2], box[3]], dtype=np.float64) * SEARCH_SIZE / (2.0 * context_side(box[2], box[3]))


def size_iou(target_wh: np.ndarray, matched_wh: np.ndarray) -> float:
    """IoU of two boxes with one centre: the target's box in the crop and the one its scale stands for (two boxes
    from one corner overlap as much as two about one centre)."""
    return float(metrics.iou(np.array([[0.0, 0.0, *target_wh]]), np.array([[0.0, 0.0, *matched_wh]]))[0])


def make_label(target_xy: np.ndarray | None, pos_radius: float = 16.0, neg_radius: float = 16.0,
               response_size: int = RESPONSE_SIZE, positive_value: float = 1.0) -> np.ndarray:
    """Label map: ``positive_value`` (default 1) within ``pos_radius`` px of the target, 0 beyond
    ``neg_radius``, -1 (ignored) between.

    ``target_xy`` None (negative pair): all zeros.
    """
    if target_xy is None:
        return np.zeros((response_size, response_size), dtype=np.float32)
    pos = response_positions(response_size=response_size)
    dist = np.linalg.norm(pos - np.asarray(target_xy, dtype=np.float64), axis=-1)
    label = np.full(dist.shape, -1.0, dtype=np.float32)
    label[dist <= pos_radius] = positive_value
    label[dist > neg_radius] = 0.0
    if not (label > 0).any():  # the target between cells, far from all: nearest cell is positive
        label.flat[int(np.argmin(dist))] = positive_value
    return label


# --- photometric augmentation -------------------------------------------------------------------------

@dataclass
class AugmentConfig:
    """Augmentation settings; the paper's are ``flip``, ``rotation_deg`` and ``brightness``."""

    flip: float = 0.5                       # probability of flipping the pair horizontally (together)
    rotation_deg: float = 2.0               # uniform in +-rotation_deg, about the crop centre
    # With this probability a search crop turns by U(+-rotation_wide_deg) instead: in-plane rotation between
    # template and search (a drone's yaw, a rolling rider) that short video gaps rarely show. 0: never drawn, so
    # older configs keep their exact batches.
    rotation_wide_prob: float = 0.0
    rotation_wide_deg: float = 30.0
    brightness: tuple[float, float] = (0.7, 1.3)
    search_shift: float = 48.0              # target offset in the search crop, uniform in +-shift px
    search_scale: float = 0.25              # search side times exp(U(-s, s))
    template_shift: float = 4.0
    template_scale: float = 0.05
    stretch: float = 0.05                   # anisotropic stretch exp(U(-s, s)) per axis
    blur: float = 0.1
    motion_blur: float = 0.1
    grayscale: float = 0.1
    color: float = 0.1                      # per-channel gain jitter amplitude
    noise: float = 0.1                      # probability of Gaussian noise (sigma 2..8)


def photometric(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig,
                gray: bool = False) -> np.ndarray:
    """Brightness (paper), colour gain, blur, motion blur, noise, optional grayscale on a uint8 BGR crop."""
    out = image.astype(np.float32)
    gain = rng.uniform(*cfg.brightness)
    if cfg.color > 0:
        out *= (gain * (1.0 + rng.uniform(-cfg.color, cfg.color, size=3))).astype(np.float32)
    else:
        out *= gain
    if gray:
        out[:] = (out @ np.array([0.114, 0.587, 0.299], dtype=np.float32))[..., None]
    if rng.random() < cfg.blur:
        sigma = rng.uniform(0.5, 2.0)
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    if rng.random() < cfg.motion_blur:
        length = int(rng.integers(3, 10))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0 / length
        rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (length, length))
        kernel /= max(kernel.sum(), 1e-6)
        out = cv2.filter2D(out, -1, kernel)
    if rng.random() < cfg.noise:
        out += rng.normal(0.0, rng.uniform(2.0, 8.0), size=out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


# --- samples ------------------------------------------------------------------------------------------

@dataclass
class Pair:
    """One training pair. ``target_xy`` is the target centre in the search crop (None: negative pair)."""

    template: np.ndarray        # (128, 128, 3) uint8 BGR
    search: np.ndarray          # (256, 256, 3) uint8 BGR
    target_xy: np.ndarray | None
    target_wh: np.ndarray | None
    kind: str
    source: str = ""
    # The target's size in the search crop had the crop been cut at the scale the tracker aims at (the box's own
    # SiamFC side, no scale jitter or stretch): what a tracker on the right scale would report. None: negative.
    matched_wh: np.ndarray | None = None
    # (2, 256, 256, 3): the search frame cut about the same centre at a larger and a smaller side than ``search``,
    # which is then cut at the target's own scale (PairConfig.scale_rank_prob); None: no scale-ranking crops.
    scale_crops: np.ndarray | None = None


@dataclass
class PairConfig:
    """What the sampler draws. ``sources`` are relative probabilities of each kind of pair."""

    sources: dict[str, float] = field(default_factory=lambda: {"video": 0.5, "still": 0.12, "paste": 0.18,
                                                               "negative": 0.2})
    max_gap: int = 100                      # frames between template and search in a video pair
    min_box: float = 4.0                    # ignore frames whose target is smaller (pixels)
    sequence_weight_power: float = 0.5      # sequences drawn with probability ~ valid_frames ** power
    random_box_fraction: tuple[float, float] = (0.08, 0.6)  # random still-image box side / shorter image side
    pseudo_box_fraction: tuple[float, float] = (0.04, 0.3)  # pseudo pairs' box side / shorter frame side
    pseudo_max_gap: int = 10                # frames between a pseudo pair's template and search
    listed_box_prob: float = 0.8            # an image with listed boxes (raccoons) uses one, else a random box
    still_affine_scale: float = 0.3         # the still image's copy: scale exp(U(-s, s)), rotation, shear
    still_affine_rotation: float = 15.0
    still_affine_shear: float = 0.1
    paste_distractors: tuple[int, int] = (0, 3)
    # DAVIS cut-outs pasted into video / pseudo_video search crops (instances.py); 0 = never.
    instance_distractor_prob: float = 0.0
    instance_distractors: tuple[int, int] = (1, 2)   # how many, when they are pasted
    instance_scale_jitter: float = 0.3      # size = the target's (sqrt of area) times exp(U(-s, s))
    instance_same_class_prob: float = 0.5   # of the target's class (instances.SEQUENCE_CLASSES) when one exists
    instance_frame_step: int = 3            # a cut-out from every n-th masked frame
    # pseudo_video: teacher tracks on unlabeled_videos (null: the committed siammixer_ros/train/pseudo_tracks.json)
    pseudo_tracks_file: str | None = None
    pseudo_video_max_gap: int = 50          # frames between template and search within one track
    # hard_negative: frames where the student jumped (null: the committed siammixer_ros/train/hard_negatives.json)
    hard_negatives_file: str | None = None
    hard_negative_template_gap: int = 100   # template frame at most this far from the mined frame
    hard_negative_pull: tuple[float, float] = (0.25, 0.6)  # crop centre = wrong + U(a, b) (target - wrong)
    # With this probability a video pair's search crop is cut at the target's own scale (no scale jitter or
    # stretch) and two more crops of the same frame, a larger and a smaller one about the same centre, go with it
    # (Pair.scale_crops): the scale-ranking loss (LossConfig.scale_rank_weight) asks the matched crop to peak
    # highest, the comparison the tracker's scale search makes. Each off crop's side is the matched one's times
    # exp(+-U(a, b)) of ``scale_rank_log_range``. 0: never drawn, so older configs keep their exact batches.
    scale_rank_prob: float = 0.0
    scale_rank_log_range: tuple[float, float] = (0.07, 0.2)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class StillImages:
    """The shared still images and the raccoon boxes."""

    paths: list[Path]
    boxes: dict[str, list[np.ndarray]]

    @classmethod
    def load(cls, data_dir: Path) -> StillImages:
        root = Path(data_dir) / "still_images"
        if not root.is_dir():
            raise FileNotFoundError(f"no still_images folder at {root}")
        paths = sorted(p for p in root.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        boxes: dict[str, list[np.ndarray]] = {}
        csv_path = Path(data_dir) / "still_image_boxes.csv"
        if csv_path.is_file():
            with csv_path.open() as f:
                for row in csv.DictReader(f):
                    box = np.array([float(row[k]) for k in ("x", "y", "w", "h")])
                    boxes.setdefault(row["file"], []).append(box)
        return cls(paths, boxes)

    def image(self, index: int) -> np.ndarray:
        image = cv2.imread(str(self.paths[index]), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"cannot decode still image {self.paths[index]}")
        return image


SOURCES = ("video", "still", "paste", "negative", "pseudo", "pseudo_video", "hard_negative")


class PairSampler:
    """Draws augmented :class:`Pair` s from cached sequences and still images with its own RNG.

    ``data_dir`` (default ``../shared/data``) is where DAVIS masks and unlabeled clips are read for the
    sources that need them; ``cache_dir`` (default: the folder the sequences were cached in) receives the
    frames of the pseudo tracks' clips.
    """

    def __init__(self, sequences: list[CachedSequence], stills: StillImages | None, cfg: PairConfig,
                 seed: int = 0, data_dir: Path | None = None, cache_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.sequences = []
        self.valid: list[np.ndarray] = []
        for seq in sequences:
            valid = seq.valid_indices(cfg.min_box)
            if len(valid) >= 2:
                self.sequences.append(seq)
                self.valid.append(valid)
        if not self.sequences:
            raise ValueError("no sequence with at least two annotated frames to sample pairs from")
        weights = np.array([len(v) for v in self.valid], dtype=np.float64) ** cfg.sequence_weight_power
        self.seq_prob = weights / weights.sum()
        self.stills = stills if stills is not None and stills.paths else None
        kinds = {k: v for k, v in cfg.sources.items() if v > 0}
        if self.stills is None:
            kinds = {k: v for k, v in kinds.items() if k not in ("still", "paste")}
        unknown = set(kinds) - set(SOURCES)
        if unknown:
            raise ValueError(f"unknown pair sources: {', '.join(sorted(unknown))} (known: {', '.join(SOURCES)})")
        # Frames of the unlabeled clips go beside the sequences' frames: <cache>/frames/<seq> -> <cache>.
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path(self.sequences[0].directory).parents[1]
        self._instances: InstancePool | None = None
        self.pasted: list[str] = []  # labels of the cut-outs pasted into the last search crop
        self.tracks: list[CachedSequence] = []
        if "pseudo_video" in kinds:
            from siammixer_ros.train.pseudo_tracks import default_tracks_file, load_track_sequences

            path = Path(cfg.pseudo_tracks_file) if cfg.pseudo_tracks_file else default_tracks_file()
            self.tracks = load_track_sequences(path, self.data_dir, self.cache_dir)
            lengths = np.array([len(t.valid_indices(cfg.min_box)) for t in self.tracks], dtype=np.float64)
            self.track_prob = lengths ** cfg.sequence_weight_power / (lengths ** cfg.sequence_weight_power).sum()
        self.hard: dict[str, list[tuple[int, np.ndarray, float]]] = {}
        if "hard_negative" in kinds:
            from siammixer_ros.train.hard_negatives import default_hard_negatives_file, load_hard_negatives

            path = Path(cfg.hard_negatives_file) if cfg.hard_negatives_file else default_hard_negatives_file()
            by_name = {s.name: s for s in self.sequences}
            for rec in load_hard_negatives(path):
                seq = by_name.get(rec["sequence"])  # only the sampler's (training) sequences
                if seq is None or rec["frame"] >= len(seq) or not np.isfinite(seq.boxes[rec["frame"]]).all():
                    continue
                self.hard.setdefault(seq.name, []).append((rec["frame"], np.asarray(rec["wrong_box"], float),
                                                           rec["score"]))
            if not self.hard:
                raise ValueError(f"{path}: no hard-negative frame of the sampler's sequences")
            self.hard_names = sorted(self.hard)
            counts = np.array([len(self.hard[n]) for n in self.hard_names], dtype=np.float64)
            self.hard_prob = counts ** cfg.sequence_weight_power / (counts ** cfg.sequence_weight_power).sum()
        self.kinds = list(kinds)
        p = np.array([kinds[k] for k in self.kinds], dtype=np.float64)
        self.kind_prob = p / p.sum()

    @property
    def sequence_names(self) -> list[str]:
        return [s.name for s in self.sequences]

    @property
    def instances(self) -> InstancePool:
        """The DAVIS cut-outs of the training sequences, built on first use."""
        if self._instances is None:
            self._instances = InstancePool.build(self.sequences, self.data_dir, self.cfg.instance_frame_step)
        return self._instances

    # -- crops ---------------------------------------------------------------------------------------
    def _template(self, image: np.ndarray, box: np.ndarray, flip: bool, gray: bool) -> np.ndarray:
        a = self.cfg.augment
        rng = self.rng
        side = context_side(box[2], box[3]) * math.exp(rng.uniform(-a.template_scale, a.template_scale))
        linear = crop_linear(side, TEMPLATE_SIZE, rng.uniform(-a.rotation_deg, a.rotation_deg), flip)
        center = box_center(box) + linear @ rng.uniform(-a.template_shift, a.template_shift, size=2)
        crop = warp_crop(image, center, linear, TEMPLATE_SIZE)
        return photometric(crop, rng, a, gray)

    def _search(self, image: np.ndarray, box: np.ndarray, flip: bool, gray: bool,
                pre: np.ndarray | None = None, center: np.ndarray | None = None,
                distract_from: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Search crop around ``box`` (optionally of ``image`` warped by the 2x3 ``pre``): crop, target xy, wh.

        ``center``: the image point the crop centres on (default: the target, shifted at random).
        ``distract_from``: the target's sequence name; with probability ``instance_distractor_prob`` cut-outs of
        other sequences' objects are pasted near the target (before the photometric changes, which they share).
        """
        a = self.cfg.augment
        rng = self.rng
        side = 2.0 * context_side(box[2], box[3]) * math.exp(rng.uniform(-a.search_scale, a.search_scale))
        stretch = (math.exp(rng.uniform(-a.stretch, a.stretch)), math.exp(rng.uniform(-a.stretch, a.stretch)))
        angle = rng.uniform(-a.rotation_deg, a.rotation_deg)
        if a.rotation_wide_prob > 0 and rng.random() < a.rotation_wide_prob:
            angle = rng.uniform(-a.rotation_wide_deg, a.rotation_wide_deg)
        linear = crop_linear(side, SEARCH_SIZE, angle, flip, stretch)
        target = box_center(box)
        # The target lands at crop centre + shift: the net must localise, not always answer the centre.
        shift = rng.uniform(-a.search_shift, a.search_shift, size=2)
        center = target - linear @ shift if center is None else np.asarray(center, dtype=np.float64)
        if pre is not None:
            # Compose: crop point -> image' point (center + linear u) -> original image point (pre^-1).
            pre_lin_inv = np.linalg.inv(pre[:, :2])
            lin = pre_lin_inv @ linear
            cen = pre_lin_inv @ (center - pre[:, 2])
            crop = warp_crop(image, cen, lin, SEARCH_SIZE)
        else:
            crop = warp_crop(image, center, linear, SEARCH_SIZE)
        target_xy = point_in_crop(target, center, linear, SEARCH_SIZE)
        # Per crop axis: a crop column/row of the linear map is one crop pixel along x/y in the image (the stretch
        # differs per axis; the box branch learns the aspect ratio from this).
        target_wh = np.array([box[2], box[3]]) / np.linalg.norm(linear, axis=0)
        if distract_from is not None and self.cfg.instance_distractor_prob > 0 \
                and rng.random() < self.cfg.instance_distractor_prob:
            # Where the crop shows the image (the frame's corners through the same matrix), not padding.
            h, w = image.shape[:2]
            corners = np.array([point_in_crop(np.array(c), center, linear, SEARCH_SIZE)
                                for c in ((-0.5, -0.5), (w - 0.5, -0.5), (w - 0.5, h - 0.5), (-0.5, h - 0.5))])
            inside = np.zeros((SEARCH_SIZE, SEARCH_SIZE), np.uint8)
            cv2.fillConvexPoly(inside, np.round(corners).astype(np.int32), 1)
            self.pasted = self._paste_instances(crop, target_xy, target_wh, distract_from, inside.astype(bool))
        return photometric(crop, rng, a, gray), target_xy, target_wh

    def _scale_ranked_search(self, image: np.ndarray, box: np.ndarray, flip: bool, gray: bool
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """A search crop at the target's own scale (the side the tracker aims at, no jitter or stretch) and two
        crops about the same centre, larger and smaller by ``exp(U(scale_rank_log_range))``: crop, target xy, wh,
        the two off crops. All three share one draw of the photometric changes, so only their scale differs."""
        a = self.cfg.augment
        rng = self.rng
        side = 2.0 * context_side(box[2], box[3])
        angle = rng.uniform(-a.rotation_deg, a.rotation_deg)
        linear = crop_linear(side, SEARCH_SIZE, angle, flip)
        target = box_center(box)
        center = target - linear @ rng.uniform(-a.search_shift, a.search_shift, size=2)
        low, high = self.cfg.scale_rank_log_range
        factors = (math.exp(rng.uniform(low, high)), math.exp(-rng.uniform(low, high)))
        crops = [warp_crop(image, center, linear * f, SEARCH_SIZE) for f in (1.0, *factors)]
        state = rng.bit_generator.state
        out = []
        for crop in crops:
            rng.bit_generator.state = state  # the same brightness, colour, blur and noise draws for each
            out.append(photometric(crop, rng, a, gray))
        target_xy = point_in_crop(target, center, linear, SEARCH_SIZE)
        target_wh = np.array([box[2], box[3]]) / np.linalg.norm(linear, axis=0)
        return out[0], target_xy, target_wh, np.stack(out[1:])

    def _paste_instances(self, crop: np.ndarray, target_xy: np.ndarray, target_wh: np.ndarray,
                         target_sequence: str, inside: np.ndarray | None = None) -> list[str]:
        """Paste 1-2 cut-outs of other videos' objects into ``crop`` near the target; returns their labels."""
        c = self.cfg
        pasted = []
        for _ in range(int(self.rng.integers(c.instance_distractors[0], c.instance_distractors[1] + 1))):
            instance = self.instances.draw(self.rng, target_sequence, c.instance_same_class_prob)
            if instance is None:
                break
            if paste_instance(crop, instance, target_xy, target_wh, self.rng, c.instance_scale_jitter,
                              inside=inside) is not None:
                pasted.append(instance.label)
        return pasted

    # -- sources -------------------------------------------------------------------------------------
    def _random_sequence_frame(self, exclude: int | None = None) -> tuple[int, int]:
        while True:
            s = int(self.rng.choice(len(self.sequences), p=self.seq_prob))
            if s != exclude or len(self.sequences) == 1:
                return s, int(self.rng.choice(self.valid[s]))

    def _flags(self) -> tuple[bool, bool]:
        a = self.cfg.augment
        return bool(self.rng.random() < a.flip), bool(self.rng.random() < a.grayscale)

    def video_pair(self) -> Pair:
        s, t_idx = self._random_sequence_frame()
        seq, valid = self.sequences[s], self.valid[s]
        return self._track_pair(seq, valid, t_idx, self.cfg.max_gap, "video")

    def _track_pair(self, seq: CachedSequence, valid: np.ndarray, t_idx: int, max_gap: int, kind: str) -> Pair:
        """Template at frame ``t_idx``, search at another valid frame at most ``max_gap`` away; source
        ``name:t->x`` plus ``+seq:frame`` for each pasted cut-out."""
        near = valid[np.abs(valid - t_idx) <= max_gap]
        near = near[near != t_idx] if len(near) > 1 else near
        x_idx = int(self.rng.choice(near))
        flip, gray = self._flags()
        template = self._template(seq.frame(t_idx), seq.boxes[t_idx], flip, gray)
        self.pasted = []
        # The draw only happens when the option is on, so that configs without it keep their exact batches.
        if kind == "video" and self.cfg.scale_rank_prob > 0 and self.rng.random() < self.cfg.scale_rank_prob:
            search, xy, wh, scale_crops = self._scale_ranked_search(seq.frame(x_idx), seq.boxes[x_idx], flip, gray)
            return Pair(template, search, xy, wh, kind, f"{seq.name}:{t_idx}->{x_idx}:scales",
                        matched_size(seq.boxes[x_idx]), scale_crops)
        search, xy, wh = self._search(seq.frame(x_idx), seq.boxes[x_idx], flip, gray, distract_from=seq.name)
        extra = "".join(f"+{p}" for p in self.pasted)
        return Pair(template, search, xy, wh, kind, f"{seq.name}:{t_idx}->{x_idx}{extra}",
                    matched_size(seq.boxes[x_idx]))

    def pseudo_video_pair(self) -> Pair:
        k = int(self.rng.choice(len(self.tracks), p=self.track_prob))
        track = self.tracks[k]
        valid = track.valid_indices(self.cfg.min_box)
        return self._track_pair(track, valid, int(self.rng.choice(valid)), self.cfg.pseudo_video_max_gap,
                                "pseudo_video")

    def hard_negative_pair(self) -> Pair:
        """The wrong object the student jumped to, in a search crop centred between it and the target."""
        c = self.cfg
        name = self.hard_names[int(self.rng.choice(len(self.hard_names), p=self.hard_prob))]
        frame, wrong, score = self.hard[name][int(self.rng.integers(len(self.hard[name])))]
        seq = self.sequences[self.sequence_names.index(name)]
        valid = self.valid[self.sequence_names.index(name)]
        near = valid[np.abs(valid - frame) <= c.hard_negative_template_gap]
        near = near[near != frame] if len(near) > 1 else near
        t_idx = int(self.rng.choice(near)) if len(near) else int(self.rng.choice(valid))
        flip, gray = self._flags()
        template = self._template(seq.frame(t_idx), seq.boxes[t_idx], flip, gray)
        gt = seq.boxes[frame]
        wrong_c, target_c = box_center(wrong), box_center(gt)
        # Between the wrong object (always in the crop) and the target, jittered by up to a cell.
        center = wrong_c + self.rng.uniform(*c.hard_negative_pull) * (target_c - wrong_c)
        center = center + self.rng.uniform(-8, 8, size=2) * context_side(gt[2], gt[3]) / TEMPLATE_SIZE
        search, xy, wh = self._search(seq.frame(frame), gt, flip, gray, center=center)
        # A target beyond the response cells' reach (64 px + one cell) is out of the map: all cells negative.
        offset = np.abs(xy - (SEARCH_SIZE - 1) / 2.0)
        if offset.max() > (RESPONSE_SIZE - 1) / 2.0 * STRIDE + STRIDE:
            xy, wh = None, None
        return Pair(template, search, xy, wh, "hard_negative", f"{seq.name}:{t_idx}->{frame}:wrong",
                    None if xy is None else matched_size(gt))

    def _still_box(self, index: int, image: np.ndarray) -> np.ndarray:
        boxes = self.stills.boxes.get(self.stills.paths[index].name) if self.stills else None
        h, w = image.shape[:2]
        if boxes and self.rng.random() < self.cfg.listed_box_prob:
            box = boxes[int(self.rng.integers(len(boxes)))].copy()
            box[2:] = np.maximum(box[2:], 4.0)
            return box
        return self._random_box(h, w, self.cfg.random_box_fraction)

    def _random_box(self, h: int, w: int, fraction: tuple[float, float]) -> np.ndarray:
        """A box anywhere in an ``h`` x ``w`` image, side ``fraction`` of the shorter side, aspect in e^+-0.5."""
        side = min(h, w) * self.rng.uniform(*fraction)
        aspect = math.exp(self.rng.uniform(-0.5, 0.5))
        bw = float(np.clip(side * aspect, 8, w - 2))
        bh = float(np.clip(side / aspect, 8, h - 2))
        return np.array([self.rng.uniform(0, w - bw), self.rng.uniform(0, h - bh), bw, bh])

    def _random_affine(self, center: np.ndarray) -> np.ndarray:
        """2x3 image->image' affine about ``center``: scale, rotation, shear (the 'same image' pair)."""
        c = self.cfg
        scale = math.exp(self.rng.uniform(-c.still_affine_scale, c.still_affine_scale))
        a = math.radians(self.rng.uniform(-c.still_affine_rotation, c.still_affine_rotation))
        sh = self.rng.uniform(-c.still_affine_shear, c.still_affine_shear)
        lin = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) @ np.array([[1, sh],
                                                                                                      [0, 1]])
        return np.hstack([lin, (center - lin @ center)[:, None]])

    def still_pair(self) -> Pair:
        i = int(self.rng.integers(len(self.stills.paths)))
        image = self.stills.image(i)
        box = self._still_box(i, image)
        flip, gray = self._flags()
        template = self._template(image, box, flip, gray)
        center = box_center(box)
        pre = self._random_affine(center)
        # The box in image' (same centre since the affine is about it; size by the linear part's scale).
        scale = math.sqrt(abs(np.linalg.det(pre[:, :2])))
        box2 = np.array([center[0] - (box[2] * scale - 1) / 2, center[1] - (box[3] * scale - 1) / 2,
                         box[2] * scale, box[3] * scale])
        search, xy, wh = self._search(image, box2, flip, gray, pre=pre)
        return Pair(template, search, xy, wh, "still", self.stills.paths[i].name, matched_size(box2))

    def _paste_patch(self, canvas: np.ndarray, patch: np.ndarray, xy: np.ndarray) -> None:
        x0, y0 = int(round(xy[0])), int(round(xy[1]))
        h, w = patch.shape[:2]
        ch, cw = canvas.shape[:2]
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, cw), min(y0 + h, ch)
        if xb > xa and yb > ya:
            canvas[ya:yb, xa:xb] = patch[ya - y0:yb - y0, xa - x0:xb - x0]

    def paste_pair(self) -> Pair:
        n = len(self.stills.paths)
        i, j = int(self.rng.integers(n)), int(self.rng.integers(n))
        source, background = self.stills.image(i), self.stills.image(j).copy()
        box = self._still_box(i, source)
        flip, gray = self._flags()
        template = self._template(source, box, flip, gray)
        bh, bw = background.shape[:2]
        # Target size in the background: like the source, within 70..140 %, and fitting inside.
        scale = math.exp(self.rng.uniform(-0.35, 0.35))
        scale = min(scale, 0.9 * bw / box[2], 0.9 * bh / box[3])
        pw, ph = max(int(round(box[2] * scale)), 4), max(int(round(box[3] * scale)), 4)
        x0, y0 = int(round(box[0])), int(round(box[1]))
        patch = source[max(y0, 0):y0 + int(round(box[3])), max(x0, 0):x0 + int(round(box[2]))]
        if patch.size == 0:
            return self.still_pair()
        patch = cv2.resize(patch, (pw, ph), interpolation=cv2.INTER_LINEAR)
        # Distractor patches from other images first (the target is pasted last, on top): a pasted
        # edge is then no cue for where the target is.
        for _ in range(int(self.rng.integers(self.cfg.paste_distractors[0], self.cfg.paste_distractors[1] + 1))):
            k = int(self.rng.integers(n))
            other = self.stills.image(k)
            ob = self._still_box(k, other)
            ox, oy = int(round(ob[0])), int(round(ob[1]))
            op = other[max(oy, 0):oy + int(round(ob[3])), max(ox, 0):ox + int(round(ob[2]))]
            if op.size == 0:
                continue
            op = cv2.resize(op, (pw, ph), interpolation=cv2.INTER_LINEAR)
            self._paste_patch(background, op, np.array([self.rng.uniform(-pw / 2, bw - pw / 2),
                                                        self.rng.uniform(-ph / 2, bh - ph / 2)]))
        pos = np.array([self.rng.uniform(0, bw - pw), self.rng.uniform(0, bh - ph)])
        self._paste_patch(background, patch, pos)
        new_box = np.array([round(pos[0]), round(pos[1]), pw, ph], dtype=np.float64)
        search, xy, wh = self._search(background, new_box, flip, gray)
        return Pair(template, search, xy, wh, "paste", f"{self.stills.paths[i].name}->{self.stills.paths[j].name}",
                    matched_size(new_box))

    def negative_pair(self) -> Pair:
        s, t_idx = self._random_sequence_frame()
        seq = self.sequences[s]
        flip, gray = self._flags()
        template = self._template(seq.frame(t_idx), seq.boxes[t_idx], flip, gray)
        mode = self.rng.random()
        if mode < 0.3:
            # Same frame, search crop away from the target: background and look-alike distractors.
            image = seq.frame(t_idx)
            box = seq.boxes[t_idx].copy()
            side = 2.0 * context_side(box[2], box[3])
            angle = self.rng.uniform(0, 2 * math.pi)
            # The target lies outside the crop's response coverage (half side + margin).
            dist = side * self.rng.uniform(0.8, 1.5)
            box[:2] += dist * np.array([math.cos(angle), math.sin(angle)])
            search, _, _ = self._search(image, box, flip, gray)
            return Pair(template, search, None, None, "negative", f"{seq.name}:{t_idx}:offset")
        if mode < 0.7 or self.stills is None:
            s2, x_idx = self._random_sequence_frame(exclude=s)
            other = self.sequences[s2]
            search, _, _ = self._search(other.frame(x_idx), other.boxes[x_idx], flip, gray)
            return Pair(template, search, None, None, "negative", f"{seq.name}:{t_idx}->{other.name}:{x_idx}")
        i = int(self.rng.integers(len(self.stills.paths)))
        image = self.stills.image(i)
        search, _, _ = self._search(image, self._still_box(i, image), flip, gray)
        return Pair(template, search, None, None, "negative", f"{seq.name}:{t_idx}->{self.stills.paths[i].name}")

    def pseudo_pair(self) -> Pair:
        s, t_idx = self._random_sequence_frame()
        seq = self.sequences[s]
        x_idx = int(np.clip(t_idx + self.rng.integers(-self.cfg.pseudo_max_gap, self.cfg.pseudo_max_gap + 1),
                            0, len(seq) - 1))
        image = seq.frame(t_idx)
        box = self._random_box(*image.shape[:2], self.cfg.pseudo_box_fraction)
        flip, gray = self._flags()
        template = self._template(image, box, flip, gray)
        search, _, _ = self._search(seq.frame(x_idx), box, flip, gray)
        return Pair(template, search, None, None, "pseudo", f"{seq.name}:{t_idx}->{x_idx}:random")

    def sample(self, kind: str | None = None) -> Pair:
        kind = kind or self.kinds[int(self.rng.choice(len(self.kinds), p=self.kind_prob))]
        return getattr(self, f"{kind}_pair")()


# --- batches ------------------------------------------------------------------------------------------

def positive_label_value(pair: Pair, size_iou_power: float) -> float:
    """Label of a pair's positive cells: 1, or with ``size_iou_power`` > 0 the IoU of the target's size in the
    crop with the size the crop's scale stands for (``matched_wh``), to that power: a crop cut at the wrong scale
    should score lower than one at the right scale, which is what the tracker's scale search compares."""
    if size_iou_power <= 0 or pair.target_wh is None or pair.matched_wh is None:
        return 1.0
    return size_iou(pair.target_wh, pair.matched_wh) ** size_iou_power


def collate(pairs: list[Pair], pos_radius: float = 16.0, neg_radius: float = 16.0,
            size_iou_power: float = 0.0) -> dict[str, np.ndarray]:
    """Stack pairs: NCHW float32 BGR 0..255 images, labels (B,9,9), target xy and wh (NaN for negatives).

    Pseudo pairs have no ground truth: their labels are -1 (ignored) everywhere. ``size_iou_power`` > 0 makes
    positive cells' labels soft (:func:`positive_label_value`); 0 keeps them exactly 1. Pairs with scale-ranking
    crops add ``scale_search`` (2M,3,256,256) and ``scale_owner`` (M,), the index of each one's pair.
    """
    templates = np.stack([p.template for p in pairs]).transpose(0, 3, 1, 2).astype(np.float32)
    searches = np.stack([p.search for p in pairs]).transpose(0, 3, 1, 2).astype(np.float32)
    labels = np.stack([np.full((RESPONSE_SIZE, RESPONSE_SIZE), -1.0, np.float32) if p.kind == "pseudo"
                       else make_label(p.target_xy, pos_radius, neg_radius,
                                       positive_value=positive_label_value(p, size_iou_power)) for p in pairs])
    target = np.array([p.target_xy if p.target_xy is not None else (np.nan, np.nan) for p in pairs],
                      dtype=np.float32)
    target_wh = np.array([p.target_wh if p.target_wh is not None else (np.nan, np.nan) for p in pairs],
                         dtype=np.float32)
    batch = {"template": templates, "search": searches, "label": labels, "target_xy": target, "target_wh": target_wh,
             "positive": np.array([p.target_xy is not None for p in pairs])}
    owners = [i for i, p in enumerate(pairs) if p.scale_crops is not None]
    if owners:
        # (2M, 3, 256, 256): pair owners[m]'s larger crop at 2m, its smaller one at 2m + 1.
        batch["scale_search"] = np.concatenate([pairs[i].scale_crops for i in owners]).transpose(0, 3, 1, 2) \
            .astype(np.float32)
        batch["scale_owner"] = np.array(owners, dtype=np.int64)
    return batch
