"""Lovász hinge against the Jaccard loss computed from sets, by brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instatrack.losses.lovasz import (
    jaccard_increments,
    lovasz_hinge,
    lovasz_hinge_flat,
    lovasz_hinge_rows,
)


def jaccard_loss_of_mistakes(truth: np.ndarray, mistakes: np.ndarray) -> float:
    """Jaccard loss of the hard prediction that gets exactly ``mistakes`` wrong."""
    pred = truth ^ mistakes
    union = (truth | pred).sum()
    return 0.0 if union == 0 else 1.0 - (truth & pred).sum() / union


def lovasz_by_thresholds(logits: np.ndarray, truth: np.ndarray) -> float:
    """Lovász extension as the integral over t of J({i : m_i >= t}), m = hinge errors."""
    errors = np.maximum(1.0 - logits * np.where(truth, 1.0, -1.0), 0.0)
    levels = np.unique(np.concatenate([errors, [0.0]]))[::-1]
    total = 0.0
    for high, low in zip(levels[:-1], levels[1:], strict=True):
        total += (high - low) * jaccard_loss_of_mistakes(truth, errors >= high)
    return total


def hard_iou(logits: np.ndarray, truth: np.ndarray) -> float:
    pred = logits > 0
    return (pred & truth).sum() / max((pred | truth).sum(), 1)


def test_perfect_prediction_with_margin_gives_zero():
    rng = np.random.default_rng(0)
    truth = rng.random(50) > 0.5
    logits = np.where(truth, 1.0, -1.0) * (1.0 + rng.random(50) * 3)
    loss = lovasz_hinge_flat(torch.tensor(logits), torch.tensor(truth))
    assert float(loss) == 0.0


def test_mistakes_at_unit_error_give_the_jaccard_loss_by_hand():
    # truth 1 1 1 0 0; pixels 2 and 4 are wrong (error 1), the rest right with margin 1
    # -> prediction 1 1 0 0 1: intersection 2, union 4, Jaccard loss 1 - 2/4 = 0.5
    truth = torch.tensor([True, True, True, False, False])
    logits = torch.tensor([1.0, 1.0, 0.0, -1.0, 0.0])
    assert float(lovasz_hinge_flat(logits, truth)) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(5))
def test_matches_the_brute_force_lovasz_extension(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random(9) > 0.4
    logits = rng.normal(0, 1.5, 9)
    ours = float(lovasz_hinge_flat(torch.tensor(logits), torch.tensor(truth)))
    assert ours == pytest.approx(lovasz_by_thresholds(logits, truth), abs=1e-9)


def test_gradient_step_lowers_the_extension_and_fixes_wrong_signs():
    truth = np.array([True, True, False, False])
    logits = np.array([2.0, -0.5, -2.0, 0.3])  # pixels 1 and 3 have the wrong sign
    assert hard_iou(logits, truth) == pytest.approx(1 / 3)
    x = torch.tensor(logits, requires_grad=True)
    lovasz_hinge_flat(x, torch.tensor(truth)).backward()
    grad = x.grad.numpy()
    assert grad[1] < 0 and grad[3] > 0  # raise the missed positive, lower the false one
    before = lovasz_by_thresholds(logits, truth)
    stepped = logits - 0.1 * grad
    assert lovasz_by_thresholds(stepped, truth) < before
    for _ in range(20):
        x = torch.tensor(stepped, requires_grad=True)
        lovasz_hinge_flat(x, torch.tensor(truth)).backward()
        stepped = stepped - 0.2 * x.grad.numpy()
    assert hard_iou(stepped, truth) == 1.0


def test_increments_sum_to_the_loss_of_all_mistakes():
    truth = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0]])
    # all five wrong: prediction 0 1 0 1 1, intersection 0 -> Jaccard loss 1
    assert float(jaccard_increments(truth).sum()) == pytest.approx(1.0)


def test_rows_match_flat_and_empty_input():
    rng = np.random.default_rng(3)
    logits = torch.tensor(rng.normal(size=(3, 20)))
    truth = torch.tensor(rng.random((3, 20)) > 0.5)
    rows = lovasz_hinge_rows(logits, truth)
    for k in range(3):
        assert float(rows[k]) == pytest.approx(float(lovasz_hinge_flat(logits[k], truth[k])))
    empty = lovasz_hinge_rows(torch.zeros((2, 0)), torch.zeros((2, 0), dtype=torch.bool))
    assert empty.shape == (2,) and float(empty.abs().sum()) == 0.0


def test_no_positive_pixels_costs_the_worst_false_positive():
    truth = torch.zeros(4, dtype=torch.bool)
    logits = torch.tensor([-2.0, 0.5, -1.0, -0.5])
    # the largest hinge error (1.5, at the 0.5 logit) times the Jaccard loss 1
    assert float(lovasz_hinge_flat(logits, truth)) == pytest.approx(1.5)


def test_invalid_pixels_are_ignored_per_image():
    truth = torch.tensor([[[True, False], [False, False]]])
    logits = torch.tensor([[[1.0, -1.0], [5.0, -1.0]]])  # only pixel (1, 0) is wrong
    valid = torch.tensor([[[True, True], [False, True]]])
    assert float(lovasz_hinge(logits, truth, valid)) == 0.0
    assert float(lovasz_hinge(logits, truth)) > 0.0
