"""Test support: models and synthetic sequences that exercise the whole pipeline without a trained
network (used by the tracker, node, evaluation and bag tests). Needs the ``onnx`` package (dev/test
dependency); never imported by the node or the tracking core."""
