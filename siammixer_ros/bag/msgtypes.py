"""Message types for rosbags: ROS 2 Kilted's standard types plus vision_msgs.

rosbags ships the standard ROS 2 message types but not vision_msgs, so its definitions are
registered from .msg text. The text is the one of ``interfaces/vision_msgs_fallback`` (the field
lines of upstream vision_msgs 4.x), which gives the same RIHS01 type hashes as a real ROS 2 install;
``check_vision_msgs_hashes`` verifies that, so a bag written here is read by ``ros2 bag`` and its
topics match a real vision_msgs subscriber.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
DETECTION_2D = "vision_msgs/msg/Detection2D"
DETECTION_2D_ARRAY = "vision_msgs/msg/Detection2DArray"

# Field definitions of vision_msgs 4.x (ROS 2 Humble and later), as in interfaces/vision_msgs_fallback.
VISION_MSGS_DEFINITIONS: dict[str, str] = {
    "Point2D": "float64 x\nfloat64 y\n",
    "Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "ObjectHypothesis": "string class_id\nfloat64 score\n",
    "ObjectHypothesisWithPose": "ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n",
    "Detection2D": "std_msgs/Header header\nObjectHypothesisWithPose[] results\nBoundingBox2D bbox\nstring id\n",
    "Detection2DArray": "std_msgs/Header header\nDetection2D[] detections\n",
}

# RIHS01 hashes of upstream vision_msgs (from a real build: share/vision_msgs/msg/<Type>.json).
UPSTREAM_RIHS01: dict[str, str] = {
    "Detection2D": "RIHS01_0d12b69df5c593b3455b7346fac8205437a7d4bcb09b9e0e0b2dde787ded38ea",
    "Detection2DArray": "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",
    "BoundingBox2D": "RIHS01_008eacbb0cf8f26e83795547bed013eec3675485ef386ec056d80eaaf1c1ce2f",
    "ObjectHypothesisWithPose": "RIHS01_41c12344c0396c48b81df12467c192d99b2a0eb1463c5c37194e4223251c80bc",
    "Pose2D": "RIHS01_b0b5d1d7b4c20dd4fcde3ed1d4b289a919290572007d67a97043814db25d3648",
    "Point2D": "RIHS01_eab0e83f44ab4de92ceaf76dd7d0e7638f2bdd1d16ffbe16c7a136c48e407247",
    "ObjectHypothesis": "RIHS01_51da43cec11c01957a64d1e05a24acd18aae7745ec30b74348ad5f6d634f7f90",
}


@lru_cache(maxsize=1)
def typestore() -> Any:
    """The typestore every bag tool uses: ROS 2 Kilted standard types + vision_msgs."""
    store = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for name, text in VISION_MSGS_DEFINITIONS.items():
        types.update(get_types_from_msg(text, f"vision_msgs/msg/{name}"))
    store.register(types)
    return store


def check_vision_msgs_hashes() -> dict[str, tuple[str, str]]:
    """Types whose hash differs from upstream, as name -> (ours, upstream); empty when all match."""
    store = typestore()
    wrong = {}
    for name, upstream in UPSTREAM_RIHS01.items():
        ours = store.hash_rihs01(f"vision_msgs/msg/{name}")
        if ours != upstream:
            wrong[name] = (ours, upstream)
    return wrong
