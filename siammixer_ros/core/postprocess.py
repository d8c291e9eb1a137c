"""Response-map post-processing (SiamFC conventions): upsampling, scale penalty, cosine window,
peak location, displacement to image coordinates, confidence and peak-to-sidelobe ratio.

Geometry: a response map of ``R x R`` cells with stride ``s`` (search-crop pixels per cell) is centred
on the search crop: cell ``(R - 1) / 2`` is the crop centre. It is upsampled by ``u`` with
``cv2.resize`` (which maps output index ``j`` to input ``(j + 0.5) / u - 0.5``), so the upsampled index
``j`` is a displacement of ``(j - (u * R - 1) / 2) * s / u`` search-crop pixels from the crop centre;
the tracker multiplies it by ``crop side in the image / search size`` to get image pixels.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Peak", "hann_window", "peak_to_sidelobe", "scale_factors", "select_peak", "sigmoid", "upsample"]


def sigmoid(x: float) -> float:
    """Logistic function, overflow-safe."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def scale_factors(scale_num: int, scale_step: float) -> np.ndarray:
    """SiamFC search scales ``scale_step ** linspace(-(n-1)/2, (n-1)/2, n)``; the middle one is 1."""
    exps = np.linspace(-(scale_num - 1) / 2.0, (scale_num - 1) / 2.0, scale_num)
    return scale_step**exps


def hann_window(size: int) -> np.ndarray:
    """Cosine (Hann) window of ``size x size`` normalised to sum 1, float32 (SiamFC)."""
    if size == 1:
        return np.ones((1, 1), dtype=np.float32)
    w = np.outer(np.hanning(size), np.hanning(size))
    return (w / w.sum()).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _cubic_matrix(size: int, up: int) -> np.ndarray:
    """``(up*size, size)`` matrix ``A`` with ``A @ m @ A.T`` = cv2.resize(m, INTER_CUBIC) for a ``size``
    square map: bicubic resizing is separable and linear, so resizing the identity along one axis gives
    its weights (OpenCV's own, borders included)."""
    eye = np.eye(size, dtype=np.float32)
    a = cv2.resize(eye, (size, size * up), interpolation=cv2.INTER_CUBIC)
    a.setflags(write=False)
    return a


def upsample(responses: np.ndarray, up: int, out: np.ndarray | None = None) -> np.ndarray:
    """``(B, R, R)`` raw maps -> ``(B, uR, uR)`` bicubic upsampled float32 maps (written into ``out`` if given).

    The result equals one ``cv2.resize(INTER_CUBIC)`` per map (to float rounding), computed as two small
    matrix products for the whole batch: 0.05 ms for three 9x9 maps to 144x144, against 0.42 ms for
    three cv2.resize calls (measured on this project's 2-core machine).
    """
    b, r, _ = responses.shape
    size = r * up
    if out is None or out.shape != (b, size, size) or out.dtype != np.float32:
        out = np.empty((b, size, size), dtype=np.float32)
    maps = np.asarray(responses, dtype=np.float32)
    if up == 1:
        out[...] = maps
        return out
    a = _cubic_matrix(r, up)
    np.matmul(np.matmul(a, maps), a.T, out=out)
    return out


def peak_to_sidelobe(response: np.ndarray, exclude_radius: int) -> float:
    """PSR of a raw ``R x R`` map: ``(peak - mean(sidelobe)) / std(sidelobe)``.

    The sidelobe is the map outside the ``(2 * exclude_radius + 1)`` square around the peak. The PSR
    does not depend on the map's offset or positive gain, so it is comparable between models whose
    logits are calibrated differently. Returns 0 for a flat map.
    """
    r = response.shape[0]
    idx = int(np.argmax(response))
    py, px = divmod(idx, response.shape[1])
    mask = np.ones(response.shape, dtype=bool)
    rows = slice(max(0, py - exclude_radius), py + exclude_radius + 1)
    cols = slice(max(0, px - exclude_radius), px + exclude_radius + 1)
    mask[rows, cols] = False
    side = response[mask]
    if side.size < 2 or r < 2:
        return 0.0
    std = float(side.std())
    if std < 1e-6:
        return 0.0
    return (float(response[py, px]) - float(side.mean())) / std


@dataclass(frozen=True)
class Peak:
    """The chosen peak of a batch of response maps."""

    index: int  # which crop of the batch (scale or re-detection tile)
    dx: float  # displacement from the crop centre, search-crop pixels
    dy: float
    logit: float  # raw (upsampled, unwindowed) response at the peak
    psr: float  # peak-to-sidelobe ratio of that crop's raw map

    @property
    def score(self) -> float:
        return sigmoid(self.logit)


def select_peak(
    responses: np.ndarray,
    stride: float,
    up: int,
    penalties: np.ndarray | None,
    window: np.ndarray | None,
    window_influence: float,
    psr_exclude_radius: int,
    out: np.ndarray | None = None,
) -> Peak:
    """Choose the crop and the peak (SiamFC): upsample every map, pick the crop whose penalised peak
    is highest (``penalties`` < 1 for scales other than 1: a positive peak logit is multiplied by the
    penalty as in SiamFC, a negative one divided by it, so that the penalty always makes a scale change
    less likely), normalise that map to sum 1, blend the window in with ``window_influence`` and take
    the arg-max.

    ``responses``: raw maps ``(B, R, R)`` or ``(B, 1, R, R)``; ``window``: ``(uR, uR)`` float32 summing to 1;
    ``out``: optional ``(B, uR, uR)`` float32 buffer for the upsampled maps.
    """
    if responses.ndim == 4:
        responses = responses[:, 0]
    b = responses.shape[0]
    maps = upsample(responses, up, out=out)  # (B, uR, uR)
    size = maps.shape[1]
    peaks = np.array([plane.max() for plane in maps], dtype=np.float64)
    if b > 1 and penalties is not None:
        peaks = peaks.astype(np.float64)
        # SiamFC multiplies the peaks by the penalty; logits may be negative, where multiplying by a
        # penalty < 1 would reward a scale change, so negative peaks are divided by it instead.
        penalised = np.where(peaks > 0, peaks * penalties, peaks / penalties)
        best = int(np.argmax(penalised))
    elif b > 1:
        best = int(np.argmax(peaks))
    else:
        best = 0
    chosen = maps[best]
    if window is not None and window_influence > 0:
        # SiamFC: shift the map to >= 0, normalise it to sum 1, blend with the window (which sums to 1).
        low = float(chosen.min())
        total = float(chosen.sum()) - low * chosen.size
        gain = (1.0 - window_influence) / total if total > 0 else 0.0
        blended = cv2.addWeighted(chosen, gain, window, window_influence, -low * gain)
        loc = int(np.argmax(blended))
    else:
        loc = int(np.argmax(chosen))
    py, px = divmod(loc, size)
    center = (size - 1) / 2.0
    step = stride / up
    return Peak(
        index=best,
        dx=(px - center) * step,
        dy=(py - center) * step,
        logit=float(chosen[py, px]),
        psr=peak_to_sidelobe(responses[best], psr_exclude_radius),
    )
