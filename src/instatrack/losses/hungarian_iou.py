"""Matching loss of recurrent instance segmentation (Romera-Paredes & Torr, ECCV 2016).

The network emits ``P`` masks and confidences in some order; the ground truth
has ``G`` instances in no order. Each step is matched to at most one instance
by the Hungarian algorithm (scipy's ``linear_sum_assignment`` on the detached
cost), so the loss does not depend on the order in which objects are found:

* ``cost[p, g] = -softIoU(mask_p, instance_g) + lam * BCE(confidence_p, 1)``
* matched step: ``-softIoU + lam * BCE(confidence, 1)``
* unmatched step: ``lam * BCE(confidence, 0)``

and the loss of an image is the sum over its steps divided by ``P``.

With ``ordered=True`` (the published code) only the first ``min(P, G)`` steps
compete for instances and steps after the ``G``-th are the unmatched ones,
which is what inference relies on when it stops at the first low confidence.

Pixels labelled -1 are not annotated and are left out of every IoU.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.nn import functional as F


def one_hot_instances(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Instances of one label image.

    ``labels (Y, X)`` int (0 background, -1 ignored) -> ``(G, Y*X)`` float one-hot
    masks of the ``G`` ids > 0 (sorted) and the ``(Y*X,)`` float mask of annotated pixels.
    """
    flat = labels.reshape(-1)
    ids = torch.unique(flat)
    ids = ids[ids > 0]
    instances = (flat[None, :] == ids[:, None]).float()
    return instances, (flat >= 0).float()


def soft_iou(masks: torch.Tensor, instances: torch.Tensor, valid: torch.Tensor,
             eps: float = 1e-6) -> torch.Tensor:
    """Soft intersection over union of every mask with every instance.

    ``masks (P, N)`` probabilities, ``instances (G, N)`` in {0, 1}, ``valid (N,)``
    in {0, 1} -> ``(P, G)``. ``IoU = sum(m*y) / (sum(m) + sum(y) - sum(m*y))`` over
    valid pixels.
    """
    masks = masks * valid
    instances = instances * valid
    intersection = masks @ instances.T
    union = masks.sum(1, keepdim=True) + instances.sum(1)[None, :] - intersection
    return intersection / union.clamp_min(eps)


def confidence_bce(confidence_logits: torch.Tensor, target: float) -> torch.Tensor:
    """Per-step binary cross-entropy of ``(P,)`` confidence logits against ``target``."""
    return F.binary_cross_entropy_with_logits(
        confidence_logits, torch.full_like(confidence_logits, target), reduction="none")


def match_steps(cost: np.ndarray, ordered: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian assignment of steps (rows) to instances (columns) of ``cost (P, G)``.

    Returns ``(steps, instances)`` index arrays of the matched pairs, sorted by
    step. ``ordered=True`` lets only the first ``min(P, G)`` steps be matched.
    """
    if ordered:
        cost = cost[: min(cost.shape)]
    if cost.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rows, cols = linear_sum_assignment(cost)
    return rows.astype(np.int64), cols.astype(np.int64)


def matching_loss(mask_logits: torch.Tensor, confidence_logits: torch.Tensor,
                  labels: torch.Tensor, lam: float = 1.0, ordered: bool = False
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one image.

    ``mask_logits (P, Y, X)``, ``confidence_logits (P,)``, ``labels (Y, X)`` int
    (-1 ignored). Returns the scalar loss (sum over steps / ``P``) and its parts:
    ``iou`` (mean soft IoU of the matched steps), ``conf`` (confidence BCE per
    step) and ``matched`` (number of matched steps).
    """
    steps = mask_logits.shape[0]
    masks = torch.sigmoid(mask_logits.float()).reshape(steps, -1)
    confidences = confidence_logits.float()
    instances, valid = one_hot_instances(labels)
    iou = soft_iou(masks, instances, valid)
    bce_one, bce_zero = confidence_bce(confidences, 1.0), confidence_bce(confidences, 0.0)
    cost = (-iou + lam * bce_one[:, None]).detach().cpu().numpy().astype(np.float64)
    rows, cols = match_steps(cost, ordered)
    rows_t = torch.as_tensor(rows, device=masks.device)
    cols_t = torch.as_tensor(cols, device=masks.device)
    matched = torch.zeros(steps, dtype=torch.bool, device=masks.device)
    matched[rows_t] = True
    matched_iou = iou[rows_t, cols_t]
    conf_term = torch.where(matched, bce_one, bce_zero)
    total = -matched_iou.sum() + lam * conf_term.sum()
    parts = {
        "iou": float(matched_iou.detach().mean()) if len(rows) else 0.0,
        "conf": float(conf_term.detach().mean()),
        "matched": float(len(rows)),
    }
    return total / steps, parts


class HungarianIoULoss(nn.Module):
    """Batch version of :func:`matching_loss`.

    ``forward(mask_logits (B, P, Y, X), confidence_logits (B, P), labels (B, Y, X),
    steps (B,) ints)``: image ``b`` uses its first ``steps[b]`` steps. Returns the
    mean loss over the batch and the mean parts.
    """

    def __init__(self, lam: float = 1.0, ordered: bool = False):
        super().__init__()
        self.lam = lam
        self.ordered = ordered

    def forward(self, mask_logits: torch.Tensor, confidence_logits: torch.Tensor,
                labels: torch.Tensor, steps: list[int] | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
        batch = mask_logits.shape[0]
        steps = steps if steps is not None else [mask_logits.shape[1]] * batch
        losses, parts = [], {}
        for b in range(batch):
            n = steps[b]
            loss, part = matching_loss(mask_logits[b, :n], confidence_logits[b, :n], labels[b],
                                       self.lam, self.ordered)
            losses.append(loss)
            for key, value in part.items():
                parts[key] = parts.get(key, 0.0) + value / batch
        return torch.stack(losses).mean(), parts
