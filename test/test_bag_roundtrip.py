"""Bag round trip: a sequence written with siammixer-make-bag reads back with the same frames, boxes and stamps."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from siammixer_ros.bag import make_bag, reader
from siammixer_ros.bag.msgtypes import UPSTREAM_RIHS01, VISION_MSGS_DEFINITIONS, check_vision_msgs_hashes
from siammixer_ros.eval.datasets import load_dataset

REPO = Path(__file__).resolve().parents[1]
FRAMES, WIDTH, HEIGHT, FPS = 12, 96, 64, 10.0


def _boxes() -> np.ndarray:
    boxes = np.array([[10 + 3 * i, 12 + i, 20.5, 16.25] for i in range(FRAMES)], dtype=np.float64)
    boxes[[0, 5, 6]] = np.nan  # absent at the start and in the middle: no ground-truth message there
    return boxes


@pytest.fixture
def sequence_dir(tmp_path: Path) -> Path:
    """A sequence in the video.mp4 + groundtruth.txt + meta.json layout of ../shared/data/sequences."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    writer = cv2.VideoWriter(str(folder / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    rng = np.random.default_rng(0)
    for _ in range(FRAMES):
        # Smooth random texture (a coarse random image upscaled): camera-like content for JPEG.
        coarse = rng.integers(0, 256, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8)
        writer.write(cv2.resize(coarse, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC))
    writer.release()
    (folder / "groundtruth.txt").write_text("".join(",".join(f"{v}" for v in row) + "\n" for row in _boxes()))
    (folder / "meta.json").write_text(json.dumps({"name": "tiny", "fps": FPS, "frames": FRAMES}))
    return folder


def _direct_frames(folder: Path) -> list[np.ndarray]:
    return list(load_dataset(folder)[0].frames)


def test_raw_round_trip_gives_identical_frames_boxes_and_stamps(sequence_dir: Path, tmp_path: Path) -> None:
    sequence = make_bag.load_sequence(sequence_dir)
    summary = make_bag.write_bag(sequence, tmp_path / "bag", start_ns=5 * 10**9)
    assert summary.frames == FRAMES and summary.annotated_frames == FRAMES - 3

    back = reader.load_bag_sequence(tmp_path / "bag")
    assert back.name == "tiny" and back.meta["fps"] == FPS
    assert back.meta["stamps"] == [5 * 10**9 + i * 100_000_000 for i in range(FRAMES)]
    direct = _direct_frames(sequence_dir)
    got = list(back.frames)
    assert len(got) == FRAMES
    for frame, expected in zip(got, direct, strict=True):
        assert frame.dtype == np.uint8 and np.array_equal(frame, expected)
    np.testing.assert_allclose(back.boxes, _boxes(), equal_nan=True)
    # Random access re-reads the bag and still returns the right frame.
    assert np.array_equal(back.frames[7], direct[7]) and np.array_equal(back.frames[2], direct[2])

    # Ground truth: one Detection2D per annotated frame, carrying that image's stamp, center-based box.
    detections = reader.read_detections(tmp_path / "bag", "/ground_truth")
    assert [d.stamp_ns for d in detections] == [back.meta["stamps"][i] for i in range(FRAMES) if i not in (0, 5, 6)]
    assert all(d.label == "target" and d.track_id == "tiny" and d.score == 1.0 for d in detections)


def test_metadata_is_what_ros2_bag_reads(sequence_dir: Path, tmp_path: Path) -> None:
    make_bag.write_bag(make_bag.load_sequence(sequence_dir), tmp_path / "bag", camera_info=True)
    info = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 9 and info["storage_identifier"] == "sqlite3"
    assert (tmp_path / "bag" / info["relative_file_paths"][0]).is_file()
    topics = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    assert set(topics) == {"/camera/image_raw", "/camera/camera_info", "/ground_truth"}
    gt = topics["/ground_truth"]
    assert gt["topic_metadata"]["type"] == "vision_msgs/msg/Detection2D"
    # The hash a real vision_msgs build computes: `ros2 bag play` + real subscribers accept the topic.
    assert gt["topic_metadata"]["type_description_hash"] == UPSTREAM_RIHS01["Detection2D"]
    assert gt["message_count"] == FRAMES - 3
    assert topics["/camera/camera_info"]["message_count"] == FRAMES
    assert topics["/camera/image_raw"]["topic_metadata"]["offered_qos_profiles"][0]["reliability"] == "reliable"
    assert info["custom_data"]["siammixer.fps"] == "10.0"


def test_compressed_mcap_round_trip_within_jpeg_tolerance(sequence_dir: Path, tmp_path: Path) -> None:
    sequence = make_bag.load_sequence(sequence_dir)
    summary = make_bag.write_bag(sequence, tmp_path / "bag", storage="mcap", compressed=True, jpeg_quality=95)
    assert summary.image_topic == "/camera/image_raw/compressed"
    assert any(p.suffix == ".mcap" for p in (tmp_path / "bag").iterdir())
    back = reader.load_bag_sequence(tmp_path / "bag")
    direct = _direct_frames(sequence_dir)
    for index, frame in enumerate(back.frames):
        errors = [np.abs(frame.astype(int) - other.astype(int)).mean() for other in direct]
        # JPEG (4:2:0 chroma on saturated random colours) stays within a few grey levels of its own frame,
        # far from any other frame: same frames, same order.
        assert frame.shape == direct[index].shape and errors[index] < 10.0
        assert int(np.argmin(errors)) == index
    np.testing.assert_allclose(back.boxes, _boxes(), equal_nan=True)


def test_vision_msgs_definitions_match_upstream_and_the_project_interfaces() -> None:
    assert check_vision_msgs_hashes() == {}
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    folder = REPO / "interfaces" / "vision_msgs_fallback" / "vision_msgs" / "msg"
    types = {}
    for name in VISION_MSGS_DEFINITIONS:
        types.update(get_types_from_msg((folder / f"{name}.msg").read_text(), f"vision_msgs/msg/{name}"))
    store.register(types)
    for name, upstream in UPSTREAM_RIHS01.items():
        assert store.hash_rihs01(f"vision_msgs/msg/{name}") == upstream


def test_bad_inputs_give_clear_errors(sequence_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sequence = make_bag.load_sequence(sequence_dir)
    make_bag.write_bag(sequence, tmp_path / "bag")
    with pytest.raises(make_bag.BagWriteError, match="exists already"):
        make_bag.write_bag(sequence, tmp_path / "bag")
    with pytest.raises(make_bag.BagWriteError, match="--groundtruth"):
        make_bag.load_sequence(sequence_dir / "video.mp4")
    with pytest.raises(make_bag.BagWriteError, match="frame rate"):
        make_bag.write_bag(sequence, tmp_path / "bag2", fps=0.0)
    assert not (tmp_path / "bag2").exists()

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "metadata.yaml").write_text("rosbag2_bagfile_information: [not, a, mapping\n")
    with pytest.raises(reader.BagError, match="cannot read bag"):
        reader.load_bag_sequence(corrupt)
    with pytest.raises(reader.BagError, match="no metadata.yaml"):
        reader.load_bag_sequence(tmp_path)
    with pytest.raises(reader.BagError, match="no topic /nope"):
        reader.load_bag_sequence(tmp_path / "bag", image_topic="/nope")

    assert make_bag.main([str(sequence_dir), str(tmp_path / "bag")]) == 2
    assert "exists already" in capsys.readouterr().err
