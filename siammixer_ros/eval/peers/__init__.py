"""Other trackers run through the evaluation runner: OpenCV CSRT/KCF, NanoTrack v2/v3 (onnxruntime port),
LightTrack-Mobile (openvino port). Model files come from ../shared/peers and are never shipped."""
