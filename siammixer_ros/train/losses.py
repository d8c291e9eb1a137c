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

Scale ranking (not in the paper): the crop of a frame cut at the target's scale should peak above crops of the
same frame cut larger or smaller (:func:`scale_rank_loss`); the cell labels alone reward a target seen at any scale
within the jitter, and the scale probe (train.validate ``--scaled-pairs``) found the peak nearly blind to scale.

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
    """Balanced logistic loss. ``scores`` (B,1,R,R) or (B,R,R) logits; ``labels`` 1 / 0 / -1 (ignore).

    A positive cell's label may be soft, ``0 < y <= 1``: its term is the binary cross-entropy towards ``y``,
    ``y softplus(-v) + (1 - y) softplus(v)``, which is ``softplus(-v)`` for ``y = 1``.
    """
    v = scores.reshape(scores.shape[0], -1)
    y = labels.reshape(labels.shape[0], -1)
    pos, neg = (y > 0).float(), (y == 0).float()
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    soft = y.clamp(min=0)
    pos_term = ((soft * F.softplus(-v) + (1 - soft) * F.softplus(v)) * pos).sum(1) / n_pos.clamp(min=1)
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
    pos, neg = (y > 0), (y == 0)
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
                      mode: str = "bce", temperature: float = 1.0,
                      pair_weight: torch.Tensor | None = None,
                      cell_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Student logits (B,1,R,R) against teacher logits (B,R,R) on the same cells.

    ``pair_weight`` (B,) and ``cell_weight`` (B,R,R) of 0/1 leave pairs or single cells out (bce only) without
    changing the term's scale: the sum over the kept cells is divided by the number of all cells, so all-ones gives
    the plain mean.
    """
    v = scores.reshape(scores.shape[0], -1)
    t = teacher_logits.reshape(teacher_logits.shape[0], -1).to(v.dtype)
    if mode == "bce":
        target = torch.sigmoid(t / temperature)
        if pair_weight is None and cell_weight is None:
            return F.binary_cross_entropy_with_logits(v, target)
        per_cell = F.binary_cross_entropy_with_logits(v, target, reduction="none")
        if cell_weight is not None:
            per_cell = per_cell * cell_weight.reshape(per_cell.shape).to(per_cell.dtype)
        if pair_weight is not None:
            per_cell = per_cell * pair_weight.to(per_cell.dtype)[:, None]
        return per_cell.mean()
    if mode == "kl":
        mask = positive.bool()
        if not mask.any():
            return scores.sum() * 0.0
        log_p_student = F.log_softmax(v[mask] / temperature, dim=1)
        p_teacher = F.softmax(t[mask] / temperature, dim=1)
        return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature ** 2
    raise ValueError(f"unknown distillation mode {mode!r}; use 'bce' or 'kl'")


def scale_rank_loss(matched: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
    """The crop cut at the target's scale should peak above the crops of the same frame cut larger or smaller.

    ``matched`` (M,1,R,R) logits of the matched crops, ``off`` (M,K,R,R) of each one's K off crops; the peak is a
    map's highest cell, as the tracker's scale search compares peaks. ``mean softplus(peak_off - peak_matched)``:
    the triplet loss's form, between crops instead of cells. 0 when M is 0.
    """
    if matched.shape[0] == 0:
        return matched.sum() * 0.0
    peak_matched = matched.flatten(1).amax(1)
    peak_off = off.flatten(2).amax(2)
    return F.softplus(peak_off - peak_matched[:, None]).mean()


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


# --- box branch (not in the paper) -------------------------------------------------------------------------------

def cell_points(response_size: int = 9, stride: int = 16, search_size: int = 256) -> torch.Tensor:
    """(2, R, R) x, y search-crop coordinates of the points the response cells look at (data.response_positions)."""
    offsets = (torch.arange(response_size, dtype=torch.float32) - (response_size - 1) / 2.0) * stride
    coords = (search_size - 1) / 2.0 + offsets
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([xs, ys])


def box_targets(target_xy: torch.Tensor, target_wh: torch.Tensor, response_size: int = 9, stride: int = 16,
                search_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth (l, t, r, b) per cell (B,4,R,R) and the cells whose point lies inside the box (B,R,R) bool.

    ``target_xy`` (B,2) box centres and ``target_wh`` (B,2) sizes in search-crop pixels (NaN: no box, no cell).
    A box of ``w`` pixels centred at pixel ``c`` spans ``c - w/2 .. c + w/2`` (pixel centres at integers).
    """
    points = cell_points(response_size, stride, search_size).to(target_xy.dtype)  # (2,R,R)
    half = target_wh[:, :, None, None] / 2.0
    low = target_xy[:, :, None, None] - half  # (B,2,1,1) x0, y0
    high = target_xy[:, :, None, None] + half
    lt = points[None] - low
    rb = high - points[None]
    target = torch.cat([lt, rb], dim=1)
    inside = (target > 0).all(dim=1) & torch.isfinite(target).all(dim=1)
    return torch.nan_to_num(target, nan=1.0), inside


def iou_loss(pred: torch.Tensor, target: torch.Tensor, cells: torch.Tensor, kind: str = "giou") -> torch.Tensor:
    """IoU loss of (l, t, r, b) predictions (B,4,R,R) against targets (B,4,R,R) on ``cells`` (B,R,R) bool.

    Both boxes are measured from the same cell point, so the overlap is ``(min l + min r) x (min t + min b)``.
    ``giou``: 1 - GIoU (Rezatofighi et al. 2019); ``iou``: 1 - IoU (linear IoU loss, UnitBox/Ocean). Mean over cells
    within a pair, then over the pairs that have any cell (0 when none has).
    """
    if kind not in ("giou", "iou"):
        raise ValueError(f"unknown box loss {kind!r}; use 'giou' or 'iou'")
    weight = cells.to(pred.dtype)
    has = weight.sum(dim=(1, 2)) > 0
    if not bool(has.any()):
        return pred.sum() * 0.0
    pred, target, weight = pred[has], target[has].to(pred.dtype), weight[has]
    pl, pt, pr, pb = pred.unbind(1)
    tl, tt, tr, tb = target.unbind(1)
    inter = (torch.minimum(pl, tl) + torch.minimum(pr, tr)).clamp(min=0) * \
        (torch.minimum(pt, tt) + torch.minimum(pb, tb)).clamp(min=0)
    union = (pl + pr) * (pt + pb) + (tl + tr) * (tt + tb) - inter
    iou = inter / union.clamp(min=1e-6)
    if kind == "giou":
        enclosing = (torch.maximum(pl, tl) + torch.maximum(pr, tr)) * (torch.maximum(pt, tt) + torch.maximum(pb, tb))
        iou = iou - (enclosing - union) / enclosing.clamp(min=1e-6)
    per_pair = ((1.0 - iou) * weight).sum(dim=(1, 2)) / weight.sum(dim=(1, 2))
    return per_pair.mean()


def box_loss(pred: torch.Tensor, target_xy: torch.Tensor, target_wh: torch.Tensor,
             teacher_box: torch.Tensor | None = None, teacher_logits: torch.Tensor | None = None,
             pseudo: torch.Tensor | None = None, kind: str = "giou", teacher_min_logit: float = 0.0
             ) -> torch.Tensor:
    """The box branch's loss on a batch: ground truth on the cells inside the box of pairs that have one, and on
    pseudo pairs (``pseudo`` (B,) bool, no ground truth) the teacher's own (l, t, r, b) (B,4,R,R) on the cells where
    its foreground logit is above ``teacher_min_logit`` (0: probability 0.5). Negative pairs have no cell."""
    target, cells = box_targets(target_xy, target_wh, pred.shape[-1])
    if teacher_box is not None and pseudo is not None and bool(pseudo.any()):
        confident = (teacher_logits > teacher_min_logit) & (teacher_box > 0).all(dim=1)
        use = pseudo[:, None, None, None]
        target = torch.where(use, teacher_box.to(target.dtype), target)
        cells = torch.where(pseudo[:, None, None], confident, cells)
    return iou_loss(pred, target, cells, kind)
