"""Outline refinement: outlines move to the image's edges, nothing else changes."""

from __future__ import annotations

import numpy as np
import pytest

import instatrack
from instatrack.cluster.boundaries import BoundarySettings, refine_boundaries
from instatrack.errors import ConfigError
from instatrack.methods.spatial_embedding import SpatialEmbeddingConfig
from scale_runs import cells_image, random_run


def _disk(shape, centre, radius):
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def _scene(contrast=100.0, noise=2.0, seed=0):
    """Two bright disks (radius 12) on a flat background, and their true labels."""
    shape = (80, 100)
    truth = np.zeros(shape, np.int32)
    truth[_disk(shape, (40, 30), 12)] = 1
    truth[_disk(shape, (40, 70), 12)] = 2
    rng = np.random.default_rng(seed)
    image = 50 + contrast * (truth > 0) + rng.normal(0, noise, shape)
    return image.astype(np.float32), truth


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


ON = BoundarySettings(refine_boundaries=0.3, refine_band=3)


def test_off_returns_the_labels_untouched():
    image, truth = _scene()
    assert refine_boundaries(truth, image, BoundarySettings()) is truth


@pytest.mark.parametrize("contrast", [100.0, 8.0])  # the threshold follows the contrast
def test_too_large_and_too_small_masks_move_to_the_edge(contrast):
    image, truth = _scene(contrast=contrast)
    shape = truth.shape
    labels = np.zeros(shape, np.int32)
    labels[_disk(shape, (40, 30), 14.5)] = 1  # a rim of background around it
    labels[_disk(shape, (40, 70), 10)] = 2  # two pixels short of the edge
    out = refine_boundaries(labels, image, ON)
    assert out.dtype == labels.dtype and set(np.unique(out)) == {0, 1, 2}
    for k in (1, 2):
        # the smoothing puts the outline about half a pixel out: IoU ~0.92 at radius 12
        assert _iou(out == k, truth == k) > 0.9 > 0.75 > _iou(labels == k, truth == k)


def test_touching_objects_keep_their_own_pixels():
    image, truth = _scene()
    labels = truth.copy()
    grown = refine_boundaries(labels, image, BoundarySettings(refine_boundaries=0.01))
    other = labels == 2
    assert (grown[other] == 2).all()  # object 1's band never takes object 2's pixels


def test_objects_without_core_or_contrast_stay_as_they_were():
    image, truth = _scene()
    labels = np.zeros_like(truth)
    labels[5:8, 5:8] = 3  # too small for a core
    labels[60:75, 80:95] = 4  # background only: not brighter than its ring
    out = refine_boundaries(labels, image, ON)
    assert np.array_equal(out, labels)


def test_channels_are_averaged_and_sizes_must_agree():
    image, truth = _scene()
    labels = np.where(_disk(truth.shape, (40, 30), 14.5), 1, 0).astype(np.int32)
    single = refine_boundaries(labels, image, ON)
    assert np.array_equal(refine_boundaries(labels, np.stack([image] * 3), ON), single)
    with pytest.raises(ValueError, match="differ in size"):
        refine_boundaries(labels, image[:-1], ON)


@pytest.mark.parametrize("value", ["refine_boundaries=1", "refine_boundaries=-0.1",
                                   "refine_band=0", "refine_sigma=-1"])
def test_bad_settings_are_config_errors(value):
    with pytest.raises(ConfigError):
        SpatialEmbeddingConfig.build("fast", overrides=[value])


def test_predictor_refines_every_frame_it_returns(tmp_path):
    run = random_run(tmp_path / "run", "cosine-hourglass")
    frames = cells_image((64, 80), seed=3, frames=3)
    plain = instatrack.load(run, device="cpu")
    refined = instatrack.load(run, device="cpu",
                              overrides=["refine_boundaries=0.3", "refine_band=2"])
    assert refined.config.refine_boundaries == 0.3
    before = plain.segment(frames[0])
    expected = refine_boundaries(before, plain.prepare(frames[0]), refined.config)
    assert np.array_equal(refined.segment(frames[0]), expected)
    tracked = refined.track(frames)
    assert tracked.labels.shape == (3, 64, 80)
