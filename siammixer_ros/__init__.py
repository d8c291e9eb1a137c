"""SiamMixer single-object tracker for ROS 2: tracking core (numpy + ONNX Runtime + OpenCV), node, tools."""

__version__ = "0.1.0"
