"""Clip sampler and augmentation: shapes, determinism, alignment of image and labels, -1 kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from instatrack.data.augment import Augmenter
from instatrack.data.sampler import ClipSampler
from instatrack.data.synth import generate_cells, write_ctc_synthetic
from instatrack.errors import DataError


class ArraySequence:
    """A Sequence over in-memory arrays (labels None where ``annotated`` is False)."""

    def __init__(self, images, labels, annotated=None, is_video=True, name="arrays"):
        self.images, self.label_list = list(images), list(labels)
        self.annotated = annotated if annotated is not None else [True] * len(self.images)
        self.is_video, self.name = is_video, name
        self.channels = 1 if self.images[0].ndim == 2 else self.images[0].shape[-1]

    def __len__(self):
        return len(self.images)

    def image(self, t):
        return self.images[t]

    def labels(self, t):
        return self.label_list[t] if self.annotated[t] else None

    def frame_path(self, t):
        return Path(f"{self.name}/{t}")


@pytest.fixture(scope="module")
def cells():
    movie = generate_cells(frames=8, size=(64, 64), seed=5)
    return ArraySequence(movie.images, movie.labels)


def test_shapes_dtypes_and_renumbering(cells):
    sampler = ClipSampler([cells], clip_len=3, crop=(32, 40), seed=1)
    for _ in range(5):
        clip = sampler.sample()
        assert clip["image"].shape == (3, 1, 32, 40) and clip["image"].dtype == np.float32
        assert clip["labels"].shape == (3, 32, 40) and clip["labels"].dtype == np.int64
        ids = np.unique(clip["labels"][clip["labels"] > 0])
        assert np.array_equal(ids, np.arange(1, len(ids) + 1))


def test_deterministic_and_resumable(cells):
    a = ClipSampler([cells], clip_len=2, crop=(32, 32), seed=7)
    b = ClipSampler([cells], clip_len=2, crop=(32, 32), seed=7)
    for _ in range(3):
        x, y = a.sample(), b.sample()
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["labels"], y["labels"])
    state = a.state()
    first = [a.sample() for _ in range(3)]
    a.set_state(state)
    again = [a.sample() for _ in range(3)]
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["labels"], y["labels"])


def test_ids_consistent_across_clip_frames():
    # one square moving right by one pixel per frame
    images, labels = [], []
    for t in range(4):
        lab = np.zeros((24, 24), np.int32)
        lab[8:14, 4 + t:10 + t] = 42
        labels.append(lab)
        images.append(lab.astype(np.uint16) * 10)
    seq = ArraySequence(images, labels)
    clip = ClipSampler([seq], clip_len=4, crop=(24, 24), augment=False, seed=0).sample()
    assert [set(np.unique(f).tolist()) for f in clip["labels"]] == [{0, 1}] * 4


def test_frames_slice_and_unannotated_frames(cells):
    annotated = [False, False, True, False, False, False, False, False]
    seq = ArraySequence(cells.images, cells.label_list, annotated)
    sampler = ClipSampler([seq], clip_len=2, crop=(32, 32), augment=False, seed=0)
    assert sorted(sampler.clips[:, 1].tolist()) == [1, 2]  # every clip contains frame 2
    for _ in range(6):
        clip = sampler.sample()
        unknown = [bool((f == -1).all()) for f in clip["labels"]]
        assert unknown.count(True) == 1
    with pytest.raises(DataError, match="no annotated clip"):
        ClipSampler([seq], clip_len=2, crop=(32, 32), frames=slice(3, None))
    window = ClipSampler([cells], clip_len=3, crop=(16, 16), frames=slice(2, 6))
    assert window.clips[:, 1].tolist() == [2, 3]


def test_small_images_padded_with_minus_one():
    image = np.arange(100, dtype=np.uint16).reshape(10, 10)
    labels = np.ones((10, 10), np.int32)
    seq = ArraySequence([image], [labels], is_video=False)
    clip = ClipSampler([seq], clip_len=3, crop=(16, 20), augment=False, seed=0).sample()
    assert clip["image"].shape == (1, 1, 16, 20)  # still images give T = 1
    assert (clip["labels"] == 1).sum() == 100 and (clip["labels"] == -1).sum() == 16 * 20 - 100


def test_crops_are_biased_towards_objects():
    labels = np.zeros((200, 200), np.int32)
    labels[150:156, 20:26] = 1
    seq = ArraySequence([labels.astype(np.uint16)], [labels], is_video=False)
    sampler = ClipSampler([seq], crop=(32, 32), augment=False, seed=3)
    hits = sum(bool((sampler.sample()["labels"] > 0).any()) for _ in range(40))
    assert hits >= 30  # uniform crops would hit it ~ 7% of the time
    uniform = ClipSampler([seq], crop=(32, 32), augment=False, seed=3, object_bias=0.0)
    assert sum(bool((uniform.sample()["labels"] > 0).any()) for _ in range(40)) <= 10
    with pytest.raises(ValueError, match="object_bias"):
        ClipSampler([seq], crop=(32, 32), object_bias=1.5)


def test_warped_crops_reach_the_image_border_only_when_asked():
    # A 1-pixel ring of object along the border. With warps on, the widened window of
    # the default sampler stays inside the image, so the final crops keep a band of
    # (WARP_MARGIN - 1) / 2 crops from the border; reach_border lets them touch it.
    labels = np.zeros((64, 64), np.int32)
    labels[[0, -1], :] = labels[:, [0, -1]] = 1
    image = (labels * 1000 + 10).astype(np.uint16)
    seq = ArraySequence([image], [labels], is_video=False)
    hits = {}
    for reach in (False, True):
        sampler = ClipSampler([seq], crop=(16, 16), seed=2, object_bias=0.0,
                              reach_border=reach)
        assert sampler.augmenter.warps
        hits[reach] = sum(bool((sampler.sample()["labels"] > 0).any()) for _ in range(300))
    assert hits[True] >= 10  # ~4 x 1/49 of uniform crops touch a border: ~24 expected
    assert hits[False] <= hits[True] // 3  # only warps bring the ring in, rarely


def test_augmentation_keeps_image_and_labels_aligned():
    rng = np.random.default_rng(0)
    labels = np.zeros((2, 40, 40), np.int64)
    labels[:, 5:15, 8:30] = 3
    labels[:, 20:35, 10:20] = 5
    labels[1, 0:4, :] = -1
    augment = Augmenter(rng, intensity=False)
    for _ in range(12):
        image = labels[:, None].astype(np.float32).repeat(2, axis=1)
        out_image, out_labels = augment(image, labels)
        assert out_image.shape == (2, 2, 40, 40) and out_labels.shape == (2, 40, 40)
        assert set(np.unique(out_labels).tolist()) <= {-1, 0, 3, 5}
        inside = out_labels >= 0
        # bilinear image vs nearest labels: equal away from object borders
        close = np.abs(out_image[:, 0] - out_labels) < 0.5
        assert close[inside].mean() > 0.9
        np.testing.assert_array_equal(out_image[:, 0], out_image[:, 1])
        np.testing.assert_array_equal(out_labels[0] == 3, out_labels[1] == 3)


def test_intensity_changes_image_only():
    rng = np.random.default_rng(1)
    labels = np.zeros((1, 16, 16), np.int64)
    labels[0, 4:8, 4:8] = 2
    image = rng.random((1, 1, 16, 16)).astype(np.float32)
    augment = Augmenter(rng, flips=False, rot90=False, affine=False, elastic=False)
    out_image, out_labels = augment(image, labels)
    np.testing.assert_array_equal(out_labels, labels)
    assert not np.allclose(out_image, image)
    assert out_image.dtype == np.float32


def test_turns_keep_unannotated_pixels():
    rng = np.random.default_rng(2)
    labels = np.zeros((3, 20, 20), np.int64)
    labels[:, 2:6, 3:17] = -1
    labels[:, 10:14, 10:14] = 8
    augment = Augmenter(rng, affine=False, elastic=False, intensity=False)
    for _ in range(8):
        image = labels[:, None].astype(np.float32)
        out_image, out_labels = augment(image, labels)
        assert (out_labels == -1).sum() == (labels == -1).sum()
        np.testing.assert_array_equal(out_image[:, 0], out_labels)


def test_instance_areas_are_measured_on_the_training_frames_only():
    labels = [np.zeros((20, 20), np.int32) for _ in range(3)]
    labels[0][:2, :5] = 1                # 10 px
    labels[1][:10, :10] = 2              # 100 px
    labels[1][-1] = -1                   # unknown pixels are no instance
    labels[2][:, :] = 3                  # 400 px, outside the training frames
    seq = ArraySequence([np.zeros((20, 20))] * 3, labels)
    sampler = ClipSampler([seq], crop=(8, 8), frames=slice(0, 2))
    small, median = sampler.instance_areas()
    assert median == pytest.approx(55.0) and small == pytest.approx(19.0)
    empty = ArraySequence([np.zeros((20, 20))], [np.zeros((20, 20), np.int32)])
    assert ClipSampler([empty], crop=(8, 8)).instance_areas() == (0.0, 0.0)


def test_background_and_noise_measures_a_known_frame():
    from instatrack.data.augment import background_and_noise

    rng = np.random.default_rng(0)
    frame = 0.2 + rng.normal(0.0, 0.05, (1, 128, 128))
    labels = np.zeros((128, 128), np.int32)
    frame[0, 40:80, 40:80] += 0.6
    labels[40:80, 40:80] = 1
    level, noise = background_and_noise(frame, labels)
    assert abs(level[0] - 0.2) < 0.01 and abs(noise[0] - 0.05) < 0.005


def _square_dimming(**norm):
    """A one-frame clip with a bright square (labels, image) and an augmenter that dims
    every clip by up to 8 (no gradient, no drift), renormalising with ``norm``."""
    from instatrack.data.augment import AcquisitionSettings
    from instatrack.data.normalize import Norm

    rng = np.random.default_rng(1)
    labels = np.zeros((1, 96, 96), np.int64)
    labels[0, 30:60, 30:60] = 1
    image = (0.05 + 0.9 * (labels > 0) + rng.normal(0, 0.02, labels.shape))[:, None]
    settings = AcquisitionSettings(aug_dim_p=1.0, aug_dim_max=8.0, aug_gradient=0.0, aug_drift=0.0)
    aug = Augmenter(np.random.default_rng(2), flips=False, rot90=False, affine=False,
                    elastic=False, acquisition=settings, norm=Norm(**norm))
    return labels, image, aug


def test_dimming_lowers_contrast_over_noise_and_renormalises():
    labels, image, aug = _square_dimming()
    snrs = []
    for _ in range(20):
        out = aug._acquisition(image.astype(np.float32), labels)
        inside, outside = out[0, 0][labels[0] > 0], out[0, 0][labels[0] == 0]
        snrs.append((inside.mean() - outside.mean()) / outside.std())
        assert np.percentile(out, 99.8) == pytest.approx(1.0, abs=0.05)
    clean = (image[0, 0][labels[0] > 0].mean() - image[0, 0][labels[0] == 0].mean()) \
        / image[0, 0][labels[0] == 0].std()
    assert max(snrs) < clean and min(snrs) < clean / 3


def test_dimming_in_noise_mode_keeps_the_noise_and_lowers_the_objects():
    from instatrack.data.normalize import NOISE_UNITS

    labels, image, aug = _square_dimming(mode="noise")
    steps = []
    for _ in range(20):
        out = aug._acquisition(image.astype(np.float32), labels)[0, 0]
        inside, outside = out[labels[0] > 0], out[labels[0] == 0]
        assert outside.std() == pytest.approx(1 / NOISE_UNITS, rel=0.25)
        steps.append(inside.mean() - outside.mean())
    clean = 0.9 / (NOISE_UNITS * 0.02)  # the undimmed square's step in noise units
    assert max(steps) < 1.05 * clean and min(steps) < clean / 3


def test_object_dimming_dims_some_objects_by_their_own_factor_in_every_frame():
    from instatrack.data.augment import AcquisitionSettings

    rng = np.random.default_rng(1)
    labels = np.zeros((2, 96, 96), np.int64)
    for k in range(8):  # eight equally bright squares, in both frames
        y, x = 8 + 44 * (k // 4), 4 + 23 * (k % 4)
        labels[:, y:y + 16, x:x + 16] = k + 1
    image = (0.05 + 0.9 * (labels > 0) + rng.normal(0, 0.02, labels.shape))[:, None]
    settings = AcquisitionSettings(aug_object_dim_p=1.0, aug_object_dim_max=10.0)
    aug = Augmenter(np.random.default_rng(5), flips=False, rot90=False, affine=False,
                    elastic=False, acquisition=settings)
    out = aug._object_contrast(image.astype(np.float32), labels)
    assert out.shape == image.shape and out.dtype == np.float32
    means = np.array([[out[t, 0][labels[t] == k + 1].mean() for k in range(8)] for t in (0, 1)])
    background = out[0, 0][labels[0] == 0]
    assert means.max() / means.min() > 2  # some objects dim beside bright ones
    np.testing.assert_allclose(means[0], means[1], atol=0.05)  # one factor per object
    assert background.std() > 0.5 * 0.02 / 0.95  # the noise is kept (renormalised)
    unchanged = Augmenter(np.random.default_rng(5), flips=False, rot90=False, affine=False,
                          elastic=False, acquisition=AcquisitionSettings.off())
    assert unchanged._object_contrast(image, labels) is image


def test_spots_light_foci_inside_objects_that_move_with_them():
    from instatrack.data.augment import AcquisitionSettings, Augmenter

    rng = np.random.default_rng(0)
    labels = np.zeros((2, 96, 96), np.int64)
    for k in range(8):  # eight even squares; in frame 1 each has moved 3 px down
        y, x = 8 + 44 * (k // 4), 4 + 23 * (k % 4)
        labels[0, y:y + 16, x:x + 16] = k + 1
        labels[1, y + 3:y + 19, x:x + 16] = k + 1
    image = (0.05 + 0.5 * (labels > 0) + rng.normal(0, 0.01, labels.shape))[:, None]
    image = image.astype(np.float32)
    settings = AcquisitionSettings(aug_spots_p=1.0, aug_spots_max=3.0)
    aug = Augmenter(np.random.default_rng(2), flips=False, rot90=False, affine=False,
                    elastic=False, acquisition=settings)
    out = aug._spots(image, labels)
    assert out.shape == image.shape and out.dtype == np.float32
    peak = np.array([[out[t, 0][labels[t] == k + 1].max() / np.median(out[t, 0][labels[t] == k + 1])
                      for k in range(8)] for t in (0, 1)])
    spotted = peak[0] > 1.4
    assert 0 < spotted.sum() < 8  # some objects have foci, others none
    np.testing.assert_allclose(peak[0], peak[1], rtol=0.1)  # the same foci in both frames
    # nothing leaks onto the background
    assert out[0, 0][labels[0] == 0].max() < np.sort(out[0, 0][labels[0] > 0])[-10]
    off = Augmenter(np.random.default_rng(2), flips=False, rot90=False, affine=False,
                    elastic=False, acquisition=AcquisitionSettings())
    assert off._spots(image, labels) is image


def test_acquisition_off_reproduces_the_old_augmentation(cells):
    from instatrack.data.augment import AcquisitionSettings

    a = ClipSampler([cells], clip_len=2, crop=(32, 32), seed=3,
                    acquisition=AcquisitionSettings.off())
    b = ClipSampler([cells], clip_len=2, crop=(32, 32), seed=3,
                    acquisition=AcquisitionSettings(aug_dim_p=0.0, aug_blur_max=1.0,
                                                    aug_object_dim_p=0.0))
    for _ in range(3):
        np.testing.assert_array_equal(a.sample()["image"], b.sample()["image"])


def test_bad_acquisition_values_are_refused():
    from instatrack.config import TrainConfig
    from instatrack.errors import ConfigError

    with pytest.raises(ConfigError, match="aug_dim_max"):
        TrainConfig.build(overrides=["aug_dim_max=0.5"])


def test_data_balance_weighs_datasets_not_frames(tmp_path):
    """balance 1 draws each dataset folder alike, however many frames it has; 0 each clip."""
    from instatrack.data import open_grouped

    small = write_ctc_synthetic(tmp_path / "small", frames=2, size=(32, 32), seed=1)
    large = write_ctc_synthetic(tmp_path / "large", frames=8, size=(32, 32), seed=2)
    sequences, groups = open_grouped([small, large])
    assert groups == [0, 1]
    for balance, expected in ((0.0, 2 / 10), (1.0, 0.5)):
        sampler = ClipSampler(sequences, crop=(16, 16), augment=False, groups=groups,
                              balance=balance)
        drawn = [sampler.clips[sampler._pick()][0] for _ in range(2000)]
        assert abs(np.mean(np.array(drawn) == 0) - expected) < 0.04


def test_clipping_flattens_the_background_and_keeps_the_objects():
    from instatrack.data.augment import AcquisitionSettings

    labels, image, _ = _square_dimming()
    settings = AcquisitionSettings.off().replace(aug_clip_p=1.0, aug_clip_max=2.0)
    aug = Augmenter(np.random.default_rng(3), flips=False, rot90=False, affine=False,
                    elastic=False, acquisition=settings)
    out = aug._clipped(image.astype(np.float32), labels)[0, 0]
    outside, inside = out[labels[0] == 0], out[labels[0] > 0]
    assert np.mean(outside == outside.min()) > 0.45  # at least the background's lower half
    assert outside.std() < 0.5 * image[0, 0][labels[0] == 0].std() / 0.9
    assert inside.mean() > 0.9
    assert Augmenter(np.random.default_rng(3), acquisition=AcquisitionSettings.off()) \
        ._clipped(image, labels) is image


def test_noise_floor_gives_a_noiseless_frame_noise_when_dimmed():
    from instatrack.data.augment import AcquisitionSettings

    labels = np.zeros((1, 96, 96), np.int64)
    labels[0, 30:60, 30:60] = 1
    image = (0.9 * (labels > 0)).astype(np.float32)[:, None]  # clipped: no noise at all
    for floor, noisy in ((0.0, False), (0.05, True)):
        settings = AcquisitionSettings(aug_dim_p=1.0, aug_dim_max=8.0, aug_gradient=0.0,
                                       aug_drift=0.0, aug_noise_floor=floor)
        aug = Augmenter(np.random.default_rng(2), flips=False, rot90=False, affine=False,
                        elastic=False, acquisition=settings)
        out = aug._acquisition(image, labels)[0, 0]
        assert (out[labels[0] == 0].std() > 0.02) == noisy


def test_data_weights_give_each_folder_its_share(tmp_path):
    """data_weights 1,3: a quarter of the clips from the first folder, whatever its size."""
    from instatrack.data import open_grouped

    small = write_ctc_synthetic(tmp_path / "small", frames=2, size=(32, 32), seed=1)
    large = write_ctc_synthetic(tmp_path / "large", frames=8, size=(32, 32), seed=2)
    sequences, groups = open_grouped([small, large])
    for weights, expected in (((1.0, 3.0), 0.25), ((3.0, 1.0), 0.75)):
        sampler = ClipSampler(sequences, crop=(16, 16), augment=False, groups=groups,
                              balance=1.0, weights=weights)
        drawn = [sampler.clips[sampler._pick()][0] for _ in range(2000)]
        assert abs(np.mean(np.array(drawn) == 0) - expected) < 0.04


def test_data_weights_must_match_the_folders(tmp_path):
    from instatrack import train
    from instatrack.config import TrainConfig
    from instatrack.errors import ConfigError

    with pytest.raises(ConfigError, match="data_weights must be >= 0"):
        TrainConfig.build(overrides=["data_weights=1,-1"])
    small = write_ctc_synthetic(tmp_path / "small", frames=2, size=(32, 32), seed=1)
    large = write_ctc_synthetic(tmp_path / "large", frames=2, size=(32, 32), seed=2)
    with pytest.raises(ConfigError, match=r"data_weights: 3 value\(s\) \(1.0,1.0,2.0\) for 2"):
        train.train("spatial-embedding", [small, large], tmp_path / "run",
                    config=train.get_method("spatial-embedding").config_cls.build(
                        "fast", overrides=["data_weights=1,1,2", "steps=1"]),
                    progress=False)
    assert not (tmp_path / "run").exists()


def test_the_training_size_is_the_size_drawn_most(tmp_path):
    """With folder shares, the recorded instance size follows the clips drawn, not the
    number of objects each folder holds."""
    from instatrack.data import open_grouped
    small = write_ctc_synthetic(tmp_path / "small", frames=6, size=(96, 96), seed=1,
                                radius=(3.0, 4.0), density=12.0)
    large = write_ctc_synthetic(tmp_path / "large", frames=2, size=(96, 96), seed=2,
                                radius=(12.0, 14.0), density=3.0)
    sequences, groups = open_grouped([small, large])
    plain = ClipSampler(sequences, crop=(16, 16), augment=False)
    mostly_large = ClipSampler(sequences, crop=(16, 16), augment=False, groups=groups,
                               weights=(0.1, 0.9))
    assert plain.instance_areas()[1] < 150 < mostly_large.instance_areas()[1]


def test_a_share_gives_one_folder_its_fraction_and_the_others_the_rest(tmp_path):
    """share (2, 0.2): a fifth of the clips from folder 2, which the weights need not name;
    folders 0 and 1 keep their proportion (by clips, or by weights) in the rest."""
    from instatrack.data import open_grouped

    folders = [write_ctc_synthetic(tmp_path / name, frames=frames, size=(32, 32), seed=seed)
               for name, frames, seed in (("a", 2, 1), ("b", 6, 2), ("c", 4, 3))]
    sequences, groups = open_grouped(folders)
    for weights, expected in ((None, (0.2, 0.6, 0.2)), ((1.0, 1.0), (0.4, 0.4, 0.2))):
        sampler = ClipSampler(sequences, crop=(16, 16), augment=False, groups=groups,
                              weights=weights, share=(2, 0.2))
        drawn = np.array([sampler.clips[sampler._pick()][0] for _ in range(3000)])
        assert np.allclose([np.mean(drawn == g) for g in range(3)], expected, atol=0.03)


def test_frames_may_differ_per_sequence(cells):
    seqs = [cells, cells]
    sampler = ClipSampler(seqs, crop=(16, 16), augment=False, frames=[slice(0, 2), None])
    assert {t for s, t, _ in sampler.clips.tolist() if s == 0} == {0, 1}
    assert {t for s, t, _ in sampler.clips.tolist() if s == 1} == set(range(len(cells)))
    assert sampler.instance_areas([0]) != (0.0, 0.0)
