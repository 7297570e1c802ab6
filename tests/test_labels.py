"""Label helpers shared by the tracker, the post-processing and the measures."""

from __future__ import annotations

import numpy as np

from instatrack.labels import (
    ObjectStats,
    label_stats,
    relabel,
    remove_small,
    remove_small_pieces,
    renumber,
)


def test_label_stats_are_named():
    labels = np.zeros((4, 5), np.int32)
    labels[0, 0:2] = 3
    labels[2:4, 4] = 7
    stats = label_stats(labels)
    assert stats == {3: ObjectStats(2, 0.0, 0.5), 7: ObjectStats(2, 2.5, 4.0)}
    assert stats[7].area == 2 and (stats[3].y, stats[3].x) == (0.0, 0.5)
    assert label_stats(np.zeros((2, 2), np.int32)) == {}


def test_remove_small_and_small_pieces():
    labels = np.array([[1, 1, 0, 1],
                       [1, 1, 0, 0],
                       [0, 0, 2, 0]], np.int32)
    # object 1 has 5 px in two pieces (4 + 1); object 2 has 1 px
    assert np.array_equal(remove_small(labels, 2), np.where(labels == 2, 0, labels))
    pieces = remove_small_pieces(labels, 2)
    assert pieces[0, 3] == 0 and pieces[2, 2] == 0 and (pieces[:2, :2] == 1).all()
    assert remove_small(labels, 0) is labels and remove_small_pieces(labels, 0) is labels
    assert remove_small(labels, 2).dtype == labels.dtype


def test_renumber_keeps_background_and_unannotated():
    labels = np.array([[[0, 9, -1], [4, 4, 0]], [[9, 0, 0], [0, 0, 12]]], np.int64)
    out = renumber(labels)
    assert out.dtype == np.int64
    assert out.tolist() == [[[0, 2, -1], [1, 1, 0]], [[2, 0, 0], [0, 0, 3]]]
    assert not renumber(np.zeros((2, 2), np.int32)).any()


def test_relabel():
    labels = np.array([[0, 2, 5]], np.int32)
    assert relabel(labels, {2: 7, 5: 1}).tolist() == [[0, 7, 1]]
    assert relabel(labels, {2: 7}).tolist() == [[0, 7, 0]]


def test_arrows_run_one_way():
    """The tracker and the post-processing use the label helpers, never the measures."""
    import subprocess
    import sys

    code = ("import sys, instatrack.track.link, instatrack.cluster.hdbscan, instatrack.config\n"
            "assert not [m for m in sys.modules if m.startswith('instatrack.metrics')]")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
