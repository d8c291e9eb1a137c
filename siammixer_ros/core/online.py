"""Online discriminative model learnt while tracking, on the network's own search features.

The Siamese response compares the target with everything by one fixed similarity, learnt offline; a
look-alike (another car seen from above, another player) scores as high as the target. This model is a
linear filter trained on the current video to tell *this* target from *its* surroundings, in the spirit
of DCF / ridge regression on deep features and ATOM's online classifier:

* **Features.** The search branch's output ``(B, C, Fs, Fs)`` (``Fs = search_size / stride``), compressed
  to ``d`` channels by the principal components of the first frame's search map (mean removed), and scaled
  so that a filter window has unit mean energy on that frame (the regulariser is then scale-free).
* **Filter.** ``w`` of ``d x k x k`` (``k`` even) slides over the compressed map (valid positions, spatial
  domain: the mixer layers mix tokens by position, so the features are not assumed shift-equivariant and
  no FFT / circular correlation is used). Output cell ``i`` covers feature cells ``i .. i + k - 1``, which
  have the same centre as the Siamese response cell ``i - (Ft - k) / 2`` (``Ft`` = template feature size),
  so the central ``R x R`` outputs line up cell for cell with the Siamese response.
* **Training.** Ridge regression: ``min_w sum_i c_i (w . x_i - y_i)^2 + reg |w|^2`` over every window ``x_i``
  of a search map, ``y_i`` a Gaussian on the target's position, ``c_i`` 1 and ``1 + distractor_weight`` on
  hard negatives (windows on strong secondary peaks). Kept as normal equations ``A = mean c x x^T``,
  ``b = mean c y x``: ``A = f A_first + (1 - f) A_recent`` with the first frame's share ``f`` fixed (the first
  frame always counts) and ``A_recent`` an exponential average of the confident frames. Solved exactly at
  ``init`` and by a few warm-started conjugate-gradient steps after each update (ATOM's optimiser), which
  costs a few 512 x 512 matrix-vector products instead of a factorisation.

Everything here is numpy; objects are immutable (``update`` returns a new model), so a tracker call that
fails half-way leaves the previous model untouched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["OnlineModel", "find_distractors", "fuse_responses", "gaussian_label", "online_filter_cells"]

# Below this mean window energy the features carry no information (e.g. an all-constant crop).
_MIN_ENERGY = 1e-8
_PROB_EPS = 1e-6


def online_filter_cells(requested: int, template_cells: int) -> int:
    """The filter size actually used: ``requested`` rounded down to the parity of ``template_cells`` (so that
    output cells line up with Siamese response cells), between 1 (or 2) and ``template_cells``."""
    size = max(1, min(int(requested), template_cells))
    if (template_cells - size) % 2:
        size -= 1
    return max(size, 2 - template_cells % 2)


def gaussian_label(size: int, center: tuple[float, float], sigma: tuple[float, float]) -> np.ndarray:
    """``(size, size)`` float64 Gaussian with peak 1 at ``center`` ``(row, col)`` (output cells)."""
    rows = np.arange(size, dtype=np.float64)[:, None] - center[0]
    cols = np.arange(size, dtype=np.float64)[None, :] - center[1]
    return np.exp(-0.5 * ((rows / sigma[0]) ** 2 + (cols / sigma[1]) ** 2))


def _windows(maps: np.ndarray, k: int) -> np.ndarray:
    """``(B, d, F, F)`` -> ``(B, n, n, d * k * k)`` every ``k x k`` window (valid positions), ``n = F - k + 1``."""
    view = np.lib.stride_tricks.sliding_window_view(maps, (k, k), axis=(2, 3))  # (B, d, n, n, k, k)
    b, d, n = view.shape[0], view.shape[1], view.shape[2]
    return np.ascontiguousarray(view.transpose(0, 2, 3, 1, 4, 5)).reshape(b, n, n, d * k * k)


@dataclass(frozen=True)
class OnlineModel:
    """A trained online filter and its normal equations (see the module docstring). Build with :meth:`train`."""

    mean: np.ndarray  # (C,) channel mean of the first frame's search maps
    basis: np.ndarray  # (C, d) principal directions, already divided by the window-energy scale
    k: int  # filter side, feature cells
    offset: int  # output cell of Siamese response cell 0: (Ft - k) / 2
    response_size: int  # R
    first_a: np.ndarray  # (D, D) first frame's normal equations, D = d * k * k
    first_b: np.ndarray  # (D,)
    recent_a: np.ndarray  # (D, D) exponential average over confident frames (the first frame to start)
    recent_b: np.ndarray
    weights: np.ndarray  # (D,) the filter, scaled so that its fit peaks at 1 on the first frame
    first_share: float
    reg: float
    cg_iterations: int
    # The filter folded into the channel projection: (C, k*k) taps and the constant of the mean, so that scoring
    # is one (positions x C) @ (C x k*k) product and k*k shifted sums, without cutting windows.
    taps: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    taps_constant: float = 0.0

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        features: np.ndarray,
        centers: Sequence[tuple[float, float]],
        sigma: tuple[float, float],
        *,
        channels: int,
        filter_cells: int,
        template_cells: int,
        response_size: int,
        reg: float,
        first_share: float,
        cg_iterations: int,
    ) -> OnlineModel | None:
        """Fit on the search maps ``(B, C, F, F)`` of the first frame (crops with the target at different places,
        since the features are not shift-equivariant), the target at output cell ``centers[i]`` ``(row, col)``
        of map ``i``.

        Returns None when the features carry no information (constant map: no principal direction), so that
        the caller tracks with the Siamese response alone instead of fusing a meaningless map.
        """
        feats = np.asarray(features, dtype=np.float32)
        if feats.ndim != 4 or feats.shape[0] != len(centers) or not np.all(np.isfinite(feats)):
            return None
        c = feats.shape[1]
        k = online_filter_cells(filter_cells, template_cells)
        if feats.shape[2] < k or feats.shape[3] < k:
            return None
        vectors = feats.transpose(0, 2, 3, 1).reshape(-1, c).astype(np.float64)  # (B*F*F, C)
        mean = vectors.mean(axis=0)
        centred = vectors - mean
        values, vecs = np.linalg.eigh(centred.T @ centred / max(len(centred), 1))
        d = max(1, min(int(channels), c))
        order = np.argsort(values)[::-1][:d]
        if values[order[0]] <= _MIN_ENERGY:
            return None
        basis = vecs[:, order]
        # Scale so that a window (k*k cells of d channels) has unit mean energy on this frame.
        energy = float(np.mean(np.sum((centred @ basis) ** 2, axis=1))) * k * k
        if not math.isfinite(energy) or energy <= _MIN_ENERGY:
            return None
        basis = (basis / math.sqrt(energy)).astype(np.float32)
        mean = mean.astype(np.float32)
        windows = np.concatenate([_compressed_windows(feats[i : i + 1], mean, basis, k) for i in range(len(feats))])
        n = windows.shape[1]
        labels = np.stack([gaussian_label(n, center, sigma) for center in centers])
        a, b = _normal_equations(windows, labels, None)
        dims = a.shape[0]
        weights = np.linalg.solve(a + (reg / dims) * np.trace(a) * np.eye(dims), b)
        # Ridge shrinks the fit; rescale (problem and solution alike) so that the first frame's fit peaks at 1,
        # as its label does: the fused score then means the same for any regulariser.
        peak = float(np.max(windows.reshape(-1, dims) @ weights))
        if not math.isfinite(peak) or peak <= _MIN_ENERGY:
            return None
        b, weights = b / peak, weights / peak
        return cls._with_weights(mean, basis, k, (template_cells - k) // 2, response_size, a, b, a, b, weights,
                                 first_share, reg, cg_iterations)

    @classmethod
    def _with_weights(cls, mean: np.ndarray, basis: np.ndarray, k: int, offset: int, response_size: int,
                      first_a: np.ndarray, first_b: np.ndarray, recent_a: np.ndarray, recent_b: np.ndarray,
                      weights: np.ndarray, first_share: float, reg: float, cg_iterations: int) -> OnlineModel:
        taps = (basis.astype(np.float64) @ weights.reshape(basis.shape[1], k * k)).astype(np.float32)
        return cls(mean=mean, basis=basis, k=k, offset=offset, response_size=response_size, first_a=first_a,
                   first_b=first_b, recent_a=recent_a, recent_b=recent_b, weights=weights, first_share=first_share,
                   reg=reg, cg_iterations=cg_iterations, taps=taps,
                   taps_constant=float(mean.astype(np.float64) @ taps.astype(np.float64).sum(axis=1)))

    # -- use ---------------------------------------------------------------------------------------
    @property
    def output_size(self) -> int:
        """Side of the full output map (every valid filter position)."""
        return self.response_size + 2 * self.offset

    def windows(self, features: np.ndarray) -> np.ndarray:
        """``(1, C, F, F)`` search features -> ``(n, n, D)`` compressed filter windows (float32), for :meth:`update`."""
        return _compressed_windows(np.asarray(features, dtype=np.float32), self.mean, self.basis, self.k)[0]

    def scores(self, features: np.ndarray) -> np.ndarray:
        """``(B, C, F, F)`` search features -> ``(B, R, R)`` filter outputs aligned with the Siamese response."""
        feats = np.asarray(features, dtype=np.float32)
        b, c, f, _ = feats.shape
        k, r, o = self.k, self.response_size, self.offset
        per_tap = (feats.transpose(0, 2, 3, 1).reshape(-1, c) @ self.taps).reshape(b, f, f, k * k)
        out = np.full((b, r, r), -self.taps_constant, dtype=np.float32)
        for ky in range(k):
            for kx in range(k):  # output cell (y, x) reads feature cell (y + o + ky, x + o + kx) with tap (ky, kx)
                out += per_tap[:, o + ky : o + ky + r, o + kx : o + kx + r, ky * k + kx]
        return out

    def update(
        self,
        windows: np.ndarray,
        center: tuple[float, float],
        sigma: tuple[float, float],
        rate: float,
        hard_negatives: Sequence[tuple[int, int]] = (),
        hard_negative_weight: float = 0.0,
    ) -> OnlineModel:
        """A new model that has also learnt one confident frame's windows ``(n, n, D)``, target at ``center``
        (output cells); ``hard_negatives`` are output cells of distractors, weighted ``1 + hard_negative_weight``."""
        n = windows.shape[0]
        weights = None
        if hard_negatives and hard_negative_weight > 0:
            weights = np.ones((n, n))
            for row, col in hard_negatives:
                if 0 <= row < n and 0 <= col < n:
                    weights[row, col] += hard_negative_weight
        a, b = _normal_equations(windows[None], gaussian_label(n, center, sigma)[None], weights)
        recent_a = (1.0 - rate) * self.recent_a + rate * a
        recent_b = (1.0 - rate) * self.recent_b + rate * b
        f = self.first_share
        total_a = f * self.first_a + (1.0 - f) * recent_a
        total_b = f * self.first_b + (1.0 - f) * recent_b
        dims = total_a.shape[0]
        reg = (self.reg / dims) * float(np.trace(total_a))
        new_weights = _conjugate_gradient(total_a, reg, total_b, self.weights, self.cg_iterations)
        return OnlineModel._with_weights(self.mean, self.basis, self.k, self.offset, self.response_size,
                                         self.first_a, self.first_b, recent_a, recent_b, new_weights, f, self.reg,
                                         self.cg_iterations)


def _compressed_windows(features: np.ndarray, mean: np.ndarray, basis: np.ndarray, k: int) -> np.ndarray:
    """``(B, C, F, F)`` -> ``(B, n, n, d*k*k)`` windows of the mean-removed, projected maps (float32)."""
    b, c, h, w = features.shape
    flat = features.transpose(0, 2, 3, 1).reshape(-1, c)
    compressed = ((flat - mean) @ basis).reshape(b, h, w, -1).transpose(0, 3, 1, 2)
    return _windows(compressed, k)


def _normal_equations(
    windows: np.ndarray, label: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """``A = sum c x x^T / sum c``, ``b = sum c y x / sum c`` over the ``(n, n, D)`` windows."""
    x = windows.reshape(-1, windows.shape[-1])
    y = label.reshape(-1).astype(x.dtype)
    if weights is None:
        return x.T @ x / len(x), x.T @ y / len(x)
    c = weights.reshape(-1)
    xc = x * c[:, None]
    total = float(c.sum())
    return xc.T @ x / total, xc.T @ y / total


def _conjugate_gradient(a: np.ndarray, reg: float, b: np.ndarray, start: np.ndarray, iterations: int) -> np.ndarray:
    """A few conjugate-gradient steps on ``(a + reg I) w = b`` from ``start`` (symmetric positive definite)."""
    w = start.copy()
    residual = b - (a @ w + reg * w)
    direction = residual.copy()
    rr = float(residual @ residual)
    for _ in range(iterations):
        if rr <= 1e-20:
            break
        ad = a @ direction + reg * direction
        step = rr / float(direction @ ad)
        w += step * direction
        residual -= step * ad
        rr_next = float(residual @ residual)
        direction = residual + (rr_next / rr) * direction
        rr = rr_next
    return w


def fuse_responses(siamese_logits: np.ndarray, online: np.ndarray, weight: float) -> np.ndarray:
    """Fused logits: ``logit((1 - weight) * sigmoid(siamese) + weight * clip(online, 0, 1))`` (Ocean-style fusion
    of a Siamese probability with an online classifier whose labels peak at 1). The result stays a logit map,
    so the peak selection, the score (``sigmoid`` of the peak) and the PSR work on it unchanged."""
    siamese = np.asarray(siamese_logits, dtype=np.float64)
    prob = (1.0 - weight) / (1.0 + np.exp(-np.clip(siamese, -50.0, 50.0))) + weight * np.clip(online, 0.0, 1.0)
    prob = np.clip(prob, _PROB_EPS, 1.0 - _PROB_EPS)
    return np.log(prob / (1.0 - prob)).astype(np.float32)


def find_distractors(
    response: np.ndarray, peak: tuple[int, int], exclude_radius: int, ratio: float
) -> list[tuple[int, int]]:
    """Cells ``(row, col)`` of the raw ``R x R`` logit map's local maxima outside the ``exclude_radius`` square
    around ``peak`` whose probability is at least ``ratio`` times the peak's (pytracking's localize_advanced
    idea): objects that look like the target."""
    prob = 1.0 / (1.0 + np.exp(-np.clip(np.asarray(response, dtype=np.float64), -50.0, 50.0)))
    r = prob.shape[0]
    threshold = ratio * prob[peak]
    padded = np.pad(prob, 1, constant_values=-np.inf)
    neighbourhood = np.lib.stride_tricks.sliding_window_view(padded, (3, 3)).max(axis=(2, 3))
    found = []
    for row, col in zip(*np.nonzero((prob >= neighbourhood) & (prob >= threshold)), strict=True):
        if max(abs(int(row) - peak[0]), abs(int(col) - peak[1])) > exclude_radius and r > 1:
            found.append((int(row), int(col)))
    return found
