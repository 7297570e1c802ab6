"""Greedy seed clustering of spatial embeddings (Neven et al., CVPR 2019).

Among foreground pixels (seed score above ``fg_threshold``) the unclustered
pixel with the highest seed score becomes a centre, with its own embedding and
bandwidth; every foreground pixel whose Gaussian score around that centre
exceeds 0.5 (the boundary the loss trained) forms the proposal. A proposal
becomes an instance when it has at least ``min_instance_area`` pixels, more
than ``min_unclustered`` of them are still free and, if ``min_instance_score``
is set, the mean seed score of those free pixels (the instance's confidence)
reaches it; either way its pixels are marked as clustered. Stops when no free
seed scores ``seed_threshold`` or more, or after ``max_instances`` instances.

Runs in torch on the device of its inputs, one vectorised pass over the
foreground per proposal; only the final label image leaves the device.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from instatrack.settings import Settings, require

#: a Gaussian score exceeds 0.5 where the scaled squared distance is below ln 2
LN2 = math.log(2.0)


@dataclasses.dataclass(frozen=True)
class SeedClustering(Settings):
    """Thresholds of :func:`cluster_seeds` (keys of the spatial-embedding config).

    ``min_instance_score`` (0 = no check): faint cell-like debris that one
    bright pixel seeds scores lower than real cells (docs/methods.md).
    """

    post_processing = True
    # 0.95: nets that learned to see faint nuclei (trained with aug_noise_floor on
    # GOWT1) found GOWT1's unannotated faint ones at 0.9 (validation TRA 0.92; 0.99 at
    # 0.95; docs/robustness.md, session 11)
    calibration = {"seed_threshold": (0.5, 0.7, 0.9, 0.95)}

    seed_threshold: float = 0.5
    fg_threshold: float = 0.5
    min_instance_area: int = 20
    min_unclustered: float = 0.5
    max_instances: int = 512
    min_instance_score: float = 0.0

    def check(self) -> None:
        super().check()
        for name in ("seed_threshold", "fg_threshold", "min_unclustered", "min_instance_score"):
            require(0 <= getattr(self, name) < 1,
                    f"{name} must be in [0, 1), got {getattr(self, name)}")
        require(self.max_instances >= 1, f"max_instances must be >= 1, got {self.max_instances}")
        require(self.min_instance_area >= 1,
                f"min_instance_area must be >= 1, got {self.min_instance_area}")


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
    if int(fg.sum()) >= params.min_instance_area:
        labels[fg] = _cluster_pixels(embedding[:, fg], sigma[:, fg], seed[fg], params)
    return labels.cpu().numpy()


def _cluster_pixels(embedding: torch.Tensor, sigma: torch.Tensor, seed: torch.Tensor,
                    params: SeedClustering) -> torch.Tensor:
    """Labels ``(N,)`` int32 of ``N`` foreground pixels: ``embedding (D, N)``, ``sigma (S, N)``.

    Pixels are sorted by their first embedding coordinate once, so a proposal only
    scores the contiguous run of pixels close enough along that axis to pass.
    """
    order = torch.argsort(embedding[0])
    emb = embedding[:, order].contiguous()
    weight = (0.5 / sigma.square())[:, order].expand(emb.shape[0], -1)
    # -inf marks clustered pixels; seed scores are >= 0 otherwise
    sorted_seed = seed[order]
    candidates = sorted_seed.clone()
    labels = torch.zeros_like(seed, dtype=torch.int32)
    count = 0
    # rejected proposals count too, so a degenerate map cannot loop for long
    for _ in range(4 * params.max_instances):
        best = torch.argmax(candidates)
        top, *rest = torch.cat([candidates[best, None], emb[:, best], weight[:, best]]).tolist()
        if top < params.seed_threshold:
            break
        centre, w = rest[:len(emb)], rest[len(emb):]
        lo, hi = _window(emb[0], centre[0], w[0])
        dist = sum((emb[d, lo:hi] - centre[d]).square() * w[d] for d in range(len(emb)))
        proposal = dist < LN2  # Gaussian score > 0.5
        claimed = proposal & (candidates[lo:hi] > -math.inf)
        n_new = claimed.sum()
        stats = [proposal.sum().float(), n_new.float()]
        if params.min_instance_score > 0:  # mean seed of the free pixels; skipped when unused
            stats.append((sorted_seed[lo:hi].float() * claimed).sum() / n_new.clamp(min=1))
        area, new, *score = torch.stack(stats).tolist()
        if area >= params.min_instance_area and new > params.min_unclustered * area \
                and (not score or score[0] >= params.min_instance_score):
            count += 1
            labels[lo:hi].masked_fill_(claimed, count)
        candidates[lo:hi].masked_fill_(proposal, -math.inf)
        candidates[best] = -math.inf
        if count >= params.max_instances:
            break
    out = torch.empty_like(labels)
    out[order] = labels
    return out


def _window(sorted_coord: torch.Tensor, centre: float, weight: float) -> tuple[int, int]:
    """Index range of the sorted coordinates within the Gaussian's 0.5 level of ``centre``."""
    reach = math.sqrt(LN2 / weight) * (1 + 1e-6) if weight > 0 else math.inf
    bounds = sorted_coord.new_tensor([centre - reach, centre + reach])
    lo, hi = torch.searchsorted(sorted_coord, bounds).tolist()
    return lo, hi
