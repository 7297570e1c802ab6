"""Spatial-embedding loss (hand-computed values), seed clustering of oracle outputs,
and the method: config, training on a synthetic frame, streaming prediction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from instatrack.cluster.seeds import SeedClustering, cluster_seeds
from instatrack.errors import ConfigError, DataError
from instatrack.losses.spatial_embedding import LossWeights, spatial_embedding_loss
from instatrack.methods.base import Window
from instatrack.methods.spatial_embedding import SpatialEmbedding, SpatialEmbeddingConfig
from instatrack.models.erfnet import BranchedERFNet, coordinate_grid

SCALE = 64.0  # pixels per embedding unit in these tests


def synthetic_labels(size=(64, 64), seed=1) -> np.ndarray:
    from instatrack.data.synth import generate_cells

    return generate_cells(frames=1, size=size, seed=seed).labels[0]


def oracle_outputs(labels: np.ndarray, sigma_px: float = 1.0) -> dict[str, torch.Tensor]:
    """What a perfect network predicts: instance pixels embed at their centroid,
    background pixels far from every object; seeds 1 on objects, 0 elsewhere."""
    grid = coordinate_grid(*labels.shape, SCALE).double()
    embedding = torch.full_like(grid, -1.0)
    for k in np.unique(labels[labels > 0]):
        mask = torch.from_numpy(labels == k)
        embedding[:, mask] = grid[:, mask].mean(1, keepdim=True)
    log_sigma = torch.full((1, *labels.shape), math.log(sigma_px / SCALE), dtype=torch.double)
    seed = torch.from_numpy(labels > 0).double()[None]
    return {"embedding": embedding[None], "log_sigma": log_sigma[None],
            "sigma": log_sigma.exp()[None], "seed": seed[None]}


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to relabelling (0 stays background)."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = {(int(x), int(y)) for x, y in zip(a[a > 0], b[a > 0], strict=True)}
    return len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs})


# -- loss -----------------------------------------------------------------------------------------
def test_oracle_outputs_cost_nothing():
    labels = synthetic_labels()
    loss, parts = spatial_embedding_loss(oracle_outputs(labels), torch.from_numpy(labels)[None])
    assert float(loss) == pytest.approx(0.0, abs=1e-4)
    assert set(parts) == {"instance", "variance", "seed"}


def test_instance_term_by_hand():
    # labels 1 1 0; both object pixels embed at the centre (soft mask 1, logit 1) and the
    # background pixel sits where the mask is exactly 0.5 (logit 0, hinge error 1):
    # Lovász = error 1 x Jaccard loss of "background pixel wrong" = 1 - 2/3 = 1/3.
    sigma = 0.01
    d = sigma * math.sqrt(2 * math.log(2))
    outputs = {"embedding": torch.tensor([[[[0.0, 0.0, d]], [[0.0, 0.0, 0.0]]]]),
               "log_sigma": torch.full((1, 1, 1, 3), math.log(sigma)),
               "seed": torch.zeros((1, 1, 1, 3))}
    labels = torch.tensor([[[1, 1, 0]]])
    weights = LossWeights(variance_weight=0, seed_weight=0)
    _, parts = spatial_embedding_loss(outputs, labels, weights)
    assert parts["instance"] == pytest.approx(1 / 3, abs=1e-5)


def test_seed_and_variance_terms_by_hand():
    # seed: (10 (0.5 - 1)^2 + 0.2^2 + 0.1^2) / 3 scored pixels = 0.85 (pixel -1 ignored).
    labels = torch.tensor([[[1, 0], [-1, 0]]])
    outputs = {"embedding": torch.zeros((1, 2, 2, 2)),
               "log_sigma": torch.full((1, 1, 2, 2), math.log(0.01)),
               "seed": torch.tensor([[[[0.5, 0.2], [0.9, 0.1]]]])}
    _, parts = spatial_embedding_loss(outputs, labels)
    assert parts["seed"] == pytest.approx(0.85, abs=1e-6)
    # variance: log sigmas log 0.01 and log 0.04 around their mean -> ((ln 4) / 2)^2 = (ln 2)^2,
    # weighted 10.
    labels = torch.tensor([[[1, 1]]])
    outputs = {"embedding": torch.zeros((1, 2, 1, 2)),
               "log_sigma": torch.log(torch.tensor([[[[0.01, 0.04]]]])),
               "seed": torch.ones((1, 1, 1, 2))}
    _, parts = spatial_embedding_loss(outputs, labels)
    assert parts["variance"] == pytest.approx(10 * math.log(2) ** 2, rel=1e-5)


def test_unannotated_pixels_take_no_part():
    labels = torch.from_numpy(synthetic_labels(size=(32, 32), seed=2)).long()[None]
    labels[:, :8] = -1
    outputs = {k: v.float().clone().requires_grad_(True)
               for k, v in oracle_outputs(labels[0].clamp(min=0).numpy()).items()}
    noisy = {k: (v + 0.3 * torch.rand_like(v)) for k, v in outputs.items()}
    loss, _ = spatial_embedding_loss(noisy, labels)
    loss.backward()
    for key in ("embedding", "log_sigma", "seed"):
        grad = outputs[key].grad
        assert grad[..., :8, :].abs().max() == 0
        assert grad[..., 8:, :].abs().max() > 0 or key == "log_sigma"


def test_learned_centre_moves_with_the_embeddings_fixed_centre_does_not():
    labels = synthetic_labels(size=(32, 32), seed=3)
    outputs = oracle_outputs(labels)
    shift = 3.0 / SCALE  # every embedding 3 pixels down
    shifted = {**outputs, "embedding": outputs["embedding"] + shift * (labels > 0)[None, None]}
    target = torch.from_numpy(labels)[None]
    learned, _ = spatial_embedding_loss(shifted, target, LossWeights())
    fixed, _ = spatial_embedding_loss(shifted, target, LossWeights(learned_center=False),
                                      coord_scale=SCALE)
    assert float(learned) < 1e-3 < float(fixed)


# -- clustering -----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 4])
def test_clustering_oracle_outputs_recovers_every_instance(seed):
    labels = synthetic_labels(seed=seed)
    out = oracle_outputs(labels)
    areas = np.bincount(labels.ravel())[1:]
    smallest = int(areas[areas > 0].min())
    found = cluster_seeds(out["embedding"][0].float(), out["sigma"][0].float(),
                          out["seed"][0, 0].float(), SeedClustering(min_instance_area=smallest))
    assert found.dtype == np.int32 and found.shape == labels.shape
    assert len(np.unique(found[found > 0])) == len(np.unique(labels[labels > 0])) > 3
    assert same_partition(labels, found)


def test_clustering_thresholds():
    labels = np.zeros((20, 30), np.int32)
    labels[2:8, 2:8] = 1      # 36 px
    labels[10:12, 20:23] = 2  # 6 px, below min_area
    labels[12:18, 2:12] = 3   # 60 px, seeds too weak
    out = oracle_outputs(labels)
    seed = out["seed"][0, 0].float()
    seed[torch.from_numpy(labels == 3)] = 0.4
    params = SeedClustering(seed_threshold=0.5, fg_threshold=0.3, min_instance_area=10)
    found = cluster_seeds(out["embedding"][0].float(), out["sigma"][0].float(), seed, params)
    assert set(np.unique(found)) == {0, 1} and np.array_equal(found == 1, labels == 1)
    capped = cluster_seeds(out["embedding"][0].float(), out["sigma"][0].float(),
                           seed, SeedClustering(fg_threshold=0.3, seed_threshold=0.3,
                                                min_instance_area=1, max_instances=2))
    assert len(np.unique(capped[capped > 0])) == 2


def test_clustering_min_score_drops_instances_with_a_weak_mean_seed():
    labels = np.zeros((20, 30), np.int32)
    labels[2:8, 2:8] = 1      # seeds 0.95 everywhere
    labels[10:18, 2:12] = 2   # one strong seed pixel, the rest faint: mean 0.6
    out = oracle_outputs(labels)
    seed = out["seed"][0, 0].float()
    seed[torch.from_numpy(labels == 1)] = 0.95
    seed[torch.from_numpy(labels == 2)] = 0.6 - 0.35 / 79
    seed[10, 2] = 0.95
    args = (out["embedding"][0].float(), out["sigma"][0].float(), seed)
    kept = cluster_seeds(*args, SeedClustering(seed_threshold=0.9, min_instance_area=5))
    assert set(np.unique(kept)) == {0, 1, 2}
    for min_score in (0.59, 0.61):
        found = cluster_seeds(*args, SeedClustering(seed_threshold=0.9, min_instance_area=5,
                                                    min_instance_score=min_score))
        expected = labels if min_score < 0.6 else np.where(labels == 1, 1, 0)
        assert np.array_equal(found > 0, expected > 0), min_score


def test_clustering_rejects_proposals_of_already_clustered_pixels():
    # Two objects embed at the same point: the second object's proposal is the first's.
    labels = np.zeros((10, 20), np.int32)
    labels[2:8, 2:8], labels[2:8, 12:18] = 1, 2
    out = oracle_outputs(labels)
    embedding = out["embedding"][0].float()
    embedding[:, torch.from_numpy(labels > 0)] = 0.05
    seed = out["seed"][0, 0].float()
    seed[torch.from_numpy(labels == 2)] = 0.8
    found = cluster_seeds(embedding, out["sigma"][0].float(), seed,
                          SeedClustering(min_instance_area=5))
    assert set(np.unique(found)) == {0, 1} and np.array_equal(found > 0, labels > 0)


def greedy_reference(embedding, sigma, seed, params: SeedClustering) -> np.ndarray:
    """The documented rule, pixel by pixel over the whole foreground, in numpy."""
    fg = seed > params.fg_threshold
    e, s, sd = embedding[:, fg], sigma[:, fg], seed[fg]
    free, out, count = np.ones(len(sd), bool), np.zeros(len(sd), np.int32), 0
    while count < params.max_instances:
        best = np.argmax(np.where(free, sd, -np.inf))
        if not free[best] or sd[best] < params.seed_threshold:
            break
        score = np.exp(-((e - e[:, best, None]) ** 2 / (2 * s[:, best, None] ** 2)).sum(0))
        proposal = score > 0.5
        proposal[best] = True
        new = proposal & free
        if proposal.sum() >= params.min_instance_area and \
                new.sum() > params.min_unclustered * proposal.sum() and \
                sd[new].mean() >= params.min_instance_score:
            count += 1
            out[new] = count
        free &= ~proposal
    labels = np.zeros(seed.shape, np.int32)
    labels[fg] = out
    return labels


@pytest.mark.parametrize("sigma_channels", [1, 2])
def test_clustering_matches_a_brute_force_reference(sigma_channels):
    rng = np.random.default_rng(sigma_channels)
    coords = coordinate_grid(30, 40, SCALE).numpy()
    embedding = (coords + rng.normal(0, 2 / SCALE, coords.shape)).astype(np.float32)
    sigma = rng.uniform(1.5, 4, (sigma_channels, 30, 40)).astype(np.float32) / SCALE
    seed = rng.random((30, 40)).astype(np.float32)
    for min_score in (0.0, 0.7):
        params = SeedClustering(seed_threshold=0.6, fg_threshold=0.3, min_instance_area=3,
                                min_instance_score=min_score)
        found = cluster_seeds(torch.from_numpy(embedding), torch.from_numpy(sigma),
                              torch.from_numpy(seed), params)
        expected = greedy_reference(embedding, sigma, seed, params)
        assert found.max() > 5
        assert np.array_equal(found, expected), min_score


def test_empty_foreground_gives_background():
    zeros = torch.zeros((12, 9))
    found = cluster_seeds(torch.zeros((2, 12, 9)), torch.ones((1, 12, 9)), zeros)
    assert found.shape == (12, 9) and not found.any()


# -- method ---------------------------------------------------------------------------------------
def tiny_config(**changes) -> SpatialEmbeddingConfig:
    overrides = ["width=0.25", "stage1_blocks=1", "dilated_repeats=1", "decoder_blocks=1",
                 "dropout=0", "crop=48,48", "batch_size=1", "steps=5", "coord_scale=64"]
    return SpatialEmbeddingConfig.build("fast", overrides=overrides).replace(**changes)


def test_presets_and_bad_values():
    for preset in ("fast", "paper"):
        assert SpatialEmbeddingConfig.build(preset).steps > 0
    assert SpatialEmbeddingConfig.build("paper").crop == (512, 512)
    for bad in ("sigma_channels=3", "seed_threshold=1.5", "width=0", "foreground_weight=-1"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            SpatialEmbeddingConfig.build("fast", overrides=[bad])


def test_training_on_a_synthetic_frame_lowers_the_loss():
    from instatrack.data.normalize import normalize
    from instatrack.data.synth import generate_cells

    cells = generate_cells(frames=1, size=(48, 48), seed=7)
    batch = {"image": torch.from_numpy(normalize(cells.images[0]))[None, None],
             "labels": torch.from_numpy(cells.labels[0]).long()[None, None]}
    torch.manual_seed(0)
    method = SpatialEmbedding(tiny_config())
    model = method.build_model().train()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        optimiser.zero_grad()
        loss, parts = method.loss(model, batch)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


@pytest.mark.slow
def test_shared_loop_learns_to_segment_synthetic_cells(tmp_path):
    from instatrack import runs
    from instatrack.data.synth import write_ctc_synthetic
    from instatrack.train import train

    data = write_ctc_synthetic(tmp_path / "cells", frames=12, size=(96, 96), seed=3)
    config = SpatialEmbeddingConfig.build("fast", overrides=[
        "steps=500", "crop=96,96", "batch_size=4", "train_frames=0:9", "val_frames=9:12",
        "val_every=500", "log_every=50"])
    run = train("spatial-embedding", data, tmp_path / "run", config=config, progress=False)
    rows = runs.LogWriter(run / runs.LOG, resume_step=10**9).rows
    assert rows[-1]["loss"] < 0.8 * rows[0]["loss"]
    assert rows[-1]["val_seg"] > 0.6


def test_predict_streams_one_window_per_frame():
    method = SpatialEmbedding(tiny_config(in_channels=2))
    model = method.build_model()
    frames = (np.random.default_rng(t).random((2, 29, 35), dtype=np.float32) for t in range(3))
    windows = list(method.predict(model, frames, "cpu"))
    assert [w.start for w in windows] == [0, 1, 2]
    for w in windows:
        assert isinstance(w, Window) and w.labels.shape == (1, 29, 35)
        assert w.labels.dtype == np.int32


def test_predict_rejects_bad_frames():
    method = SpatialEmbedding(tiny_config())
    model = method.build_model()
    bad = np.zeros((1, 16, 16), np.float32)
    bad[0, 3, 3] = np.nan
    with pytest.raises(DataError, match="frame 0"):
        list(method.predict(model, [bad]))
    with pytest.raises(DataError, match="expected shape"):
        list(method.predict(model, [np.zeros((3, 16, 16), np.float32)]))


class EquivariantNet(torch.nn.Module):
    """Outputs that move exactly with the image under flips and transposes.

    Offsets point from each pixel to the brightest one; log-sigma per axis is
    the image gradient's magnitude along that axis; the seed is the image.
    """

    coord_scale = 64.0
    outputs = BranchedERFNet.outputs  # the same output dict as the real network

    def forward(self, image):
        y, x = image.shape[-2:]
        peak = int(torch.argmax(image[0, 0]))
        grid = coordinate_grid(y, x, self.coord_scale)
        centre = torch.tensor([peak // x, peak % x], dtype=torch.float32)[:, None, None]
        offsets = torch.tanh(centre / self.coord_scale - grid)[None]
        dy, dx = torch.gradient(image[0, 0])
        log_sigma = torch.stack([dy.abs(), dx.abs()])[None]
        return self.outputs(offsets, log_sigma, image)


@pytest.mark.parametrize("shape", [(24, 24), (20, 28)])
def test_flip_averaging_leaves_an_equivariant_network_unchanged(shape):
    from instatrack.methods.spatial_embedding import flip_averaged

    net = EquivariantNet()
    image = torch.rand(1, 1, *shape, generator=torch.Generator().manual_seed(0))
    plain, averaged = net(image), flip_averaged(net, image)
    for key in ("embedding", "sigma", "seed"):
        torch.testing.assert_close(averaged[key], plain[key], atol=1e-5, rtol=1e-5)


def test_flip_averaged_outputs_of_a_real_network_are_flip_invariant():
    from instatrack.methods.spatial_embedding import flip_averaged

    method = SpatialEmbedding(tiny_config(tta=True))
    model = method.build_model().eval()
    torch.nn.init.normal_(model.embedding_decoder.head.weight, std=0.1)
    image = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain, mirrored = flip_averaged(model, image), flip_averaged(model, image.flip(-1))
    torch.testing.assert_close(mirrored["seed"].flip(-1), plain["seed"])
    x_negated = torch.tensor([1.0, -1.0])[:, None, None]
    torch.testing.assert_close(mirrored["offsets"].flip(-1) * x_negated, plain["offsets"])
    (window,) = method.predict(model, [image[0].numpy()], "cpu")
    assert window.labels.shape == (1, 32, 32)
