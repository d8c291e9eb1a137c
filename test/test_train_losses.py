"""The paper's logistic + triplet loss (Eqs. 1-3) and the distillation term, on hand-made score maps."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from siammixer_ros.train.data import SEARCH_SIZE, make_label  # noqa: E402
from siammixer_ros.train.losses import (  # noqa: E402
    distillation_loss,
    feature_distillation_loss,
    joint_loss,
    logistic_loss,
    scale_rank_loss,
    triplet_loss,
)

CENTRE = (SEARCH_SIZE - 1) / 2


def _label(dx: float = 0.0, dy: float = 0.0) -> torch.Tensor:
    return torch.from_numpy(make_label(np.array([CENTRE + dx, CENTRE + dy])))[None]


def _scores_from(label: torch.Tensor, high: float, low: float) -> torch.Tensor:
    return torch.where(label == 1, torch.tensor(high), torch.tensor(low))[:, None]


def test_zero_scores_cost_log2() -> None:
    label = _label()
    scores = torch.zeros(1, 1, 9, 9)
    assert float(logistic_loss(scores, label)) == pytest.approx(math.log(2))
    assert float(triplet_loss(scores, label)) == pytest.approx(math.log(2))


def test_correct_scores_cost_less_than_swapped_ones() -> None:
    label = _label(32, -16)
    right = _scores_from(label, 4.0, -4.0)
    swapped = _scores_from(label, -4.0, 4.0)
    for loss in (logistic_loss, triplet_loss):
        assert float(loss(right, label)) < 0.05 < 3.0 < float(loss(swapped, label))
    assert float(joint_loss(right, label)["total"]) < float(joint_loss(swapped, label)["total"])


def test_triplet_term_is_the_mean_softplus_of_negative_minus_positive() -> None:
    label = _label()
    scores = torch.randn(1, 1, 9, 9)
    v, y = scores.flatten(), label.flatten()
    expected = np.mean([math.log1p(math.exp(float(n - p))) for p in v[y == 1] for n in v[y == 0]])
    assert float(triplet_loss(scores, label)) == pytest.approx(expected, rel=1e-5)


def test_logistic_loss_balances_positive_and_negative_cells() -> None:
    label = _label()  # 5 positive, 76 negative cells
    scores = _scores_from(label, 0.0, -50.0)  # negatives perfect, positives at 0
    assert float(logistic_loss(scores, label)) == pytest.approx(0.5 * math.log(2), rel=1e-4)


def test_negative_pairs_only_penalise_high_scores_and_have_no_triplet() -> None:
    label = torch.zeros(1, 9, 9)
    assert float(logistic_loss(torch.full((1, 1, 9, 9), -6.0), label)) < 0.01
    assert float(logistic_loss(torch.full((1, 1, 9, 9), 6.0), label)) > 5.0
    assert float(triplet_loss(torch.randn(1, 1, 9, 9), label)) == 0.0


def test_ignored_cells_do_not_count() -> None:
    label = _label()
    label_ring = label.clone()
    label_ring[0, 0, 0] = -1
    scores = torch.zeros(1, 1, 9, 9)
    scores[0, 0, 0, 0] = 100.0  # a huge score in the ignored cell
    assert float(logistic_loss(scores, label_ring)) == pytest.approx(math.log(2))
    assert float(logistic_loss(scores, label)) > 1.0


def test_distillation_is_smallest_when_the_student_matches_the_teacher() -> None:
    teacher = torch.randn(2, 9, 9) * 3
    positive = torch.tensor([True, False])
    for mode in ("bce", "kl"):
        same = float(distillation_loss(teacher[:, None], teacher, positive, mode))
        other = float(distillation_loss(-teacher[:, None], teacher, positive, mode))
        assert same < other
    assert float(distillation_loss(teacher[:, None], teacher, positive, "kl")) == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="distillation mode"):
        distillation_loss(teacher[:, None], teacher, positive, "l2")


def _standardised(t: torch.Tensor) -> torch.Tensor:
    return (t - t.mean(dim=(0, 2, 3), keepdim=True)) / t.std(dim=(0, 2, 3), keepdim=True, unbiased=False)


def test_feature_distillation_is_zero_on_the_standardised_teacher_and_ignores_its_scale() -> None:
    torch.manual_seed(0)
    teacher = torch.randn(4, 48, 8, 8) * 5 + 2
    target = _standardised(teacher)
    assert float(feature_distillation_loss(target, teacher)) == pytest.approx(0.0, abs=1e-6)
    # A per-channel gain and offset of the teacher changes nothing: the term does not depend on its units.
    gain, offset = torch.rand(1, 48, 1, 1) * 10 + 0.1, torch.randn(1, 48, 1, 1) * 7
    assert float(feature_distillation_loss(target, teacher * gain + offset)) == pytest.approx(0.0, abs=1e-5)
    # A student that outputs zeros costs the targets' variance (1); a shuffled one costs about 2.
    assert float(feature_distillation_loss(torch.zeros_like(target), teacher)) == pytest.approx(1.0, abs=1e-4)
    shuffled = target.roll(1, dims=0)  # every sample paired with another one
    assert float(feature_distillation_loss(shuffled, teacher)) > 1.5


def test_feature_distillation_treats_a_constant_teacher_channel_as_zero() -> None:
    teacher = torch.randn(2, 3, 4, 4)
    teacher[:, 1] = 0.0  # a ReLU channel that never fires in this batch
    student = _standardised(teacher)
    student[:, 1] = 0.0
    assert float(feature_distillation_loss(student, teacher)) == pytest.approx(0.0, abs=1e-6)
    student[:, 1] = 1.0
    assert float(feature_distillation_loss(student, teacher)) == pytest.approx(1.0 / 3.0, rel=1e-4)


def test_pairs_without_labelled_cells_do_not_dilute_the_logistic_loss() -> None:
    label = _label()
    scores = _scores_from(label, 2.0, -2.0)
    unlabelled = torch.full_like(label, -1.0)  # a pseudo pair: the teacher supervises it, not the labels
    alone = float(logistic_loss(scores, label))
    mixed = float(logistic_loss(torch.cat([scores, torch.zeros_like(scores)]), torch.cat([label, unlabelled])))
    assert mixed == pytest.approx(alone, rel=1e-6)
    assert float(logistic_loss(torch.zeros_like(scores), unlabelled)) == 0.0


def test_box_targets_are_the_distances_to_the_box_edges_on_the_cells_inside() -> None:
    from siammixer_ros.train.losses import box_targets

    xy = torch.tensor([[127.5, 127.5], [float("nan"), float("nan")]])
    wh = torch.tensor([[64.0, 32.0], [float("nan"), float("nan")]])
    target, inside = box_targets(xy, wh)
    assert target.shape == (2, 4, 9, 9) and inside.shape == (2, 9, 9)
    # Centre cell (4, 4) looks at 127.5: 32 px to the left/right edges, 16 px to the top/bottom ones.
    assert target[0, :, 4, 4].tolist() == [32.0, 16.0, 32.0, 16.0]
    # Cells 16 px apart: a 64 x 32 box centred on a cell point holds 3 x 1 cell points strictly inside.
    assert inside[0].sum() == 3 and inside[0, 4, 3:6].all()
    assert not inside[1].any()  # a negative pair has no box


def test_iou_loss_is_zero_for_the_right_box_and_grows_with_a_wrong_one() -> None:
    from siammixer_ros.train.losses import iou_loss

    target = torch.full((1, 4, 9, 9), 20.0)
    cells = torch.zeros(1, 9, 9, dtype=torch.bool)
    cells[0, 4, 4] = True
    for kind in ("giou", "iou"):
        assert float(iou_loss(target.clone(), target, cells, kind)) == pytest.approx(0.0, abs=1e-6)
        wide = target.clone()
        wide[:, 0] = 60.0  # left edge 40 px further: IoU = 40*40 / (80*40) = 0.5
        assert float(iou_loss(wide, target, cells, kind)) == pytest.approx(0.5, abs=1e-5)
    assert float(iou_loss(target, target, torch.zeros_like(cells))) == 0.0  # no cell: no loss


def test_box_loss_takes_the_teachers_box_on_confident_cells_of_pseudo_pairs() -> None:
    from siammixer_ros.train.losses import box_loss

    nan = float("nan")
    teacher = torch.full((2, 4, 9, 9), 24.0)
    logits = torch.full((2, 9, 9), -3.0)
    logits[1, 4, 4] = 2.0  # pair 1 (pseudo): the teacher is confident at the centre only
    pred = torch.full((2, 4, 9, 9), 24.0)
    xy, wh = torch.tensor([[nan, nan], [nan, nan]]), torch.tensor([[nan, nan], [nan, nan]])
    pseudo = torch.tensor([False, True])
    assert float(box_loss(pred, xy, wh, teacher, logits, pseudo)) == pytest.approx(0.0, abs=1e-6)
    wrong = torch.full((2, 4, 9, 9), 24.0)
    wrong[1, :, 4, 4] = 12.0
    loss = box_loss(wrong, xy, wh, teacher, logits, pseudo)
    assert float(loss) > 0.5  # one cell, IoU 0.25


def test_distillation_pair_weights_leave_pairs_out_at_the_same_scale() -> None:
    torch.manual_seed(0)
    scores, teacher = torch.randn(4, 1, 9, 9), torch.randn(4, 9, 9)
    positive = torch.ones(4, dtype=torch.bool)
    plain = distillation_loss(scores, teacher, positive)
    torch.testing.assert_close(distillation_loss(scores, teacher, positive, pair_weight=torch.ones(4)), plain)
    # Pair 3 left out: its cells no longer count, whatever the teacher says there.
    kept = distillation_loss(scores, teacher, positive, pair_weight=torch.tensor([1.0, 1.0, 1.0, 0.0]))
    teacher_changed = teacher.clone()
    teacher_changed[3] = 100.0
    torch.testing.assert_close(
        distillation_loss(scores, teacher_changed, positive, pair_weight=torch.tensor([1.0, 1.0, 1.0, 0.0])), kept)
    assert not torch.isclose(kept, plain)


def test_distillation_can_leave_the_labelled_positive_cells_to_the_labels() -> None:
    # loss.distill_labelled_positives: false passes cell_weight = (labels <= 0): the teacher no longer pulls on the
    # positive cells (where size-aware labels say how good the crop's scale is), and every other cell is pulled
    # exactly as hard as before.
    torch.manual_seed(0)
    label = _label().expand(2, 9, 9)
    teacher = torch.randn(2, 9, 9)
    positive = torch.ones(2, dtype=torch.bool)
    grads = []
    for cells in (None, label <= 0):
        scores = torch.randn(2, 1, 9, 9, generator=torch.Generator().manual_seed(1)).requires_grad_()
        distillation_loss(scores, teacher, positive, cell_weight=cells).backward()
        grads.append(scores.grad[:, 0])
    pos = label > 0
    assert pos.any()
    assert torch.all(grads[1][pos] == 0) and torch.all(grads[0][pos] != 0)
    torch.testing.assert_close(grads[1][~pos], grads[0][~pos])
    torch.testing.assert_close(distillation_loss(torch.zeros(2, 1, 9, 9), teacher, positive,
                                                 cell_weight=torch.ones(2, 9, 9)),
                               distillation_loss(torch.zeros(2, 1, 9, 9), teacher, positive))


def test_a_soft_positive_label_is_learnt_as_that_probability() -> None:
    # Positive cells labelled 0.6 (a crop at the wrong scale): the loss is lowest where their logit is logit(0.6),
    # not at the highest logit as for a label of 1; negatives are untouched.
    label = _label()
    soft = torch.where(label > 0, torch.tensor(0.6), label)
    target = math.log(0.6 / 0.4)
    costs = {v: float(logistic_loss(_scores_from(label, v, -20.0), soft)) for v in (target - 1, target, target + 1)}
    assert costs[target] < costs[target - 1] and costs[target] < costs[target + 1]
    # A label of exactly 1 costs what the hard loss costs.
    scores = torch.randn(1, 1, 9, 9)
    ones = torch.where(label > 0, torch.tensor(1.0), label)
    assert float(logistic_loss(scores, ones)) == float(logistic_loss(scores, label))
    # The triplet term counts soft positives as positives.
    assert float(triplet_loss(scores, soft)) == pytest.approx(float(triplet_loss(scores, label)))


def test_scale_ranking_asks_the_matched_crop_to_peak_highest() -> None:
    matched = torch.full((2, 1, 9, 9), -4.0)
    matched[:, 0, 4, 4] = 3.0
    off = torch.full((2, 2, 9, 9), -4.0)
    off[:, :, 4, 5] = 1.0
    low = scale_rank_loss(matched, off)
    assert float(low) == pytest.approx(float(torch.nn.functional.softplus(torch.tensor(-2.0))), rel=1e-6)
    # The same maps with the roles swapped cost more; only the peaks count, not the other cells.
    assert float(scale_rank_loss(off[:, :1], torch.cat([matched, matched], 1))) > float(low)
    quieter = off.clone()
    quieter[:, :, 0, 0] = -9.0
    assert float(scale_rank_loss(matched, quieter)) == pytest.approx(float(low))
    # Its gradient raises the matched peak and lowers the off peaks, nothing else.
    m, o = matched.clone().requires_grad_(), off.clone().requires_grad_()
    scale_rank_loss(m, o).backward()
    assert m.grad[:, 0, 4, 4].lt(0).all() and o.grad[:, :, 4, 5].gt(0).all()
    assert int((m.grad != 0).sum()) == 2 and int((o.grad != 0).sum()) == 4
    assert float(scale_rank_loss(matched[:0], off[:0])) == 0.0
