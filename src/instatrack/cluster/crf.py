"""Per-instance probability maps -> label image, optionally refined by a dense CRF.

:func:`labels_from_masks` is the plain post-processing of recurrent instance
segmentation: threshold, one label per pixel (the most probable mask), small
pieces removed.

:func:`crf_refine` is a mean-field dense CRF in torch (Kraehenbuehl & Koltun's
model, as the paper used to sharpen its masks). Labels are background plus the
``K`` instances; the unary scores are ``[0, logit(m_1), ..., logit(m_K)]``, so
that without pairwise terms a pixel goes to instance ``k`` exactly when
``m_k > 0.5`` and it is the largest. The pairwise term is a Potts model with
an appearance kernel ``w_app * exp(-|dp|^2 / 2 theta_pos^2 - |dI|^2 / 2 theta_col^2)``
and a smoothness kernel ``w_smooth * exp(-|dp|^2 / 2 theta_smooth^2)`` (the
``crf_*`` keys of :class:`CRFParams`).

Approximation: instead of the fully connected kernels (permutohedral lattice),
the kernels are truncated to a ``(2r + 1)^2`` window (``r = crf_radius``) of
offsets spaced ``crf_dilation`` pixels apart, so each mean-field iteration is ``(2r+1)^2 - 1``
shifted multiply-adds. The window then reaches ``r * dilation`` pixels with a
sparse sampling of the Gaussians; weights beyond it are taken as zero.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from instatrack.labels import remove_small_pieces, renumber
from instatrack.settings import Settings, require


@dataclasses.dataclass(frozen=True)
class CRFParams(Settings):
    """Dense CRF settings. Positions are in pixels, colours in normalised units.

    ``crf`` switches the refinement on for the methods that offer it; the
    other keys are the parameters of :func:`crf_refine` (see the module doc).
    """

    post_processing = True

    crf: bool = False
    crf_iterations: int = 5
    crf_radius: int = 4
    crf_dilation: int = 2
    crf_theta_pos: float = 8.0
    crf_theta_col: float = 0.15
    crf_w_app: float = 3.0
    crf_theta_smooth: float = 2.0
    crf_w_smooth: float = 1.0
    crf_unary_weight: float = 1.0

    def check(self) -> None:
        super().check()
        for name in ("crf_iterations", "crf_radius", "crf_dilation"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("crf_theta_pos", "crf_theta_col", "crf_theta_smooth"):
            require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("crf_w_app", "crf_w_smooth", "crf_unary_weight"):
            require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")


def unary_scores(masks: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """``(K, Y, X)`` mask probabilities -> ``(K+1, Y, X)`` scores, background first (0)."""
    logits = torch.logit(masks.clamp(eps, 1 - eps))
    return torch.cat([torch.zeros_like(logits[:1]), logits])


def window_offsets(radius: int, dilation: int) -> list[tuple[int, int]]:
    """Offsets ``(dy, dx)`` of the truncated kernel window, without ``(0, 0)``."""
    steps = range(-radius, radius + 1)
    return [(dy * dilation, dx * dilation) for dy in steps for dx in steps if dy or dx]


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``out[..., y, x] = x[..., y + dy, x + dx]`` with zeros outside the image."""
    out = torch.zeros_like(x)
    ys, yd = _ranges(x.shape[-2], dy)
    xs, xd = _ranges(x.shape[-1], dx)
    out[..., yd, xd] = x[..., ys, xs]
    return out


def _ranges(size: int, d: int) -> tuple[slice, slice]:
    """Source and destination slices of a shift by ``d`` along an axis of ``size``."""
    if d >= 0:
        return slice(d, size), slice(0, max(size - d, 0))
    return slice(0, max(size + d, 0)), slice(-d, size)


def pairwise_weights(image: torch.Tensor, params: CRFParams) -> torch.Tensor:
    """Kernel weight between every pixel and each window neighbour.

    ``image (C, Y, X)`` normalised -> ``(D, Y, X)`` for the ``D`` offsets of
    :func:`window_offsets`; zero where the neighbour falls outside the image.
    """
    offsets = window_offsets(params.crf_radius, params.crf_dilation)
    inside = torch.ones_like(image[:1])
    weights = []
    for dy, dx in offsets:
        dist2 = float(dy * dy + dx * dx)
        colour2 = ((shift(image, dy, dx) - image) ** 2).sum(0, keepdim=True)
        appearance = torch.exp(-dist2 / (2 * params.crf_theta_pos ** 2)
                               - colour2 / (2 * params.crf_theta_col ** 2))
        smooth = np.exp(-dist2 / (2 * params.crf_theta_smooth ** 2))
        kernel = params.crf_w_app * appearance + params.crf_w_smooth * smooth
        weights.append(kernel * shift(inside, dy, dx))
    return torch.cat(weights)


def mean_field(scores: torch.Tensor, weights: torch.Tensor, params: CRFParams) -> torch.Tensor:
    """Mean-field inference of the Potts CRF.

    ``scores (L, Y, X)`` unary scores (higher = more likely), ``weights (D, Y, X)``
    from :func:`pairwise_weights` -> ``(L, Y, X)`` marginals ``Q``. Each
    iteration: ``Q = softmax(unary_weight * scores + sum_d w_d * shift(Q, d))``
    (the Potts penalty for disagreeing neighbours, up to a per-pixel constant).
    """
    offsets = window_offsets(params.crf_radius, params.crf_dilation)
    unary = params.crf_unary_weight * scores
    q = torch.softmax(unary, 0)
    for _ in range(params.crf_iterations):
        message = torch.zeros_like(q)
        for d, (dy, dx) in enumerate(offsets):
            message += weights[d:d + 1] * shift(q, dy, dx)
        q = torch.softmax(unary + message, 0)
    return q


def crf_refine(image: torch.Tensor, masks: torch.Tensor, params: CRFParams | None = None
               ) -> torch.Tensor:
    """Refined per-instance probabilities.

    ``image (C, Y, X)`` normalised, ``masks (K, Y, X)`` probabilities ->
    ``(K, Y, X)`` marginals of the instance labels (background dropped), ready
    for :func:`labels_from_masks`.
    """
    params = params or CRFParams()
    if masks.shape[0] == 0:
        return masks
    image = image.to(masks.dtype)
    weights = pairwise_weights(image, params)
    return mean_field(unary_scores(masks), weights, params)[1:]


def crf_refine_near(image: torch.Tensor, masks: torch.Tensor, params: CRFParams | None = None,
                    floor: float = 0.05) -> torch.Tensor:
    """:func:`crf_refine` on the box around the pixels some mask gives more than
    ``floor``, widened by how far the mean field reaches (window reach times
    iterations); outside it the masks are returned as they are. A pixel there is
    below ``floor`` in every mask with no such pixel within reach, so the CRF could only
    lower it further: at any threshold above ``floor`` the labels are the same, at a
    fraction of the time when the objects fill a small part of the frame."""
    params = params or CRFParams()
    near = (masks > floor).any(0)
    if not near.any():
        return masks
    reach = params.crf_radius * params.crf_dilation * params.crf_iterations
    box = []
    for axis, size in enumerate(near.shape):
        where = torch.nonzero(near.any(1 - axis)).flatten()
        box.append(slice(max(int(where[0]) - reach, 0), min(int(where[-1]) + 1 + reach, size)))
    out = masks.clone()
    out[:, box[0], box[1]] = crf_refine(image[:, box[0], box[1]], masks[:, box[0], box[1]],
                                        params)
    return out


def labels_from_masks(masks: np.ndarray, threshold: float = 0.5, min_area: int = 0
                      ) -> np.ndarray:
    """``(K, Y, X)`` probabilities -> ``(Y, X)`` int32 labels ``1..n`` (0 background).

    A pixel takes the most probable mask when that probability exceeds
    ``threshold``. Connected pieces smaller than ``min_area`` pixels are
    removed, and so is every instance left empty; labels are renumbered in the
    order of the masks.
    """
    if masks.shape[0] == 0:
        return np.zeros(masks.shape[1:], dtype=np.int32)
    best = masks.argmax(0)
    labels = np.where(masks.max(0) > threshold, best + 1, 0).astype(np.int32)
    return renumber(remove_small_pieces(labels, min_area))
