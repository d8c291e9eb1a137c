"""NanoTrack v2 as a distillation teacher, run with onnxruntime on the student's own crops.

NanoTrack v2 takes a 127x127 template and a 255x255 search crop (BGR float32 0..255, no
normalisation) and returns a 2-class score map of 16x16 cells, stride 16 (softmax channel 1 is the
foreground). Its tracker places score cell ``k`` at offset ``16 (k - 8)`` pixels from the search
crop's centre pixel 127 (NanoTrack/pysot ``generate_points``: ``ori = -(16 // 2) * 16``).

Mapping to the student's 9x9 grid: our 256 crop is resized to 255 (pixel ``u`` of the 255 crop is
``(u + 0.5) 256/255 - 0.5`` of ours, so its centre 127 is our centre 127.5), and student cell ``j``
at offset ``16 (j - 4)`` matches teacher cell ``k = j + 4`` up to ``16 (k - 8) (256/255 - 1)``,
at most 0.25 px. The student's map is therefore the teacher's cells ``[4:13, 4:13]``; the test
``test_train_teacher.py`` checks on a synthetic scene that the teacher's peak follows a shifted target
by the same cells the student's labels do.

Box regression (for the student's box branch): the head's second output is, per cell, the distances (l, t, r, b)
from the cell's point to the box edges in 255-crop pixels (the NanoTrack tracker's ``_convert_bbox``). Our
cell ``j``'s point is the teacher cell ``j + 4``'s (to the quarter pixel above), and distances scale by 256/255
into our crop, so the student's targets are ``loc[:, 4:13, 4:13] * 256 / 255``.

Backbone features (for feature distillation): 48 channels, 8x8 for the 127 template and 16x16 for the
255 search crop, stride 16 like the student's MB4 output on its 128 / 256 crops, so the maps line up cell
for cell (the 255-vs-256 mismatch is again at most a quarter pixel per cell).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

TEACHER_TEMPLATE = 127
TEACHER_SEARCH = 255
TEACHER_MAP = 16
TEACHER_CHANNELS = 48
# Student cell j <-> teacher cell j + OFFSET (see the module docstring).
GRID_OFFSET = 4
# Teacher (255-crop) pixels -> student (256-crop) pixels.
PIXEL_SCALE = 256.0 / 255.0


def default_teacher_dir() -> Path:
    return Path(__file__).resolve().parents[2].parent / "shared" / "peers" / "nanotrack_v2"


class NanoTrackTeacher:
    """Foreground logits of NanoTrack v2 on a batch of (template, search) crops, on the student's 9x9 grid."""

    def __init__(self, model_dir: str | Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        model_dir = Path(model_dir) if model_dir else default_teacher_dir()
        files = {name: model_dir / f"{name}.onnx" for name in
                 ("nanotrack_backbone_sim", "nanotrack_backbone_sim_z127", "nanotrack_head_sim")}
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"NanoTrack v2 teacher files missing: {', '.join(missing)}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        self.search_net = ort.InferenceSession(str(files["nanotrack_backbone_sim"]), opts, providers=providers)
        self.template_net = ort.InferenceSession(str(files["nanotrack_backbone_sim_z127"]), opts, providers=providers)
        self.head = ort.InferenceSession(str(files["nanotrack_head_sim"]), opts, providers=providers)

    @staticmethod
    def _nchw(image: np.ndarray, size: int) -> np.ndarray:
        if image.shape[0] != size:
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(image.transpose(2, 0, 1)[None].astype(np.float32))

    def full_outputs(self, template: np.ndarray, search: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(logits 16x16, template features 48x8x8, search features 48x16x16)`` for one uint8 HWC pair.

        The logits are the foreground log-odds (log p_fg - log p_bg) of a template (128) and search (256) crop.
        """
        logits, _, zf, xf = self.full_outputs_with_box(template, search)
        return logits, zf, xf

    def full_outputs_with_box(self, template: np.ndarray, search: np.ndarray
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`full_outputs` plus the regression ``(4,16,16)``: (l, t, r, b) in the teacher's 255-crop pixels."""
        zf = self.template_net.run(None, {"input": self._nchw(template, TEACHER_TEMPLATE)})[0]
        xf = self.search_net.run(None, {"input": self._nchw(search, TEACHER_SEARCH)})[0]
        cls, loc = self.head.run(None, {"input1": zf, "input2": xf})[:2]
        return (cls[0, 1] - cls[0, 0]).astype(np.float32), loc[0].astype(np.float32), zf[0], xf[0]

    def outputs(self, templates: np.ndarray, searches: np.ndarray, features: bool = False, box: bool = False
                ) -> dict[str, np.ndarray]:
        """Teacher outputs for (B,128,128,3) templates and (B,256,256,3) searches, uint8 HWC.

        ``logits`` (B,9,9) on the student's grid; with ``features`` also ``template_features`` (B,48,8,8)
        and ``search_features`` (B,48,16,16), the backbone outputs; with ``box`` also ``box`` (B,4,9,9), the
        teacher's (l, t, r, b) on the student's grid in the student's 256-crop pixels (module docstring).
        """
        n = len(templates)
        cells = slice(GRID_OFFSET, GRID_OFFSET + 9)
        out = {"logits": np.empty((n, 9, 9), dtype=np.float32)}
        if features:
            out["template_features"] = np.empty((n, TEACHER_CHANNELS, 8, 8), dtype=np.float32)
            out["search_features"] = np.empty((n, TEACHER_CHANNELS, TEACHER_MAP, TEACHER_MAP), dtype=np.float32)
        if box:
            out["box"] = np.empty((n, 4, 9, 9), dtype=np.float32)
        for b in range(n):
            full, loc, zf, xf = self.full_outputs_with_box(templates[b], searches[b])
            out["logits"][b] = full[cells, cells]
            if features:
                out["template_features"][b], out["search_features"][b] = zf, xf
            if box:
                out["box"][b] = loc[:, cells, cells] * PIXEL_SCALE
        return out

    def logits(self, templates: np.ndarray, searches: np.ndarray) -> np.ndarray:
        """(B,9,9) teacher foreground logits for (B,128,128,3) templates and (B,256,256,3) searches, uint8 HWC."""
        return self.outputs(templates, searches)["logits"]
