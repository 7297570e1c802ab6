"""Matching loss of recurrent instance segmentation, checked against hand computations.

The toy case used throughout: a 1 x 6 image with two instances,
``labels = [1, 1, 0, 0, 2, 2]``, and three predicted steps

* step 0: mask ``[0, 0, 0, 0, 1, 1]``   confidence 0.9  (IoU 0 with #1, 1 with #2)
* step 1: mask ``[.5, .5, 0, 0, 0, 0]`` confidence 0.8  (IoU 1/(1+2-1) = 0.5 with #1)
* step 2: mask ``[1, 1, 0, 0, 0, 0]``   confidence 0.2  (IoU 1 with #1)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from instatrack.losses.hungarian_iou import (
    HungarianIoULoss,
    match_steps,
    matching_loss,
    one_hot_instances,
    soft_iou,
)

MASKS = torch.tensor([[0, 0, 0, 0, 1, 1], [0.5, 0.5, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0]],
                     dtype=torch.float64)
CONF = torch.tensor([0.9, 0.8, 0.2], dtype=torch.float64)
LABELS = torch.tensor([[1, 1, 0, 0, 2, 2]])


def _logits(p: torch.Tensor) -> torch.Tensor:
    # sigmoid(+-40) is 1 or 0 to ~1e-18, so the hand values hold to double precision
    return torch.logit(p).clamp(-40, 40)


def _toy_loss(lam: float, ordered: bool = False):
    return matching_loss(_logits(MASKS).reshape(3, 1, 6), _logits(CONF), LABELS, lam, ordered)


def test_soft_iou_by_hand():
    instances, valid = one_hot_instances(LABELS)
    iou = soft_iou(MASKS.float(), instances, valid)
    expected = torch.tensor([[0.0, 1.0], [0.5, 0.0], [1.0, 0.0]])
    assert torch.allclose(iou, expected, atol=1e-6)


def test_unannotated_pixels_are_ignored():
    labels = torch.tensor([1, 1, -1, 0])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    instances, valid = one_hot_instances(labels)
    assert instances.shape == (1, 4)  # -1 is not an instance
    assert soft_iou(mask, instances, valid).item() == pytest.approx(1.0)
    # the same mask counted on every pixel would give 2 / 3
    assert soft_iou(mask, instances, torch.ones(4)).item() == pytest.approx(2 / 3)


def test_assignment_and_loss_lambda_one():
    # cost = -IoU - log(conf):       inst 1                 inst 2
    #   step 0                    0 + 0.1054             -1 + 0.1054
    #   step 1                 -0.5 + 0.2231              0 + 0.2231
    #   step 2                   -1 + 1.6094              0 + 1.6094
    # best: step 0 -> #2, step 1 -> #1 (-1.1715); step 2 unmatched, BCE(0.2, 0) = -log 0.8
    loss, parts = _toy_loss(lam=1.0)
    expected = (-1 - math.log(0.9) - 0.5 - math.log(0.8) - math.log(0.8)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert parts["matched"] == 2
    assert parts["iou"] == pytest.approx(0.75)


def test_confidence_weight_changes_the_assignment():
    # with lam = 0.1 the better IoU of step 2 outweighs its low confidence:
    # step 0 -> #2, step 2 -> #1, step 1 unmatched with BCE(0.8, 0) = -log 0.2
    loss, parts = _toy_loss(lam=0.1)
    expected = (-1 + 0.1 * -math.log(0.9) - 1 + 0.1 * -math.log(0.2)
                + 0.1 * -math.log(0.2)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert parts["iou"] == pytest.approx(1.0)


def test_ordered_matching_uses_the_first_steps():
    # only steps 0 and 1 may match (as many as instances); step 2 must say "stop"
    loss, parts = _toy_loss(lam=0.1, ordered=True)
    expected = (-1 + 0.1 * -math.log(0.9) - 0.5 + 0.1 * -math.log(0.8)
                + 0.1 * -math.log(0.8)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert parts["iou"] == pytest.approx(0.75)


def test_match_steps_rectangular_and_ordered():
    cost = np.array([[0.0, -1.0], [-0.5, 0.0], [-1.0, 0.0]])
    rows, cols = match_steps(cost)
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == {0: 1, 2: 0}
    rows, cols = match_steps(cost, ordered=True)
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == {0: 1, 1: 0}
    rows, cols = match_steps(np.zeros((3, 0)))
    assert rows.size == cols.size == 0


def test_loss_does_not_depend_on_instance_ids():
    swapped = torch.tensor([[7, 7, 0, 0, 3, 3]])
    a, _ = _toy_loss(lam=1.0)
    b, _ = matching_loss(_logits(MASKS).reshape(3, 1, 6), _logits(CONF), swapped, 1.0)
    assert a.item() == pytest.approx(b.item(), abs=1e-12)


def test_no_instances_means_every_step_should_stop():
    loss, parts = matching_loss(_logits(MASKS).reshape(3, 1, 6), _logits(CONF),
                                torch.zeros((1, 6), dtype=torch.long), lam=2.0)
    expected = 2.0 * -(math.log(0.1) + math.log(0.2) + math.log(0.8)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert parts["matched"] == 0


def test_gradients_reach_matched_masks_only():
    mask_logits = _logits(MASKS).reshape(3, 1, 6).clamp(-3, 3).requires_grad_(True)
    conf_logits = _logits(CONF).requires_grad_(True)
    loss, _ = matching_loss(mask_logits, conf_logits, LABELS, lam=1.0)
    loss.backward()
    assert mask_logits.grad[0].abs().sum() > 0 and mask_logits.grad[1].abs().sum() > 0
    assert mask_logits.grad[2].abs().sum() == 0  # unmatched: only its confidence is trained
    assert torch.all(conf_logits.grad[:2] < 0) and conf_logits.grad[2] > 0


def test_batch_module_uses_the_first_steps_of_each_image():
    logits = _logits(MASKS).reshape(1, 3, 1, 6).float()
    conf = _logits(CONF).reshape(1, 3).float()
    labels = LABELS[None]
    criterion = HungarianIoULoss(lam=1.0)
    both, _ = criterion(torch.cat([logits, logits]), torch.cat([conf, conf]),
                        torch.cat([labels, labels]), steps=[3, 2])
    first, _ = matching_loss(logits[0], conf[0], labels[0], 1.0)
    second, _ = matching_loss(logits[0, :2], conf[0, :2], labels[0], 1.0)
    assert both.item() == pytest.approx((first.item() + second.item()) / 2, abs=1e-6)
