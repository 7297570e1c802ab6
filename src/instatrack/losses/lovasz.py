"""Lovász hinge: a convex surrogate of the Jaccard (IoU) loss of a binary mask
(Berman, Rannen Triki and Blaschko, CVPR 2018).

With hinge errors ``m_i = max(0, 1 - s_i y_i)`` (``y_i`` = +1 inside the
mask, -1 outside; ``s_i`` = logit) the loss is the Lovász extension of the
Jaccard loss evaluated at ``m``: sort the errors in decreasing order and weight
each by how much the Jaccard loss grows when its pixel joins the set of
mistakes. At errors that are 0 or 1 the extension equals the Jaccard loss of
that set of mistakes exactly; in between it interpolates linearly per sort order.
"""

from __future__ import annotations

import torch
from torch import nn


def jaccard_increments(truth_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension for masks already sorted by decreasing error.

    ``truth_sorted``: ``(..., N)`` 0/1 floats. Entry ``i`` is
    ``J(first i+1 pixels wrong) - J(first i pixels wrong)`` where ``J`` is the
    Jaccard loss ``1 - |truth ∩ pred| / |truth ∪ pred|``.
    """
    positives = truth_sorted.sum(-1, keepdim=True)
    # Making pixels 0..i wrong removes the positives among them from the
    # intersection and adds the negatives among them to the union.
    intersection = positives - truth_sorted.cumsum(-1)
    union = positives + (1.0 - truth_sorted).cumsum(-1)
    loss = 1.0 - intersection / union
    return torch.cat([loss[..., :1], loss[..., 1:] - loss[..., :-1]], -1)


def lovasz_hinge_rows(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Lovász hinge of each row: ``logits (K, N)`` real, ``truth (K, N)`` bool -> ``(K,)``.

    Every row is one binary mask flattened (e.g. one instance against all
    pixels of its image). Rows with ``N == 0`` give 0.
    """
    if logits.shape[-1] == 0:
        return logits.sum(-1)
    truth = truth.to(logits.dtype)
    errors = 1.0 - logits * (2.0 * truth - 1.0)
    errors_sorted, order = torch.sort(errors, dim=-1, descending=True)
    weights = jaccard_increments(torch.gather(truth, -1, order))
    return (torch.relu(errors_sorted) * weights).sum(-1)


def lovasz_hinge_flat(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Lovász hinge of one flattened mask: ``logits (N,)``, ``truth (N,)`` bool -> scalar."""
    return lovasz_hinge_rows(logits.reshape(1, -1), truth.reshape(1, -1))[0]


def lovasz_hinge(logits: torch.Tensor, truth: torch.Tensor,
                 valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over images of the per-image Lovász hinge.

    ``logits``, ``truth`` (bool) and the optional ``valid`` (bool, pixels to
    score) are ``(B, ...)``; each image is flattened on its own.
    """
    losses = []
    for b in range(logits.shape[0]):
        keep = valid[b] if valid is not None else torch.ones_like(truth[b], dtype=torch.bool)
        losses.append(lovasz_hinge_flat(logits[b][keep], truth[b][keep]))
    return torch.stack(losses).mean()


class LovaszHinge(nn.Module):
    """Module form of :func:`lovasz_hinge`."""

    def forward(self, logits: torch.Tensor, truth: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        return lovasz_hinge(logits, truth, valid)
