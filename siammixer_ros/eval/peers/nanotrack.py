"""NanoTrack v2/v3 run with onnxruntime: the project's own port of the pysot-style NanoTracker.

Model files (../shared/peers/nanotrack_v2|v3, see its README): a backbone for the 255x255 search crop, the
same backbone with a fixed 127x127 input for the template (onnxruntime rejects 127 on the first file) and a
head ``(template features, search features) -> cls (1,2,R,R), loc (1,4,R,R)``.

Decoding (anchor-free, as NanoTrack/SiamBAN): score-map cell (i, j) sits at offset
``((j - R//2) * stride, (i - R//2) * stride)`` from the search-crop centre; ``loc`` holds the distances
(left, top, right, bottom) from that point to the box sides in search-crop pixels; the score is the softmax
probability of class 1. Then the usual pysot post-processing: scale/ratio penalty, cosine window,
size smoothing with ``lr * penalty * score``, clipping.

Differences from OpenCV's TrackerNano (checked against it, see docs/evaluation.md): OpenCV feeds RGB
(``swapRB=true``), uses its own window/penalty/lr values, a square-rooted cosine window
(cv2.createHanningWindow), truncates positions and sizes to integers in places, and computes the scale
penalty against the target *position* instead of its size. ``NanoTrackParams(opencv_compat=True)``
reproduces those choices for the comparison; evaluation uses the NanoTrack release values from the README.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from siammixer_ros.eval.peers.siamese_common import check_box, clip_state, context_size, get_subwindow, size_penalty

MODEL_FILES = {
    "v2": ("nanotrack_backbone_sim.onnx", "nanotrack_backbone_sim_z127.onnx", "nanotrack_head_sim.onnx"),
    "v3": ("nanotrack_backbone.onnx", "nanotrack_backbone_z127.onnx", "nanotrack_head.onnx"),
}


@dataclass(frozen=True)
class NanoTrackParams:
    window_influence: float
    penalty_k: float
    lr: float
    exemplar_size: int = 127
    instance_size: int = 255
    stride: int = 16
    context_amount: float = 0.5
    swap_rb: bool = False  # the models were trained on BGR 0..255 (pysot); OpenCV's port swaps to RGB
    opencv_compat: bool = False


PARAMS = {
    "v2": NanoTrackParams(window_influence=0.490, penalty_k=0.150, lr=0.385),
    "v3": NanoTrackParams(window_influence=0.455, penalty_k=0.138, lr=0.348),
}
# The values hard-coded in OpenCV's tracker_nano.cpp (trackerConfig), used only for the cross-check.
OPENCV_PARAMS = NanoTrackParams(window_influence=0.455, penalty_k=0.055, lr=0.37, swap_rb=True, opencv_compat=True)


def model_paths(peers_dir: Path, version: str) -> tuple[Path, Path, Path]:
    folder = Path(peers_dir) / f"nanotrack_{version}"
    search, template, head = (folder / name for name in MODEL_FILES[version])
    return search, template, head


def missing_files(peers_dir: Path, version: str) -> list[Path]:
    return [p for p in model_paths(peers_dir, version) if not p.is_file()]


class NanoTrack:
    """NanoTrack tracker: ``init(image, box)``, ``update(image) -> (box, score)``; BGR uint8 images."""

    def __init__(self, peers_dir: Path, version: str = "v2", threads: int = 1,
                 params: NanoTrackParams | None = None) -> None:
        import onnxruntime as ort

        if version not in MODEL_FILES:
            raise ValueError(f"unknown NanoTrack version {version!r}; expected one of {', '.join(MODEL_FILES)}")
        missing = missing_files(peers_dir, version)
        if missing:
            raise FileNotFoundError(f"NanoTrack {version} model files missing: {', '.join(map(str, missing))}")
        self.params = params or PARAMS[version]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        search_path, template_path, head_path = model_paths(peers_dir, version)
        providers = ["CPUExecutionProvider"]
        self._search_net = ort.InferenceSession(str(search_path), options, providers=providers)
        self._template_net = ort.InferenceSession(str(template_path), options, providers=providers)
        self._head_net = ort.InferenceSession(str(head_path), options, providers=providers)
        self._search_input = self._search_net.get_inputs()[0].name
        self._template_input = self._template_net.get_inputs()[0].name
        head_inputs = [i.name for i in self._head_net.get_inputs()]
        self._head_template_input, self._head_search_input = head_inputs[0], head_inputs[1]
        self.score_size = int(self._head_net.get_outputs()[0].shape[-1])
        hanning = np.hanning(self.score_size)
        self._window = np.outer(hanning, hanning)
        if self.params.opencv_compat:
            self._window = np.sqrt(self._window)  # cv2.createHanningWindow returns the square root
        offsets = (np.arange(self.score_size) - self.score_size // 2) * self.params.stride
        # points relative to the search-crop centre, shape (R, R) each
        self._points_x, self._points_y = np.meshgrid(offsets.astype(np.float64), offsets.astype(np.float64))
        self._template_features: np.ndarray | None = None
        self.center = np.zeros(2)
        self.size = np.zeros(2)
        self._fill = np.zeros(3)

    def _blob(self, crop: np.ndarray) -> np.ndarray:
        if self.params.swap_rb:
            crop = crop[:, :, ::-1]
        return np.ascontiguousarray(crop.transpose(2, 0, 1)[None], dtype=np.float32)

    def init(self, image: np.ndarray, box: tuple[float, float, float, float]) -> None:
        x, y, w, h = check_box(box, image)
        if self.params.opencv_compat:
            x, y, w, h = float(int(x)), float(int(y)), float(int(w)), float(int(h))
        self.center = np.array([x + w / 2.0, y + h / 2.0])
        self.size = np.array([w, h])
        self._fill = image.reshape(-1, 3).mean(axis=0)
        crop_side = context_size(self.size, self.params.context_amount)
        if self.params.opencv_compat:
            crop_side = float(int(crop_side))
        center = np.floor(self.center) if self.params.opencv_compat else self.center
        template = get_subwindow(image, center, self.params.exemplar_size, crop_side, self._fill)
        self._template_features = self._template_net.run(None, {self._template_input: self._blob(template)})[0]

    def update(self, image: np.ndarray) -> tuple[tuple[float, float, float, float], float]:
        if self._template_features is None:
            raise RuntimeError("NanoTrack.update() called before init()")
        p = self.params
        if p.opencv_compat:  # OpenCV truncates w + h to an integer here
            total = float(int(self.size[0] + self.size[1]))
            crop_side = float(np.sqrt((self.size[0] + 0.5 * total) * (self.size[1] + 0.5 * total)))
        else:
            crop_side = context_size(self.size, p.context_amount)
        scale = p.exemplar_size / crop_side
        search_side = crop_side * (p.instance_size / p.exemplar_size)
        if p.opencv_compat:
            # OpenCV: integer division 255/127 = 2, and a fresh channel mean every frame
            search_side = crop_side * (p.instance_size // p.exemplar_size)
            self._fill = image.reshape(-1, 3).mean(axis=0)
        center = np.floor(self.center) if p.opencv_compat else self.center
        search = get_subwindow(image, center, p.instance_size, int(search_side) if p.opencv_compat else search_side,
                               self._fill)
        search_features = self._search_net.run(None, {self._search_input: self._blob(search)})[0]
        cls, loc = self._head_net.run(None, {self._head_template_input: self._template_features,
                                             self._head_search_input: search_features})
        logits = cls[0].astype(np.float64)
        logits = logits - logits.max(axis=0, keepdims=True)
        probabilities = np.exp(logits)
        score = probabilities[1] / probabilities.sum(axis=0)
        loc = loc[0].astype(np.float64)
        x1 = self._points_x - loc[0]
        y1 = self._points_y - loc[1]
        x2 = self._points_x + loc[2]
        y2 = self._points_y + loc[3]
        pred_w, pred_h = x2 - x1, y2 - y1
        target_w, target_h = self.size * scale
        # tracker_nano.cpp divides by sizeCal(targetPos) - the position, not the size
        reference = (float(self.center[0]), float(self.center[1])) if p.opencv_compat else None
        penalty = size_penalty(pred_w, pred_h, target_w, target_h, p.penalty_k, reference)
        pscore = penalty * score * (1.0 - p.window_influence) + self._window * p.window_influence
        best = np.unravel_index(int(np.argmax(pscore)), pscore.shape)
        dx = (x1[best] + x2[best]) / 2.0 / scale
        dy = (y1[best] + y2[best]) / 2.0 / scale
        rate = penalty[best] * score[best] * p.lr
        new_size = self.size * (1.0 - rate) + np.array([pred_w[best], pred_h[best]]) / scale * rate
        self.center, self.size = clip_state(self.center + np.array([dx, dy]), new_size, image.shape)
        box = (float(self.center[0] - self.size[0] / 2.0), float(self.center[1] - self.size[1] / 2.0),
               float(self.size[0]), float(self.size[1]))
        return box, float(score[best])

