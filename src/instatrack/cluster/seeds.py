"""Greedy seed clustering of spatial embeddings (Neven et al., CVPR 2019).

Among foreground pixels (seed score above ``fg_threshold``) the unclustered
pixel with the highest seed score becomes a centre, with its own embedding and
bandwidth; every foreground pixel whose Gaussian score around that centre
exceeds 0.5 (the boundary the loss trained) forms the proposal. A proposal
becomes an instance when it has at least ``min_area`` pixels and more than
``min_unclustered`` of them are still free; either way its pixels are marked
as clustered. Stops when no free seed scores ``seed_threshold`` or more, or
after ``max_instances`` instances.

Runs in torch on the device of its inputs, one vectorised pass over the
foreground per proposal; only the final label image leaves the device.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch


@dataclasses.dataclass(frozen=True)
class SeedClustering:
    """Thresholds of :func:`cluster_seeds`."""

    seed_threshold: float = 0.5
    fg_threshold: float = 0.5
    min_area: int = 20
    min_unclustered: float = 0.5
    max_instances: int = 512

    @property
    def max_proposals(self) -> int:
        """Rejected proposals count too, so a degenerate map cannot loop for long."""
        return 4 * self.max_instances


def cluster_seeds(embedding: torch.Tensor, sigma: torch.Tensor, seed: torch.Tensor,
                  params: SeedClustering = SeedClustering()) -> np.ndarray:
    """Instance labels of one image.

    ``embedding (D, Y, X)``, ``sigma (S, Y, X)`` with S = 1 or D (embedding
    units), ``seed (Y, X)`` in [0, 1]. Returns ``(Y, X)`` int32 labels 1..n
    in order of decreasing seed score, 0 = background.
    """
    if embedding.shape[1:] != seed.shape or sigma.shape[1:] != seed.shape:
        raise ValueError(f"shapes differ: embedding {tuple(embedding.shape)}, "
                         f"sigma {tuple(sigma.shape)}, seed {tuple(seed.shape)}")
    fg = seed > params.fg_threshold
    labels = torch.zeros(seed.shape, dtype=torch.int32, device=seed.device)
    if int(fg.sum()) >= params.min_area:
        labels[fg] = _cluster_pixels(embedding[:, fg], sigma[:, fg], seed[fg], params)
    return labels.cpu().numpy()


def _cluster_pixels(embedding: torch.Tensor, sigma: torch.Tensor, seed: torch.Tensor,
                    params: SeedClustering) -> torch.Tensor:
    """Labels ``(N,)`` int32 of ``N`` foreground pixels: ``embedding (D, N)``, ``sigma (S, N)``."""
    n = seed.shape[0]
    free = torch.ones(n, dtype=torch.bool, device=seed.device)
    labels = torch.zeros(n, dtype=torch.int32, device=seed.device)
    inv_two_var = 0.5 / sigma.square()
    count = 0
    for _ in range(params.max_proposals):
        candidates = torch.where(free, seed, -1.0)
        best = torch.argmax(candidates)
        centre = embedding[:, best, None]
        score = torch.exp(-((embedding - centre).square() * inv_two_var[:, best, None]).sum(0))
        proposal = score > 0.5
        proposal[best] = True
        claimed = proposal & free
        stats = torch.stack([candidates[best], proposal.sum().to(seed.dtype),
                             claimed.sum().to(seed.dtype)])
        top, area, new = stats.tolist()
        if top < params.seed_threshold:
            break
        if area >= params.min_area and new > params.min_unclustered * area:
            count += 1
            labels[claimed] = count
            if count >= params.max_instances:
                break
        free &= ~proposal
    return labels
