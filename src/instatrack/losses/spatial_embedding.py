"""Spatial-embedding loss with learned clustering bandwidth (Neven et al., CVPR 2019).

For every instance ``k`` of an image:

- its centre ``C_k`` is the mean embedding of its pixels (the "learnable
  centre"; ``learned_center=False`` uses the mean pixel coordinate instead, as
  the published training config does) and its bandwidth ``sigma_k`` the mean of
  its pixels' sigma (per dimension when the model predicts two);
- the soft mask ``phi_k(p) = exp(-sum_d (e_pd - C_kd)^2 / (2 sigma_kd^2))`` over all
  pixels of the image is scored against the instance mask with the Lovász
  hinge on logits ``2 phi_k - 1`` (``phi_k > 0.5`` is the predicted mask);
- the smoothness term pulls each pixel's ``log sigma`` to the instance mean
  (detached). It is taken on ``log sigma`` — the published code takes it on
  its raw head output, which is also a log bandwidth — so the weight does not
  depend on the coordinate scale.

The seed map is regressed (squared error) to 0 on background pixels and to the
detached ``phi_k`` on the pixels of instance ``k``, the latter weighted by
``foreground_weight``; summed and divided by the number of scored pixels.
Per image: ``w_inst * mean_k(lovasz) + w_var * mean_k(smooth) + w_seed * seed``;
the loss is the mean over images. Pixels labelled -1 take part in no term.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from instatrack.losses.lovasz import lovasz_hinge_rows
from instatrack.models.erfnet import coordinate_grid
from instatrack.settings import Settings, require

#: soft masks are evaluated for this many (instance, pixel) pairs at a time
CHUNK_ELEMENTS = 1 << 22


@dataclasses.dataclass(frozen=True)
class LossWeights(Settings):
    """Weights of the loss terms, by default the published ones (1, 10, 1, fg 10).

    ``learned_center``: the centre is the mean embedding (else the mean pixel
    coordinate, as the published training config does).
    """

    instance_weight: float = 1.0
    variance_weight: float = 10.0
    seed_weight: float = 1.0
    foreground_weight: float = 10.0
    learned_center: bool = True

    def check(self) -> None:
        super().check()
        for name in ("instance_weight", "variance_weight", "seed_weight", "foreground_weight"):
            require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")


def gaussian_masks(embedding: torch.Tensor, centres: torch.Tensor,
                   sigmas: torch.Tensor) -> torch.Tensor:
    """Soft masks of ``K`` Gaussians over ``N`` pixels.

    ``embedding (D, N)``, ``centres (D, K)``, ``sigmas (S, K)`` with S = 1
    (isotropic) or S = D -> ``(K, N)`` values in (0, 1].
    """
    diff = embedding[:, None, :] - centres[:, :, None]
    scaled = diff.square() / (2.0 * sigmas.square()[:, :, None])
    return torch.exp(-scaled.sum(0))


def instance_means(values: torch.Tensor, index: torch.Tensor, counts: torch.Tensor
                   ) -> torch.Tensor:
    """Per-instance means of ``values (D, N)`` with ``index (N,)`` in ``0..K-1`` -> ``(D, K)``."""
    sums = values.new_zeros((values.shape[0], len(counts))).index_add_(1, index, values)
    return sums / counts


def image_terms(embedding: torch.Tensor, log_sigma: torch.Tensor, seed: torch.Tensor,
                labels: torch.Tensor, weights: LossWeights, coords: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
    """Loss terms of one image over its scored (label >= 0) pixels.

    ``embedding (2, N)``, ``log_sigma (S, N)``, ``seed (N,)``, ``labels (N,)``
    int with 0 = background; ``coords (2, N)`` pixel coordinates, needed when
    ``weights.learned_center`` is False. Returns scalars ``instance``,
    ``variance`` (means over instances) and ``seed``.
    """
    zero = seed.sum() * 0.0
    n = max(len(labels), 1)
    fg = labels > 0
    background = seed[~fg].square().sum()
    if not fg.any():
        return {"instance": zero, "variance": zero, "seed": background / n}
    ids, index = torch.unique(labels[fg], return_inverse=True)
    counts = torch.bincount(index, minlength=len(ids)).to(embedding.dtype)
    source = embedding if weights.learned_center else coords
    centres = instance_means(source[:, fg], index, counts)
    mean_log_sigma = instance_means(log_sigma[:, fg], index, counts)
    deviation = (log_sigma[:, fg] - mean_log_sigma.detach()[:, index]).square().mean(0)
    variance = instance_means(deviation[None], index, counts)[0].mean()
    sigmas = torch.exp(mean_log_sigma)
    fg_positions = torch.nonzero(fg).squeeze(1)
    lovasz, own_mask = [], torch.empty_like(seed[fg])
    step = max(1, CHUNK_ELEMENTS // len(labels))
    for start in range(0, len(ids), step):
        rows = slice(start, start + step)
        masks = gaussian_masks(embedding, centres[:, rows], sigmas[:, rows])
        truth = labels[None, :] == ids[rows, None]
        lovasz.append(lovasz_hinge_rows(2.0 * masks - 1.0, truth))
        mine = (index >= start) & (index < start + masks.shape[0])
        own_mask[mine] = masks[index[mine] - start, fg_positions[mine]].detach()
    foreground = weights.foreground_weight * (seed[fg] - own_mask).square().sum()
    return {"instance": torch.cat(lovasz).mean(), "variance": variance,
            "seed": (background + foreground) / n}


def spatial_embedding_loss(outputs: dict[str, torch.Tensor], labels: torch.Tensor,
                           weights: LossWeights = LossWeights(),
                           coord_scale: float = 1024.0
                           ) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of a batch of model outputs.

    ``outputs``: ``embedding (B, 2, Y, X)``, ``log_sigma (B, S, Y, X)``, ``seed
    (B, K, Y, X)`` (class 0 is used); ``labels (B, Y, X)`` int, -1 = ignored.
    ``coord_scale`` must match the model's (only used for fixed centres).
    Returns the scalar loss and its mean weighted parts.
    """
    embedding = outputs["embedding"].float()
    log_sigma = outputs["log_sigma"].float()
    seed = outputs["seed"][:, 0].float()
    coords = None
    if not weights.learned_center:
        coords = coordinate_grid(*labels.shape[1:], coord_scale, labels.device)
    factor = {"instance": weights.instance_weight, "variance": weights.variance_weight,
              "seed": weights.seed_weight}
    # keeps every output in the graph even when all pixels are ignored
    parts = {name: embedding.sum() * 0.0 + log_sigma.sum() * 0.0 for name in factor}
    for b in range(labels.shape[0]):
        valid = labels[b] >= 0
        terms = image_terms(embedding[b][:, valid], log_sigma[b][:, valid], seed[b][valid],
                            labels[b][valid], weights,
                            coords[:, valid] if coords is not None else None)
        for name, value in terms.items():
            parts[name] = parts[name] + factor[name] * value / labels.shape[0]
    loss = sum(parts.values())
    values = torch.stack([p.detach() for p in parts.values()]).tolist()
    return loss, dict(zip(parts, values, strict=True))


class SpatialEmbeddingLoss(nn.Module):
    """Module form of :func:`spatial_embedding_loss`; folds ``(B, T)`` into one batch axis.

    ``forward(outputs, labels)`` with outputs as returned by
    :class:`~instatrack.models.erfnet.BranchedERFNet` on ``(B*T, C, Y, X)``
    and ``labels (B, T, Y, X)`` or ``(B, Y, X)``.
    """

    def __init__(self, weights: LossWeights = LossWeights(), coord_scale: float = 1024.0):
        super().__init__()
        self.weights = weights
        self.coord_scale = coord_scale

    def forward(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, float]]:
        labels = labels.reshape(-1, *labels.shape[-2:])
        return spatial_embedding_loss(outputs, labels, self.weights, self.coord_scale)
