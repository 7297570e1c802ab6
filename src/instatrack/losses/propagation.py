"""Losses and training targets of the spatial-propagation method.

* the foreground and fine-tuning losses: class-balanced binary cross-entropy
  over the valid pixels (:func:`balance_weights`, :func:`weighted_bce_with_logits`);
* the SPN's training pairs: one ground-truth instance per image
  (:func:`pick_instances`) degraded into the kind of coarse map a per-object
  head produces (:func:`degrade_masks`), to be refined back into the mask
  under :func:`binary_cross_entropy`.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

_EPS = 1e-4


def balance_weights(masks: torch.Tensor) -> torch.Tensor:
    """Per-object ``(1, K, 2)`` weights (background, object) from ``(N, K, Y, X)`` masks.

    They balance the two classes over the pixels of all ``N`` masks: objects are
    small in large frames, and without balancing a head learns to say background
    everywhere. Compute them over the pixels the loss sees: windows centred on
    the object hold far more object than the whole frame, and weights from the
    frame then teach a head to say object everywhere.
    """
    fraction = masks.float().mean((0, 2, 3))[None].clamp(_EPS, 1 - _EPS)
    return torch.stack([0.5 / (1 - fraction), 0.5 / fraction], -1)


def weighted_bce_with_logits(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
                             weights: torch.Tensor) -> torch.Tensor:
    """Class-weighted BCE over ``valid`` pixels.

    ``logits``/``targets`` ``(B, K, Y, X)``, ``valid`` ``(B, 1, Y, X)`` bool,
    ``weights`` ``(1, K, 2)`` from :func:`balance_weights`.
    """
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
    weight = torch.where(targets > 0.5, weights[..., 1, None, None], weights[..., 0, None, None])
    return masked_mean(weight * per_pixel, valid.expand_as(per_pixel))


def degrade_masks(masks: torch.Tensor, shift: int, radius: int, blur: int, noise: float
                  ) -> torch.Tensor:
    """Coarse versions of ``(N, 1, Y, X)`` masks, values in ``[0, 1]``.

    Random shift (up to ``shift`` pixels), dilation or erosion by up to
    ``radius``, box blur of up to ``2 blur + 1`` pixels and Gaussian noise:
    the errors a coarse per-object score map makes. Shift and radius are also
    capped at 1/2 and 1/3 of the object's equivalent radius, so that a small
    object is displaced or thinned, never erased.
    """
    n, _, Y, X = masks.shape
    masks = masks.float()
    size = torch.sqrt(masks.sum((1, 2, 3)) / math.pi)
    shifts = torch.clamp(0.5 * size, max=float(shift))
    radii = torch.clamp(size / 3, max=float(radius)).floor()
    offset = (torch.rand(n, 2, device=masks.device) * 2 - 1) * shifts[:, None]
    eye = torch.eye(2, device=masks.device).expand(n, 2, 2)
    # affine_grid translations are in half-sizes of the image
    theta = torch.cat([eye, (2 * offset / torch.tensor([X, Y], device=masks.device))[..., None]],
                      2)
    grid = F.affine_grid(theta, list(masks.shape), align_corners=False)
    out = F.grid_sample(masks, grid, padding_mode="zeros", align_corners=False)
    chosen = torch.floor(torch.rand(n, device=masks.device) * (2 * radii + 1)) - radii
    out = torch.cat([morph(out[i:i + 1], int(r)) for i, r in enumerate(chosen.tolist())])
    width = 2 * int(torch.randint(0, blur + 1, ())) + 1
    if width > 1:
        out = F.avg_pool2d(out, width, 1, width // 2, count_include_pad=False)
    return (out + noise * torch.randn_like(out)).clamp(0, 1)


def morph(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Grey dilation (``radius > 0``) or erosion (``radius < 0``) with a square."""
    if radius == 0:
        return x
    size = 2 * abs(radius) + 1
    if radius > 0:
        return F.max_pool2d(x, size, 1, abs(radius))
    return -F.max_pool2d(-x, size, 1, abs(radius))


def pick_instances(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One random instance per image of ``(N, Y, X)`` labels.

    Returns its mask ``(N, Y, X)`` float and ``(N,)`` bool, False where the
    image has no instance (its mask is all zero).
    """
    masks = torch.zeros(labels.shape, device=labels.device)
    has = torch.zeros(len(labels), dtype=torch.bool, device=labels.device)
    for i, image in enumerate(labels):
        ids = torch.unique(image)
        ids = ids[ids > 0]
        if len(ids):
            chosen = ids[torch.randint(len(ids), ())]
            masks[i] = (image == chosen).float()
            has[i] = True
    return masks, has


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is true; 0 (with a graph) when nothing is."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def binary_cross_entropy(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel BCE of probabilities, in float32 and safe under autocast."""
    prob = prob.float().clamp(_EPS, 1 - _EPS)
    return -(target * torch.log(prob) + (1 - target) * torch.log1p(-prob))
