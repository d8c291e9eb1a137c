"""Training data: labels on the 9x9 grid, the train/validation split, pair geometry under augmentation."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from siammixer_ros.train.cache import CachedSequence, cache_sequence, read_groundtruth
from siammixer_ros.train.data import (
    SEARCH_SIZE,
    TEMPLATE_SIZE,
    VAL_SEQUENCES,
    AugmentConfig,
    PairConfig,
    PairSampler,
    StillImages,
    collate,
    make_label,
    matched_size,
    positive_label_value,
    response_positions,
    size_iou,
    split_sequences,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TARGET_COLOUR = (0, 0, 255)  # pure red: nowhere else in the synthetic scenes
STILL_COLOURS = ((0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 0, 255))  # one target colour per still image


def test_centre_cell_looks_at_the_search_centre() -> None:
    pos = response_positions()
    assert pos.shape == (9, 9, 2)
    np.testing.assert_allclose(pos[4, 4], [(SEARCH_SIZE - 1) / 2] * 2)
    np.testing.assert_allclose(pos[4, 5] - pos[4, 4], [16, 0])
    np.testing.assert_allclose(pos[5, 4] - pos[4, 4], [0, 16])


def test_label_of_a_centred_target_is_the_centre_cell_and_its_four_neighbours() -> None:
    c = (SEARCH_SIZE - 1) / 2
    label = make_label(np.array([c, c]), pos_radius=16)
    assert label.sum() == 5
    assert label[4, 4] == label[3, 4] == label[5, 4] == label[4, 3] == label[4, 5] == 1
    assert label[3, 3] == 0


def test_label_follows_a_shifted_target_and_ignores_the_ring() -> None:
    c = (SEARCH_SIZE - 1) / 2
    label = make_label(np.array([c + 32, c - 48]), pos_radius=8, neg_radius=20)
    assert np.argwhere(label == 1).tolist() == [[1, 6]]  # row = 4 - 3, column = 4 + 2
    assert (label == -1).sum() == 4                       # the 4-neighbours at 16 px are ignored
    assert (make_label(None) == 0).all()


def test_split_keeps_video_groups_together_and_validation_out() -> None:
    names = ["boat1", "building4", "group1_1", "group1_3", "truck4_1", "truck4_2"]
    train, val = split_sequences(names)
    assert val == ["building4"] and "building4" not in train
    with pytest.raises(ValueError, match="group1_1, group1_3"):
        split_sequences(names, val_names=("group1_1",))


def test_validation_split_matches_the_shared_readme() -> None:
    readme = SHARED / "README.md"
    if not readme.is_file():
        pytest.skip(f"../shared/data is absent ({readme}): cannot compare with its README")
    # The README's entry may continue on indented lines: "- validation: a b c\n  d e".
    entry = re.search(r"^- validation:(.*(?:\n[ \t]+\S.*)*)", readme.read_text(), re.MULTILINE)
    assert entry is not None, "no '- validation:' entry in the shared README"
    assert set(entry.group(1).split()) == set(VAL_SEQUENCES)
    names = sorted(p.name for p in (SHARED / "sequences").iterdir() if p.is_dir())
    train, val = split_sequences(names)
    assert set(val) == set(VAL_SEQUENCES) and not set(train) & set(VAL_SEQUENCES)


# --- synthetic scenes: a red rectangle on a textured background ---------------------------------------

def _scene(rng: np.random.Generator, size: tuple[int, int], box: tuple[int, int, int, int],
           colour: tuple[int, int, int] = TARGET_COLOUR) -> np.ndarray:
    h, w = size
    # A background no darker than 40 and no brighter than 120 in any channel: pure colours stand out.
    image = cv2.resize(rng.integers(40, 120, (h // 8, w // 8, 3), dtype=np.uint8), (w, h))
    x, y, bw, bh = box
    image[y:y + bh, x:x + bw] = colour
    return image


def _red_centroid(crop: np.ndarray, at: np.ndarray | None = None,
                  colour: tuple[int, int, int] = TARGET_COLOUR) -> np.ndarray:
    """Centroid of the target-coloured pixels; with ``at``: of the blob that covers that point."""
    mask = (np.abs(crop.astype(np.int16) - np.array(colour, np.int16)) < 60).all(axis=2).astype(np.uint8)
    if at is not None:
        _, labels = cv2.connectedComponents(mask)
        blob = labels[int(round(at[1])), int(round(at[0]))]
        assert blob > 0, "no red target at the labelled position"
        mask = (labels == blob).astype(np.uint8)
    assert mask.sum() > 20, "target not visible in the crop"
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


@pytest.fixture
def synthetic_sequences(tmp_path: Path) -> list[CachedSequence]:
    rng = np.random.default_rng(0)
    seqs = []
    for name in ("train_a", "train_b", "building4"):
        d = tmp_path / "frames" / name
        d.mkdir(parents=True)
        boxes = []
        for i in range(6):
            box = (60 + 7 * i, 50 + 3 * i, 24, 16)
            cv2.imwrite(str(d / f"{i:05d}.png"), _scene(rng, (200, 260), box))
            boxes.append(box)
        seq = CachedSequence(name, d, np.array(boxes, dtype=np.float64))
        seq.frame_path = lambda i, d=d: d / f"{i:05d}.png"  # type: ignore[method-assign]
        seqs.append(seq)
    return seqs


def _geometry_only(**overrides: float) -> AugmentConfig:
    # Everything that moves pixels stays on; photometric changes off so that the red stays red.
    base = dict(brightness=(1.0, 1.0), blur=0.0, motion_blur=0.0, grayscale=0.0, color=0.0, noise=0.0)
    base.update(overrides)
    return AugmentConfig(**base)


def test_sampler_never_draws_a_validation_sequence(synthetic_sequences: list[CachedSequence]) -> None:
    train, val = split_sequences([s.name for s in synthetic_sequences])
    sampler = PairSampler([s for s in synthetic_sequences if s.name in train], None, PairConfig(), seed=1)
    sources = " ".join(sampler.sample().source for _ in range(60))
    assert "building4" not in sources and "train_a" in sources and "train_b" in sources
    assert val == ["building4"]


def test_augmented_video_pairs_keep_the_target_at_its_label(synthetic_sequences: list[CachedSequence]) -> None:
    cfg = PairConfig(sources={"video": 1.0}, max_gap=5, augment=_geometry_only())
    sampler = PairSampler(synthetic_sequences[:2], None, cfg, seed=3)
    for _ in range(25):
        pair = sampler.sample()
        assert pair.template.shape == (TEMPLATE_SIZE, TEMPLATE_SIZE, 3)
        assert pair.search.shape == (SEARCH_SIZE, SEARCH_SIZE, 3)
        # Search: the red target's centroid is where the label says (bilinear edges: ~1 px).
        np.testing.assert_allclose(_red_centroid(pair.search), pair.target_xy, atol=1.5)
        # Template: centred up to the template shift jitter (4 px) plus interpolation.
        np.testing.assert_allclose(_red_centroid(pair.template), [(TEMPLATE_SIZE - 1) / 2] * 2, atol=6.0)
        label = make_label(pair.target_xy)
        peak = response_positions()[label == 1]
        assert np.linalg.norm(peak - pair.target_xy, axis=1).min() <= 16


def _red_size(crop: np.ndarray) -> np.ndarray:
    """Width and height of the red rectangle in a crop: the columns and rows with a pixel near the target colour."""
    mask = (np.abs(crop.astype(np.int16) - np.array(TARGET_COLOUR, np.int16)) < 60).all(axis=2)
    return np.array([mask.any(axis=0).sum(), mask.any(axis=1).sum()], dtype=np.float64)


def test_a_crop_at_the_matched_scale_shows_the_target_at_its_matched_size(
        synthetic_sequences: list[CachedSequence]) -> None:
    # Without scale jitter and stretch the search crop is cut at the box's own SiamFC side: the target's size in it
    # is matched_size(box), and its soft label is 1 whatever the power.
    cfg = PairConfig(sources={"video": 1.0}, max_gap=5, augment=_geometry_only(search_scale=0.0, stretch=0.0))
    sampler = PairSampler(synthetic_sequences[:2], None, cfg, seed=5)
    for _ in range(10):
        pair = sampler.sample()
        np.testing.assert_allclose(pair.target_wh, pair.matched_wh, rtol=1e-6)
        np.testing.assert_allclose(_red_size(pair.search), pair.matched_wh, atol=2.0)
        assert positive_label_value(pair, 2.0) == pytest.approx(1.0)
    # The 24 x 16 box: SiamFC side sqrt(44 * 36), search crop twice that, 256 px.
    np.testing.assert_allclose(matched_size(np.array([0, 0, 24.0, 16.0])), np.array([24, 16]) * 128 / np.sqrt(44 * 36))


def test_size_labels_score_a_crop_at_the_wrong_scale_lower(synthetic_sequences: list[CachedSequence]) -> None:
    assert size_iou(np.array([10.0, 20.0]), np.array([10.0, 20.0])) == pytest.approx(1.0)
    assert size_iou(np.array([12.5, 25.0]), np.array([10.0, 20.0])) == pytest.approx(1 / 1.5625)
    cfg = PairConfig(sources={"video": 1.0}, max_gap=5, augment=_geometry_only(search_scale=0.25))
    sampler = PairSampler(synthetic_sequences[:2], None, cfg, seed=6)
    pairs = [sampler.sample() for _ in range(20)]
    hard = collate(pairs)["label"]
    soft = collate(pairs, size_iou_power=1.0)["label"]
    # Power 0 (the default) keeps the labels exactly as before; the soft ones differ on the positive cells only.
    np.testing.assert_array_equal(hard, collate(pairs, size_iou_power=0.0)["label"])
    np.testing.assert_array_equal(soft <= 0, hard <= 0)
    values = []
    for pair, label in zip(pairs, soft, strict=True):
        expected = size_iou(pair.target_wh, pair.matched_wh)
        np.testing.assert_allclose(label[label > 0], expected, rtol=1e-6)
        # A target shown larger or smaller than its matched size, as the scale jitter cuts it, has a label below 1.
        ratio = np.sqrt(np.prod(pair.target_wh / pair.matched_wh))
        assert expected <= 1.0 and (abs(np.log(ratio)) < 0.01 or expected < 0.99)
        values.append(expected)
    assert min(values) < 0.8 and max(values) > 0.9  # the jitter's e^+-0.25: IoU down to about 0.6


def _red_axis_angle(crop: np.ndarray) -> float:
    """Orientation of the red rectangle's long axis in degrees, in (-90, 90] (second moments of its pixels)."""
    mask = (np.abs(crop.astype(np.int16) - np.array(TARGET_COLOUR, np.int16)) < 60).all(axis=2)
    ys, xs = np.nonzero(mask)
    cov = np.cov(np.stack([xs, ys]).astype(np.float64))
    return float(np.degrees(0.5 * np.arctan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1])))


def test_wide_rotation_turns_the_search_crop_and_keeps_the_target_at_its_label(
        synthetic_sequences: list[CachedSequence]) -> None:
    # The 24 x 16 red rectangle lies along x in every frame: its axis in the crop is the crop's rotation.
    narrow = PairConfig(sources={"video": 1.0}, max_gap=5, augment=_geometry_only(stretch=0.0))
    wide = PairConfig(sources={"video": 1.0}, max_gap=5,
                      augment=_geometry_only(stretch=0.0, rotation_wide_prob=1.0, rotation_wide_deg=40.0))
    angles = {}
    for name, cfg in (("narrow", narrow), ("wide", wide)):
        sampler = PairSampler(synthetic_sequences[:2], None, cfg, seed=3)
        angles[name] = []
        for _ in range(30):
            pair = sampler.sample()
            np.testing.assert_allclose(_red_centroid(pair.search), pair.target_xy, atol=1.5)
            angles[name].append(_red_axis_angle(pair.search))
    assert max(abs(a) for a in angles["narrow"]) < 4.0
    assert max(abs(a) for a in angles["wide"]) > 25.0 and max(abs(a) for a in angles["wide"]) < 42.0
    assert min(angles["wide"]) < -10.0 < 10.0 < max(angles["wide"])


def test_wide_rotation_off_draws_the_same_pairs_whatever_its_angle(synthetic_sequences: list[CachedSequence]) -> None:
    # Probability 0 draws nothing extra from the generator, so configs written before the option keep their batches.
    pairs = [PairSampler(synthetic_sequences[:2], None, PairConfig(
        sources={"video": 1.0}, max_gap=5, augment=AugmentConfig(rotation_wide_deg=deg)), seed=7).sample()
        for deg in (30.0, 80.0)]
    np.testing.assert_array_equal(pairs[0].search, pairs[1].search)
    np.testing.assert_array_equal(pairs[0].template, pairs[1].template)


def test_turned_validation_pairs_turn_only_the_search_crop(synthetic_sequences: list[CachedSequence]) -> None:
    # `train.validate --turned-pairs DEG`: the same kind of fixed pairs, their search crops turned by up to DEG.
    from siammixer_ros.train.validate import validation_pairs

    upright = validation_pairs(synthetic_sequences[:2], 20, seed=0)
    turned = validation_pairs(synthetic_sequences[:2], 20, seed=0, turn_deg=40.0)
    assert len(upright) == len(turned) == 20
    # (The turn is one more draw, so the two sets are different pairs; each is fixed by its seed.)
    assert all(abs(_red_axis_angle(u.search)) < 2.5 for u in upright if u.target_xy is not None)
    turns = []
    for t in turned:
        if t.target_xy is None:
            continue
        assert abs(_red_axis_angle(t.template)) < 2.5
        np.testing.assert_allclose(_red_centroid(t.search), t.target_xy, atol=1.5)
        turns.append(abs(_red_axis_angle(t.search)))
    assert len(turns) >= 10
    assert max(turns) > 15.0 and max(turns) < 42.0


def test_still_and_paste_pairs_keep_the_target_at_its_label(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    root = tmp_path / "still_images"
    root.mkdir()
    rows = ["file,x,y,w,h"]
    for i in range(4):
        box = (40 + 10 * i, 30, 30, 22)
        cv2.imwrite(str(root / f"img_{i}.png"), _scene(rng, (180, 240), box, STILL_COLOURS[i]))
        rows.append(f"img_{i}.png,{box[0]},{box[1]},{box[2]},{box[3]}")
    (tmp_path / "still_image_boxes.csv").write_text("\n".join(rows) + "\n")
    stills = StillImages.load(tmp_path)
    assert len(stills.paths) == 4 and len(stills.boxes) == 4
    seq_dir = tmp_path / "seq"
    seq_dir.mkdir()
    cv2.imwrite(str(seq_dir / "00000.jpg"), _scene(rng, (100, 100), (10, 10, 10, 10)))
    cv2.imwrite(str(seq_dir / "00001.jpg"), _scene(rng, (100, 100), (12, 10, 10, 10)))
    seq = CachedSequence("s", seq_dir, np.array([[10, 10, 10, 10], [12, 10, 10, 10]], dtype=np.float64))
    # Distractors off: they are random crops of the same red-target scenes and would be red too.
    cfg = PairConfig(sources={"still": 1.0}, augment=_geometry_only(), paste_distractors=(0, 0), listed_box_prob=1.0)
    sampler = PairSampler([seq], stills, cfg, seed=7)
    for kind in ("still", "paste"):
        for _ in range(12):
            pair = sampler.sample(kind)
            assert pair.kind == kind
            # The still copy is rotated/sheared: the centroid of a sheared rectangle is still its centre.
            # A paste background has a target of its own: each image's target has its own colour.
            names = pair.source.split("->")
            if kind == "paste" and names[0] == names[1]:
                continue
            colour = STILL_COLOURS[int(names[0][4])]
            np.testing.assert_allclose(_red_centroid(pair.search, pair.target_xy, colour), pair.target_xy, atol=2.0)


def test_negative_pairs_have_all_negative_labels(synthetic_sequences: list[CachedSequence]) -> None:
    sampler = PairSampler(synthetic_sequences[:2], None, PairConfig(sources={"negative": 1.0}), seed=2)
    pairs = [sampler.sample() for _ in range(6)]
    batch = collate(pairs)
    assert batch["template"].shape == (6, 3, TEMPLATE_SIZE, TEMPLATE_SIZE)
    assert batch["search"].dtype == np.float32 and batch["search"].shape == (6, 3, SEARCH_SIZE, SEARCH_SIZE)
    assert (batch["label"] == 0).all() and not batch["positive"].any()
    assert np.isnan(batch["target_xy"]).all()


def test_pseudo_pairs_come_from_training_frames_and_carry_no_label(
        synthetic_sequences: list[CachedSequence]) -> None:
    cfg = PairConfig(sources={"pseudo": 1.0}, pseudo_max_gap=2)
    sampler = PairSampler(synthetic_sequences[:2], None, cfg, seed=4)
    pairs = [sampler.sample() for _ in range(8)]
    assert {p.kind for p in pairs} == {"pseudo"} and all(p.target_xy is None for p in pairs)
    for p in pairs:
        name, frames, _ = p.source.split(":")
        t_idx, x_idx = (int(v) for v in frames.split("->"))
        assert name in ("train_a", "train_b") and abs(t_idx - x_idx) <= 2
        assert p.template.shape == (TEMPLATE_SIZE, TEMPLATE_SIZE, 3) and p.search.shape == (SEARCH_SIZE, SEARCH_SIZE, 3)
    batch = collate(pairs)
    # Every cell of a pseudo pair is ignored (-1): only the teacher supervises it.
    assert (batch["label"][:8] == -1).all() and not batch["positive"].any()


def test_cache_decodes_a_video_once(tmp_path: Path) -> None:
    seq_dir = tmp_path / "data" / "sequences" / "clip"
    seq_dir.mkdir(parents=True)
    writer = cv2.VideoWriter(str(seq_dir / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write mp4v here")
    for i in range(4):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    (seq_dir / "groundtruth.txt").write_text("1,2,10,8\nNaN,NaN,NaN,NaN\n3,2,10,8\n4,2,10,8\n")
    seq = cache_sequence(seq_dir, tmp_path / "cache")
    assert len(seq) == 4 and seq.frame(3).shape == (48, 64, 3)
    assert seq.valid_indices().tolist() == [0, 2, 3]
    stamp = (seq.directory / "done.json").stat().st_mtime_ns
    again = cache_sequence(seq_dir, tmp_path / "cache")
    assert (again.directory / "done.json").stat().st_mtime_ns == stamp  # skipped: already cached
    assert np.isnan(read_groundtruth(seq_dir / "groundtruth.txt")[1]).all()


def test_scale_ranking_crops_show_the_same_frame_larger_and_smaller_about_one_centre(
        synthetic_sequences: list[CachedSequence]) -> None:
    cfg = PairConfig(sources={"video": 1.0}, max_gap=5, scale_rank_prob=1.0, scale_rank_log_range=(0.1, 0.2),
                     augment=_geometry_only(search_scale=0.25, stretch=0.1))
    sampler = PairSampler(synthetic_sequences[:2], None, cfg, seed=7)
    pairs = [sampler.sample() for _ in range(10)]
    centre = np.array([(SEARCH_SIZE - 1) / 2] * 2)
    for pair in pairs:
        assert pair.scale_crops.shape == (2, SEARCH_SIZE, SEARCH_SIZE, 3)
        # The pair's own crop is cut at the target's scale whatever the jitter and stretch: its matched size.
        np.testing.assert_allclose(_red_size(pair.search), pair.matched_wh, atol=2.0)
        np.testing.assert_allclose(_red_centroid(pair.search), pair.target_xy, atol=1.5)
        larger, smaller = pair.scale_crops
        for crop, bounds in ((larger, (np.exp(-0.2), np.exp(-0.1))), (smaller, (np.exp(0.1), np.exp(0.2)))):
            # A larger crop shows the target smaller by its factor, and nearer the shared centre by the same factor.
            ratio = np.sqrt(np.prod(_red_size(crop) / _red_size(pair.search)))
            assert bounds[0] - 0.04 <= ratio <= bounds[1] + 0.04, ratio
            np.testing.assert_allclose(_red_centroid(crop) - centre, (pair.target_xy - centre) * ratio, atol=2.5)
    batch = collate(pairs + [PairSampler(synthetic_sequences[:2], None, PairConfig(sources={"negative": 1.0}),
                                         seed=1).sample()])
    assert batch["scale_search"].shape == (20, 3, SEARCH_SIZE, SEARCH_SIZE)
    assert batch["scale_owner"].tolist() == list(range(10))
    # Off (the default), no pair has them and the batch has no such keys.
    plain = PairSampler(synthetic_sequences[:2], None, PairConfig(sources={"video": 1.0}, max_gap=5), seed=7)
    assert "scale_search" not in collate([plain.sample() for _ in range(4)])


def test_scale_ranking_crops_share_their_photometric_changes(synthetic_sequences: list[CachedSequence]) -> None:
    # Full photometric augmentation: the crops of one pair differ in scale only, so their central pixels (the
    # background near the shared centre, magnified a little differently) have nearly the same brightness.
    cfg = PairConfig(sources={"video": 1.0}, max_gap=5, scale_rank_prob=1.0, scale_rank_log_range=(0.05, 0.06),
                     augment=AugmentConfig(noise=0.0, blur=0.0, motion_blur=0.0))
    sampler = PairSampler(synthetic_sequences[:2], None, cfg, seed=8)
    gaps, between = [], []
    pairs = [sampler.sample() for _ in range(12)]
    for pair in pairs:
        crops = np.concatenate([pair.search[None], pair.scale_crops]).astype(np.float64)
        means = crops.reshape(3, -1, 3).mean(axis=1)
        gaps.append(np.abs(means - means[0]).max())
    for a, b in zip(pairs, pairs[1:], strict=False):
        between.append(np.abs(a.search.reshape(-1, 3).mean(0) - b.search.reshape(-1, 3).mean(0)).max())
    assert max(gaps) < 0.35 * np.median(between), (gaps, between)
