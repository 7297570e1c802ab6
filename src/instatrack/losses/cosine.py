"""Cosine embedding loss (Payer et al., MICCAI 2018).

For one clip of ``T`` frames with instance ids consistent over time, every
instance ``i`` (the background, label 0, is one more instance; label -1 marks
unannotated pixels, which are ignored completely) has a mean embedding
``ē_i`` over its pixels ``S(i)`` in ALL frames of the clip -- sharing one mean
over time is what makes the embeddings trackable. The loss is

    L = mean_i [ mean_{p in S(i)} (1 - cos(ē_i, e_p))  +  mean_{p in N(i)} cos²(ē_i, e_p) ]

The first term pulls an instance's pixels towards its mean direction, the second
pushes the pixels of its neighbours to be orthogonal to it. Squaring (instead of
clamping at 0) lets far-apart instances reuse directions, so few dimensions suffice.

Neighbourhood ``N(i)``: the union over frames ``t`` of the annotated pixels ``p`` of
other instances (background included) in frame ``t`` whose Euclidean distance to
``i``'s mask in the same frame is at most ``r_N``:
``0 < min_{q in S_t(i)} ||p - q||_2 <= r_N`` (pixel centres, unit pixel spacing).
It is computed exactly on the CPU with :func:`scipy.ndimage.distance_transform_edt`
of ``i``'s mask restricted to its bounding box grown by ``r_N`` (nothing outside that
box can be within ``r_N``), so the cost is linear in the box area. An exact disk
dilation in torch would cost ``O(r_N)`` passes over ``K`` masks and an FFT
convolution is only approximate, while the cropped EDT takes well under a
millisecond per instance and frame. An instance without neighbours contributes
only its first term. A clip's loss is the mean over its instances; the batch loss
is the mean over clips that have any annotated pixel, and over the stacks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F


@dataclass
class ClipTargets:
    """What the loss needs from one clip's labels, computed once for all stacks.

    ``index``: ``(T, P)`` int64 compact instance index ``0..K-1`` per pixel
    (``P = Y * X``), ``K`` for ignored pixels. ``count``: number of instances ``K``.
    ``neighbours``: per frame, ``(instances (K_t,) int64, mask (K_t, P) bool)``;
    row ``k`` marks ``N_t(instances[k])``.
    """

    index: torch.Tensor
    count: int
    neighbours: list[tuple[torch.Tensor, torch.Tensor]]


def compact_index(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Map the label values ``>= 0`` of ``labels`` to ``0..K-1`` (same shape), -1 elsewhere."""
    valid = labels >= 0
    ids, inverse = np.unique(labels[valid], return_inverse=True)
    index = np.full(labels.shape, -1, dtype=np.int64)
    index[valid] = inverse
    return index, len(ids)


def neighbour_masks(index: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Neighbourhoods of the instances of one frame.

    ``index``: ``(Y, X)`` (or ``(Z, Y, X)``) compact ids, -1 = ignored. Returns the
    instances present ``(K_t,)`` and ``(K_t, *S)`` bool masks of the annotated pixels
    of other instances within Euclidean distance ``radius`` of each instance.
    """
    present = np.unique(index[index >= 0])
    masks = np.zeros((len(present), *index.shape), dtype=bool)
    if len(present) == 0:
        return present, masks
    annotated = index >= 0
    boxes = ndimage.find_objects(index + 1, max_label=int(present[-1]) + 1)
    grow = int(np.floor(radius))
    for row, k in enumerate(present):
        window = tuple(slice(max(s.start - grow, 0), min(s.stop + grow, n))
                       for s, n in zip(boxes[k], index.shape, strict=True))
        inside = index[window] == k
        distance = ndimage.distance_transform_edt(~inside)
        masks[row][window] = (distance <= radius) & ~inside & annotated[window]
    return present, masks


def clip_targets(labels: torch.Tensor, radius: float, device: torch.device | str) -> ClipTargets:
    """Targets of one clip ``labels`` ``(T, *S)`` (any int dtype), moved to ``device``."""
    index, count = compact_index(labels.detach().cpu().numpy())
    neighbours = []
    for frame in index:
        present, masks = neighbour_masks(frame, radius)
        neighbours.append((torch.from_numpy(present).to(device),
                           torch.from_numpy(masks.reshape(len(present), frame.size)).to(device)))
    index[index < 0] = count
    return ClipTargets(torch.from_numpy(index.reshape(len(index), -1)).to(device), count,
                       neighbours)


def instance_sums(pixels: torch.Tensor, index: torch.Tensor, count: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the embeddings and number of pixels of every instance.

    ``pixels`` ``(N, d)``, ``index`` ``(N,)`` with values in ``0..count`` where ``count``
    marks ignored pixels (they land in a dummy row that is dropped) -> ``(K, d)``, ``(K,)``.
    """
    sums = pixels.new_zeros((count + 1, pixels.shape[1])).index_add(0, index, pixels)
    sizes = torch.bincount(index, minlength=count + 1).to(pixels.dtype)
    return sums[:count], sizes[:count]


def clip_loss(embeddings: torch.Tensor, targets: ClipTargets
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss of one clip: embeddings ``(T, d, *S)`` -> (loss, mean term 1, mean term 2).

    Embeddings are L2-normalised here again so that the terms are true cosines.
    With unit vectors ``e_p`` and ``ē_i = s_i / |s_i|`` (``s_i`` the sum over ``S(i)``),
    term 1 is exactly ``1 - |s_i| / |S(i)|``, which avoids a gather over all pixels.
    """
    frames, dim = embeddings.shape[:2]
    flat = F.normalize(embeddings.reshape(frames, dim, -1).transpose(1, 2), dim=2, eps=1e-8)
    sums, sizes = instance_sums(flat.reshape(-1, dim), targets.index.reshape(-1), targets.count)
    lengths = sums.norm(dim=1)
    term1 = 1.0 - lengths / sizes
    means = sums / lengths.clamp(min=1e-8)[:, None]
    push_sum = flat.new_zeros(targets.count)
    push_count = flat.new_zeros(targets.count)
    for t, (present, masks) in enumerate(targets.neighbours):
        if len(present) == 0:
            continue
        cosines = means[present] @ flat[t].T
        push = torch.where(masks, cosines.square(), 0.0).sum(1)
        push_sum = push_sum.index_add(0, present, push)
        push_count = push_count.index_add(0, present, masks.sum(1).to(flat.dtype))
    term2 = push_sum / push_count.clamp(min=1)
    return (term1 + term2).mean(), term1.mean(), term2.mean()


def cosine_embedding_loss(outputs: list[torch.Tensor], labels: torch.Tensor, radius: float
                          ) -> tuple[torch.Tensor, dict[str, float]]:
    """Cosine embedding loss averaged over clips and stacks.

    ``outputs``: embeddings of every stack, each ``(B, T, d, *S)``; ``labels``:
    ``(B, T, *S)`` int, consistent ids over ``T``, -1 = ignored. Returns the scalar
    loss and its parts (``pull`` = term 1, ``push`` = term 2, per stack ``stack<k>``).
    """
    if labels.shape != outputs[0].shape[:2] + outputs[0].shape[3:]:
        raise ValueError(f"labels {tuple(labels.shape)} do not match embeddings "
                         f"{tuple(outputs[0].shape)}")
    per_stack = [[] for _ in outputs]
    pulls, pushes = [], []
    for b in range(labels.shape[0]):
        targets = clip_targets(labels[b], radius, outputs[0].device)
        if targets.count == 0:
            continue
        for s, embeddings in enumerate(outputs):
            value, pull, push = clip_loss(embeddings[b], targets)
            per_stack[s].append(value)
            pulls.append(pull.detach())
            pushes.append(push.detach())
    if not pulls:
        # nothing annotated: a zero that still depends on the outputs keeps backward valid
        zero = sum(o.sum() for o in outputs) * 0.0
        return zero, {"pull": 0.0, "push": 0.0}
    stack_losses = [torch.stack(values).mean() for values in per_stack]
    loss = torch.stack(stack_losses).mean()
    parts = {"pull": float(torch.stack(pulls).mean()), "push": float(torch.stack(pushes).mean())}
    parts.update({f"stack{s}": float(v.detach()) for s, v in enumerate(stack_losses)})
    return loss, parts


def background_direction(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
    """Normalised mean embedding of the background pixels (label 0).

    ``embeddings`` ``(B, T, d, *S)``, ``labels`` ``(B, T, *S)`` -> ``(d,)``, or None
    when no pixel is labelled background.
    """
    mask = labels == 0
    if not bool(mask.any()):
        return None
    moved = embeddings.movedim(2, -1)
    return F.normalize(moved[mask].mean(0), dim=0, eps=1e-8)
