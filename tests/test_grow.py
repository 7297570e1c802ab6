"""Instances grown over the thresholded foreground (instatrack.cluster.grow)."""

from __future__ import annotations

import numpy as np
import pytest

from instatrack.api import finish_frame
from instatrack.cluster.grow import GrowSettings, contrast_to_noise, grow_instances
from instatrack.config import TrainConfig
from instatrack.errors import ConfigError


def _scene(contrast: float = 1.0):
    """Two touching cells (a bright body with a dim arm each, parted by a darker line),
    a third cell the labels leave out, and the labels of the bright bodies only; the
    cells' contrast times ``contrast``, the noise std 1 whatever it is."""
    image = np.zeros((90, 120))
    image[20:40, 10:50] += 60   # cell 1's body
    image[25:35, 50:58] += 25   # cell 1's arm, up to the dark line at x = 58..59
    image[25:35, 60:70] += 25   # cell 2's arm
    image[20:40, 70:110] += 60  # cell 2's body
    image[60:80, 20:40] += 60   # a cell nobody found
    image = 10 + contrast * image + np.random.default_rng(0).normal(0, 1, image.shape)
    labels = np.zeros(image.shape, np.int32)
    labels[22:38, 12:48] = 1
    labels[22:38, 72:108] = 2
    return labels, image


def test_instances_reach_their_arms_and_part_at_the_dark_line():
    labels, image = _scene()
    out = grow_instances(labels, image, GrowSettings(grow_foreground="li", grow_sigma=1.0))
    assert set(np.unique(out)) == {0, 1, 2}  # nothing added: the third cell stays out
    assert (out[labels > 0] == labels[labels > 0]).all()  # nothing shrinks
    assert (out[27:33, 51:57] == 1).all() and (out[27:33, 61:69] == 2).all()
    assert (out[20:40, 10:12] == 1).all()  # the body's rim too
    assert (out[60:80, 20:40] == 0).all() and (out[50:58] == 0).all()


def test_a_dim_frame_does_not_grow_into_its_noise():
    labels, dim = _scene(1 / 40)  # the bodies 1.5 noise stds over the background
    out = grow_instances(labels, dim, GrowSettings(grow_foreground="li", grow_sigma=0.0))
    # the noise floor keeps the background out (a few pixels next to the bodies at most)
    assert (out > 0).sum() < (labels > 0).sum() + 100


def test_off_and_empty_leave_the_labels_alone():
    labels, image = _scene()
    assert grow_instances(labels, image, GrowSettings()) is labels
    empty = np.zeros_like(labels)
    assert grow_instances(empty, image, GrowSettings(grow_foreground="li")) is empty


def test_it_runs_in_the_last_stages_and_is_checked():
    labels, image = _scene()
    config = TrainConfig(grow_foreground="li", grow_sigma=1.0)
    out = finish_frame(labels, np.stack([image, image]), config)
    assert (out[27:33, 51:57] == 1).all()
    with pytest.raises(ConfigError, match="grow_foreground"):
        GrowSettings(grow_foreground="max")
    with pytest.raises(ConfigError, match="grow_sigma"):
        GrowSettings(grow_sigma=-1)


def test_trimming_drops_the_halo_but_keeps_dim_instances():
    labels, image = _scene()
    halo = labels.copy()
    halo[18:42, 8:52][halo[18:42, 8:52] == 0] = 1  # instance 1 drawn 2 px too wide
    dim = np.zeros_like(labels)
    dim[62:78, 22:38] = 3  # the third cell, found
    image[60:80, 20:40] -= 58  # ... but dimmed below the threshold
    halo = np.maximum(halo, dim)
    settings = GrowSettings(grow_foreground="li", grow_sigma=1.0, grow_trim=True)
    out = grow_instances(halo, image, settings)
    assert (out[18, 12:48] == 0).all() and (out[41, 12:48] == 0).all()  # halo gone
    assert (out[27:33, 51:57] == 1).all()  # still grown over its arm
    assert (out == 3).sum() == (dim == 3).sum()  # the dim instance kept whole
    untrimmed = grow_instances(halo, image, GrowSettings(grow_foreground="li", grow_sigma=1.0))
    assert (untrimmed[18, 12:48] == 1).all()


def test_the_trim_acts_on_frames_of_high_contrast_only():
    labels, image = _scene()  # the bodies 60 noise stds over the background
    halo = labels.copy()
    halo[18:42, 8:52][halo[18:42, 8:52] == 0] = 1  # instance 1 drawn 2 px too wide
    gated = GrowSettings(grow_foreground="li", grow_sigma=1.0, grow_trim=True, grow_trim_snr=2.5)
    assert contrast_to_noise(image, halo) > 50
    assert (grow_instances(halo, image, gated)[18, 12:48] == 0).all()  # trimmed
    _, dim = _scene(1 / 40)  # the bodies 1.5 noise stds over the background
    assert contrast_to_noise(dim, halo) < 2.5
    grown = GrowSettings(grow_foreground="li", grow_sigma=1.0)  # no trim: only grown
    assert (grow_instances(halo, dim, gated) == grow_instances(halo, dim, grown)).all()
    assert (grow_instances(halo, dim, gated)[18, 12:48] == 1).all()
    with pytest.raises(ConfigError, match="grow_trim_snr"):
        GrowSettings(grow_trim_snr=-1)
