"""Peer trackers on the first 30 frames of one real sequence (needs ../shared; skipped without it)."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from siammixer_ros.eval.datasets import load_dataset
from siammixer_ros.eval.metrics import iou
from siammixer_ros.eval.trackers import TrackerConfig, create_tracker, unavailable_reason

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PEERS = SHARED / "peers"
FRAMES = 30

pytestmark = pytest.mark.skipif(not (SHARED / "data" / "sequences" / "Skiing").is_dir() or not PEERS.is_dir(),
                                reason="../shared/data/sequences/Skiing or ../shared/peers not present")


@pytest.fixture(scope="module")
def skiing():
    sequence = load_dataset(SHARED / "data" / "sequences", names=["Skiing"])[0]
    frames = []
    for index, frame in enumerate(sequence.frames):
        if index >= FRAMES:
            break
        frames.append(frame)
    return frames, sequence.boxes[:FRAMES]


def track(tracker, frames, first_box):
    tracker.init(frames[0], tuple(first_box))
    boxes = [np.asarray(first_box, float)]
    for frame in frames[1:]:
        box, score = tracker.update(frame)
        assert np.isfinite(score)
        boxes.append(np.asarray(box, float))
    return np.array(boxes)


# CSRT loses the skier after ~12 frames (so does the full run), so it is checked on the first 10 updates.
@pytest.mark.parametrize("name,min_iou,checked", [("nanotrack_v2", 0.5, FRAMES), ("nanotrack_v3", 0.5, FRAMES),
                                                  ("lighttrack", 0.4, FRAMES), ("csrt", 0.4, 11)])
def test_peer_tracks_the_skier(skiing, name, min_iou, checked):
    config = TrackerConfig(peers_dir=PEERS, threads=1)
    reason = unavailable_reason(name, config)
    if reason:
        pytest.skip(reason)
    frames, groundtruth = skiing
    boxes = track(create_tracker(name, config), frames, groundtruth[0])
    assert np.mean(iou(boxes[1:checked], groundtruth[1:checked])) > min_iou


def test_nanotrack_port_reproduces_opencv_tracker_nano(skiing):
    """With OpenCV's settings and quirks, our onnxruntime port gives OpenCV's integer boxes exactly."""
    from siammixer_ros.eval.peers.nanotrack import OPENCV_PARAMS, NanoTrack, model_paths
    from siammixer_ros.eval.peers.opencv_trackers import OpenCVNano

    if not hasattr(cv2, "TrackerNano_create"):
        pytest.skip("cv2 has no TrackerNano")
    search, _, head = model_paths(PEERS, "v2")
    frames, groundtruth = skiing
    ours = track(NanoTrack(PEERS, "v2", params=OPENCV_PARAMS), frames, groundtruth[0])
    opencv = track(OpenCVNano(search, head), frames, groundtruth[0])
    np.testing.assert_array_equal(np.trunc(ours[1:]), opencv[1:])


def test_missing_peer_files_are_reported(tmp_path):
    reason = unavailable_reason("nanotrack_v2", TrackerConfig(peers_dir=tmp_path))
    assert reason and "nanotrack_backbone_sim.onnx" in reason
    with pytest.raises(RuntimeError, match="unavailable"):
        create_tracker("nanotrack_v3", TrackerConfig(peers_dir=tmp_path))


def test_bad_init_box_is_rejected(skiing):
    config = TrackerConfig(peers_dir=PEERS)
    tracker = create_tracker("nanotrack_v2", config)
    frame = skiing[0][0]
    with pytest.raises(ValueError, match="zero or negative size"):
        tracker.init(frame, (10, 10, 0, 5))
    with pytest.raises(ValueError, match="outside"):
        tracker.init(frame, (5000, 10, 10, 5))
    with pytest.raises(ValueError, match="finite"):
        tracker.init(frame, (np.nan, 10, 10, 5))
    with pytest.raises(ValueError, match="BGR uint8"):
        tracker.init(frame[:, :, 0], (10, 10, 10, 5))
