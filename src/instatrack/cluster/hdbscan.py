"""Cosine embeddings of a frame pair -> instance labels consistent across the pair.

Pixels of one object share an embedding direction; pixels of neighbouring
objects point in different directions; the background has its own direction.
Following Payer et al. (MICCAI 2018) the foreground pixels of both frames are
clustered *jointly* with HDBSCAN on the features ``[e, c*y, c*x]`` (embedding
plus scaled coordinates), so that one object seen in both frames becomes one
cluster and hence one label in both frames. The frame index is deliberately not
a feature: an object must be a single cluster over the pair, and a constant
offset between frames could only push its two halves apart; the coordinates
already say where a pixel is. ``c`` lets two far-apart objects that the network
gave the same embedding fall into different clusters.

Steps of :func:`cluster_embeddings`:

1. Background vector: given, or estimated as the densest embedding direction of
   a pixel subsample (see :func:`estimate_background`). Foreground = pixels
   whose cosine with it is below ``cluster_background_cos``.
2. Samples: every foreground pixel (``cluster_fast=False``), or square superpixels:
   the mean embedding of each ``s`` x ``s`` block that is at least half
   foreground, with ``s >= 2`` chosen so that at most ``cluster_max_samples`` blocks
   remain (``cluster_fast=True``). HDBSCAN's cost grows faster than linearly, so this turns a
   minute into a fraction of a second, and averaging a block removes most of
   the per-pixel noise.
3. HDBSCAN on the samples (``cluster_min_cluster_size`` / ``cluster_min_samples`` are given in
   pixels and divided by the number of pixels each sample stands for; when it
   finds no cluster at all it is run again allowing a single one).
   Clusters whose mean embedding is aligned with the background are dropped.
4. Assignment: each foreground pixel goes to the cluster, among those of the
   samples within ``cluster_assign_radius`` blocks of its own (in its frame, else in
   the other frame), whose mean embedding has the largest cosine with the
   pixel's embedding (``cluster_fast=False``: clustered pixels keep their cluster).
   Foreground pixels still without a cluster (stretches of HDBSCAN noise) are
   grown into from labelled neighbours, one pixel per pass, when their cosine
   with that cluster's mean reaches ``cluster_grow_cos`` (so an unclustered object is
   not swallowed by its neighbour); what remains becomes background, unless
   ``cluster_orphans``: then each connected piece of it in ``(t, y, x)`` that touches
   the frame's edge and no cluster, and holds at least ``min_instance_area`` pixels in
   a frame, becomes an object of its own, where it stands out of the frame's noise:
   given the frames (``images``), its part in a frame is kept when its mean there lies
   ``cluster_orphan_z`` standard errors (robust noise std of the frame's unlabelled
   pixels over the root of the part's pixel count) above their median. HDBSCAN's
   minimum cluster size (a sixth of a typical object's pair cluster) cannot make a
   cluster of a nucleus that shows only a sliver at the frame's edge: all 14 nuclei
   the cosine-hourglass missed on SIM+'s test frames were such slivers, 12–142 px
   against a median nucleus of ~1,800 (docs/results.md, session 17). Inside the frame
   a piece that small is debris or, on dim frames, noise (kept anywhere, such pieces
   cost more at contrast ÷4 on SIM+'s validation frames than the slivers gained); at
   the edge, on dimmed frames, the embedding's foreground also holds pieces of
   background, which the noise test drops (SIM+, session 18: the slivers' parts stood
   3.4–65 standard errors over the background as recorded, the pieces of background at
   contrast ÷4 at most 3.7). The test is per frame: a sliver in one frame can continue
   into a piece of background in the other (34 standard errors in one frame, 0.5 in
   the next), and two frames of faint background together would pass it.
   ``cluster_split_area``: HDBSCAN's default selection (excess of mass) prefers one
   large cluster to two smaller ones that are nearly as dense, so where the network gave
   two touching nuclei nearly the same embedding they become one object (on SIM+'s
   test frames all 16 merged pairs of a wide cosine-hourglass were such: neighbours, or
   two daughters just after a division, mostly at cosine 0.89-0.999 between their mean
   embeddings; docs/results.md, session 20). Lower branches of HDBSCAN's tree keep them
   apart, but selecting the leaves everywhere (``cluster_selection="leaf"``) cuts
   single nuclei into pieces. With the setting, a cluster whose area in a frame exceeds
   ``cluster_split_area`` times the training instances' median area is clustered
   again on its own samples; when that gives two or more parts of at least
   :data:`SPLIT_PART` of a small training instance each in some frame, and the cluster
   is waisted where it is that large (solidity, its area over its convex hull's, below
   :data:`SPLIT_SOLIDITY` in such a frame: a large single nucleus is convex), the parts
   replace it: its pixels go to the nearest part's samples in their frame (the parts'
   mean embeddings are too alike to tell the pixels apart). Measured with the block
   samples of ``cluster_fast`` (every preset but ``paper``); clustered pixel by pixel,
   HDBSCAN leaves most of a pair's pixels as noise and its parts seldom reach the size,
   so the split rarely acts there.
5. Clean-up: pieces of a cluster smaller than ``min_instance_area`` (mostly noisy
   pixels that matched a neighbour's mean best) are emptied and grown into
   again from around them. Then each cluster is split into connected
   components in ``(t, y, x)`` (a moving object overlaps itself between the
   frames, so both of its frames stay one component); the largest component
   keeps the label, other large ones get new labels, and pieces smaller than
   ``min_instance_area`` pixels in a frame are removed.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np

from instatrack.data.normalize import level_and_noise
from instatrack.errors import ConfigError, DataError
from instatrack.labels import remove_small, solidity
from instatrack.settings import Settings, require


@dataclasses.dataclass(frozen=True)
class ClusterParams(Settings):
    """Settings of :func:`cluster_embeddings` (keys of the cosine-hourglass config).

    Sizes and areas are in pixels. ``cluster_min_cluster_size`` /
    ``cluster_min_samples``: HDBSCAN's sizes over the pixels of the frames
    clustered together; 0 = sized from the training instance areas
    (:func:`cluster_sizes`). ``cluster_coord_scale`` multiplies pixel
    coordinates before they join the unit embedding vectors;
    ``cluster_background_cos``: pixels whose cosine with the background vector
    is below it are foreground (and clusters whose mean is at or above it are
    dropped). ``cluster_fast`` clusters at most ``cluster_max_samples`` square
    blocks (mean embeddings, side >= 2 px) instead of every foreground pixel;
    ``cluster_assign_radius`` is how many blocks away a pixel looks for
    clustered samples; ``cluster_grow_cos`` is the cosine a leftover pixel
    needs with a neighbouring cluster's mean to join it; ``cluster_selection``
    is HDBSCAN's cluster selection (``eom`` or ``leaf``). Pieces smaller than
    ``min_instance_area`` are removed. ``cluster_orphans``: pieces of foreground at the
    frame's edge that no cluster took become objects when their mean stands
    ``cluster_orphan_z`` standard errors above the frame's background (step 4 of
    :func:`cluster_embeddings`). ``cluster_split_area`` (0 = off): a cluster larger in a
    frame than this many median training instances, and waisted, is clustered again on
    its own and split into the parts found (step 4). ``cluster_foreground_prob``: for a network
    with a foreground output, the probability at which a pixel is foreground (it
    then replaces the background-cosine test).
    """

    post_processing = True
    calibration = {"cluster_background_cos": (0.15, 0.3, 0.5)}
    # both values of each, so that calibration can also turn a stage off for a model that
    # has it on (on MSC the split cut the large, irregular cells: docs/results.md, session
    # 20; the orphans are on by default since session 30)
    calibration_last = {"cluster_orphans": (True, False), "cluster_split_area": (0.0, 1.5)}

    cluster_min_cluster_size: int = 0
    cluster_min_samples: int = 0
    cluster_coord_scale: float = 0.01
    cluster_background_cos: float = 0.5
    cluster_fast: bool = True
    cluster_max_samples: int = 4000
    cluster_assign_radius: int = 2
    cluster_grow_cos: float = 0.4
    cluster_selection: str = "eom"
    cluster_foreground_prob: float = 0.5
    min_instance_area: int = 20
    cluster_orphans: bool = True
    cluster_orphan_z: float = 4.0
    cluster_split_area: float = 0.0

    def check(self) -> None:
        super().check()
        require(self.cluster_min_cluster_size == 0 or self.cluster_min_cluster_size >= 2,
                "cluster_min_cluster_size must be 0 (auto) or >= 2, got "
                f"{self.cluster_min_cluster_size}")
        require(self.cluster_min_samples >= 0,
                f"cluster_min_samples must be >= 0 (0 = auto), got {self.cluster_min_samples}")
        require(self.cluster_coord_scale >= 0,
                f"cluster_coord_scale must be >= 0, got {self.cluster_coord_scale}")
        for name in ("cluster_background_cos", "cluster_grow_cos"):
            require(-1 <= getattr(self, name) <= 1,
                    f"{name} must be in [-1, 1], got {getattr(self, name)}")
        require(self.cluster_max_samples >= 100,
                f"cluster_max_samples must be >= 100, got {self.cluster_max_samples}")
        require(self.cluster_assign_radius >= 1,
                f"cluster_assign_radius must be >= 1, got {self.cluster_assign_radius}")
        require(self.cluster_selection in ("eom", "leaf"),
                f"cluster_selection must be 'eom' or 'leaf', got {self.cluster_selection!r}")
        require(0 < self.cluster_foreground_prob < 1,
                f"cluster_foreground_prob must be in (0, 1), got {self.cluster_foreground_prob}")
        require(self.cluster_split_area == 0 or self.cluster_split_area >= 1,
                "cluster_split_area must be 0 (off) or >= 1 (median instance areas), got "
                f"{self.cluster_split_area}")
        require(self.cluster_orphan_z >= 0,
                f"cluster_orphan_z must be >= 0, got {self.cluster_orphan_z}")
        require(self.min_instance_area >= 0,
                f"min_instance_area must be >= 0, got {self.min_instance_area}")


#: with ``cluster_split_area``, a part of a large cluster becomes an object of its own
#: when it covers at least this share of the training instances' 10th-percentile area in
#: a frame (a daughter just after a division is about half a nucleus; smaller parts are
#: pieces)
SPLIT_PART = 0.5
#: ... and only a waisted cluster is split: its solidity (area over the convex hull's)
#: below this in a frame where it is too large. On SIM+'s test frames the 16 pairs the
#: wide cosine-hourglass merged had 0.80-0.90, its 868 other objects a median of 0.975
#: (5th percentile 0.92), the two larger than 1.5 median nuclei 0.975 and 0.98
SPLIT_SOLIDITY = 0.9

#: settings for a kind of dataset: cells are small (tens to hundreds of px), many and
#: often touching; leaves are few large instances (thousands of px) of a plant rosette
KINDS: dict[str, dict] = {
    "cells": {"cluster_min_cluster_size": 50, "cluster_min_samples": 10},
    "leaves": {"cluster_min_cluster_size": 200, "cluster_min_samples": 20,
               "cluster_coord_scale": 0.005, "min_instance_area": 50},
}


def params_for(kind: str, **changes) -> ClusterParams:
    """Settings for a dataset kind (``"cells"`` or ``"leaves"``), then ``changes``."""
    if kind not in KINDS:
        raise ConfigError(f"unknown dataset kind {kind!r}; choose from {', '.join(KINDS)}")
    return ClusterParams(**{**KINDS[kind], **changes})


def cluster_sizes(params: ClusterParams, instance_area: tuple[float, float] = (0.0, 0.0)
                  ) -> tuple[int, int]:
    """HDBSCAN's ``(min_cluster_size, min_samples)`` in pixels for ``params``.

    Sizes left at 0 follow the training instances (``instance_area``: 10th
    percentile and median area, 0 = not measured): the minimum cluster size is
    0.35 of the median area or the 10th percentile, whichever is smaller (a
    pair cluster holds an object twice, so this is about a sixth of a typical
    object's cluster and half a small one's), and ``min_samples`` a tenth of it,
    at least 5. Unmeasured, the size is 50.
    """
    small, median = instance_area
    size = params.cluster_min_cluster_size
    if not size:
        size = 50 if median <= 0 else max(2, round(min(0.35 * median, small)))
    return size, params.cluster_min_samples or max(5, size // 10)


def cluster_embeddings(embeddings: np.ndarray, params: ClusterParams | None = None,
                       background: np.ndarray | None = None,
                       foreground: np.ndarray | None = None,
                       instance_area: tuple[float, float] = (0.0, 0.0),
                       images: np.ndarray | None = None) -> np.ndarray:
    """Instance labels of ``T`` frames clustered jointly.

    ``embeddings``: ``(T, d, Y, X)`` float, L2-normalised over ``d``.
    ``background``: ``(d,)`` background direction, estimated when None.
    ``foreground``: optional ``(T, Y, X)`` bool mask that replaces the
    background-cosine test (for methods with a separate foreground output).
    Returns ``(T, Y, X)`` int32 labels, 0 = background, the same label for
    the same object in every frame. ``instance_area`` sizes HDBSCAN when
    ``params`` leaves its sizes at 0 (:func:`cluster_sizes`).
    """
    params = params or ClusterParams()
    emb = _check_embeddings(embeddings)
    n_frames, dim, height, width = emb.shape
    pixels = np.moveaxis(emb, 1, -1)  # (T, Y, X, d): one embedding per pixel
    if background is None:
        background = estimate_background(pixels.reshape(-1, dim))
    background = _unit(np.asarray(background, np.float32).reshape(dim))
    if foreground is None:
        foreground = np.tensordot(background, emb, axes=(0, 1)) < params.cluster_background_cos
    elif foreground.shape != (n_frames, height, width):
        raise DataError(f"foreground mask has shape {foreground.shape}, expected "
                        f"{(n_frames, height, width)}")
    labels = np.zeros((n_frames, height, width), np.int32)
    if not foreground.any():
        return labels
    stride = _sample_stride(int(foreground.sum()), params)
    split_area = params.cluster_split_area * instance_area[1]
    sample_labels, means, parts = _cluster_samples(
        pixels, foreground, stride, params, cluster_sizes(params, instance_area),
        (split_area, SPLIT_PART * instance_area[0]))
    keep = means @ background < params.cluster_background_cos
    if not keep.any():
        return labels
    kept_id = np.where(keep, np.arange(len(keep)), -1)
    sample_labels = np.where(sample_labels >= 0, kept_id[np.maximum(sample_labels, 0)], -1)
    labels = _assign_pixels(pixels, foreground, sample_labels, means, stride, params)
    labels = _grow_into_noise(labels, pixels, foreground, means, params.cluster_grow_cos)
    labels = _absorb_specks(labels, pixels, means, params)
    if parts is not None:
        labels = _split_into_parts(labels, np.where(sample_labels >= 0, parts, -1),
                                   sample_labels, stride, split_area)
    if params.cluster_orphans:
        labels = _orphans(labels, foreground, params.min_instance_area, images,
                          params.cluster_orphan_z)
    return split_components(labels, params.min_instance_area)


def _orphans(labels: np.ndarray, foreground: np.ndarray, min_area: int,
             images: np.ndarray | None = None, z_min: float = 0.0) -> np.ndarray:
    """``labels`` with each connected piece (in ``(t, y, x)``) of the foreground left
    unlabelled that touches the frame's edge and no label and has at least ``min_area``
    pixels in some frame as a new label (one label in every frame of it). Given
    ``images``, the piece's part in a frame is kept only where it stands ``z_min``
    standard errors above that frame's background (:func:`_standing`): a nucleus's sliver
    in one frame can continue into a piece of background in the other."""
    from skimage.measure import label as connected

    left = foreground & (labels == 0)
    if not left.any():
        return labels
    pieces = connected(left, background=0, connectivity=1)
    n = int(pieces.max())
    touching = np.unique(pieces[_frame_dilate(labels > 0) & (pieces > 0)])
    per_frame = np.stack([np.bincount(frame.ravel(), minlength=n + 1) for frame in pieces])
    keep = per_frame.max(axis=0) >= max(min_area, 1)
    edge = np.zeros(n + 1, bool)
    edge[np.unique(np.concatenate([pieces[:, [0, -1], :].ravel(),
                                   pieces[:, :, [0, -1]].ravel()]))] = True
    keep &= edge
    keep[0] = False
    keep[touching] = False
    if not keep.any():
        return labels
    new_id = np.zeros(n + 1, np.int32)
    new_id[keep] = int(labels.max()) + 1 + np.arange(int(keep.sum()), dtype=np.int32)
    adopted = new_id[pieces]
    if images is not None and z_min > 0:
        stands = _standing(pieces, per_frame, np.asarray(images, np.float32),
                           labels == 0) >= z_min
        adopted = np.where(np.stack([ok[piece] for ok, piece in zip(stands, pieces, strict=True)]),
                           adopted, 0)
    return np.where(labels > 0, labels, adopted)


def _standing(pieces: np.ndarray, counts: np.ndarray, images: np.ndarray,
              background: np.ndarray) -> np.ndarray:
    """``(T, n + 1)``: how many standard errors each piece's mean in each frame lies above
    that frame's background; ``counts`` ``(T, n + 1)``: each piece's pixels per frame.

    A frame's pixels are measured in robust noise stds over the median of its
    ``background`` pixels (1.4826 times the median absolute deviation); a piece's score
    is their sum over its pixels in the frame divided by the root of their count (its
    mean's distance from the background in standard errors, were the noise independent;
    0 where it has no pixels)."""
    scores = np.zeros(counts.shape)
    for t, (piece, image, back) in enumerate(zip(pieces, images, background, strict=True)):
        values = image[back] if back.any() else image.ravel()
        level, noise = level_and_noise(values)
        noise = noise if noise > 0 else float(np.std(values)) or 1.0
        sums = np.bincount(piece.ravel(), weights=(image.ravel() - level) / noise,
                           minlength=counts.shape[1])
        scores[t] = sums / np.sqrt(np.maximum(counts[t], 1))
    return scores


def _frame_dilate(mask: np.ndarray) -> np.ndarray:
    """``(T, Y, X)`` mask grown by one pixel within each frame (4-neighbours)."""
    from scipy import ndimage as ndi

    return ndi.binary_dilation(mask, structure=ndi.generate_binary_structure(2, 1)[None])


def estimate_background(vectors: np.ndarray, n_sample: int = 4000, n_candidates: int = 64,
                        cos_near: float = 0.9, seed: int = 0) -> np.ndarray:
    """Densest direction of ``(N, d)`` unit vectors: the background in most images.

    Background usually covers more pixels than any single object, so its
    embedding is the direction shared by the most pixels. From a random
    subsample, each of ``n_candidates`` sampled vectors counts the vectors with
    cosine > ``cos_near`` to it; the winner's neighbours are averaged and the
    mean is normalised. Deterministic for a given ``seed``. Returns ``(d,)``.
    """
    rng = np.random.default_rng(seed)
    vectors = np.asarray(vectors, np.float32)
    if len(vectors) > n_sample:
        vectors = vectors[rng.choice(len(vectors), n_sample, replace=False)]
    candidates = vectors[rng.choice(len(vectors), min(n_candidates, len(vectors)),
                                    replace=False)]
    near = candidates @ vectors.T > cos_near  # (n_candidates, n_sample)
    best = int(np.argmax(near.sum(axis=1)))
    return _unit(vectors[near[best]].mean(axis=0))


def split_components(labels: np.ndarray, min_area: int = 0) -> np.ndarray:
    """Split each label of ``(T, Y, X)`` into connected components in ``(t, y, x)``.

    The largest component of a label keeps it; other components get new labels
    after the largest existing one; per-frame pieces smaller than ``min_area``
    pixels are removed. Returns ``(T, Y, X)`` int32.
    """
    from skimage.measure import label as connected

    components = connected(labels, background=0, connectivity=1).astype(np.int32)
    if min_area > 0:
        components = _drop_small_pieces(components, min_area)
    n_comp = int(components.max())
    if n_comp == 0:
        return components
    flat_comp = components.ravel()
    first = np.zeros(n_comp + 1, np.int64)
    order = np.flatnonzero(flat_comp)
    first[flat_comp[order[::-1]]] = order[::-1]  # a pixel index of each component
    owner = labels.ravel()[first]
    areas = np.bincount(flat_comp, minlength=n_comp + 1)
    present = np.flatnonzero(areas[1:]) + 1
    by_size = present[np.lexsort((-areas[present], owner[present]))]
    is_largest = np.r_[True, owner[by_size][1:] != owner[by_size][:-1]]
    new_label = np.zeros(n_comp + 1, np.int32)
    new_label[by_size[is_largest]] = owner[by_size[is_largest]]
    extra = by_size[~is_largest]
    new_label[extra] = int(labels.max()) + 1 + np.arange(len(extra), dtype=np.int32)
    return new_label[components]


def _absorb_specks(labels: np.ndarray, pixels: np.ndarray, means: np.ndarray,
                   params: ClusterParams) -> np.ndarray:
    """Hand pieces smaller than ``min_area`` to the cluster around them.

    A noisy pixel inside an object sometimes matches a neighbouring object's
    mean best; alone, it would be cut off and dropped, leaving a hole. Such
    pieces are emptied and grown into again from their neighbours (with the
    ``grow_cos`` test, so a small object of its own is not swallowed).
    """
    from skimage.measure import label as connected

    if params.min_instance_area <= 0:
        return labels
    components = connected(labels, background=0, connectivity=1)
    specks = (labels > 0) & (_drop_small_pieces(components, params.min_instance_area) == 0)
    if not specks.any():
        return labels
    labels = np.where(specks, 0, labels)
    return _grow_into_noise(labels, pixels, specks, means, params.cluster_grow_cos)


def _drop_small_pieces(components: np.ndarray, min_area: int) -> np.ndarray:
    """``(T, Y, X)`` components with those of fewer than ``min_area`` pixels in a frame removed."""
    return np.stack([remove_small(frame, min_area) for frame in components])


def _check_embeddings(embeddings: np.ndarray) -> np.ndarray:
    emb = np.asarray(embeddings)
    if emb.ndim != 4:
        raise DataError(f"embeddings must be (T, d, Y, X), got shape {emb.shape}")
    if emb.shape[1] < 1 or min(emb.shape[2:]) < 1:
        raise DataError(f"embeddings have an empty axis: shape {emb.shape}")
    if not np.isfinite(emb).all():
        raise DataError("embeddings contain NaN or infinite values")
    return emb.astype(np.float32, copy=False)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).astype(np.float32)


def _sample_stride(n_foreground: int, params: ClusterParams) -> int:
    if not params.cluster_fast:
        return 1
    return max(2, math.ceil(math.sqrt(n_foreground / params.cluster_max_samples)))


def _block_samples(pixels: np.ndarray, foreground: np.ndarray, stride: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Mean unit embedding of the foreground pixels of each ``stride`` x ``stride`` block.

    Averaging a block is a square superpixel: it both thins the samples and
    removes most of the per-pixel noise. Returns the blocks that are at least
    half foreground ``(T, Gy, Gx)`` bool and their embeddings ``(S, d)``.
    """
    if stride == 1:
        return foreground, pixels[foreground]
    n_frames, height, width, dim = pixels.shape
    grid = (n_frames, -(-height // stride), -(-width // stride))
    t, ys, xs = np.nonzero(foreground)
    block = np.ravel_multi_index((t, ys // stride, xs // stride), grid)
    n_blocks = int(np.prod(grid))
    values = pixels[t, ys, xs]
    counts = np.bincount(block, minlength=n_blocks)
    # Blocks less than half foreground are left out: at a noisy foreground
    # threshold they hold stray pixels whose mean is no cleaner than a pixel.
    occupied = counts * 2 >= stride * stride
    sums = np.stack([np.bincount(block, weights=values[:, k], minlength=n_blocks)
                     for k in range(dim)], axis=1)[occupied]
    means = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return occupied.reshape(grid), means.astype(np.float32)


def _cluster_samples(pixels: np.ndarray, foreground: np.ndarray, stride: int,
                     params: ClusterParams, sizes: tuple[int, int],
                     split: tuple[float, float] = (0.0, 0.0)
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """HDBSCAN on the foreground blocks of side ``stride`` (pixels when 1).

    ``sizes``: HDBSCAN's minimum cluster size and samples in pixels.
    Returns the grid of block labels ``(T, Gy, Gx)`` (-1 = none/noise), the
    unit mean embedding of each cluster ``(K, d)``, and, when ``split`` gives an area
    (pixels, > 0), the grid of the parts that split the clusters larger than it in a
    frame, parts of more than its second area (:func:`_sub_clusters`; -1 elsewhere),
    else None.
    """
    from sklearn.cluster import HDBSCAN

    occupied, sample_emb = _block_samples(pixels, foreground, stride)
    _, gy, gx = np.nonzero(occupied)
    centre = (stride - 1) / 2  # blocks are placed at their centre pixel
    coords = params.cluster_coord_scale * (stride * np.stack([gy, gx], axis=1) + centre)
    features = np.concatenate([sample_emb, coords], axis=1).astype(np.float64)
    per_sample = stride * stride
    min_size = max(2, round(sizes[0] / per_sample))
    min_samples = max(1, min(round(sizes[1] / per_sample), min_size))
    sample_labels = np.full(occupied.shape, -1, np.int64)
    if len(features) < min_size:
        return sample_labels, np.zeros((0, pixels.shape[-1]), np.float32), None
    found = _hdbscan(HDBSCAN, features, min_size, min_samples, params.cluster_selection, False)
    if found.max() < 0:
        found = _hdbscan(HDBSCAN, features, min_size, min_samples, params.cluster_selection, True)
    parts = None
    if split[0] > 0 and params.cluster_selection != "leaf" and found.max() >= 0:
        frames = np.nonzero(occupied)[0]
        large = _large_clusters(found, frames, split[0] / per_sample)
        if len(large):
            parts = np.full(occupied.shape, -1, np.int64)
            parts[occupied] = _sub_clusters(found, features, frames, large, min_size,
                                             min_samples, split[1] / per_sample)
    sample_labels[occupied] = found
    n_clusters = int(found.max()) + 1
    sums = np.zeros((n_clusters, pixels.shape[-1]), np.float64)
    np.add.at(sums, found[found >= 0], sample_emb[found >= 0])
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return sample_labels, (sums / np.maximum(norms, 1e-12)).astype(np.float32), parts


def _frame_counts(found: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """``(T, K)``: samples of each cluster of ``found`` ``(S,)`` (-1 = none) per frame
    (``frames`` ``(S,)``: each sample's frame)."""
    clustered = found >= 0
    counts = np.zeros((int(frames.max()) + 1, int(found.max()) + 1), np.int64)
    np.add.at(counts, (frames[clustered], found[clustered]), 1)
    return counts


def _large_clusters(found: np.ndarray, frames: np.ndarray, limit: float) -> np.ndarray:
    """The clusters of sample labels ``found`` ``(S,)`` with more than ``limit`` samples
    in one frame (``frames`` ``(S,)``: each sample's frame)."""
    return np.flatnonzero(_frame_counts(found, frames).max(axis=0) > limit)


def _sub_clusters(found: np.ndarray, features: np.ndarray, frames: np.ndarray,
                  large: np.ndarray, min_size: int, min_samples: int, min_part: float
                  ) -> np.ndarray:
    """``(S,)``: each ``large`` cluster of ``found`` clustered again on its own samples
    (``features`` ``(S, F)``, ``frames`` ``(S,)``), HDBSCAN then choosing among the
    branches of its own tree; where two or more sub-clusters of more than ``min_part``
    samples in a frame come out, the samples of those carry distinct part ids; -1 for
    every other sample (smaller parts, noise, other clusters)."""
    from sklearn.cluster import HDBSCAN

    parts = np.full(len(found), -1, np.int64)
    next_part = 0
    for cluster in large:
        inside = np.flatnonzero(found == cluster)
        if len(inside) < 2 * min_size:
            continue
        sub = _hdbscan(HDBSCAN, features[inside], min_size, min_samples, "eom", False)
        if sub.max() < 1:
            continue
        big = np.flatnonzero(_frame_counts(sub, frames[inside]).max(axis=0) > min_part)
        if len(big) < 2:
            continue
        keep = np.isin(sub, big)
        parts[inside[keep]] = next_part + np.searchsorted(big, sub[keep])
        next_part += len(big)
    return parts


def _split_into_parts(labels: np.ndarray, parts: np.ndarray, sample_labels: np.ndarray,
                      stride: int, large: float) -> np.ndarray:
    """``labels`` ``(T, Y, X)`` with each cluster that has parts (``parts``
    ``(T, Gy, Gx)``, the samples' part ids, -1 = none) and is waisted where it holds more
    than ``large`` pixels (:func:`_waisted`) split among them: a pixel of the cluster
    takes the part of the nearest part sample of that cluster in its frame (the first
    part keeps the cluster's label, the others get new ones).
    ``sample_labels`` ``(T, Gy, Gx)``: the samples' clusters (label - 1; -1 = none)."""
    from scipy import ndimage as ndi

    owner = np.where(parts >= 0, sample_labels, -1)
    next_label = int(labels.max()) + 1
    out = labels.copy()
    for cluster in np.unique(owner[owner >= 0]):
        mask = labels == cluster + 1
        if not _waisted(mask, large):
            continue
        pieces = np.unique(parts[owner == cluster])
        new_label = {int(pieces[0]): int(cluster) + 1}
        for part in pieces[1:]:
            new_label[int(part)] = next_label
            next_label += 1
        lut = np.zeros(int(pieces.max()) + 2, np.int32)
        for part, value in new_label.items():
            lut[part + 1] = value
        for t in range(len(labels)):
            mine = owner[t] == cluster
            if not mine.any() or not mask[t].any():
                continue
            # nearest part sample of the cluster, for every block of the frame
            _, (iy, ix) = ndi.distance_transform_edt(~mine, return_indices=True)
            nearest = parts[t][iy, ix]
            ys, xs = np.nonzero(mask[t])
            out[t, ys, xs] = lut[nearest[ys // stride, xs // stride] + 1]
    return out


def _waisted(mask: np.ndarray, large: float) -> bool:
    """Whether ``(T, Y, X)`` ``mask`` has, in a frame where it holds more than ``large``
    pixels, a solidity below :data:`SPLIT_SOLIDITY`."""
    return any(int(frame.sum()) > large and solidity(frame) < SPLIT_SOLIDITY for frame in mask)


def _hdbscan(estimator, features: np.ndarray, min_size: int, min_samples: int,
             selection: str, single: bool) -> np.ndarray:
    """One HDBSCAN run; ``single`` allows one cluster (an image with one object)."""
    model = estimator(min_cluster_size=min_size, min_samples=min_samples,
                      cluster_selection_method=selection, allow_single_cluster=single,
                      copy=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return model.fit_predict(features)


def _assign_pixels(pixels: np.ndarray, foreground: np.ndarray, sample_labels: np.ndarray,
                   means: np.ndarray, stride: int, params: ClusterParams) -> np.ndarray:
    """Label every foreground pixel from the clustered samples around it.

    ``pixels`` ``(T, Y, X, d)``, ``sample_labels`` ``(T, Gy, Gx)`` with -1 for
    none. Candidate clusters are those of the samples within ``assign_radius``
    grid steps of the pixel's block in its own frame; the winner has the
    largest cosine between its mean embedding and the pixel's embedding.
    Pixels without a candidate there look at the same place in the other
    frames (an object whose samples were all noise in one frame is usually
    clustered where it stood in the other). Returns ``(T, Y, X)`` int32, labels
    1..K, 0 = none.
    """
    n_frames, height, width, _ = pixels.shape
    labels = np.zeros((n_frames, height, width), np.int32)
    radius = params.cluster_assign_radius
    padded = np.pad(sample_labels, ((0, 0), (radius, radius), (radius, radius)),
                    constant_values=-1)
    for t in range(n_frames):
        ys, xs = np.nonzero(foreground[t])
        scores = pixels[t, ys, xs] @ means.T  # (N, K) cosine with every cluster mean
        blocks = (ys // stride + radius, xs // stride + radius)
        best = _best_candidate(scores, padded[t], blocks, radius)
        for other in (u for u in range(n_frames) if u != t):
            missing = np.flatnonzero(best < 0)
            if len(missing) == 0:
                break
            best[missing] = _best_candidate(scores[missing], padded[other],
                                            (blocks[0][missing], blocks[1][missing]), radius)
        labels[t, ys, xs] = best + 1
    if stride == 1:  # plain HDBSCAN: clustered pixels keep their own cluster
        clustered = sample_labels >= 0
        labels[clustered] = sample_labels[clustered] + 1
    return labels


def _best_candidate(scores: np.ndarray, grid: np.ndarray, blocks: tuple[np.ndarray, np.ndarray],
                    radius: int) -> np.ndarray:
    """Best-scoring cluster among the samples of ``grid`` around each pixel's block.

    ``scores`` ``(N, K)`` pixel-to-cluster cosines, ``grid`` ``(Gy + 2r, Gx + 2r)``
    padded sample labels, ``blocks`` the padded block coordinates ``(N,)`` each.
    Returns ``(N,)`` cluster indices, -1 where no sample nearby is clustered.
    """
    rows = np.arange(len(scores))
    best = np.full(len(scores), -1, np.int64)
    best_score = np.full(len(scores), -np.inf, np.float32)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            cand = grid[blocks[0] + dy, blocks[1] + dx]
            score = np.where(cand >= 0, scores[rows, np.maximum(cand, 0)], -np.inf)
            better = score > best_score
            best[better] = cand[better]
            best_score[better] = score[better]
    return best


def _grow_into_noise(labels: np.ndarray, pixels: np.ndarray, foreground: np.ndarray,
                     means: np.ndarray, min_cos: float, max_passes: int = 32) -> np.ndarray:
    """Give unlabelled foreground pixels the best-matching label of their 8 neighbours.

    ``labels`` ``(T, Y, X)`` (1..K, 0 = none), ``pixels`` ``(T, Y, X, d)``,
    ``means`` ``(K, d)``. A pixel joins the neighbouring cluster whose mean has
    the largest cosine with its embedding, if that cosine is >= ``min_cos``;
    each pass reaches one pixel further. Returns the updated labels.
    """
    n_frames, height, width = labels.shape
    t, ys, xs = np.nonzero(foreground & (labels == 0))
    if len(t) == 0 or len(means) == 0:
        return labels
    scores = np.einsum("nd,kd->nk", pixels[t, ys, xs], means)  # (N, K)
    rows = np.arange(len(t))
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    for _ in range(max_passes):
        best = np.zeros(len(t), np.int32)
        best_score = np.full(len(t), min_cos, np.float32)
        for dy, dx in offsets:
            cand = labels[t, np.clip(ys + dy, 0, height - 1), np.clip(xs + dx, 0, width - 1)]
            score = np.where(cand > 0, scores[rows, np.maximum(cand - 1, 0)], -np.inf)
            better = score >= best_score
            best[better] = cand[better]
            best_score[better] = score[better]
        grown = best > 0
        if not grown.any():
            break
        labels[t[grown], ys[grown], xs[grown]] = best[grown]
        t, ys, xs, scores = t[~grown], ys[~grown], xs[~grown], scores[~grown]
        rows = np.arange(len(t))
        if len(t) == 0:
            break
    return labels
