"""Touching objects with no darker seam between them merged (instatrack.cluster.seams)."""

from __future__ import annotations

import numpy as np
import pytest

from instatrack.api import finishes
from instatrack.cluster.seams import MIN_SEAM, SeamSettings, merge_seams
from instatrack.config import TrainConfig
from instatrack.errors import ConfigError


def _scene(gain: float = 1.0, offset: float = 0.0):
    """Left: one bright elongated cell cut in two pieces (1 and 2) along a line as bright
    as the cell. Right: two touching nuclei (3 and 4) meeting in a dark valley. Noisy
    background; the image scaled by ``gain`` plus ``offset``."""
    rng = np.random.default_rng(0)
    image = 10 + rng.normal(0, 1, (60, 90))
    labels = np.zeros((60, 90), np.int32)
    image[20:40, 5:45] += 40  # the cell, cut at x = 25
    labels[20:40, 5:25], labels[20:40, 25:45] = 1, 2
    yy, xx = np.mgrid[:60, :90]
    for label, cx in ((3, 58), (4, 76)):  # two round nuclei touching at x = 67
        disc = (yy - 30) ** 2 + (xx - cx) ** 2 <= 81
        labels[disc] = label
        image += 40 * np.exp(-((yy - 30) ** 2 + (xx - cx) ** 2) / 60.0)
    labels[(labels == 3) & (xx >= 67)] = 4  # the valley is their border
    return labels, gain * image + offset


@pytest.mark.parametrize("gain, offset", [(1.0, 0.0), (0.05, 3.0), (7.0, -50.0)])
def test_pieces_of_one_cell_merge_and_nuclei_in_a_valley_stay_apart(gain, offset):
    labels, image = _scene(gain, offset)
    out = merge_seams(labels, image, 0.8)
    assert set(np.unique(out)) == {0, 1, 3, 4} or set(np.unique(out)) == {0, 2, 3, 4}
    assert (out[labels == 1] == out[labels == 2][0]).all()  # one object now
    assert (out[labels == 3] == 3).all() and (out[labels == 4] == 4).all()


def test_off_a_short_contact_and_a_frame_without_background_change_nothing():
    labels, image = _scene()
    assert merge_seams(labels, image, 0.0) is labels
    corner = np.zeros((30, 30), np.int32)
    corner[5:15, 5:15], corner[15:25, 15 - MIN_SEAM + 2:25] = 1, 2  # too short a seam
    bright = 10 + 40.0 * (corner > 0)  # no valley: only the seam's length keeps them apart
    assert (merge_seams(corner, bright, 0.5) == corner).all()
    corner[15:25, 5:25] = 2  # a seam of 10 edges
    assert set(np.unique(merge_seams(corner, 10 + 40.0 * (corner > 0), 0.5))) == {0, 2}
    full = np.ones((10, 10), np.int32)
    full[:, 5:] = 2
    assert (merge_seams(full, np.ones((10, 10)), 0.5) == full).all()


def test_it_is_a_finishing_stage_calibration_tries_and_negative_is_refused():
    assert not finishes(TrainConfig())
    assert finishes(TrainConfig().replace(merge_seams=1.2))
    assert SeamSettings.calibration_last == {"merge_seams": (1.2, 1.5)}
    with pytest.raises(ConfigError, match="merge_seams"):
        TrainConfig().replace(merge_seams=-1.0)
