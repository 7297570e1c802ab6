"""The colour evidence of mask propagation (:mod:`instatrack.cluster.colour`)."""

import numpy as np
import pytest

from instatrack.cluster.colour import CLIP, ColourModels, add_evidence
from instatrack.errors import DataError


def red_on_green(seed: int = 0, shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A reddish square on a greenish, noisy background: frame ``(3, 40, 40)``, mask."""
    rng = np.random.default_rng(seed)
    frame = rng.normal(0.0, 0.05, (3, 40, 40)).astype(np.float32)
    frame[1] += 0.6
    mask = np.zeros((40, 40), bool)
    mask[10 + shift:25 + shift, 12:28] = True
    frame[0][mask] += 0.8
    frame[1][mask] -= 0.5
    return frame, mask


def test_object_colours_score_above_the_background_and_stay_clipped():
    frame, mask = red_on_green()
    model = ColourModels(frame, mask[None], bins=8)
    later, later_mask = red_on_green(seed=1, shift=5)
    ratio = model.log_ratio(later)
    assert ratio.shape == (1, 40, 40) and ratio.dtype == np.float32
    assert (ratio[0][later_mask] > 1).mean() > 0.95
    assert (ratio[0][~later_mask] < -1).mean() > 0.95
    assert np.abs(ratio).max() <= CLIP


def test_grey_frames_have_one_channel_of_bins():
    frame, mask = red_on_green()
    grey = frame[:1]
    model = ColourModels(grey, mask[None], bins=16)
    assert model.objects.shape == (1, 16)
    assert model.log_ratio(grey)[0][mask].mean() > 1


def test_evidence_moves_the_log_odds_by_its_weight():
    scores = np.array([[[0.5, 0.5, 0.9]]], np.float32)
    ratio = np.array([[[0.0, 1.0, -2.0]]], np.float32)
    assert np.allclose(add_evidence(scores.copy(), ratio, 0.0), scores, atol=1e-6)
    out = add_evidence(scores.copy(), ratio, 0.5)
    expected = 1 / (1 + np.exp(-np.array([0.0, 0.5, np.log(9) - 1.0])))
    assert np.allclose(out[0, 0], expected, atol=1e-5)


def test_update_renews_found_objects_and_keeps_lost_ones():
    frame, mask = red_on_green()
    two = np.stack([mask, np.roll(mask, 12, axis=1)])
    model = ColourModels(frame, two, bins=8)
    later, later_mask = red_on_green(seed=1, shift=5)
    labels = later_mask.astype(np.int32)  # object 2 is not found
    kept = model.objects[1].copy(), model.backgrounds[1].copy()
    model.update(later, labels, np.array([1, 2]), rate=1.0)
    fresh = ColourModels(frame, later_mask[None], bins=8)  # frame 0's grid, later's pixels
    fresh.objects[0] = fresh._histogram(fresh.codes(later)[later_mask])
    fresh.backgrounds[0] = fresh._histogram(fresh.codes(later)[~later_mask])
    assert np.allclose(model.objects[0], fresh.objects[0])
    assert np.allclose(model.backgrounds[0], fresh.backgrounds[0])
    assert np.array_equal(model.objects[1], kept[0])
    assert np.array_equal(model.backgrounds[1], kept[1])


def test_too_many_channels_for_the_bins_is_a_clear_error():
    frame = np.zeros((8, 10, 10), np.float32)
    mask = np.zeros((1, 10, 10), bool)
    mask[0, :5] = True
    with pytest.raises(DataError, match="colour_bins.*8 channels"):
        ColourModels(frame, mask, bins=16)
    assert ColourModels(frame, mask, bins=2).objects.shape == (1, 256)
