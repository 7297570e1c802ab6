"""The spatial-propagation method (Cheng et al. 2017): config, loss, streaming
prediction and tracking quality on a hand-built sequence of moving discs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instatrack.errors import ConfigError, DataError
from instatrack.losses.propagation import (
    balance_weights,
    degrade_masks,
    jitter_masks,
    pick_instances,
)
from instatrack.methods import get_method
from instatrack.methods.spatial_propagation import (
    SpatialPropagation,
    SpatialPropagationConfig,
    dreamed,
    magnified,
    object_windows,
)

SIZE = 48
CENTRES = np.array([[14.0, 14.0], [14.0, 34.0], [34.0, 22.0]])
VELOCITIES = np.array([[-0.6, -0.5], [-0.6, 0.6], [0.7, 0.0]])


def moving_discs(frames: int, seed: int, ids=(1, 2, 3)) -> tuple[np.ndarray, np.ndarray]:
    """Three identical bright discs (radius 6.5) drifting apart on a noisy background.

    Returns images ``(T, 1, Y, X)`` float32 and labels ``(T, Y, X)`` int32.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = rng.normal(0.0, 0.15, (frames, 1, SIZE, SIZE)).astype(np.float32)
    labels = np.zeros((frames, SIZE, SIZE), np.int32)
    for t in range(frames):
        for label, centre, velocity in zip(ids, CENTRES, VELOCITIES, strict=True):
            cy, cx = centre + t * velocity
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= 6.5 ** 2
            labels[t][inside] = label
            images[t, 0][inside] += 1.0
    return images, labels


def small_method(*overrides: str) -> SpatialPropagation:
    return SpatialPropagation(SpatialPropagationConfig.build("fast", overrides=list(overrides)))


def train_on_discs(*overrides: str):
    """A fast-preset model trained for 60 steps on random disc pairs (a few seconds)."""
    torch.manual_seed(0)
    method = small_method("finetune_steps=30", *overrides)
    model = method.build_model()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(60):
        images, labels = moving_discs(2, seed=100 + step)
        batch = {"image": torch.from_numpy(images[:, None]),
                 "labels": torch.from_numpy(labels[:, None]).long()}
        loss, _ = method.loss(model.train(), batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return method, model.eval()


@pytest.fixture(scope="module")
def trained():
    return train_on_discs()


@pytest.fixture(scope="module")
def trained_on_previous_mask():
    return train_on_discs("previous_mask=true")


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


# -- config and registry --------------------------------------------------------------------------


def test_registered_and_presets_validate():
    assert get_method("spatial-propagation") is SpatialPropagation
    assert not SpatialPropagation.temporal
    fast = SpatialPropagationConfig.build("fast")
    paper = SpatialPropagationConfig.build("paper")
    assert fast.finetune == "head" and paper.finetune == "all"
    assert paper.fg_width > fast.fg_width


@pytest.mark.parametrize("override, key", [
    ("finetune=everything", "finetune"), ("score_threshold=1.5", "score_threshold"),
    ("fg_width=0", "fg_width"), ("region_min_fraction=-1", "region_min_fraction"),
    ("contest=random", "contest"), ("finetune_object_bias=2", "finetune_object_bias"),
    ("previous_dilate=-0.1", "previous_dilate"), ("finetune_zoom=0.5", "finetune_zoom"),
    ("finetune_dream=1.5", "finetune_dream"), ("finetune_seed=-1", "finetune_seed"),
    ("finetune_draws=0", "finetune_draws"),
    ("online_steps=-1", "online_steps"), ("online_margin=0", "online_margin"),
    ("colour_prior=-1", "colour_prior"), ("colour_bins=1", "colour_bins"),
    ("colour_update=1.5", "colour_update"),
])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        SpatialPropagationConfig.build("fast", overrides=[override])


# -- training pieces ------------------------------------------------------------------------------


def test_loss_ignores_unannotated_pixels():
    method = small_method()
    model = method.build_model()
    image = torch.randn(2, 1, 1, 33, 35)
    unannotated = torch.full((2, 1, 33, 35), -1, dtype=torch.long)
    loss, parts = method.loss(model, {"image": image, "labels": unannotated})
    assert loss.item() == 0.0 and parts == {"fg": 0.0, "spn": 0.0}

    labels = torch.zeros((2, 1, 33, 35), dtype=torch.long)
    labels[:, :, 5:15, 5:15] = 1
    loss, parts = method.loss(model, {"image": image, "labels": labels})
    loss.backward()
    assert torch.isfinite(loss) and parts["fg"] > 0 and parts["spn"] > 0


def test_pick_instances_and_degrade_masks():
    torch.manual_seed(0)
    labels = torch.zeros((3, 20, 20), dtype=torch.long)
    labels[0, 2:8, 2:8] = 4
    labels[0, 10:18, 10:18] = 9
    labels[1] = -1
    labels[2, :, :5] = 2
    masks, has = pick_instances(labels)
    assert has.tolist() == [True, False, True]
    assert masks[0].sum().item() in (36.0, 64.0) and masks[1].sum() == 0
    assert torch.equal(masks[2], (labels[2] == 2).float())
    coarse = degrade_masks(masks[:, None], shift=3, radius=2, blur=1, noise=0.1)
    assert coarse.shape == (3, 1, 20, 20)
    assert coarse.min() >= 0 and coarse.max() <= 1
    inside = coarse[0, 0][masks[0] > 0].mean()
    assert inside > coarse[0, 0][masks[0] == 0].mean() + 0.3


def test_balance_weights_count_the_pixels_of_every_mask_given():
    masks = torch.zeros(2, 1, 10, 10)
    masks[0, 0, :5] = 1  # half of the first window, none of the second: a quarter in all
    background, obj = balance_weights(masks)[0, 0].tolist()
    assert obj == pytest.approx(2.0) and background == pytest.approx(0.5 / 0.75)


def test_fine_tuning_windows_see_the_object_and_the_far_background():
    masks = torch.zeros(1, 1, 200, 200)
    masks[0, 0, 10:20, 10:20] = 1
    rng = np.random.default_rng(0)
    on_object = object_windows(masks, (32, 32), 50, rng, object_bias=1.0)
    assert all(masks[i, 0, r, c].any() for i, r, c in on_object)
    mixed = object_windows(masks, (32, 32), 50, rng, object_bias=0.5)
    away = sum(not masks[i, 0, r, c].any() for i, r, c in mixed)
    assert 10 <= away <= 40


def test_jitter_masks_move_and_resize_but_keep_the_object():
    masks = torch.zeros(3, 1, 40, 50)
    masks[0, 0, 10:30, 15:35] = 1
    masks[1, 0, 5:13, 5:13] = 1
    still = jitter_masks(masks, 0.0, 0.0, 0.0, 0, 0.0)
    assert torch.equal(still, masks)  # no jitter: the mask itself; empty stays empty
    draws = [jitter_masks(masks, 0.15, 0.3, 15.0, 3, 0.5,
                          generator=torch.Generator().manual_seed(seed)) for seed in range(20)]
    assert torch.equal(draws[0], jitter_masks(masks, 0.15, 0.3, 15.0, 3, 0.5,
                                              generator=torch.Generator().manual_seed(0)))
    for out in draws:
        assert set(out.unique().tolist()) <= {0.0, 1.0} and out[2].sum() == 0
        for i in (0, 1):
            overlap = (out[i] * masks[i]).sum() / min(out[i].sum(), masks[i].sum())
            assert out[i].sum() > 0 and overlap > 0.3
    areas = torch.stack([out[0].sum() for out in draws])
    assert areas.min() < 0.8 * 400 and areas.max() > 1.2 * 400  # scale and thickness vary
    assert any(not torch.equal(out[0], draws[0][0]) for out in draws[1:])


def test_previous_mask_adds_an_input_channel_and_old_configs_go_without():
    old = SpatialPropagationConfig.from_dict({"in_channels": 3, "fg_width": 8})
    assert not old.previous_mask  # runs saved before the key: unconditioned, as trained
    assert SpatialPropagation(old).build_model().fg.stem[0].in_channels == 3
    method = small_method("in_channels=3", "previous_mask=true")
    model = method.build_model()
    assert model.fg.stem[0].in_channels == 4
    image = torch.randn(2, 1, 3, 32, 32)
    labels = torch.zeros((2, 1, 32, 32), dtype=torch.long)
    labels[:, :, 4:12, 4:12] = 1
    labels[:, :, 20:28, 18:30] = 2
    loss, parts = method.loss(model, {"image": image, "labels": labels})
    loss.backward()
    assert torch.isfinite(loss) and parts["fg"] > 0 and parts["spn"] > 0
    assert model.fg.stem[0].weight.grad[:, 3].abs().sum() > 0  # the mask channel is used
    assert model(image[:, 0]).shape == (2, 1, 32, 32)  # no previous mask: an empty one


# -- prediction -----------------------------------------------------------------------------------


def test_first_masks_required_and_checked():
    method = small_method("finetune_steps=1")
    model = method.build_model()
    frames = [np.zeros((1, 20, 24), np.float32)] * 2
    with pytest.raises(DataError, match="needs first_masks"):
        method.predict(model, frames)
    with pytest.raises(DataError, match="no object"):
        method.predict(model, frames, first_masks=np.zeros((20, 24), np.int32))
    with pytest.raises(DataError, match="integer labels"):
        method.predict(model, frames, first_masks=np.ones((20, 24), np.float32))
    first = np.zeros((20, 24), np.int32)
    first[2:6, 2:6] = 1
    with pytest.raises(DataError, match=r"frame 0: expected shape \(1, 20, 24\)"):
        list(method.predict(model, [np.zeros((1, 21, 24), np.float32)], first_masks=first))
    nan_frames = [frames[0], np.full((1, 20, 24), np.nan, np.float32)]
    with pytest.raises(DataError, match="frame 1: contains NaN"):
        list(method.predict(model, nan_frames, first_masks=first))


def test_predict_streams_one_frame_at_a_time(trained):
    method, model = trained
    images, labels = moving_discs(5, seed=3)
    pulled = []

    def frames():
        for t, image in enumerate(images):
            pulled.append(t)
            yield image

    for window in method.predict(model, frames(), "cpu", first_masks=labels[0]):
        assert window.tracked and window.labels.shape == (1, SIZE, SIZE)
        assert window.labels.dtype == np.int32
        assert pulled[-1] == window.start  # nothing read ahead


def test_tracks_moving_discs_with_first_frame_ids(trained):
    method, model = trained
    ids = (3, 8, 20)
    images, labels = moving_discs(10, seed=1, ids=ids)
    windows = list(method.predict(model, list(images), "cpu", first_masks=labels[0]))
    assert [w.start for w in windows] == list(range(10))
    predicted = np.concatenate([w.labels for w in windows])
    assert np.array_equal(predicted[0], labels[0])
    assert set(np.unique(predicted)) <= {0, *ids}
    scores = [jaccard(predicted[t] == k, labels[t] == k) for t in range(1, 10) for k in ids]
    assert min(scores) > 0.7
    assert np.mean(scores) > 0.85


def test_an_ensemble_averages_its_members_and_two_copies_follow_as_one(trained):
    """Each member fits its own heads to frame 0 from the same seed, so an ensemble of
    two copies of one network gives exactly that network's labels."""
    import copy

    from instatrack.models.ensemble import Ensemble

    method, model = trained
    images, labels = moving_discs(4, seed=1)
    alone = [w.labels for w in method.predict(model, list(images), "cpu", first_masks=labels[0])]
    pair = Ensemble([model, copy.deepcopy(model)])
    together = [w.labels for w in method.predict(pair, list(images), "cpu",
                                                  first_masks=labels[0])]
    assert all(np.array_equal(a, b) for a, b in zip(alone, together, strict=True))
    assert method.ensembles


def test_magnified_copies_show_an_object_larger_and_keep_the_frame_size(trained):
    image, labels = moving_discs(1, seed=0)
    image, labels = image[0], labels[0].astype(np.int64)
    labels[:4] = -1  # unannotated rows stay unannotated where they are kept
    rng = np.random.default_rng(0)
    for factor in (1.0, 2.0, 3.0):
        grown, grown_labels = magnified(image, labels, factor, rng)
        assert grown.shape == image.shape and grown.dtype == np.float32
        assert grown_labels.shape == labels.shape
        assert set(np.unique(grown_labels)) <= {-1, 0, 1, 2, 3}
        # the disc the window is centred on is whole and factor^2 times larger
        largest = max(int((grown_labels == k).sum()) for k in (1, 2, 3))
        assert largest == pytest.approx(factor ** 2 * (labels == 1).sum(), rel=0.15)
    method = small_method("finetune_zoom=3", "finetune_steps=3")
    images, labels = moving_discs(3, seed=2)
    assert len(list(method.predict(trained[1], list(images), "cpu",
                                   first_masks=labels[0]))) == 3


def test_dreamt_copies_move_each_object_off_its_hole_and_keep_its_look(trained):
    image, labels = moving_discs(1, seed=0)
    image, labels = image[0], labels[0].astype(np.int64)
    rng = np.random.default_rng(0)
    moved_any = False
    for _ in range(5):
        new, new_labels = dreamed(image, labels, rng)
        assert new.shape == image.shape and new.dtype == np.float32
        assert new_labels.shape == labels.shape and np.isfinite(new).all()
        assert set(np.unique(new_labels)) <= {-1, 0, 1, 2, 3}
        for k in (1, 2, 3):
            inside = new_labels == k
            assert inside.any()  # a disc may be covered in part, never lost
            # the object keeps its own brightness (1 + noise, times a gain of 0.8-1.25)
            assert 0.6 < float(np.median(new[0][inside])) < 1.5
        moved_any |= not np.array_equal(new_labels == 1, labels == 1)
        # where no object is now, the background holds no disc-bright pixel
        assert float(np.median(new[0][new_labels == 0])) < 0.3
    assert moved_any
    method = small_method("finetune_dream=1", "finetune_steps=3")
    images, labels = moving_discs(3, seed=2)
    assert len(list(method.predict(trained[1], list(images), "cpu",
                                   first_masks=labels[0]))) == 3


def test_finetune_seed_offsets_the_runs_seed_for_the_heads_draws(trained):
    _, model = trained
    images, labels = moving_discs(1, seed=2)
    frame = images[0]

    def scores(*overrides: str) -> torch.Tensor:
        method = small_method("finetune_steps=5", "finetune_dream=1", *overrides)
        scorer = method._instance_scorer(model, frame, labels[0], np.array([1, 2, 3]),
                                         torch.device("cpu"))
        image = torch.from_numpy(frame)[None]
        with torch.no_grad():
            return scorer(image, model.fg.forward_features(image)[0], None)

    base = scores()
    assert torch.equal(base, scores("finetune_seed=0"))  # 0 is the run's own draw
    assert torch.equal(scores("finetune_seed=1"), scores("seed=1"))
    assert not torch.equal(base, scores("finetune_seed=1"))


def test_finetune_draws_vote_the_runs_of_consecutive_draws(trained):
    from instatrack.methods.spatial_propagation import plurality

    _, model = trained
    images, labels = moving_discs(3, seed=2)

    def run(*overrides: str) -> list[np.ndarray]:
        method = small_method("finetune_steps=5", "finetune_dream=1", *overrides)
        return [w.labels for w in method.predict(model, iter(images), "cpu",
                                                 first_masks=labels[0])]

    draws = [run(f"finetune_seed={s}") for s in (1, 2, 3)]
    voted = run("finetune_seed=1", "finetune_draws=3")
    assert len(voted) == 3 and np.array_equal(voted[0], labels[0][None])
    for t in range(3):
        expected = plurality([d[t] for d in draws], np.array([1, 2, 3]))
        assert np.array_equal(voted[t], expected)


def test_plurality_takes_the_most_given_label_and_ties_go_to_the_background():
    from instatrack.methods.spatial_propagation import plurality

    a = np.array([[1, 1, 2, 0]], np.int32)
    b = np.array([[1, 2, 2, 2]], np.int32)
    c = np.array([[0, 2, 0, 1]], np.int32)
    assert plurality([a, b, c], np.array([1, 2])).tolist() == [[1, 2, 2, 0]]
    assert plurality([a, b], np.array([1, 2])).tolist() == [[1, 1, 2, 0]]


def test_full_network_fine_tuning_runs(trained):
    _, model = trained
    method = small_method("finetune=all", "finetune_steps=3", "finetune_batch=2", "online_steps=0")
    images, labels = moving_discs(3, seed=2)
    windows = list(method.predict(model, list(images), "cpu", first_masks=labels[0]))
    assert len(windows) == 3
    assert set(np.unique(windows[-1].labels)) <= {0, 1, 2, 3}


def test_confident_targets_keep_a_core_and_far_background_and_skip_the_band():
    from instatrack.methods.spatial_propagation import confident_targets

    labels = np.zeros((64, 64), np.int64)
    labels[22:42, 22:42] = 7        # 400 px: equivalent radius 11.3
    targets, valid = confident_targets(labels, np.array([7, 9]), margin=0.5)
    assert targets.shape == (1, 2, 64, 64) and valid.shape == (1, 2, 64, 64)
    core = targets[0, 0].numpy() > 0
    assert core[32, 32] and not core[22, 32] and core.sum() < 400   # eroded
    assert not targets[0, 1].any() and not valid[0, 1].any()        # object 9 not found: untrained
    trained = valid[0, 0].numpy()
    assert trained[32, 32] and trained[0, 0]                         # core and far background
    assert not trained[22, 32] and not trained[32, 45]               # its rim, the band outside
    assert confident_targets(np.zeros((8, 8), np.int64), np.array([1]), 0.5) == (None, None)


@pytest.mark.parametrize("tuning", [("finetune=head",),
                                    ("finetune=all", "finetune_lr=1e-4")])
def test_online_adaptation_follows_the_discs_and_keeps_the_model(trained, tuning):
    method, model = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    online = small_method("finetune_steps=30", "online_steps=3", *tuning)
    ids = (3, 8, 20)
    images, labels = moving_discs(10, seed=1, ids=ids)
    with torch.no_grad():
        windows = list(online.predict(model, list(images), "cpu", first_masks=labels[0]))
    predicted = np.concatenate([w.labels for w in windows])
    scores = [jaccard(predicted[t] == k, labels[t] == k) for t in range(1, 10) for k in ids]
    assert min(scores) > 0.7 and np.mean(scores) > 0.85
    for key, value in model.state_dict().items():   # only the per-object copies learn
        assert torch.equal(value, before[key])


def test_predict_under_no_grad_and_leaves_the_model_unchanged(trained):
    method, model = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = moving_discs(3, seed=4)
    with torch.no_grad():
        windows = list(method.predict(model, list(images), "cpu", first_masks=labels[0]))
    assert len(windows) == 3
    assert torch.is_grad_enabled()
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_previous_mask_follows_the_discs(trained_on_previous_mask):
    method, model = trained_on_previous_mask
    ids = (3, 8, 20)
    images, labels = moving_discs(10, seed=1, ids=ids)
    fed = []
    refine = method._refined_scores

    def spy(model, scorer, image, previous=None):
        fed.append(previous.clone())
        return refine(model, scorer, image, previous)

    method._refined_scores = spy
    windows = list(method.predict(model, list(images), "cpu", first_masks=labels[0]))
    predicted = np.concatenate([w.labels for w in windows])
    scores = [jaccard(predicted[t] == k, labels[t] == k) for t in range(1, 10) for k in ids]
    assert min(scores) > 0.7 and np.mean(scores) > 0.85
    # frame t reads, per object, the mask the method gave it in frame t - 1
    assert len(fed) == 9 and fed[0].shape == (3, 1, SIZE, SIZE)
    for t, previous in enumerate(fed, start=1):
        for k, label in enumerate(ids):
            assert np.array_equal(previous[k, 0].numpy() > 0.5, predicted[t - 1] == label)


def test_a_widened_previous_mask_grows_by_a_share_of_its_radius():
    from instatrack.methods.spatial_propagation import widened

    masks = torch.zeros(2, 1, 64, 64)
    masks[0, 0, 20:40, 20:40] = 1   # 400 px: equivalent radius 11.3
    masks[1, 0, 5:9, 5:9] = 1       # 16 px: radius 2.3
    assert widened(None, 0.5) is None and widened(masks, 0) is masks
    wide = widened(masks, 0.25)    # by 3 px and by 1 px
    assert wide[0].sum() == 26 * 26 and wide[1].sum() == 6 * 6
    assert torch.all(wide >= masks)


@pytest.mark.parametrize("online_steps", [0, 2])
def test_previous_mask_with_full_network_fine_tuning(trained_on_previous_mask, online_steps):
    _, model = trained_on_previous_mask
    method = small_method("finetune=all", "finetune_steps=3", "finetune_batch=2",
                          f"online_steps={online_steps}", "previous_mask=true")
    images, labels = moving_discs(3, seed=2)
    windows = list(method.predict(model, list(images), "cpu", first_masks=labels[0]))
    assert len(windows) == 3
    assert set(np.unique(windows[-1].labels)) <= {0, 1, 2, 3}


@pytest.mark.realdata
def test_davis_sample_runs_at_full_size():
    from conftest import shared_dataset
    from instatrack.data import open_dataset
    from instatrack.data.normalize import normalize

    sequence = open_dataset(shared_dataset("DAVIS2016_sample"))[0]
    method = small_method("in_channels=3", "finetune_steps=5")
    model = method.build_model()
    frames = (normalize(sequence.image(t)) for t in range(3))
    windows = list(method.predict(model, frames, "cpu", first_masks=sequence.labels(0)))
    assert [w.labels.shape for w in windows] == [(1, 480, 854)] * 3
    assert set(np.unique(np.concatenate([w.labels for w in windows]))) <= {0, 1}


def test_backbone_is_loaded_for_training_only(tmp_path):
    from instatrack.data.synth import write_ctc_synthetic
    from instatrack.models.foreground import ForegroundNet
    from instatrack.runs import load_model
    from instatrack.train import train

    data = write_ctc_synthetic(tmp_path / "cells", frames=3, size=(32, 32), seed=3)
    backbone = ForegroundNet(1, width=8, levels=3, blocks=1)
    torch.nn.init.constant_(backbone.head[2].weight, 0.25)
    torch.save(backbone.state_dict(), tmp_path / "fg.pt")
    config = SpatialPropagationConfig.build("fast", overrides=[
        "steps=1", "lr=1e-9", "lr_final=1e-9", "crop=32,32", "batch_size=1",
        f"backbone={tmp_path / 'fg.pt'}"])
    run = train("spatial-propagation", data, tmp_path / "run", config=config, progress=False)
    (tmp_path / "fg.pt").unlink()  # a trained run does not need the file any more
    _, model = load_model(run)
    assert torch.allclose(model.fg.head[2].weight, torch.full_like(model.fg.head[2].weight, 0.25),
                          atol=1e-6)


def disc_scores(method: SpatialPropagation, model, frames: int) -> list[float]:
    """IoU of each of three moving discs in every frame after the first, followed by
    ``method`` from frame 0's masks."""
    ids = (3, 8, 20)
    images, labels = moving_discs(frames, seed=1, ids=ids)
    windows = list(method.predict(model, list(images), "cpu", first_masks=labels[0]))
    predicted = np.concatenate([w.labels for w in windows])
    return [jaccard(predicted[t] == k, labels[t] == k) for t in range(1, frames) for k in ids]


def test_flow_prior_tracks_the_discs_and_is_checked(trained):
    method, model = trained
    scores = disc_scores(small_method("finetune_steps=30", "online_steps=0", "flow_prior=0.4"),
                         model, 10)
    assert min(scores) > 0.7 and np.mean(scores) > 0.85
    with pytest.raises(ConfigError, match="flow_prior"):
        small_method("flow_prior=1")
    with pytest.raises(ConfigError, match="flow_radius"):
        small_method("flow_radius=0")
    with pytest.raises(ConfigError, match="flow_scale"):
        small_method("flow_scale=0")
    with pytest.raises(ConfigError, match="flow_edge"):
        small_method("flow_edge=wrap")


def test_crf_sharpens_the_propagated_masks_and_is_checked(trained):
    """The dense CRF on the score maps (on by default) keeps the discs; its own tests are
    in test_crf.py."""
    method, model = trained
    refined = small_method("finetune_steps=30", "online_steps=0")
    assert refined.config.crf and not small_method("crf=false").config.crf
    scores = disc_scores(refined, model, 6)
    assert min(scores) > 0.7 and np.mean(scores) > 0.85
    with pytest.raises(ConfigError, match="crf_iterations"):
        small_method("crf=true", "crf_iterations=0")


def test_colour_evidence_tracks_the_discs(trained):
    """The colour evidence (off by default) on grey discs, its histograms renewed every
    frame; its own tests are in test_colour.py, its bad values in
    test_bad_values_name_the_key."""
    method, model = trained
    assert small_method().config.colour_prior == 0
    scores = disc_scores(small_method("finetune_steps=30", "online_steps=0", "colour_prior=0.5",
                                      "colour_update=0.2"), model, 10)
    assert min(scores) > 0.7 and np.mean(scores) > 0.85
