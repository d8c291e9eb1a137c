"""LightTrack-Mobile run with OpenVINO (optional extra ``openvino``): the project's own port.

Model files (../shared/peers/lighttrack_mobile_openvino): ``z_feature.xml`` (template, u8 NHWC BGR 1x128x128x3),
``x_feature.xml`` (search, u8 1x256x256x3) and ``head.xml`` (zf, xf -> cls 16x16 probabilities, reg 4x16x16
distances l, t, r, b in search-crop pixels); normalisation is inside the graphs.

Post-processing as LightTrack (and its OpenVINO port, l-sf/LightTrack_openvino): cell (i, j) sits at
``((j - 8) * 16, (i - 8) * 16)`` from the search-crop centre, penalty/window/lr as pysot, and LightTrack's
size update ``size = size * (1 - lr) + lr * (pred * lr + size * (1 - lr))``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from siammixer_ros.eval.peers.siamese_common import check_box, clip_state, context_size, get_subwindow, size_penalty

FOLDER = "lighttrack_mobile_openvino"
MODEL_FILES = ("z_feature.xml", "x_feature.xml", "head.xml")
EXEMPLAR_SIZE, INSTANCE_SIZE, STRIDE = 128, 256, 16
WINDOW_INFLUENCE, PENALTY_K, LR = 0.38, 0.062, 0.765


def missing_files(peers_dir: Path) -> list[Path]:
    folder = Path(peers_dir) / FOLDER
    paths = [folder / name for name in MODEL_FILES] + [folder / name.replace(".xml", ".bin") for name in MODEL_FILES]
    return [p for p in paths if not p.is_file()]


def unavailable_reason(peers_dir: Path) -> str | None:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "openvino is not installed (pip install openvino)"
    missing = missing_files(peers_dir)
    if missing:
        return f"LightTrack-Mobile files missing: {', '.join(map(str, missing))}"
    return None


class LightTrack:
    """LightTrack-Mobile tracker: ``init(image, box)``, ``update(image) -> (box, score)``; BGR uint8 images."""

    def __init__(self, peers_dir: Path, threads: int = 1) -> None:
        reason = unavailable_reason(peers_dir)
        if reason:
            raise RuntimeError(reason)
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
        folder = Path(peers_dir) / FOLDER
        compiled = [core.compile_model(core.read_model(folder / name), "CPU", config) for name in MODEL_FILES]
        self._template_request, self._search_request, self._head_request = (c.create_infer_request() for c in compiled)
        self._head_outputs = compiled[2].outputs
        score_size = int(compiled[2].outputs[0].get_partial_shape()[-1].get_length())
        self.score_size = score_size
        hanning = np.hanning(score_size)
        self._window = np.outer(hanning, hanning)
        offsets = (np.arange(score_size) - score_size // 2) * STRIDE
        self._points_x, self._points_y = np.meshgrid(offsets.astype(np.float64), offsets.astype(np.float64))
        self._template_features: np.ndarray | None = None
        self.center = np.zeros(2)
        self.size = np.zeros(2)
        self._fill = np.zeros(3)

    def init(self, image: np.ndarray, box: tuple[float, float, float, float]) -> None:
        x, y, w, h = check_box(box, image)
        self.center = np.array([x + w / 2.0, y + h / 2.0])
        self.size = np.array([w, h])
        self._fill = image.reshape(-1, 3).mean(axis=0)
        template = get_subwindow(image, self.center, EXEMPLAR_SIZE, round(context_size(self.size)), self._fill)
        self._template_request.infer({0: np.ascontiguousarray(template[None])})
        self._template_features = self._template_request.get_output_tensor().data.copy()

    def update(self, image: np.ndarray) -> tuple[tuple[float, float, float, float], float]:
        if self._template_features is None:
            raise RuntimeError("LightTrack.update() called before init()")
        crop_side = round(context_size(self.size))
        scale = EXEMPLAR_SIZE / crop_side
        search_side = crop_side + 2 * ((INSTANCE_SIZE - EXEMPLAR_SIZE) / 2) / scale
        search = get_subwindow(image, self.center, INSTANCE_SIZE, search_side, self._fill)
        self._search_request.infer({0: np.ascontiguousarray(search[None])})
        search_features = self._search_request.get_output_tensor().data
        self._head_request.infer({0: self._template_features, 1: search_features})
        score = self._head_request.get_tensor(self._head_outputs[0]).data.reshape(self.score_size, self.score_size)
        score = score.astype(np.float64)
        reg = self._head_request.get_tensor(self._head_outputs[1]).data.reshape(4, self.score_size, self.score_size)
        reg = reg.astype(np.float64)
        x1, y1 = self._points_x - reg[0], self._points_y - reg[1]
        x2, y2 = self._points_x + reg[2], self._points_y + reg[3]
        pred_w, pred_h = x2 - x1, y2 - y1
        target_w, target_h = self.size * scale
        penalty = size_penalty(pred_w, pred_h, target_w, target_h, PENALTY_K)
        pscore = penalty * score * (1.0 - WINDOW_INFLUENCE) + self._window * WINDOW_INFLUENCE
        best = np.unravel_index(int(np.argmax(pscore)), pscore.shape)
        dx = (x1[best] + x2[best]) / 2.0 / scale
        dy = (y1[best] + y2[best]) / 2.0 / scale
        rate = penalty[best] * score[best] * LR
        smoothed = np.array([pred_w[best], pred_h[best]]) / scale * rate + self.size * (1.0 - rate)
        new_size = self.size * (1.0 - rate) + rate * smoothed
        self.center, self.size = clip_state(self.center + np.array([dx, dy]), new_size, image.shape)
        box = (float(self.center[0] - self.size[0] / 2.0), float(self.center[1] - self.size[1] / 2.0),
               float(self.size[0]), float(self.size[1]))
        return box, float(score[best])
