"""Pair sources beyond ground-truth video: DAVIS cut-out distractors, teacher pseudo-tracks, student hard negatives."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from siammixer_ros.train.cache import CachedSequence
from siammixer_ros.train.data import SEARCH_SIZE, TEMPLATE_SIZE, AugmentConfig, PairConfig, PairSampler, collate
from siammixer_ros.train.hard_negatives import FORMAT as HARD_FORMAT
from siammixer_ros.train.hard_negatives import mine_sequence
from siammixer_ros.train.instances import InstancePool
from siammixer_ros.train.pseudo_tracks import FORMAT as TRACKS_FORMAT
from siammixer_ros.train.pseudo_tracks import MiningParams, camera_motion, check_track, first_cut, write_tracks

RED, GREEN, BLUE = (0, 0, 255), (0, 255, 0), (255, 0, 0)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    # No channel below 40 or above 120: pure colours stand out.
    return cv2.resize(rng.integers(40, 120, (h // 8, w // 8, 3), dtype=np.uint8), (w, h))


def _geometry_only() -> AugmentConfig:
    return AugmentConfig(brightness=(1.0, 1.0), blur=0.0, motion_blur=0.0, grayscale=0.0, color=0.0, noise=0.0)


def _colour_mask(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return (np.abs(image.astype(np.int16) - np.array(colour, np.int16)) < 60).all(axis=2)


def _sequence(root: Path, name: str, frames: list[np.ndarray], boxes: list[tuple[float, ...]]) -> CachedSequence:
    d = root / "frames" / name
    d.mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(d / f"{i:05d}.png"), frame)
    seq = CachedSequence(name, d, np.array(boxes, dtype=np.float64))
    seq.frame_path = lambda i, d=d: d / f"{i:05d}.png"  # type: ignore[method-assign]
    return seq


def _red_target_sequence(root: Path, name: str = "train_a", n: int = 6) -> CachedSequence:
    rng = np.random.default_rng(0)
    frames, boxes = [], []
    for i in range(n):
        image = _background(rng, 200, 260)
        box = (60 + 7 * i, 50 + 3 * i, 24, 16)
        image[box[1]:box[1] + box[3], box[0]:box[0] + box[2]] = RED
        frames.append(image)
        boxes.append(box)
    return _sequence(root, name, frames, boxes)


def _davis_sequence(root: Path, data_dir: Path, name: str) -> CachedSequence:
    """A masked 'DAVIS' sequence whose object is a green ellipse; masks.npz as in ../shared/data."""
    rng = np.random.default_rng(1)
    frames, boxes, masks = [], [], []
    for i in range(6):
        image = _background(rng, 120, 160)
        mask = np.zeros((120, 160), np.uint8)
        cv2.ellipse(mask, (70 + 2 * i, 60), (22, 14), 0, 0, 360, 1, -1)
        image[mask == 1] = GREEN
        ys, xs = np.nonzero(mask)
        frames.append(image)
        masks.append(mask)
        boxes.append((xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))
    seq_dir = data_dir / "sequences" / name
    seq_dir.mkdir(parents=True)
    np.savez_compressed(seq_dir / "masks.npz", masks=np.stack(masks))
    return _sequence(root, name, frames, boxes)


def test_davis_cut_outs_come_from_other_sequences_and_leave_the_target_and_its_label(tmp_path: Path) -> None:
    data = tmp_path / "data"
    target_seq = _red_target_sequence(tmp_path)
    davis = _davis_sequence(tmp_path, data, "davis_cows")
    cfg = PairConfig(sources={"video": 1.0}, max_gap=5, augment=_geometry_only(), instance_distractor_prob=1.0,
                     instance_distractors=(1, 1), instance_frame_step=1)
    sampler = PairSampler([target_seq, davis], None, cfg, seed=0, data_dir=data)
    pasted = 0
    for k in range(20):
        frame, box = target_seq.frame(k % 6), target_seq.boxes[k % 6]
        # The same random stream with and without distractors: the crop geometry is drawn before the paste.
        sampler.cfg.instance_distractor_prob = 0.0
        sampler.rng = np.random.default_rng(k)
        plain, xy0, wh0 = sampler._search(frame, box, False, False, distract_from=target_seq.name)
        sampler.cfg.instance_distractor_prob = 1.0
        sampler.rng = np.random.default_rng(k)
        search, xy, wh = sampler._search(frame, box, False, False, distract_from=target_seq.name)
        np.testing.assert_array_equal(xy, xy0)  # labels unchanged
        np.testing.assert_array_equal(wh, wh0)
        cx, cy = int(round(xy[0])), int(round(xy[1]))
        assert _colour_mask(search[cy - 1:cy + 2, cx - 1:cx + 2], RED).all(), "the target's centre got covered"
        changed = (search != plain).any(axis=2)
        if changed.sum() < 20:
            continue  # no placement kept the centre clear: nothing pasted
        pasted += 1
        # What changed is the other sequence's (green) object, blended at its edges.
        assert _colour_mask(search, GREEN)[changed].mean() > 0.5
        assert not _colour_mask(plain, GREEN).any()
    assert pasted >= 15
    # Through sample(): the source names the cut-out; a sequence never receives its own object.
    for _ in range(30):
        pair = sampler.sample()
        name = pair.source.split(":")[0]
        if name == "davis_cows":
            assert "+davis_cows" not in pair.source
        else:
            assert "+davis_cows:" in pair.source or not _colour_mask(pair.search, GREEN).any()


def test_instance_pool_refuses_a_validation_sequence(tmp_path: Path) -> None:
    data = tmp_path / "data"
    davis = _davis_sequence(tmp_path, data, "davis_camel")  # validation split (shared README)
    with pytest.raises(ValueError, match="validation"):
        InstancePool.build([davis], data)


def _write_clip(path: Path, boxes: list[tuple[int, int, int, int]]) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (240, 180))
    if not writer.isOpened():
        return False
    rng = np.random.default_rng(2)
    background = _background(rng, 180, 240)
    for x, y, w, h in boxes:
        image = background.copy()
        image[y:y + h, x:x + w] = RED
        writer.write(image)
    writer.release()
    return True


def test_pseudo_video_pairs_use_the_tracks_boxes_as_labels(tmp_path: Path) -> None:
    data = tmp_path / "data"
    truth = [(40 + 6 * i, 60 + 2 * i, 30, 22) for i in range(12)]
    if not _write_clip(data / "unlabeled_videos" / "clip.mp4", truth):
        pytest.skip("OpenCV cannot write mp4v here")
    tracks_file = tmp_path / "tracks.json"
    # A track over frames 3..10 of the clip.
    write_tracks(tracks_file, {"clips": {"clip": {"frames": 12}}},
                 [{"clip": "clip", "start": 3, "boxes": [list(b) for b in truth[3:11]]}])
    assert json.loads(tracks_file.read_text())["format"] == TRACKS_FORMAT
    cfg = PairConfig(sources={"pseudo_video": 1.0}, augment=_geometry_only(), pseudo_tracks_file=str(tracks_file))
    sampler = PairSampler([_red_target_sequence(tmp_path)], None, cfg, seed=5, data_dir=data,
                          cache_dir=tmp_path / "cache")
    assert (tmp_path / "cache" / "unlabeled" / "clip" / "00003.jpg").is_file()
    assert not (tmp_path / "cache" / "unlabeled" / "clip" / "00000.jpg").exists()  # only the track's frames
    pairs = [sampler.sample() for _ in range(10)]
    for pair in pairs:
        assert pair.kind == "pseudo_video" and pair.source.startswith("clip#0:")
        t_idx, x_idx = (int(v) for v in pair.source.split(":")[1].split("->"))
        assert 3 <= t_idx <= 10 and 3 <= x_idx <= 10
        ys, xs = np.nonzero(_colour_mask(pair.search, RED))
        np.testing.assert_allclose([xs.mean(), ys.mean()], pair.target_xy, atol=2.0)  # JPEG + mp4v edges
    batch = collate(pairs)
    assert batch["positive"].all() and (batch["label"] == 1).any(axis=(1, 2)).all()


def test_hard_negative_pairs_show_the_wrong_object_and_keep_ground_truth_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frames, boxes = [], []
    for i in range(8):
        image = _background(rng, 240, 320)
        box = (60 + 2 * i, 100, 24, 18)
        image[box[1]:box[1] + box[3], box[0]:box[0] + box[2]] = RED
        image[100:118, 110 + 2 * i:134 + 2 * i] = BLUE  # the object the student jumped to
        frames.append(image)
        boxes.append(box)
    seq = _sequence(tmp_path, "train_h", frames, boxes)
    hard_file = tmp_path / "hard.json"
    hard_file.write_text(json.dumps({"format": HARD_FORMAT, "frames": [
        {"sequence": "train_h", "frame": 6, "wrong_box": [122, 100, 24, 18], "score": 0.9},
        {"sequence": "validation_seq", "frame": 1, "wrong_box": [0, 0, 9, 9], "score": 0.9}]}))
    cfg = PairConfig(sources={"hard_negative": 1.0}, augment=_geometry_only(), hard_negatives_file=str(hard_file))
    sampler = PairSampler([seq], None, cfg, seed=1, data_dir=tmp_path)
    assert sampler.hard_names == ["train_h"]  # a sequence outside the sampler is never used
    kinds = {"positive": 0, "negative": 0}
    for _ in range(20):
        pair = sampler.sample()
        assert pair.kind == "hard_negative" and pair.source.startswith("train_h:")
        t_idx = int(pair.source.split(":")[1].split("->")[0])
        assert t_idx != 6  # template from another ground-truth frame
        assert _colour_mask(pair.template, RED)[TEMPLATE_SIZE // 2 - 3:TEMPLATE_SIZE // 2 + 4,
                                                TEMPLATE_SIZE // 2 - 3:TEMPLATE_SIZE // 2 + 4].all()
        assert _colour_mask(pair.search, BLUE).sum() > 50  # the wrong object is in the search crop
        label = collate([pair])["label"][0]
        if pair.target_xy is None:
            kinds["negative"] += 1
            assert (label == 0).all()
        else:
            kinds["positive"] += 1
            ys, xs = np.nonzero(_colour_mask(pair.search, RED))
            np.testing.assert_allclose([xs.mean(), ys.mean()], pair.target_xy, atol=1.5)
            offset = np.abs(pair.target_xy - (SEARCH_SIZE - 1) / 2)
            assert offset.max() <= 80 and (label == 1).sum() >= 1
    assert kinds["positive"] > 0


def test_forward_backward_check_keeps_consistent_moving_tracks_only() -> None:
    params = MiningParams()
    forward = np.array([[10.0 + 3 * i, 20.0, 20.0, 20.0] for i in range(30)])
    scores = np.full(30, 0.95)
    ok, stats = check_track(forward, scores, forward + [1.0, 1.0, 0.0, 0.0], params)
    assert ok and stats["fb_iou"] > 0.8
    drifted = forward.copy()
    drifted[:10, 0] += 25.0  # the backward track ends beside the start box
    assert not check_track(forward, scores, drifted, params)[0]
    assert not check_track(forward, np.full(30, 0.2), forward, params)[0]  # low forward scores
    static = np.tile(forward[:1], (30, 1))
    assert not check_track(static, scores, static, params)[0]  # background that never moves


class _ScriptedTracker:
    """Reports a scripted (box, score) per update."""

    def __init__(self, script: list[tuple[tuple[float, ...], float]]) -> None:
        self.script, self.inits = script, []

    def init(self, image: np.ndarray, box: tuple[float, ...]) -> None:
        self.inits.append(box)

    def update(self, image: np.ndarray) -> SimpleNamespace:
        box, score = self.script.pop(0)
        return SimpleNamespace(box=box, score=score)


def test_mining_records_confident_jumps_and_reinitialises() -> None:
    gt = np.array([[10.0, 10.0, 10.0, 10.0]] * 10)
    gt[4] = np.nan  # absent: never scored
    right, wrong = (10.0, 10.0, 10.0, 10.0), (50.0, 50.0, 10.0, 10.0)
    script = [(right, 0.9), (wrong, 0.9), (wrong, 0.3), (wrong, 0.95), (right, 0.8), (wrong, 0.9), (wrong, 0.9),
              (right, 0.9), (right, 0.9)]
    tracker = _ScriptedTracker(script)
    records, jumps = mine_sequence(lambda: tracker, [np.zeros((4, 4, 3), np.uint8)] * 10, gt, min_score=0.6,
                                   per_jump=2, reset_after=10)
    # Frame 2: a confident jump; 3: wrong but unconfident; 4: absent (never scored); 6-7: a second jump that
    # reaches per_jump = 2, so the tracker is re-initialised on the ground truth of frame 8.
    assert [r["frame"] for r in records] == [2, 6, 7] and jumps == 2
    assert records[0]["wrong_box"] == list(wrong) and records[0]["score"] == 0.9
    assert tracker.inits == [tuple(gt[0]), tuple(gt[8])]


def test_a_box_carried_along_by_a_camera_pan_is_not_a_moving_object() -> None:
    rng = np.random.default_rng(4)
    scene = cv2.GaussianBlur(rng.integers(0, 255, (200, 400, 3), dtype=np.uint8), (0, 0), 2)
    frames = [np.ascontiguousarray(scene[:, 4 * i:4 * i + 240]) for i in range(20)]  # the camera pans right
    camera = camera_motion(frames)
    np.testing.assert_allclose(camera[-1], [-76, 0], atol=8)  # content moves left 4 px a frame
    patch = np.array([[100.0 - 4 * i, 80.0, 20.0, 20.0] for i in range(20)])  # background, moving with it
    params = MiningParams()
    scores = np.full(20, 0.95)
    assert check_track(patch, scores, patch, params)[0]  # moves in the image ...
    assert not check_track(patch, scores, patch, params, camera)[0]  # ... but not in the scene


def test_a_segment_ends_at_a_scene_cut() -> None:
    rng = np.random.default_rng(6)
    one, other = (cv2.GaussianBlur(rng.integers(0, 255, (90, 160, 3), dtype=np.uint8), (0, 0), 4) for _ in range(2))
    frames = [np.roll(one, i, axis=1) for i in range(7)] + [np.roll(other, i, axis=1) for i in range(5)]
    assert first_cut(frames) == 7
    assert first_cut(frames[:7]) == 7  # a pan is no cut
