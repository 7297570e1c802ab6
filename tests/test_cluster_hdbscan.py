"""Clustering cosine embeddings of frame pairs into consistent instance labels."""

from __future__ import annotations

import numpy as np
import pytest

from instatrack.cluster.hdbscan import (
    ClusterParams,
    cluster_embeddings,
    cluster_sizes,
    estimate_background,
    params_for,
    split_components,
)
from instatrack.errors import ConfigError, DataError

DIM = 8


def sized(**changes) -> ClusterParams:
    """Clusters of at least 20 px (10 samples): the discs here are small."""
    return ClusterParams(**{"cluster_min_cluster_size": 20, "cluster_min_samples": 10,
                            **changes})


def discs_pair(size: int = 64) -> np.ndarray:
    """``(2, Y, X)`` labels: five discs (one touching pair) moving by 2 px."""
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((2, size, size), np.int32)
    centres = [(14, 14, 7), (14, 28, 7), (44, 16, 8), (40, 44, 9), (16, 50, 6)]
    for t in range(2):
        for k, (cy, cx, r) in enumerate(centres, start=1):
            out[t][(yy - cy) ** 2 + (xx - cx - 2 * t) ** 2 <= r * r] = k
    return out


def oracle(labels: np.ndarray, noise: float = 0.1, seed: int = 0, vectors=None):
    """Embeddings ``(T, d, Y, X)``: a unit vector per label (0 = background) + noise."""
    rng = np.random.default_rng(seed)
    if vectors is None:
        vectors = rng.normal(size=(int(labels.max()) + 1, DIM))
        vectors[:, 0] = 0.0
        vectors[0] = np.eye(DIM)[0]
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    emb = vectors[labels] + noise * rng.normal(size=(*labels.shape, DIM))
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    return np.moveaxis(emb, -1, 1).astype(np.float32), vectors[0]


def assert_same_partition(pred: np.ndarray, gt: np.ndarray, agree: float = 1.0) -> None:
    """Each GT object is one predicted label in both frames (a one-to-one map).

    At least ``agree`` of the foreground pixels carry their object's label and
    at least ``agree`` of the background pixels stay 0.
    """
    ids = [k for k in np.unique(gt) if k > 0]
    majority = {k: int(np.bincount(pred[gt == k]).argmax()) for k in ids}
    assert 0 not in majority.values()
    assert len(set(majority.values())) == len(ids)
    lut = np.zeros(int(gt.max()) + 1, np.int64)
    lut[ids] = [majority[k] for k in ids]
    assert (pred[gt > 0] == lut[gt[gt > 0]]).mean() >= agree
    assert (pred[gt == 0] == 0).mean() >= agree


@pytest.mark.parametrize("fast", [True, False])
def test_oracle_pair_gives_ground_truth_partition(fast):
    gt = discs_pair()
    emb, background = oracle(gt)
    labels = cluster_embeddings(emb, sized(cluster_fast=fast), background)
    assert labels.shape == gt.shape and labels.dtype == np.int32
    assert_same_partition(labels, gt)


def test_fast_path_subsamples_and_still_matches():
    gt = discs_pair(96)
    emb, background = oracle(gt, noise=0.2)
    params = sized(cluster_max_samples=400)
    labels = cluster_embeddings(emb, params, background)
    assert_same_partition(labels, gt, agree=0.99)


def test_background_is_estimated_when_not_given():
    gt = discs_pair()
    emb, background = oracle(gt)
    estimated = estimate_background(np.moveaxis(emb, 1, -1).reshape(-1, DIM))
    assert float(estimated @ background) > 0.99
    labels = cluster_embeddings(emb, sized())
    assert_same_partition(labels, gt)


def test_same_embedding_far_apart_gives_two_objects():
    gt = discs_pair()
    vectors = np.random.default_rng(1).normal(size=(6, DIM))
    vectors[:, 0] = 0
    vectors[0] = np.eye(DIM)[0]
    vectors[4] = vectors[5]  # two distant discs share an embedding
    emb, background = oracle(gt, vectors=vectors)
    labels = cluster_embeddings(emb, sized(), background)
    assert_same_partition(labels, gt)


def test_background_aligned_cluster_and_small_objects_are_dropped():
    gt = discs_pair()
    yy, xx = np.mgrid[:64, :64]
    gt[:, (yy - 56) ** 2 + (xx - 56) ** 2 <= 4] = 6  # 13 px, under min_area
    vectors = np.random.default_rng(2).normal(size=(7, DIM))
    vectors[:, 0] = 0
    vectors[0] = np.eye(DIM)[0]
    vectors[6] = np.eye(DIM)[1]
    vectors[3] = vectors[0]  # disc 3 looks like background
    emb, background = oracle(gt, noise=0.05, vectors=vectors)
    params = ClusterParams(cluster_min_cluster_size=10, cluster_min_samples=5,
                           min_instance_area=20)
    # The given foreground mask lets disc 3 in; its cluster is dropped for its direction.
    labels = cluster_embeddings(emb, params, background, foreground=gt > 0)
    kept = {k for k in range(1, 7) if labels[gt == k].all()}
    assert kept == {1, 2, 4, 5}
    assert not labels[gt == 3].any() and not labels[gt == 6].any()


def test_single_object_and_empty_frames():
    yy, xx = np.mgrid[:32, :32]
    gt = np.zeros((1, 32, 32), np.int32)
    gt[0][(yy - 16) ** 2 + (xx - 16) ** 2 <= 64] = 1
    emb, background = oracle(gt)
    labels = cluster_embeddings(emb, sized(), background)
    assert_same_partition(labels, gt)
    empty, _ = oracle(np.zeros((2, 32, 32), np.int32))
    assert not cluster_embeddings(empty, ClusterParams(), background).any()


def test_foreground_mask_replaces_background_test():
    gt = discs_pair()
    emb, background = oracle(gt)
    only_first = gt == 1
    labels = cluster_embeddings(emb, sized(), background,
                                foreground=only_first)
    assert set(np.unique(labels)) == {0, 1} or len(np.unique(labels[only_first])) == 1
    assert not labels[~only_first].any()


def test_split_components_hand_computed():
    labels = np.array([[[1, 1, 0, 1],
                        [0, 0, 0, 1],
                        [2, 0, 0, 1]],
                       [[1, 0, 0, 0],
                        [0, 0, 0, 0],
                        [0, 0, 2, 2]]], np.int32)
    # Label 1: {frame 0 left, frame 1 corner} is connected in time (2 + 1 px), the
    # right column (3 px) is not: the larger keeps 1... both have 3 px, so the
    # first in scan order keeps it. Label 2 splits into two one-frame pieces.
    out = split_components(labels)
    assert out[0, 0, 0] == out[1, 0, 0] == out[0, 0, 1]
    assert out[0, 0, 3] != out[0, 0, 0]
    assert {out[0, 0, 0], out[0, 0, 3]} == {1, 3}
    assert out[1, 2, 2] == 2 and out[0, 2, 0] == 4
    small = split_components(labels, min_area=2)
    assert small[0, 2, 0] == 0 and small[1, 0, 0] == 0 and small[0, 0, 0] > 0


def test_params_are_validated_and_have_kinds():
    leaves, cells = params_for("leaves"), params_for("cells")
    assert leaves.min_instance_area > cells.min_instance_area
    assert params_for("cells", cluster_fast=False).cluster_fast is False
    with pytest.raises(ConfigError, match="unknown dataset kind"):
        params_for("fish")
    with pytest.raises(ConfigError, match="cluster_min_cluster_size"):
        ClusterParams(cluster_min_cluster_size=1)


def test_cluster_sizes_follow_the_training_instances():
    auto = ClusterParams()
    assert cluster_sizes(auto) == (50, 5)  # not measured
    assert cluster_sizes(auto, (1600, 2000)) == (700, 70)  # 0.35 of the median
    assert cluster_sizes(auto, (40, 2000)) == (40, 5)  # the 10th percentile
    assert cluster_sizes(ClusterParams(cluster_min_cluster_size=30, cluster_min_samples=3),
                         (1600, 2000)) == (30, 3)


def test_bad_embeddings_raise_data_error():
    with pytest.raises(DataError, match="T, d, Y, X"):
        cluster_embeddings(np.zeros((4, 8, 8), np.float32))
    bad = np.zeros((1, 2, 8, 8), np.float32)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        cluster_embeddings(bad)


def test_a_sliver_at_the_edge_too_small_to_cluster_is_kept_with_orphans_on():
    """A nucleus that shows only a sliver at the frame's edge has too few pixels for
    HDBSCAN's minimum cluster size; with ``cluster_orphans`` a foreground piece at the
    edge that touches no cluster becomes an object of its own, in both frames with one
    label."""
    gt = discs_pair()
    gt[:, 60:64, 26:32] = 6  # 24 px a frame at the edge, against clusters of at least 100 px
    vectors = np.random.default_rng(3).normal(size=(7, DIM))
    vectors[:, :2] = 0
    vectors[0], vectors[6] = np.eye(DIM)[0], np.eye(DIM)[1]  # unlike any disc
    emb, background = oracle(gt, noise=0.05, vectors=vectors)
    params = sized(cluster_min_cluster_size=100, cluster_min_samples=10, min_instance_area=10)
    assert params.cluster_orphans  # on by default
    params = params.replace(cluster_orphans=False)
    without = cluster_embeddings(emb, params, background)
    assert not without[gt == 6].any()
    with_orphans = cluster_embeddings(emb, params.replace(cluster_orphans=True), background)
    sliver = with_orphans[gt == 6]
    assert (sliver > 0).all() and len(np.unique(sliver)) == 1
    assert not np.isin(sliver[0], with_orphans[(gt > 0) & (gt != 6)])
    # the discs are partitioned as before, and nothing else is added
    assert len(np.unique(with_orphans)) == len(np.unique(without)) + 1
    # inside the frame a piece that small is debris, not a nucleus cut by the edge
    inside = gt.copy()
    inside[:, 60:64, 26:32] = 0
    inside[:, 54:58, 26:32] = 6
    emb_in, _ = oracle(inside, noise=0.05, vectors=vectors)
    assert not cluster_embeddings(emb_in, params.replace(cluster_orphans=True),
                                  background)[inside == 6].any()
    # too small a piece stays background
    small = cluster_embeddings(emb, params.replace(cluster_orphans=True,
                                                   min_instance_area=30), background)
    assert not small[gt == 6].any()
    # given the frames, the sliver must stand out of their noise: over a bright sliver it
    # is kept, over a patch of background (a dimmed frame's false foreground) it is not
    noise = np.random.default_rng(4).normal(0, 1, gt.shape).astype(np.float32)
    bright = noise + 5.0 * (gt > 0)
    kept = cluster_embeddings(emb, params.replace(cluster_orphans=True), background,
                              images=bright)
    assert (kept[gt == 6] > 0).all()
    flat = noise + 5.0 * ((gt > 0) & (gt != 6))
    assert not cluster_embeddings(emb, params.replace(cluster_orphans=True), background,
                                  images=flat)[gt == 6].any()
    assert (cluster_embeddings(emb, params.replace(cluster_orphans=True, cluster_orphan_z=0),
                               background, images=flat)[gt == 6] > 0).all()
    # the test is per frame: bright in the first frame only, the sliver is kept there only
    once = flat.copy()
    once[0][gt[0] == 6] += 5.0
    one = cluster_embeddings(emb, params.replace(cluster_orphans=True), background,
                             images=once)
    assert (one[0][gt[0] == 6] > 0).all() and not one[1][gt[1] == 6].any()
    with pytest.raises(ConfigError, match="cluster_orphan_z"):
        ClusterParams(cluster_orphan_z=-1)


def discs(centres: list[tuple[int, int, int]], size: int = 96) -> np.ndarray:
    """``(2, Y, X)`` labels 1..K: discs ``(cy, cx, r)`` moving right by 1 px."""
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((2, size, size), np.int32)
    for t in range(2):
        for k, (cy, cx, r) in enumerate(centres, start=1):
            out[t][((yy - cy) ** 2 + (xx - cx - t) ** 2 <= r * r) & (out[t] == 0)] = k
    return out


def test_two_touching_objects_with_nearly_one_embedding_are_split():
    """Where the network gives two touching nuclei nearly the same embedding (cosine 0.98
    between their means), HDBSCAN's excess-of-mass selection keeps them as one cluster;
    with ``cluster_split_area`` the cluster, twice a nucleus's size and waisted, is
    clustered again and split along its parts."""
    gt = discs([(30, 24, 11), (30, 46, 11), (70, 66, 11)])
    vectors = np.random.default_rng(0).normal(size=(4, DIM))
    vectors[:, 0] = 0
    vectors[0] = np.eye(DIM)[0]
    vectors[2] = vectors[1] / np.linalg.norm(vectors[1]) + 0.2 * np.eye(DIM)[1]
    area = int((gt[0] == 3).sum())
    sizes = (0.8 * area, area)
    merged = 0
    for seed in range(3):
        emb, background = oracle(gt, noise=0.05, vectors=vectors, seed=seed)
        plain = cluster_embeddings(emb, ClusterParams(), background, instance_area=sizes)
        merged += len(np.unique(plain[0])) - 1 < 3
        split = cluster_embeddings(emb, ClusterParams(cluster_split_area=1.5), background,
                                   instance_area=sizes)
        assert_same_partition(split, gt, agree=0.95)
    assert merged >= 2
    with pytest.raises(ConfigError, match="cluster_split_area"):
        ClusterParams(cluster_split_area=0.5)


def test_a_large_convex_object_is_not_split():
    """A single object twice the training nuclei's size is convex: the split leaves it
    whole even where clustering it again finds parts (uniform noise has no true parts)."""
    gt = discs([(34, 34, 16), (70, 70, 11)])
    vectors = np.random.default_rng(0).normal(size=(3, DIM))
    vectors[:, 0] = 0
    vectors[0] = np.eye(DIM)[0]
    area = int((gt[0] == 2).sum())
    for seed, scale in ((3, 0.03), (4, 0.05), (0, 0.01)):
        emb, background = oracle(gt, noise=0.05, vectors=vectors, seed=seed)
        labels = cluster_embeddings(
            emb, ClusterParams(cluster_split_area=1.5, cluster_coord_scale=scale),
            background, instance_area=(0.8 * area, area))
        assert_same_partition(labels, gt, agree=0.95)
