"""Losses and training targets of the spatial-propagation method.

* the foreground and fine-tuning losses: class-balanced binary cross-entropy
  over the valid pixels (:func:`balance_weights`, :func:`weighted_bce_with_logits`);
* the SPN's training pairs: one ground-truth instance per image
  (:func:`pick_instances`) degraded into the kind of coarse map a per-object
  head produces (:func:`degrade_masks`), to be refined back into the mask
  under :func:`binary_cross_entropy`;
* the previous-frame mask a network conditioned on it reads
  (``previous_mask``): the ground-truth mask moved, scaled, turned, thickened or
  thinned and partly cut away (:func:`jitter_masks`), the errors of the mask
  the method produced one frame earlier.
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


def jitter_masks(masks: torch.Tensor, shift: float, scale: float, rotation: float,
                 radius: int, drop: float, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
    """Stand-ins for the previous frame's mask of ``(N, 1, Y, X)`` masks, binary float.

    Each mask moves by up to ``shift`` times its size (the square root of its
    area) along each axis, scales about its centroid by a factor in
    ``[exp(-scale), exp(scale)]``, turns by up to ``rotation`` degrees, is
    dilated or eroded by up to ``radius`` pixels (at most a quarter of its size)
    and, with probability ``drop``, loses a disc of 15-40 % of its size around
    one of its pixels: where the object was one frame ago, with the errors of a
    predicted mask. Empty masks stay empty. ``generator``: of the random draws
    (default: torch's global one).
    """
    n, _, Y, X = masks.shape
    device = masks.device
    masks = masks.float()
    yy, xx = torch.meshgrid(torch.arange(Y, device=device, dtype=torch.float32),
                            torch.arange(X, device=device, dtype=torch.float32), indexing="ij")
    area = masks.sum((1, 2, 3))
    weight = area.clamp(min=1.0)
    cy = (masks[:, 0] * yy).sum((1, 2)) / weight
    cx = (masks[:, 0] * xx).sum((1, 2)) / weight
    size = torch.sqrt(area)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator).to(device)

    def uniform(*shape: int) -> torch.Tensor:
        return rand(*shape) * 2 - 1

    factor = torch.exp(scale * uniform(n))
    angle = math.radians(rotation) * uniform(n)
    ty, tx = (shift * size[:, None] * uniform(n, 2)).unbind(1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # output pixel p = c + t + factor * R (q - c); sample the input at q
    dy = yy[None] - (cy + ty)[:, None, None]
    dx = xx[None] - (cx + tx)[:, None, None]
    f, cos, sin = factor[:, None, None], cos[:, None, None], sin[:, None, None]
    qy = cy[:, None, None] + (cos * dy + sin * dx) / f
    qx = cx[:, None, None] + (-sin * dy + cos * dx) / f
    grid = torch.stack([2 * qx / max(X - 1, 1) - 1, 2 * qy / max(Y - 1, 1) - 1], -1)
    out = F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    out = (out > 0.5).float()
    radii = torch.clamp(size / 4, max=float(radius)).floor()
    chosen = torch.floor(rand(n) * (2 * radii + 1)) - radii
    out = torch.cat([morph(out[i:i + 1], int(r)) for i, r in enumerate(chosen.tolist())])
    for i in torch.nonzero(rand(n) < drop)[:, 0].tolist():
        pixels = torch.nonzero(out[i, 0] > 0.5)
        if len(pixels):
            py, px = pixels[int(rand(1) * len(pixels))].tolist()
            r = float(size[i]) * (0.15 + 0.25 * float(rand(1)))
            out[i, 0] *= ((yy - py) ** 2 + (xx - px) ** 2 > r * r).float()
    return out


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
