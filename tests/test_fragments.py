"""Small pieces merged into the object they touch (instatrack.cluster.fragments)."""

from __future__ import annotations

import numpy as np
import pytest

from instatrack.cluster.fragments import FragmentSettings, merge_fragments, merged
from instatrack.errors import ConfigError
from instatrack.methods.base import Window


def _scene():
    labels = np.zeros((60, 80), np.int32)
    labels[10:40, 10:40] = 1          # a nucleus, 900 px
    labels[10:40, 40:45] = 2          # a rim cut off it, 150 px, touching along 30 px
    labels[50:55, 70:75] = 3          # a small object alone, 25 px
    labels[10:30, 55:65] = 4          # two daughters, 200 px each, side by side
    labels[30:50, 55:65] = 5
    return labels


def test_a_piece_joins_the_object_it_touches_and_nothing_else_changes():
    labels = _scene()
    out = merge_fragments(labels, limit=0.25 * 900)
    assert (out[labels == 2] == 1).all()
    for kept in (1, 3, 4, 5):
        assert (out[labels == kept] == kept).all()
    assert merge_fragments(labels, limit=0) is labels


def test_a_chain_of_pieces_ends_in_the_big_object_and_a_thin_touch_is_not_enough():
    labels = _scene()
    labels[10:40, 45:47] = 6  # a second piece beside the first one only
    out = merge_fragments(labels, limit=225)
    assert set(np.unique(out[(labels == 2) | (labels == 6)])) == {1}
    corner = np.zeros((20, 20), np.int32)
    corner[0:10, 0:10] = 1
    corner[10:13, 10:13] = 2  # touches object 1 at one corner only
    assert (merge_fragments(corner, limit=50) == corner).all()


def test_windows_are_merged_frame_by_frame_with_the_training_size():
    labels = np.stack([_scene(), _scene()])
    windows = [Window(0, labels)]
    same = merged(windows, FragmentSettings(), (100.0, 900.0))
    assert same is windows
    out = list(merged(windows, FragmentSettings(merge_fragments=0.25), (100.0, 900.0)))
    assert out[0].start == 0 and (out[0].labels[:, labels[0] == 2] == 1).all()
    with pytest.raises(ConfigError, match="merge_fragments must be in"):
        FragmentSettings(merge_fragments=1.5)


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_two_halves_of_one_nucleus_merge_and_two_touching_nuclei_do_not():
    from instatrack.cluster.fragments import merge_halves

    labels = np.zeros((80, 160), np.int32)
    nucleus = _disc(labels.shape, 40, 40, 20)
    labels[nucleus & (np.arange(160) < 40)[None]] = 1   # cut in two at a nucleolus
    labels[nucleus & (np.arange(160) >= 40)[None]] = 2
    labels[_disc(labels.shape, 40, 100, 15)] = 3        # two round nuclei touching
    labels[_disc(labels.shape, 40, 129, 15) & (labels == 0)] = 4
    labels[5:10, 5:10] = 5                              # a small one alone
    out = merge_halves(labels, 0.9)
    assert len(np.unique(out[nucleus])) == 1
    for kept in (3, 4, 5):
        assert (out[labels == kept] == kept).all()
    assert merge_halves(labels, 0) is labels
    # halves larger than twice the frame's median object stay apart
    assert (merge_halves(labels, 0.9, max_area=1000) == labels).all()


def test_halves_are_merged_in_windows_when_asked():
    labels = np.zeros((1, 60, 60), np.int32)
    labels[0, 10:40, 10:25] = 1
    labels[0, 10:40, 25:40] = 2
    labels[0, 45:55, 45:55] = 3
    windows = [Window(0, labels)]
    assert merged(windows, FragmentSettings(), (0.0, 0.0)) is windows
    out = list(merged(windows, FragmentSettings(merge_halves=0.9), (0.0, 0.0)))
    assert len(np.unique(out[0].labels[0, 10:40, 10:40])) == 1
    with pytest.raises(ConfigError, match="merge_halves must be a solidity"):
        FragmentSettings(merge_halves=1.5)


def test_two_touching_nuclei_clustered_as_one_are_split_at_their_waist():
    from instatrack.cluster.fragments import split_pairs

    labels = np.zeros((80, 200), np.int32)
    for k, cx in enumerate((20, 60, 100), start=1):   # three single nuclei, r 15
        labels[_disc(labels.shape, 20, cx, 15)] = k
    pair = (_disc(labels.shape, 55, 40, 15) | _disc(labels.shape, 55, 67, 15))
    labels[pair] = 4                                   # two touching, one label
    oval = np.zeros_like(pair)
    yy, xx = np.mgrid[:80, :200]
    oval = ((yy - 55) / 14.0) ** 2 + ((xx - 150) / 28.0) ** 2 <= 1
    labels[oval] = 5                                   # one long nucleus, convex
    out = split_pairs(labels, 0.9)
    left, right = _disc(labels.shape, 55, 40, 12), _disc(labels.shape, 55, 67, 12)
    assert len(np.unique(out[pair])) == 2
    assert len(np.unique(out[left])) == 1 and len(np.unique(out[right])) == 1
    assert out[left][0] != out[right][0]
    for kept in (1, 2, 3, 5):
        assert (out[labels == kept] == kept).all()
    assert split_pairs(labels, 0) is labels
    with pytest.raises(ConfigError, match="split_pairs must be a solidity"):
        FragmentSettings(split_pairs=2)


def test_the_frames_of_a_window_agree_on_the_labels_of_splits_and_merges():
    """Two frames of one pair window: an object split in both keeps one new label for
    its smaller part, two objects split in one frame each get different new labels, and
    halves merged in both frames keep the lower label in both."""
    frame = np.zeros((80, 240), np.int32)
    for k, cx in enumerate((20, 60, 100), start=1):       # single nuclei set the median
        frame[_disc(frame.shape, 20, cx, 15)] = k
    big = _disc(frame.shape, 55, 40, 16) | _disc(frame.shape, 55, 68, 14)
    other = _disc(frame.shape, 55, 130, 16) | _disc(frame.shape, 55, 158, 14)
    nucleus = _disc(frame.shape, 20, 200, 15)
    frames = np.stack([frame, frame])
    frames[:, big] = 4
    frames[1, other] = 5                                  # a second pair in frame 1 only
    frames[0, other] = 0
    frames[:, nucleus & (np.arange(240) < 200)[None]] = 7  # halves in both frames
    frames[:, nucleus & (np.arange(240) >= 200)[None]] = 6
    out = next(iter(merged([Window(0, frames)], FragmentSettings(split_pairs=0.9,
                                                                 merge_halves=0.9),
                           (0.0, 0.0)))).labels
    small = _disc(frame.shape, 55, 68, 10)
    assert out[0][small][0] == out[1][small][0] == 8 + 4  # the window's max + 1 + label
    assert out[1][_disc(frame.shape, 55, 158, 10)][0] == 8 + 5
    assert (out[:, _disc(frame.shape, 55, 40, 12)] == 4).all()   # the larger part keeps 4
    assert (out[:, nucleus] == 6).all()                   # the lower of the two labels


def test_pieces_of_a_cell_without_a_core_of_their_own_join_it_and_touching_nuclei_stay():
    from instatrack.cluster.fragments import merge_coreless

    shape = (100, 170)
    labels = np.zeros(shape, np.int32)
    labels[_disc(shape, 50, 40, 20)] = 1
    labels[_disc(shape, 50, 75, 20)] = 2   # touching nucleus 1 at a waist: its own peak
    labels[45:55, 95:140] = 3              # an arm of cell 2, cut across
    labels[45:55, 140:150] = 4             # and its tip, beyond the cut
    labels[10:20, 150:160] = 5             # a small object alone
    out = merge_coreless(labels, 0.2)
    assert set(np.unique(out[(labels == 3) | (labels == 4)])) == {2}
    for kept in (1, 2, 5):
        assert (out[labels == kept] == kept).all()
    assert merge_coreless(labels, 0) is labels
    # the same at twice the size: the depth is a share of the peak's height
    big = np.kron(labels, np.ones((2, 2), np.int32))
    assert (np.kron(out, np.ones((2, 2), np.int32)) == merge_coreless(big, 0.2)).all()
    with pytest.raises(ConfigError, match="merge_coreless must be a depth"):
        FragmentSettings(merge_coreless=1.0)


def test_coreless_pieces_are_merged_in_the_last_stages_when_asked():
    from instatrack.api import finish_frame, finishes
    from instatrack.config import TrainConfig

    labels = np.zeros((40, 90), np.int32)
    labels[_disc(labels.shape, 20, 20, 15)] = 1
    labels[15:25, 35:80] = 2  # an arm of cell 1, cut off it: no core of its own
    image = np.where(labels > 0, 100.0, 10.0)
    assert not finishes(TrainConfig())
    config = TrainConfig(merge_coreless=0.1)
    assert finishes(config)
    out = finish_frame(labels, np.stack([image, image]), config)
    assert set(np.unique(out)) == {0, 1}


def test_objects_small_beside_the_frames_cells_are_dropped_at_any_size_and_daughters_stay():
    from instatrack.cluster.fragments import drop_small, typical_area

    labels = np.zeros((200, 200), np.int32)
    labels[10:90, 10:90] = 1     # two large cells
    labels[10:90, 110:190] = 2
    labels[120:160, 10:50] = 3   # a daughter: a quarter of a cell
    labels[120:160, 60:100] = 4
    for k, x in enumerate(range(110, 200, 9)):  # ten specks, more than the cells
        labels[170:175, x:x + 5] = 5 + k
    # the plain median is a speck's area; the area-weighted one is a cell's
    areas = np.bincount(labels.ravel())[1:]
    assert np.median(areas) == 25 and typical_area(areas) == 6400
    out = drop_small(labels, 0.1)
    assert set(np.unique(out)) == {0, 1, 2, 3, 4}
    assert (out[labels <= 4] == labels[labels <= 4]).all()
    assert drop_small(labels, 0) is labels
    big = np.kron(labels, np.ones((3, 3), np.int32))  # the same frame three times larger
    assert (drop_small(big, 0.1) == np.kron(out, np.ones((3, 3), np.int32))).all()
    with pytest.raises(ConfigError, match="min_area_share must be in"):
        FragmentSettings(min_area_share=1.0)


def test_small_objects_are_dropped_in_the_last_stages_when_asked():
    from instatrack.api import finish_frame, finishes
    from instatrack.config import TrainConfig

    labels = np.zeros((60, 60), np.int32)
    labels[5:45, 5:45] = 1
    labels[50:54, 50:54] = 2
    image = np.where(labels > 0, 100.0, 10.0)
    config = TrainConfig(min_area_share=0.05)
    assert finishes(config)
    assert set(np.unique(finish_frame(labels, image, config))) == {0, 1}


def test_a_pair_the_split_cut_is_not_merged_back_by_the_halves():
    """Two nuclei pressed flat (their union's solidity 0.92): ``split_pairs=0.95`` cuts
    them, and ``merge_halves=0.9``, which acts after it, must not join them again; a
    nucleus cut in two halves by the network is still merged."""
    frame = np.zeros((80, 240), np.int32)
    for k, cx in enumerate((20, 60, 100), start=1):       # single nuclei set the median
        frame[_disc(frame.shape, 20, cx, 15)] = k
    pressed = _disc(frame.shape, 55, 40, 15) | _disc(frame.shape, 55, 62, 15)
    frame[pressed] = 4
    nucleus = _disc(frame.shape, 20, 200, 15)
    frame[nucleus & (np.arange(240) < 200)[None]] = 5
    frame[nucleus & (np.arange(240) >= 200)[None]] = 6
    both = FragmentSettings(split_pairs=0.95, merge_halves=0.9)
    out = next(iter(merged([Window(0, frame[None])], both, (0.0, 0.0)))).labels[0]
    assert len(np.unique(out[pressed])) == 2
    assert len(np.unique(out[nucleus])) == 1
