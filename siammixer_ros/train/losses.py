"""The paper's joint loss (Eqs. 1-3) and a distillation term.

The paper's formulas are garbled in print; implemented here is their intent, after Dong & Shen
("Triplet loss in Siamese network for object tracking", ECCV 2018, the paper's reference [25]):

- Eq. 2, logistic loss over response cells with labels y in {+1, -1}: ``log(1 + exp(-y v))``,
  balanced so that the positive and the negative cells of a pair weigh half each (SiamFC); pairs
  without a target (negative pairs) contribute their negative cells only.
- Eq. 3, triplet loss over every (positive cell p, negative cell n) combination of a positive pair:
  the probability that p scores above n, ``exp(v_p) / (exp(v_p) + exp(v_n))``, is maximised, i.e.
  ``mean_{p,n} -log(...) = mean_{p,n} softplus(v_n - v_p)`` (the printed Eq. 3 lacks the minus).
- Eq. 1: ``L = L_logistic + triplet_weight * L_triplet``.

Cells labelled -1 (an optional ring between ``pos_radius`` and ``neg_radius``, or every cell of a pseudo
pair, which has no ground truth) are ignored; a pair with no labelled cell does not count in the mean.

Distillation (not in the paper): the teacher's foreground logits ``t`` on the same 9x9 grid.
``bce``: the student's cell probabilities follow the teacher's, ``BCE(sigmoid(v), sigmoid(t / T))``;
``kl``: the spatial distribution over the 81 cells, ``KL(softmax(t / T) || softmax(v / T)) T^2``
(positive pairs only; a negative pair has no meaningful spatial distribution).

Feature distillation (not in the paper; FitNets-style): a 1x1 convolution (the adapter, used in training
only) maps the student's 256-channel MB4 features to the teacher's 48 backbone channels, and the loss is
the mean squared error against the teacher's features standardised per channel over the batch and the
positions. Standardising makes the term start near 1 whatever the teacher's feature scale, and it
supervises every position of every crop, negatives included: far more signal per pair than the 81
response cells, which is what scarce data need.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def logistic_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Balanced logistic loss. ``scores`` (B,1,R,R) or (B,R,R) logits; ``labels`` 1 / 0 / -1 (ignore)."""
    v = scores.reshape(scores.shape[0], -1)
    y = labels.reshape(labels.shape[0], -1)
    pos, neg = (y == 1).float(), (y == 0).float()
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    pos_term = (F.softplus(-v) * pos).sum(1) / n_pos.clamp(min=1)
    neg_term = (F.softplus(v) * neg).sum(1) / n_neg.clamp(min=1)
    has_pos = (n_pos > 0).float()
    # Positive pairs: half positive, half negative cells. Negative pairs: all weight on negatives.
    per_pair = has_pos * 0.5 * (pos_term + neg_term) + (1 - has_pos) * neg_term
    # Pairs without any labelled cell (pseudo pairs, supervised by the teacher only) do not count.
    labelled = ((n_pos + n_neg) > 0).float()
    return (per_pair * labelled).sum() / labelled.sum().clamp(min=1)


def triplet_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over positive pairs of mean over (pos cell, neg cell) of softplus(v_neg - v_pos); 0 if none."""
    v = scores.reshape(scores.shape[0], -1)
    y = labels.reshape(labels.shape[0], -1)
    pos, neg = (y == 1), (y == 0)
    has = pos.any(1) & neg.any(1)
    if not has.any():
        return scores.sum() * 0.0
    v, pos, neg = v[has], pos[has].float(), neg[has].float()
    # (B, P, N) through all cells: margin[b, i, j] = v[b, j] - v[b, i], masked to pos i, neg j.
    margin = v[:, None, :] - v[:, :, None]
    mask = pos[:, :, None] * neg[:, None, :]
    per_pair = (F.softplus(margin) * mask).sum((1, 2)) / mask.sum((1, 2))
    return per_pair.mean()


def distillation_loss(scores: torch.Tensor, teacher_logits: torch.Tensor, positive: torch.Tensor,
                      mode: str = "bce", temperature: float = 1.0) -> torch.Tensor:
    """Student logits (B,1,R,R) against teacher logits (B,R,R) on the same cells."""
    v = scores.reshape(scores.shape[0], -1)
    t = teacher_logits.reshape(teacher_logits.shape[0], -1).to(v.dtype)
    if mode == "bce":
        target = torch.sigmoid(t / temperature)
        return F.binary_cross_entropy_with_logits(v, target)
    if mode == "kl":
        mask = positive.bool()
        if not mask.any():
            return scores.sum() * 0.0
        log_p_student = F.log_softmax(v[mask] / temperature, dim=1)
        p_teacher = F.softmax(t[mask] / temperature, dim=1)
        return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature ** 2
    raise ValueError(f"unknown distillation mode {mode!r}; use 'bce' or 'kl'")


def joint_loss(scores: torch.Tensor, labels: torch.Tensor, triplet_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Eq. 1: ``{"logistic", "triplet", "total"}``."""
    lo = logistic_loss(scores, labels)
    tr = triplet_loss(scores, labels)
    return {"logistic": lo, "triplet": tr, "total": lo + triplet_weight * tr}


def feature_distillation_loss(adapted: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """MSE between adapted student features (B,C,H,W) and teacher features (B,C,H,W), the latter
    standardised per channel over batch and positions (a channel that is constant in the batch counts 0)."""
    t = teacher.to(adapted.dtype)
    mean = t.mean(dim=(0, 2, 3), keepdim=True)
    std = t.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
    target = (t - mean) / (std + eps)
    target = torch.where(std > eps, target, torch.zeros_like(target))
    return F.mse_loss(adapted, target)
