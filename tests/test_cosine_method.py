"""The cosine-hourglass method: config, loss wiring, background buffer, streaming predict."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instatrack.errors import ConfigError, DataError
from instatrack.methods import get_method
from instatrack.methods.base import Window
from instatrack.methods.cosine_hourglass import (
    CosineHourglass,
    CosineHourglassConfig,
    update_background,
)

SMALL = ["crop=48,48", "batch_size=1", "steps=5", "clip_len=2", "levels=3", "filters=6",
         "embedding_dim=4", "neighbour_radius=6"]


def _method(*overrides: str) -> CosineHourglass:
    torch.manual_seed(0)
    return CosineHourglass(CosineHourglassConfig.build("fast", overrides=[*SMALL, *overrides]))


def _batch(size=(37, 45), frames=2):
    gen = torch.Generator().manual_seed(0)
    labels = torch.zeros((1, frames, *size), dtype=torch.long)
    labels[:, :, 5:15, 6:18] = 1
    labels[:, :, 20:30, 25:40] = 2
    labels[:, :, 0:3, :] = -1
    return {"image": torch.rand((1, frames, 1, *size), generator=gen), "labels": labels}


def test_registered_and_presets_match_the_paper():
    assert get_method("cosine-hourglass") is CosineHourglass
    assert CosineHourglass.temporal
    paper = CosineHourglassConfig.build("paper")
    assert (paper.stacks, paper.levels, paper.filters, paper.embedding_dim) == (2, 7, 64, 16)
    assert paper.crop == (256, 256) and paper.clip_len == 10 and paper.batch_size == 1
    assert paper.neighbour_radius == pytest.approx(0.2 * 256)
    assert (paper.lr, paper.lr_final, paper.steps, paper.optimizer) == (1e-4, 1e-5, 40000, "adam")
    fast = CosineHourglassConfig.build("fast")
    assert fast.crop[0] <= 128 and fast.levels <= 5


@pytest.mark.parametrize("override", ["levels=0", "upsample=cubic", "neighbour_radius=0",
                                      "cluster_background_cos=1.5", "cluster_min_cluster_size=1",
                                      "cluster_coord_scale=-1", "background_momentum=1"])
def test_bad_values_are_config_errors(override):
    key = override.partition("=")[0]
    with pytest.raises(ConfigError, match=key):
        CosineHourglassConfig.build("fast", overrides=[override])


def test_loss_is_finite_and_updates_background_only_in_training():
    method = _method()
    model = method.build_model()
    assert float(model.background.norm()) == 0
    loss, parts = method.loss(model.train(), _batch())
    assert torch.isfinite(loss) and {"pull", "push"} <= set(parts)
    loss.backward()
    assert float(model.background.norm()) == pytest.approx(1.0, abs=1e-5)
    before = model.background.clone()
    model.eval()
    method.loss(model, _batch())
    assert torch.equal(model.background, before)


def test_update_background_is_a_normalised_moving_average():
    background = torch.zeros(2)
    emb = torch.zeros(1, 1, 2, 1, 2)
    emb[0, 0, 0] = 1.0  # every pixel points along (1, 0)
    labels = torch.zeros(1, 1, 1, 2, dtype=torch.long)
    update_background(background, emb, labels, momentum=0.5)
    assert torch.allclose(background, torch.tensor([1.0, 0.0]))
    emb2 = torch.zeros(1, 1, 2, 1, 2)
    emb2[0, 0, 1] = 1.0  # now along (0, 1): the average lies half way
    update_background(background, emb2, labels, momentum=0.5)
    assert torch.allclose(background, torch.tensor([1.0, 1.0]) / 2 ** 0.5)
    update_background(background, emb2, torch.ones_like(labels), momentum=0.5)  # no background
    assert torch.allclose(background, torch.tensor([1.0, 1.0]) / 2 ** 0.5)


@pytest.fixture
def fake_clustering(monkeypatch):
    """Replace HDBSCAN by a threshold on the first embedding channel; record the calls."""
    import instatrack.methods.cosine_hourglass as cosine

    calls = []

    def fake(embeddings, params, background=None, foreground=None, instance_area=(0.0, 0.0),
             images=None):
        calls.append((embeddings.shape, params, background, foreground, images))
        return (embeddings[:, 0] > 0).astype(np.int64)

    monkeypatch.setattr(cosine, "cluster_embeddings", fake)
    return calls


def _frames(n, size=(21, 30), channels=1):
    return [np.random.default_rng(t).random((channels, *size), dtype=np.float32)
            for t in range(n)]


def test_predict_yields_overlapping_pair_windows(fake_clustering):
    method = _method("cluster_min_cluster_size=33", "min_instance_area=7",
                     "cluster_orphans=false")
    model = method.build_model()
    windows = []
    for window in method.predict(model, iter(_frames(4)), "cpu"):
        assert torch.is_grad_enabled()  # no grad mode leaks into the caller between yields
        windows.append(window)
    assert [w.start for w in windows] == [0, 1, 2]
    assert all(isinstance(w, Window) and w.labels.shape == (2, 21, 30) for w in windows)
    assert all(w.labels.dtype == np.int32 and not w.tracked for w in windows)
    shape, params, background, foreground, images = fake_clustering[0]
    assert shape == (2, 4, 21, 30) and background is None  # untrained: no background yet
    assert foreground is None  # no foreground output: the background cosine decides
    assert (params.cluster_min_cluster_size, params.min_instance_area) == (33, 7)
    assert images is None  # read only by the noise test of cluster_orphans


def test_orphans_get_the_frames_for_their_noise_test(fake_clustering):
    method = _method()  # on by default
    frames = _frames(2, channels=1)
    list(method.predict(method.build_model(), frames, "cpu"))
    images = fake_clustering[0][4]
    assert images.shape == (2, 21, 30)
    np.testing.assert_array_equal(images, np.concatenate(frames))


def test_pair_window_clusters_the_embeddings_of_both_frames(fake_clustering):
    method = _method()
    model = method.build_model().eval()
    frames = _frames(2)
    window = next(iter(method.predict(model, frames, "cpu")))
    with torch.no_grad():
        expected = model(torch.from_numpy(np.stack(frames))[None])[-1][0].numpy()
    np.testing.assert_array_equal(window.labels, (expected[:, 0] > 0).astype(np.int32))


def test_predict_single_frame_and_empty_sequence(fake_clustering):
    method = _method()
    model = method.build_model()
    model.background.copy_(torch.tensor([0.0, 1.0, 0.0, 0.0]))
    windows = list(method.predict(model, _frames(1), "cpu"))
    assert len(windows) == 1 and windows[0].start == 0 and windows[0].labels.shape == (1, 21, 30)
    np.testing.assert_array_equal(fake_clustering[0][2], [0.0, 1.0, 0.0, 0.0])
    assert list(method.predict(model, [], "cpu")) == []


def test_foreground_head_is_trained_and_decides_the_foreground(fake_clustering):
    method = _method("foreground_head=true", "cluster_foreground_prob=0.3")
    model = method.build_model()
    clip = torch.from_numpy(np.stack(_frames(3)))[None]
    assert [o.shape[2] for o in model(clip)] == [4, 5]  # the last stack adds a logit
    labels = torch.zeros((1, 3, 21, 30), dtype=torch.int64)
    labels[:, :, 3:9, 4:12] = 1
    labels[:, :, 12:18, 15:25] = 2
    labels[:, :, 0, :] = -1  # unannotated pixels take no part in either loss
    loss, parts = method.loss(model.train(), {"image": clip, "labels": labels})
    assert torch.isfinite(loss) and parts["foreground"] > 0
    loss.backward()
    assert model.heads[-1].weight.grad[-1].abs().sum() > 0
    model.eval()
    windows = list(method.predict(model, _frames(2), "cpu"))
    shape, params, _, foreground, _ = fake_clustering[0]
    assert shape == (2, 4, 21, 30) and len(windows) == 1
    with torch.no_grad():
        logit = model(clip[:, :2])[-1][0, :, -1]
    expected = torch.sigmoid(logit) > 0.3
    assert foreground.dtype == bool and (foreground == expected.numpy()).mean() > 0.999


def test_tta_joins_the_embeddings_of_four_flipped_views(fake_clustering):
    method = _method("tta=true")
    model = method.build_model().eval()
    model.background.copy_(torch.tensor([0.0, 1.0, 0.0, 0.0]))
    frames = _frames(3)
    windows = list(method.predict(model, frames, "cpu"))
    assert len(windows) == 2 and windows[0].labels.shape == (2, 21, 30)
    shape, _, background, _, _ = fake_clustering[1]
    assert shape == (2, 16, 21, 30)  # 4 views x 4 channels, the second pair window
    np.testing.assert_allclose(background, np.tile([0.0, 1.0, 0.0, 0.0], 4) / 2)
    # each view runs the whole clip flipped (its own recurrent state) and is flipped back
    clip = torch.from_numpy(np.stack(frames))[None]
    with torch.no_grad():
        views = [model(clip.flip(f))[-1][0].flip(f) if f else model(clip)[-1][0]
                 for f in ((), (-1,), (-2,), (-2, -1))]
    joined = torch.cat(views, dim=1) / 2  # (T, 16, Y, X)
    expected = (joined[1:3, 0] > 0).numpy().astype(np.int32)
    np.testing.assert_array_equal(windows[1].labels, expected)
    norms = np.linalg.norm(joined.numpy(), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)  # still unit vectors


def test_tta_averages_the_foreground_logits(fake_clustering):
    model = _method("tta=true", "foreground_head=true").build_model().eval()
    frames = _frames(2)
    clip = torch.from_numpy(np.stack(frames))[None]
    with torch.no_grad():
        logits = [model(clip.flip(f))[-1][0, :, -1].flip(f) if f else model(clip)[-1][0, :, -1]
                  for f in ((), (-1,), (-2,), (-2, -1))]
    mean = torch.stack(logits).mean(0)
    threshold = float(mean.median())  # half the pixels either side: the test can fail
    method = _method("tta=true", "foreground_head=true", "amp=false",  # float32 as above
                     f"cluster_foreground_prob={float(torch.sigmoid(torch.tensor(threshold)))}")
    list(method.predict(model, frames, "cpu"))
    expected = (mean > threshold).numpy()
    assert 0.3 < expected.mean() < 0.7
    assert (fake_clustering[-1][3] == expected).mean() > 0.999


def test_predict_rejects_bad_frames(fake_clustering):
    method = _method()
    model = method.build_model()
    with pytest.raises(DataError, match="frame 1"):
        list(method.predict(model, [*_frames(1), *_frames(1, channels=3)], "cpu"))
    bad = _frames(1)[0]
    bad[0, 3, 3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        list(method.predict(model, [bad], "cpu"))


def test_predict_with_real_clustering_runs_on_odd_sizes():
    method = _method()
    model = method.build_model()
    windows = list(method.predict(model, _frames(2, size=(23, 19)), "cpu"))
    assert len(windows) == 1 and windows[0].labels.shape == (2, 23, 19)
    assert windows[0].labels.dtype == np.int32


def test_short_training_on_synthetic_cells_lowers_the_loss():
    from instatrack.data.normalize import normalize
    from instatrack.data.synth import generate_cells

    cells = generate_cells(frames=3, size=(40, 40), seed=1)
    image = torch.from_numpy(np.stack([normalize(f) for f in cells.images]))[None]
    batch = {"image": image, "labels": torch.from_numpy(cells.labels.astype(np.int64))[None]}
    method = _method("clip_len=3", "filters=8", "embedding_dim=8", "neighbour_radius=10")
    model = method.build_model().train()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        optimiser.zero_grad()
        loss, _ = method.loss(model, batch)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])

