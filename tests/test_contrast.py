"""Objects barely brighter than the background dropped (instatrack.cluster.contrast)."""

from __future__ import annotations

import numpy as np
import pytest

from instatrack.cluster.contrast import ContrastSettings, drop_faint, object_contrasts
from instatrack.errors import ConfigError


def _scene(gain: float = 1.0, offset: float = 0.0):
    """Three bright nuclei, one dim one (a fifth of their contrast) and one faint patch
    (a twentieth), on a noisy background; the image scaled by ``gain`` plus ``offset``."""
    rng = np.random.default_rng(0)
    image = 10 + rng.normal(0, 1, (80, 80))
    labels = np.zeros((80, 80), np.int32)
    for label, (y, x), contrast in ((1, (5, 5), 40), (2, (5, 40), 40), (3, (40, 5), 40),
                                    (4, (40, 40), 8), (5, (60, 60), 2)):
        labels[y:y + 15, x:x + 15] = label
        image[y:y + 15, x:x + 15] += contrast
    return labels, gain * image + offset


def test_contrast_is_measured_over_the_unlabelled_background():
    labels, image = _scene()
    ids, contrast = object_contrasts(labels, image)
    assert ids.tolist() == [1, 2, 3, 4, 5]
    assert contrast == pytest.approx([40, 40, 40, 8, 2], abs=0.6)
    # channels are averaged
    _, stacked = object_contrasts(labels, np.stack([image, image]))
    assert stacked == pytest.approx(contrast)


@pytest.mark.parametrize("gain, offset", [(1.0, 0.0), (0.05, 3.0), (7.0, -50.0)])
def test_the_faint_objects_go_whatever_the_gain_and_offset(gain, offset):
    labels, image = _scene(gain, offset)
    out = drop_faint(labels, image, 0.1)
    assert set(np.unique(out)) == {0, 1, 2, 3, 4}  # 2 / 40 < 0.1; 8 / 40 is not
    out = drop_faint(labels, image, 0.3)
    assert set(np.unique(out)) == {0, 1, 2, 3}
    assert (out[labels == 1] == 1).all()


def test_off_empty_and_dark_objects_leave_the_labels_alone():
    labels, image = _scene()
    assert drop_faint(labels, image, 0.0) is labels
    empty = np.zeros_like(labels)
    assert drop_faint(empty, image, 0.2) is empty
    # objects darker than the background (not fluorescence): nothing to judge by
    assert (drop_faint(labels, -image, 0.5) == labels).all()
    with pytest.raises(ValueError, match="differ in size"):
        drop_faint(labels, image[:10], 0.2)


def test_the_setting_is_checked():
    assert ContrastSettings().min_contrast == 0.0
    with pytest.raises(ConfigError, match="min_contrast"):
        ContrastSettings(min_contrast=1.5)


def test_predictor_drops_faint_objects_last(tmp_path):
    import instatrack
    from scale_runs import cells_image, random_run

    run = random_run(tmp_path / "run", "spatial-embedding")
    frames = cells_image((64, 80), seed=3, frames=2)
    plain = instatrack.load(run, device="cpu", overrides=["refine_boundaries=0.3"])
    strict = instatrack.load(run, device="cpu",
                             overrides=["refine_boundaries=0.3", "min_contrast=0.9"])
    image = plain.prepare(frames[0])
    before = plain.segment(frames[0])
    expected = drop_faint(before, image, 0.9)  # after the refinement
    assert len(np.unique(expected)) < len(np.unique(before))  # something was dropped
    assert np.array_equal(strict.segment(frames[0]), expected)
    assert strict.track(frames).labels.shape == (2, 64, 80)


def test_objects_mostly_below_the_frames_foreground_threshold_go():
    """Three bright nuclei and an object drawn on plain background (a piece of it): the
    piece lies under the triangle threshold, whatever the gain and offset; off, flat
    frames and empty labels are left alone."""
    from instatrack.cluster.contrast import drop_background

    rng = np.random.default_rng(2)
    image = 10 + rng.normal(0, 1, (120, 120))
    labels = np.zeros((120, 120), np.int32)
    for label, (y, x), contrast in ((1, (5, 5), 40), (2, (5, 60), 40), (3, (60, 5), 30),
                                    (4, (80, 80), 0)):
        labels[y:y + 15, x:x + 15] = label
        image[y:y + 15, x:x + 15] += contrast
    for gain, offset in [(1.0, 0.0), (0.05, 3.0), (7.0, -50.0)]:
        out = drop_background(labels, gain * image + offset, 0.25)
        assert set(np.unique(out)) == {0, 1, 2, 3}
    assert drop_background(labels, image, 0.0) is labels
    assert drop_background(labels, np.full(image.shape, 5.0), 0.5) is labels
    empty = np.zeros_like(labels)
    assert drop_background(empty, image, 0.5) is empty
    with pytest.raises(ConfigError, match="min_foreground"):
        ContrastSettings(min_foreground=1.5)
