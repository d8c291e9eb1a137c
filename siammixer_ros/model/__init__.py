"""The SiamMixer network in PyTorch and its ONNX export (needs the optional ``train`` extra: torch, onnx)."""
