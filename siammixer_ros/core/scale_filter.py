"""A discriminative scale filter (DSST) beside the Siamese network: a second opinion on the target's size, at the
position the network found (``scale_estimate: dsst``; not the default).

Why: the network's response peak tells scales apart only a little better than chance. Measured with the scale probe
(``python -m siammixer_ros.train.validate CKPT --scaled-pairs``, selection split): of five search crops 1.1x apart
around the target, the one at the target's scale gives the highest peak in 0.255 of the cases for SiamMixer-S 0.3.0
(chance 0.2), so SiamFC's three-scale search follows the size only through ``scale_lr``'s averaging over frames, and
on the training split the right size alone would be worth +0.05 AUC. Searched on the training split, this filter
does not beat the scale search on average (docs/tracker.md, "A scale filter beside the network").

DSST (Danelljan et al., "Accurate scale estimation for robust visual tracking", BMVC 2014), the scale estimator of
CSRT: ``n`` samples of the target at scales ``step ** k`` (``k = -(n-1)/2 .. (n-1)/2``) around the position the
network found, each resized to a small fixed patch and described by a cheap HOG (orientation histograms of 4x4-pixel
cells, each cell's histogram normalised, plus the cell's mean grey level); a one-dimensional correlation filter over
the scale axis, learnt in the Fourier domain with a Gaussian label peaking at ``k = 0``, finds the scale whose sample
looks most like the target's appearance at its own size. Pure numpy + OpenCV; every crop is made by
:func:`siammixer_ros.core.crop.get_subwindows`. The filter is immutable: :meth:`ScaleFilter.updated` returns a new
one, so a tracker call that raises leaves it as it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from siammixer_ros.core.crop import get_subwindows

__all__ = ["MIN_SAMPLE_SIDE", "PATCH_SIZE", "ScaleFilter", "scale_samples"]

#: Side of the patch every scale sample is resized to (pixels); HOG cells of CELL_SIZE pixels.
PATCH_SIZE = 24
#: Smallest side of the middle sample at ``init`` (image pixels): a target of a few pixels is sampled with more
#: context (the padding is fixed at ``init``, so the samples keep scaling with the target afterwards).
MIN_SAMPLE_SIDE = 32.0
CELL_SIZE = 4
ORIENTATIONS = 9


def scale_samples(image: np.ndarray, center_xy: tuple[float, float], side: float, factors: np.ndarray,
                  pad_value: tuple[float, ...]) -> np.ndarray:
    """``(D, n)`` float32: one feature column per scale factor, for square samples of side ``side * factor``
    centred at ``center_xy`` (``side``: the target's geometric mean side)."""
    sizes = [max(float(side * f), 1.0) for f in factors]
    crops = get_subwindows(image, [center_xy] * len(sizes), sizes, PATCH_SIZE, pad_value)
    gray = crops.astype(np.float32) @ np.array([0.114, 0.587, 0.299], dtype=np.float32) / 255.0  # BGR
    gx = np.zeros_like(gray)
    gy = np.zeros_like(gray)
    gx[:, :, 1:-1] = gray[:, :, 2:] - gray[:, :, :-2]
    gy[:, 1:-1, :] = gray[:, 2:, :] - gray[:, :-2, :]
    magnitude = np.sqrt(gx * gx + gy * gy)
    # Unsigned orientation in [0, pi), split linearly between the two nearest of ORIENTATIONS bins.
    position = (np.arctan2(gy, gx) % math.pi) * (ORIENTATIONS / math.pi) - 0.5
    low = np.floor(position)
    upper_share = position - low
    low_bin = low.astype(np.int64) % ORIENTATIONS
    high_bin = (low_bin + 1) % ORIENTATIONS
    n, cells = len(sizes), PATCH_SIZE // CELL_SIZE
    one_hot = np.eye(ORIENTATIONS, dtype=np.float32)
    hist = (one_hot[low_bin] * (magnitude * (1.0 - upper_share))[..., None]
            + one_hot[high_bin] * (magnitude * upper_share)[..., None])
    hist = hist.reshape(n, cells, CELL_SIZE, cells, CELL_SIZE, ORIENTATIONS).sum(axis=(2, 4))
    hist /= np.sqrt((hist * hist).sum(axis=-1, keepdims=True)) + 0.05  # per cell, as HOG's normalisation
    grey = gray.reshape(n, cells, CELL_SIZE, cells, CELL_SIZE).mean(axis=(2, 4))
    features = np.concatenate([hist.reshape(n, -1), (grey - 0.5).reshape(n, -1)], axis=1)
    return np.ascontiguousarray(features.T, dtype=np.float32)


@dataclass(frozen=True)
class ScaleFilter:
    """DSST's scale filter: numerator ``(D, n)`` and denominator ``(n,)`` in the Fourier domain of the scale axis."""

    factors: np.ndarray
    numerator: np.ndarray
    denominator: np.ndarray
    label: np.ndarray          # the Gaussian label's spectrum, (n,)
    window: np.ndarray         # Hann window over the scales, (n,)
    regulariser: float
    padding: float             # sample side / the target's geometric mean side, fixed at init

    @staticmethod
    def geometry(count: int, step: float, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(factors, label spectrum, window)`` for ``count`` scales ``step`` apart; the label's sigma is
        ``sigma * sqrt(count)`` scale steps (DSST's 1/4)."""
        offsets = np.arange(count, dtype=np.float64) - (count - 1) / 2.0
        factors = step ** offsets
        label = np.exp(-0.5 * offsets ** 2 / (sigma * math.sqrt(count)) ** 2)
        return factors, np.fft.fft(label), np.hanning(count + 2)[1:-1]

    @staticmethod
    def init_padding(padding: float, target_side: float) -> float:
        """The padding used for a target of geometric mean side ``target_side``: ``padding``, or more so that the
        middle sample is at least :data:`MIN_SAMPLE_SIDE` pixels."""
        return max(float(padding), MIN_SAMPLE_SIDE / max(float(target_side), 1e-6))

    @classmethod
    def learn(cls, samples: np.ndarray, step: float, sigma: float, regulariser: float,
              padding: float) -> ScaleFilter:
        """A filter learnt from one frame's ``(D, n)`` samples (the target at its true size in the middle), taken
        with ``padding`` (:meth:`init_padding`)."""
        count = samples.shape[1]
        factors, label, window = cls.geometry(count, step, sigma)
        numerator, denominator = cls._terms(samples, label, window)
        return cls(factors, numerator, denominator, label, window, float(regulariser), float(padding))

    @classmethod
    def start(cls, image: np.ndarray, center_xy: tuple[float, float], target_side: float,
              pad_value: tuple[float, ...], count: int, step: float, sigma: float, regulariser: float,
              padding: float) -> ScaleFilter:
        """The filter of a new target of geometric mean side ``target_side`` at ``center_xy`` of ``image``: samples
        at ``count`` scales ``step`` apart, taken with ``padding`` (raised by :meth:`init_padding`)."""
        padding = cls.init_padding(padding, target_side)
        factors = cls.geometry(count, step, sigma)[0]
        samples = scale_samples(image, center_xy, target_side * padding, factors, pad_value)
        return cls.learn(samples, step, sigma, regulariser, padding)

    def samples(self, image: np.ndarray, center_xy: tuple[float, float], target_side: float,
                pad_value: tuple[float, ...]) -> np.ndarray:
        """This filter's ``(D, n)`` samples of a target of geometric mean side ``target_side`` at ``center_xy``."""
        return scale_samples(image, center_xy, target_side * self.padding, self.factors, pad_value)

    @staticmethod
    def _terms(samples: np.ndarray, label: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        spectrum = np.fft.fft(samples * window[None, :], axis=1)
        return label[None, :] * np.conj(spectrum), (spectrum * np.conj(spectrum)).real.sum(axis=0)

    def updated(self, samples: np.ndarray, rate: float) -> ScaleFilter:
        """A new filter: the old one's terms and this frame's ``(D, n)`` samples, blended with ``rate``."""
        numerator, denominator = self._terms(samples, self.label, self.window)
        return ScaleFilter(self.factors, (1.0 - rate) * self.numerator + rate * numerator,
                           (1.0 - rate) * self.denominator + rate * denominator, self.label, self.window,
                           self.regulariser, self.padding)

    def response(self, samples: np.ndarray) -> np.ndarray:
        """``(n,)`` the filter's response to ``samples``; its peak is the scale of the target relative to the
        samples' middle one."""
        spectrum = np.fft.fft(samples * self.window[None, :], axis=1)
        return np.fft.ifft((self.numerator * spectrum).sum(axis=0) / (self.denominator + self.regulariser)).real

    def scale(self, samples: np.ndarray) -> float:
        """The scale factor the samples show (between the scales: the vertex of the parabola through the peak and
        its neighbours, in log scale); 1.0 when the response is not finite or flat (degenerate samples: a uniform
        image shows no scale)."""
        response = self.response(samples)
        if not np.all(np.isfinite(response)) or np.ptp(response) <= 1e-6 * max(float(np.abs(response).max()), 1e-12):
            return 1.0
        k = int(np.argmax(response))
        offset = 0.0
        if 0 < k < len(response) - 1:
            left, mid, right = response[k - 1], response[k], response[k + 1]
            curvature = left - 2.0 * mid + right
            if curvature < 0:
                offset = float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))
        step = self.factors[1] / self.factors[0] if len(self.factors) > 1 else 1.0
        return float(self.factors[k] * step ** offset)

