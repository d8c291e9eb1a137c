"""The model shipped in models/: the file is the one documented, it loads, says how it was made, and tracks.

A random-weight SiamMixer-XS export gets IoU 0 on these sequences (checked when this test was written), so
the tracking check tells a trained model from an untrained one.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from siammixer_ros.core import SiamMixerTracker
from siammixer_ros.core.model_file import SHIPPED_MODEL_NAMES, read_model_file
from siammixer_ros.eval.datasets import SHARED_VAL_SEQUENCES
from siammixer_ros.testing.synthetic import iou, render_sequence

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / SHIPPED_MODEL_NAMES["float"]


def test_shipped_model_matches_its_documented_sha256():
    assert MODEL.is_file(), f"the shipped model {MODEL} is missing"
    digest = hashlib.sha256(MODEL.read_bytes()).hexdigest()
    recorded = MODEL.with_suffix(".onnx.sha256").read_text().split()[0]
    assert digest == recorded, f"{MODEL.name} changed: update its .sha256 and models/README.md"
    readme = (REPO / "models" / "README.md").read_text()
    assert digest in re.findall(r"[0-9a-f]{64}", readme), "models/README.md does not name the shipped sha256"


def test_shipped_model_is_a_trained_s_that_never_saw_the_validation_split():
    info, parts = read_model_file(MODEL)
    assert info.variant == "s" and info.stride == 16 and info.response_size == 9
    assert info.model_version not in ("untrained", "test", "0")
    assert info.provenance.get("pairs_seen", 0) > 0
    trained_on = set(info.provenance.get("train_sequences", []))
    assert trained_on, "provenance lists no training sequences"
    assert not trained_on & set(SHARED_VAL_SEQUENCES), "the shipped model was trained on validation sequences"
    assert info.has_patch_parts, "the shipped model lacks the patch-by-patch parts"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shipped_model_tracks_a_synthetic_moving_target(seed):
    boxes = [(80 + 3 * i, 70 + 20 * np.sin(i / 5) * 1.5, 48, 40) for i in range(40)]
    seq = render_sequence(boxes, size=(320, 240), seed=seed)
    tracker = SiamMixerTracker(MODEL)
    tracker.init(seq.frames[0], seq.boxes[0])
    ious = [iou(tracker.update(frame).box, box) for frame, box in zip(seq.frames[1:], seq.boxes[1:], strict=True)]
    assert np.mean(ious) > 0.7, f"mean IoU {np.mean(ious):.3f} on a synthetic sequence (seed {seed})"
