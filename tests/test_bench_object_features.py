"""The per-object measures of benchmarks/object_features.py, on drawn frames."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import object_features  # noqa: E402


def test_an_object_matches_a_marker_it_holds_more_than_half_of():
    labels = np.zeros((20, 20), np.int32)
    marks = np.zeros((20, 20), np.int32)
    labels[2:8, 2:8], labels[10:16, 10:16], labels[2:6, 12:18] = 1, 2, 3
    marks[3:5, 3:5] = 7                     # inside object 1
    marks[9:13, 9:13] = 8                   # 9 of its 16 pixels in object 2
    marks[4:8, 11:13] = 9                   # 2 of its 8 pixels in object 3
    assert object_features.matched(labels, marks).tolist() == [True, True, False]


def test_a_sharp_object_stands_out_and_a_glow_does_not():
    """A sharp disc, a blurred one and a sharp one cut by the frame's edge, on noise:
    the outline measure sets the glow apart whatever the gain, and the edge of the
    frame is not read as outline."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:200, :300]
    sharp = (yy - 60) ** 2 + (xx - 60) ** 2 < 20 ** 2
    glow = (yy - 130) ** 2 + (xx - 200) ** 2 < 25 ** 2
    cut = (yy - 10) ** 2 + (xx - 290) ** 2 < 15 ** 2
    image = (100 + 40 * sharp + 15 * ndi.gaussian_filter(glow.astype(float), 8)
             + 40 * cut + rng.normal(0, 5, yy.shape))
    labels = np.zeros(yy.shape, np.int32)
    labels[sharp], labels[glow], labels[cut] = 1, 2, 3
    for gain in (1.0, 7.0):
        found = object_features.measures(labels, gain * image + 3, [1.0])
        edge = found["edge_1"]
        assert edge[1] < 1.5 and min(edge[0], edge[2]) > 8
        assert abs(edge[2] - edge[0]) < 0.2 * edge[0]
        assert found["contrast"][0] > 3 * found["contrast"][1]
        assert found["fg_triangle"][0] > 0.9
