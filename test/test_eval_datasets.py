"""Dataset readers on tiny synthetic folders in every supported layout, plus the ../shared split."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from siammixer_ros.eval import datasets
from siammixer_ros.eval.datasets import DatasetError, detect_format, load_dataset

SHARED_SEQUENCES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sequences"


def _write_images(folder: Path, count: int, name: str = "{:04d}.jpg") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = np.full((24, 32, 3), 10 * index, np.uint8)
        cv2.imwrite(str(folder / name.format(index + 1)), image)


def write_video_sequence(folder: Path, boxes: list[str], meta: dict | None = None, size=(48, 64)) -> None:
    """A tiny mp4 whose frame i has brightness 40*i, with groundtruth.txt and meta.json."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(folder / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (size[1], size[0]))
    assert writer.isOpened()
    for index in range(len(boxes)):
        writer.write(np.full((size[0], size[1], 3), 40 * index, np.uint8))
    writer.release()
    (folder / "groundtruth.txt").write_text("\n".join(boxes) + "\n")
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("separator", [",", "\t", " "])
def test_otb_reader_accepts_comma_tab_space(tmp_path, separator):
    _write_images(tmp_path / "Car" / "img", 3)
    rows = [[1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6]]
    (tmp_path / "Car" / "groundtruth_rect.txt").write_text(
        "\n".join(separator.join(str(v) for v in row) for row in rows))
    assert detect_format(tmp_path) == "otb"
    (sequence,) = load_dataset(tmp_path)
    assert sequence.name == "Car" and len(sequence) == 3
    np.testing.assert_array_equal(sequence.boxes, rows)
    assert sequence.frames[2].shape == (24, 32, 3)


def test_otb_multi_target_and_length_mismatch(tmp_path):
    _write_images(tmp_path / "Jogging" / "img", 2)
    (tmp_path / "Jogging" / "groundtruth_rect.1.txt").write_text("1,1,5,5\n2,2,5,5\n")
    (tmp_path / "Jogging" / "groundtruth_rect.2.txt").write_text("9,9,5,5\n8,8,5,5\n")
    assert [s.name for s in load_dataset(tmp_path)] == ["Jogging.1", "Jogging.2"]
    (tmp_path / "Jogging" / "groundtruth_rect.2.txt").write_text("9,9,5,5\n")
    with pytest.raises(DatasetError, match="2 images .* 1 boxes"):
        load_dataset(tmp_path)


def test_uav123_reader_keeps_nan_rows_absent(tmp_path):
    _write_images(tmp_path / "data_seq" / "UAV123" / "car1", 3, "{:06d}.jpg")
    (tmp_path / "anno" / "UAV123").mkdir(parents=True)
    (tmp_path / "anno" / "UAV123" / "car1.txt").write_text("1,2,3,4\nNaN,NaN,NaN,NaN\n3,4,5,6\n")
    assert detect_format(tmp_path) == "uav123"
    (sequence,) = load_dataset(tmp_path)
    assert np.isnan(sequence.boxes[1]).all()
    assert sequence.present.tolist() == [True, False, True]
    assert sequence.meta["aerial"] is True


def test_got10k_reader_applies_absence_label(tmp_path):
    folder = tmp_path / "GOT-10k_Val_000001"
    _write_images(folder, 3, "{:08d}.jpg")
    (folder / "groundtruth.txt").write_text("1,2,3,4\n2,3,4,5\n3,4,5,6\n")
    (folder / "absence.label").write_text("0\n1\n0\n")
    assert detect_format(tmp_path) == "got10k"
    (sequence,) = load_dataset(tmp_path)
    assert sequence.present.tolist() == [True, False, True]
    np.testing.assert_array_equal(sequence.boxes[2], [3, 4, 5, 6])


def test_vot_polygons_become_enclosing_boxes(tmp_path):
    _write_images(tmp_path / "ball" / "color", 2, "{:08d}.jpg")
    (tmp_path / "ball" / "groundtruth.txt").write_text(
        "10,20,30,20,30,40,10,40\n"       # axis-aligned square 10..30 x 20..40
        "5.5,10,15,2,24.5,10,15,18\n")     # rotated diamond: x 5.5..24.5, y 2..18
    assert detect_format(tmp_path) == "vot"
    (sequence,) = load_dataset(tmp_path)
    np.testing.assert_allclose(sequence.boxes, [[10, 20, 20, 20], [5.5, 2, 19, 16]])


def test_video_sequence_reader_decodes_lazily_with_meta(tmp_path):
    boxes = ["NaN,NaN,NaN,NaN", "4,5,10,12", "5,6,10,12", "6,7,10,12"]
    write_video_sequence(tmp_path / "clip", boxes, {"name": "clip", "aerial": True, "scale": 0.5})
    assert detect_format(tmp_path) == "video"
    (sequence,) = load_dataset(tmp_path)
    assert len(sequence) == 4 and sequence.meta["aerial"] is True
    assert sequence.first_annotated == 1
    frames = list(sequence.frames)
    assert len(frames) == 4 and frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    # brightness encodes the frame index; lossy codec -> tolerance; random access agrees with iteration
    assert abs(float(sequence.frames[3].mean()) - 120) < 10
    assert abs(float(sequence.frames[1].mean()) - 40) < 10
    # a single sequence folder loads too
    assert load_dataset(tmp_path / "clip")[0].name == "clip"


def test_video_shorter_than_annotation_is_a_clear_error(tmp_path):
    write_video_sequence(tmp_path / "short", ["1,1,5,5"] * 3)
    (tmp_path / "short" / "groundtruth.txt").write_text("1,1,5,5\n" * 5)
    (sequence,) = load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="frame 3 of .*video shorter"):
        list(sequence.frames)


def test_bad_inputs_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nope")
    folder = tmp_path / "bad" / "seq"
    _write_images(folder / "color", 1)
    (folder / "groundtruth.txt").write_text("1,2,three,4,5,6,7,8\n")
    with pytest.raises(DatasetError, match="groundtruth.txt:1: not a list of numbers"):
        load_dataset(tmp_path / "bad")
    (folder / "groundtruth.txt").write_text("1,2,3,4,5,6,7,8\n")
    (folder / "color" / "0001.jpg").write_bytes(b"not a jpeg")
    (sequence,) = load_dataset(tmp_path / "bad")
    with pytest.raises(DatasetError, match="0001.jpg"):
        sequence.frames[0]


def test_split_keeps_readme_validation_and_video_groups():
    names = list(datasets.SHARED_VAL_SEQUENCES) + ["group1_1", "group1_3", "truck4_1", "truck4_2", "boat1"]
    val = datasets.split_names(names, "val")
    train = datasets.split_names(names, "train")
    assert sorted(val) == sorted(datasets.SHARED_VAL_SEQUENCES) and len(val) == 16
    assert not set(val) & set(train) and set(val) | set(train) == set(names)
    for group in datasets.VIDEO_GROUPS:
        assert len({name in val for name in group}) == 1
    with pytest.raises(ValueError, match="unknown split"):
        datasets.split_names(names, "test")


def test_selection_split_is_held_back_from_training_and_disjoint_from_validation():
    names = list(datasets.SHARED_VAL_SEQUENCES) + list(datasets.SELECTION_SEQUENCES) + ["boat1", "truck4_1", "truck4_2"]
    selection = datasets.split_names(names, "selection")
    fit = datasets.split_names(names, "fit")
    assert sorted(selection) == sorted(datasets.SELECTION_SEQUENCES)
    assert sorted(fit) == ["boat1", "truck4_1", "truck4_2"]
    assert sorted(datasets.split_names(names, "train")) == sorted(selection + fit)
    assert not set(selection) & set(datasets.SHARED_VAL_SEQUENCES)
    with pytest.raises(DatasetError, match="selection sequences missing"):
        datasets.split_names(["boat1"], "selection")


@pytest.mark.skipif(not SHARED_SEQUENCES.is_dir(), reason="../shared/data/sequences not present")
def test_shared_validation_split_loads():
    sequences = load_dataset(SHARED_SEQUENCES, split="val")
    assert sorted(s.name for s in sequences) == sorted(datasets.SHARED_VAL_SEQUENCES)
    aerial = {s.name for s in sequences if s.meta.get("aerial")}
    assert aerial == {"building4", "wakeboard7", "BikerDrone"}
    # The training side is everything else; its size follows ../shared (24 sequences once, 44 since it grew).
    train = {s.name for s in load_dataset(SHARED_SEQUENCES, split="train")}
    everything = {s.name for s in load_dataset(SHARED_SEQUENCES)}
    assert len(train) >= 24 and train == everything - set(datasets.SHARED_VAL_SEQUENCES)
