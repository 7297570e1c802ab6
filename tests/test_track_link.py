"""Exact-count tests of the linker on hand-built label movies of discs."""

from __future__ import annotations

import numpy as np
import pytest

from instatrack.errors import ConfigError
from instatrack.labels import match_iou
from instatrack.methods.base import Window
from instatrack.track.export import graph_to_ctc_table
from instatrack.track.link import Tracker
from instatrack.track.rules import TrackSettings

SIZE = 48


def disc(frame: np.ndarray, cy: float, cx: float, r: float, value: int) -> None:
    yy, xx = np.mgrid[:frame.shape[0], :frame.shape[1]]
    frame[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = value


def movie(spec: list[list[tuple]]) -> np.ndarray:
    """``spec[t]`` lists discs ``(cy, cx, r, label)`` of frame t -> ``(T, Y, X)`` int32."""
    out = np.zeros((len(spec), SIZE, SIZE), np.int32)
    for t, discs in enumerate(spec):
        for cy, cx, r, label in discs:
            disc(out[t], cy, cx, r, label)
    return out


def make_tracker(**settings) -> Tracker:
    """A tracker with ``settings`` that keeps objects of every size (the discs are small)."""
    return Tracker(TrackSettings(**{"min_instance_area": 0, **settings}))


def no_links(a: np.ndarray, b: np.ndarray, threshold: float) -> bool:
    """Whether no object of ``a`` matches one of ``b`` by IoU."""
    pairs, _ = match_iou(a, b, threshold)
    return len(pairs) == 0


def track_single(labels: np.ndarray, **settings) -> tuple[Tracker, dict[int, np.ndarray]]:
    """Push one-frame windows; returns the tracker and ``{t: final labels}``."""
    tracker = make_tracker(**settings)
    final = {}
    for t in range(len(labels)):
        final.update(tracker.push(Window(t, labels[t:t + 1])))
    final.update(tracker.finish())
    return tracker, final


def track_pairs(labels: np.ndarray, **settings) -> tuple[Tracker, dict[int, np.ndarray]]:
    """Push overlapping pair windows whose local ids are shuffled per window."""
    tracker = make_tracker(**settings)
    final = {}
    rng = np.random.default_rng(0)
    for t in range(len(labels) - 1):
        pair = labels[t:t + 2]
        lut = np.r_[0, rng.permutation(np.arange(50, 50 + int(labels.max())))]
        final.update(tracker.push(Window(t, lut[pair].astype(np.int32))))
    final.update(tracker.finish())
    return tracker, final


def edges_by_track(tracker: Tracker) -> set[tuple[tuple[int, int], tuple[int, int]]]:
    """Edges as ``((label, t), (label, t))`` so tests do not depend on node ids."""
    nodes = tracker.graph.nodes
    return {((nodes[a]["label"], nodes[a]["t"]), (nodes[b]["label"], nodes[b]["t"]))
            for a, b in tracker.graph.edges}


MOVE = movie([[(20, 10 + 3 * t, 5, 1)] for t in range(4)])
EXIT = movie([[(12, 12, 5, 1), (34, 34, 5, 2)], [(12, 13, 5, 1), (34, 35, 5, 2)],
              [(12, 14, 5, 1)], [(12, 15, 5, 1)]])
ENTRY = movie([[(12, 12, 5, 1)], [(12, 13, 5, 1)],
               [(12, 14, 5, 1), (34, 34, 5, 2)], [(12, 15, 5, 1), (34, 35, 5, 2)]])
# The mother shrinks into two daughters; one daughter overlaps it enough to keep its IoU link.
DIVISION = movie([[(24, 24, 7, 1)], [(24, 25, 7, 1)],
                  [(24, 20, 4, 1), (24, 30, 4, 2)], [(24, 19, 4, 1), (24, 31, 4, 2)]])
GAP = movie([[(20, 20, 6, 1)], [(20, 21, 6, 1)], [], [(20, 23, 6, 1)], [(20, 24, 6, 1)]])


@pytest.mark.parametrize("run", [track_single, track_pairs])
def test_move_is_one_track(run):
    tracker, final = run(MOVE)
    assert graph_to_ctc_table(tracker.graph) == [(1, 0, 3, 0)]
    assert tracker.graph.number_of_nodes() == 4
    assert edges_by_track(tracker) == {((1, t), (1, t + 1)) for t in range(3)}
    assert sorted(final) == [0, 1, 2, 3]
    assert all(np.array_equal(final[t] > 0, MOVE[t] > 0) for t in final)
    assert final[2].dtype == np.int32


@pytest.mark.parametrize("run", [track_single, track_pairs])
def test_exit_ends_the_track(run):
    tracker, _ = run(EXIT)
    assert graph_to_ctc_table(tracker.graph) == [(1, 0, 3, 0), (2, 0, 1, 0)]
    assert tracker.graph.number_of_nodes() == 6
    assert tracker.graph.number_of_edges() == 4


@pytest.mark.parametrize("run", [track_single, track_pairs])
def test_entry_starts_a_track(run):
    tracker, final = run(ENTRY)
    assert graph_to_ctc_table(tracker.graph) == [(1, 0, 3, 0), (2, 2, 3, 0)]
    assert tracker.graph.number_of_edges() == 4
    assert set(np.unique(final[3])) == {0, 1, 2}


@pytest.mark.parametrize("run", [track_single, track_pairs])
def test_division_ends_mother_and_starts_two_daughters(run):
    tracker, final = run(DIVISION)
    rows = graph_to_ctc_table(tracker.graph)
    assert rows == [(1, 0, 1, 0), (2, 2, 3, 1), (3, 2, 3, 1)]
    assert edges_by_track(tracker) == {((1, 0), (1, 1)), ((1, 1), (2, 2)), ((1, 1), (3, 2)),
                                       ((2, 2), (2, 3)), ((3, 2), (3, 3))}
    # Each daughter keeps its mask and its id over time.
    for t in (2, 3):
        assert set(np.unique(final[t])) == {0, 2, 3}
    left = final[3][24, 19]
    assert final[2][24, 20] == left and final[3][24, 31] == 5 - left


# the daughters touch in their first frame (2), where the segmentation made them one waisted
# object; a frame later they are apart
TOUCHING = movie([[(24, 24, 8, 1)], [(24, 24, 8, 1)], [(24, 19, 5, 1), (24, 28, 5, 1)],
                  [(24, 17, 5, 1), (24, 31, 5, 2)], [(24, 16, 5, 1), (24, 32, 5, 2)],
                  [(24, 15, 5, 1), (24, 33, 5, 2)]])
# the daughters touch in two frames (2, 3): only the last is split (SPLIT_BACK_FRAMES)
TOUCHING_TWICE = movie([[(24, 24, 8, 1)], [(24, 24, 8, 1)], [(24, 19, 5, 1), (24, 28, 5, 1)],
                        [(24, 18, 5, 1), (24, 28, 5, 1)], [(24, 16, 5, 1), (24, 32, 5, 2)],
                        [(24, 15, 5, 1), (24, 33, 5, 2)], [(24, 14, 5, 1), (24, 34, 5, 2)]])
# the same with a convex mother (one cell, stretched) in frame 2
STRETCHED = TOUCHING.copy()
STRETCHED[2] = 0
disc(STRETCHED[2], 24, 23.5, 7, 1)


@pytest.mark.parametrize("run", [track_single, track_pairs])
def test_two_touching_daughters_before_a_division_are_split(run):
    tracker, final = run(TOUCHING)
    assert graph_to_ctc_table(tracker.graph) == [(1, 0, 1, 0), (2, 2, 5, 1), (3, 2, 5, 1)]
    left, right = final[3][24, 17], final[3][24, 31]
    assert final[2][24, 17] == left and final[2][24, 30] == right and left != right
    assert (final[2] > 0).sum() == (TOUCHING[2] > 0).sum()  # every pixel kept
    # off, or a convex mother: the division stays where the objects part
    for labels, settings in ((TOUCHING, {"division_split_solidity": 0}), (STRETCHED, {})):
        tracker, final = run(labels, **settings)
        assert graph_to_ctc_table(tracker.graph) == [(1, 0, 2, 0), (2, 3, 5, 1), (3, 3, 5, 1)]
        assert len(np.unique(final[2])) == 2
    tracker, final = run(TOUCHING_TWICE)
    assert graph_to_ctc_table(tracker.graph) == [(1, 0, 2, 0), (2, 3, 6, 1), (3, 3, 6, 1)]
    assert len(np.unique(final[2])) == 2 and len(np.unique(final[3])) == 3


def test_division_with_both_daughters_unlinked_by_iou():
    far = movie([[(24, 24, 6, 1)], [(24, 24, 6, 1)], [(24, 16, 4, 1), (24, 32, 4, 2)]])
    assert no_links(far[1], far[2], 0.1)
    tracker, _ = track_single(far)
    assert graph_to_ctc_table(tracker.graph) == [(1, 0, 1, 0), (2, 2, 2, 1), (3, 2, 2, 1)]


def test_division_found_frames_later():
    late = movie([[(24, 24, 6, 1)], [], [(24, 17, 4, 1), (24, 31, 4, 2)]])
    tracker, _ = track_single(late, division_search_frames=3)
    assert graph_to_ctc_table(tracker.graph) == [(1, 0, 0, 0), (2, 2, 2, 1), (3, 2, 2, 1)]
    tracker, _ = track_single(late, division_search_frames=1)
    assert [row[3] for row in graph_to_ctc_table(tracker.graph)] == [0, 0, 0]


@pytest.mark.parametrize("run", [track_single, track_pairs])
def test_gap_is_a_new_track_with_the_old_one_as_parent(run):
    tracker, final = run(GAP)
    assert graph_to_ctc_table(tracker.graph) == [(1, 0, 1, 0), (2, 3, 4, 1)]
    assert edges_by_track(tracker) == {((1, 0), (1, 1)), ((1, 1), (2, 3)), ((2, 3), (2, 4))}
    assert not final[2].any()


def test_gap_longer_than_max_gap_is_not_bridged():
    long_gap = movie([[(20, 20, 6, 1)], [], [], [], [(20, 21, 6, 1)]])
    tracker, _ = track_single(long_gap, link_max_gap=2)
    assert graph_to_ctc_table(tracker.graph) == [(1, 0, 0, 0), (2, 4, 4, 0)]
    tracker, _ = track_single(long_gap, link_max_gap=3)
    assert graph_to_ctc_table(tracker.graph) == [(1, 0, 0, 0), (2, 4, 4, 1)]


def test_fast_move_below_iou_threshold_still_continues():
    jump = movie([[(20, 10, 5, 1)], [(20, 18, 5, 1)]])
    assert no_links(jump[0], jump[1], 0.1)
    tracker, _ = track_single(jump, division_dilation=2)
    assert graph_to_ctc_table(tracker.graph) == [(1, 0, 1, 0)]


def test_jump_past_its_own_size_continues_only_with_max_distance():
    # Two cells each jump 14 px (more than their diameter): no overlap, even dilated.
    # (Pair windows of the cosine method carry identities across the jump themselves.)
    run = track_single
    frames = movie([[(12, 8, 4, 1), (36, 40, 4, 2)], [(12, 22, 4, 1), (36, 26, 4, 2)],
                    [(12, 36, 4, 1), (36, 12, 4, 2)]])
    tracker, _ = run(frames)
    assert len(graph_to_ctc_table(tracker.graph)) == 6
    tracker, final = run(frames, link_max_distance=16)
    assert graph_to_ctc_table(tracker.graph) == [(1, 0, 2, 0), (2, 0, 2, 0)]
    assert tracker.graph.number_of_edges() == 4
    for t in range(3):  # each track keeps its own cell (the nearest, not a swap)
        assert final[t][12, 8 + 14 * t] == final[0][12, 8]
    tracker, _ = run(frames, link_max_distance=10)  # too far
    assert len(graph_to_ctc_table(tracker.graph)) == 6


def test_max_distance_links_as_many_tracks_as_it_can():
    # Both cells jump 20 px down. Nearest-first would give the object at x=15 to cell 2
    # (20.0 px) and leave cell 1 with nothing within 25 px (29 px to x=27); the
    # assignment links both (21.9 + 22.8 px).
    frames = movie([[(10, 6, 3, 1), (10, 16, 3, 2)], [(30, 15, 3, 1), (30, 27, 3, 2)]])
    tracker, final = track_single(frames, link_max_distance=25)
    assert graph_to_ctc_table(tracker.graph) == [(1, 0, 1, 0), (2, 0, 1, 0)]
    assert final[1][30, 15] == final[0][10, 6] and final[1][30, 27] == final[0][10, 16]


def test_max_distance_must_be_non_negative():
    with pytest.raises(ConfigError, match="link_max_distance"):
        TrackSettings(link_max_distance=-1)


def test_neighbour_entering_does_not_fake_a_division():
    # A cell keeps its size while another one appears next to it.
    frames = movie([[(24, 20, 6, 1)], [(24, 20, 6, 1), (24, 33, 6, 2)]])
    tracker, _ = track_single(frames)
    assert graph_to_ctc_table(tracker.graph) == [(1, 0, 1, 0), (2, 1, 1, 0)]


@pytest.mark.parametrize("run", [track_single, track_pairs])
def test_small_fragment_beside_a_shrunk_cell_is_not_a_daughter(run):
    # The cell loses a sliver that the segmentation reports as its own object.
    frames = movie([[(24, 22, 8, 1)], [(24, 22, 8, 1)], [(24, 21, 7, 1), (24, 30, 2, 2)]])
    tracker, _ = run(frames)
    assert graph_to_ctc_table(tracker.graph) == [(1, 0, 2, 0), (2, 2, 2, 0)]
    tracker, _ = run(frames, division_balance=0.0)  # without the rule it reads a division
    assert [row[3] for row in graph_to_ctc_table(tracker.graph)] == [0, 1, 1]


def test_unequal_pieces_of_a_lost_cell_continue_it_instead_of_dividing():
    frames = movie([[(24, 24, 7, 1)], [(24, 22, 6, 1), (24, 33, 2, 2)]])
    assert no_links(frames[0], frames[1], 0.9)
    tracker, _ = track_single(frames, link_iou_threshold=0.9)
    rows = graph_to_ctc_table(tracker.graph)
    assert rows == [(1, 0, 1, 0), (2, 1, 1, 0)]


def test_node_attributes_and_small_objects_dropped():
    frames = movie([[(20, 20, 5, 1), (40, 40, 1, 2)]])
    tracker, final = track_single(frames, min_instance_area=10)
    (node, data), = tracker.graph.nodes(data=True)
    assert data["t"] == 0 and data["label"] == 1
    assert data["area"] == int((frames[0] == 1).sum())
    assert data["y"] == pytest.approx(20) and data["x"] == pytest.approx(20)
    assert set(np.unique(final[0])) == {0, 1}


def test_tracked_windows_keep_their_labels():
    frames = movie([[(12, 12, 5, 7), (34, 34, 5, 3)], [(12, 13, 5, 7)], [(12, 14, 5, 7),
                                                                         (34, 36, 5, 3)]])
    tracker = Tracker()
    final = {}
    for t in range(3):
        final.update(tracker.push(Window(t, frames[t:t + 1], tracked=True)))
    assert all(np.array_equal(final[t], frames[t]) for t in range(3))
    assert edges_by_track(tracker) == {((7, 0), (7, 1)), ((7, 1), (7, 2)), ((3, 0), (3, 2))}


def test_memory_stays_bounded_and_windows_must_advance():
    tracker = Tracker(TrackSettings(link_max_gap=2, division_search_frames=3))
    labels = movie([[(20, 10 + t, 5, 1)] for t in range(12)])
    for t in range(11):
        tracker.push(Window(t, labels[t:t + 2]))
        assert tracker.frames_in_memory <= 3
    with pytest.raises(ValueError, match="skip"):
        tracker.push(Window(13, labels[:2]))
    with pytest.raises(ValueError, match="no new frame"):
        tracker.push(Window(5, labels[:2]))
    with pytest.raises(ValueError, match=r"\(W, Y, X\)"):
        Tracker().push(Window(0, labels[0]))
    # The last three frames wait for the division check (two for the daughters to
    # persist, one for the mother's frame before them); finish() hands them out.
    assert [t for t, _ in tracker.finish()] == [9, 10, 11]
    assert tracker.finish() == []
    with pytest.raises(ValueError, match="finished"):
        tracker.push(Window(11, labels[11:12]))


# The cell shrinks for one frame while a fragment of similar size flickers beside it.
FLICKER = movie([[(24, 24, 7, 1)], [(24, 24, 7, 1)], [(24, 22, 5, 1), (24, 32, 4, 2)],
                 [(24, 24, 7, 1)], [(24, 24, 7, 1)]])


@pytest.mark.parametrize("run", [track_single, track_pairs])
def test_flickering_fragment_is_not_a_division(run):
    tracker, final = run(FLICKER)
    rows = graph_to_ctc_table(tracker.graph)
    assert rows[0] == (1, 0, 4, 0) and len(rows) == 2
    fragment = rows[1][0]
    assert rows[1] == (fragment, 2, 2, 0)
    assert set(np.unique(final[2])) == {0, 1, fragment}
    assert all(set(np.unique(final[t])) == {0, 1} for t in (0, 1, 3, 4))
    # Without the persistence check the same frames read as a division.
    tracker, _ = run(FLICKER, division_min_frames=1)
    assert [row[3] for row in graph_to_ctc_table(tracker.graph)] == [0, 1, 1]


def test_division_stands_when_a_daughter_is_missed_for_one_frame():
    frames = movie([[(24, 24, 7, 1)], [(24, 25, 7, 1)],
                    [(24, 20, 4, 1), (24, 30, 4, 2)], [(24, 19, 4, 1)],
                    [(24, 18, 4, 1), (24, 32, 4, 2)], [(24, 17, 4, 1), (24, 33, 4, 2)]])
    tracker, _ = track_single(frames)
    rows = graph_to_ctc_table(tracker.graph)
    assert [row[3] for row in rows] == [0, 1, 1, 3]  # mother, daughters, the gap's piece
    assert rows[3][1:3] == (4, 5)


def test_frames_wait_for_the_division_check():
    tracker = make_tracker(division_min_frames=3, division_split_solidity=0)
    returned = [[t for t, _ in tracker.push(Window(t, FLICKER[t:t + 1]))] for t in range(5)]
    assert returned == [[], [], [0], [1], [2]]
    assert [t for t, _ in tracker.finish()] == [3, 4]
    # splitting a mother before a division (the default) holds a frame more
    tracker = make_tracker(division_min_frames=3)
    returned = [[t for t, _ in tracker.push(Window(t, FLICKER[t:t + 1]))] for t in range(5)]
    assert returned == [[], [], [], [0], [1]]
    with pytest.raises(ConfigError, match="division_min_frames"):
        TrackSettings(division_min_frames=0)


# -- short tracks -----------------------------------------------------------
BLIPS = movie([[(20, 10 + 2 * t, 5, 1)]
               + ([(36, 36, 4, 2)] if t == 2 else [])  # one-frame blip in the middle
               + ([(8, 38, 4, 3)] if t in (3, 4) else [])  # two-frame blip
               + ([(38, 8, 4, 4)] if t in (0, 6) else [])  # blips at the first and last frame
               for t in range(7)])


def live_tracks(tracker: Tracker, final: dict[int, np.ndarray]) -> tuple[int, set]:
    """Number of distinct labels in the frames, and the labels in the graph."""
    in_frames = set(np.unique(np.concatenate([f.ravel() for f in final.values()]))) - {0}
    in_graph = {d["label"] for _, d in tracker.graph.nodes(data=True)}
    assert in_frames == in_graph
    return len(in_frames), in_graph


@pytest.mark.parametrize("track", [track_single, track_pairs])
@pytest.mark.parametrize(("length", "left"), [(1, 5), (2, 4), (3, 3)])
def test_min_track_length_drops_flicker_but_not_the_ends(track, length, left):
    tracker, final = track(BLIPS, min_track_length=length)
    assert sorted(final) == list(range(7))
    count, _ = live_tracks(tracker, final)
    # the long track and both blips at the sequence ends always stay
    assert count == left
    assert final[0][38, 8] and final[6][38, 8]
    assert (final[2][36, 36] > 0) == (length == 1)
    assert (final[3][8, 38] > 0) == (length <= 2)


def test_min_track_length_keeps_daughters():
    # neither the mother nor the daughters touch the first or last frame
    frames = movie([[]] + [[(24, 24, 8, 1)]] * 3
                   + [[(24, 14, 6, 2), (24, 34, 6, 3)]] * 3 + [[]] * 2)
    tracker, final = track_single(frames, min_track_length=10)
    count, _ = live_tracks(tracker, final)
    plain, _ = track_single(frames)
    assert count == 3 and edges_by_track(tracker) == edges_by_track(plain)
    assert tracker.graph.number_of_edges() == 8  # 2 + 2 + 2 within tracks, 2 to daughters


def test_min_track_length_holds_frames_back_only_when_set():
    frames = movie([[(20, 10 + 3 * t, 5, 1)] for t in range(8)])
    # lag: division_min_frames - 1 + 1 (the mother's frame before a division), or 3 - 1 + 3
    for length, lag in ((1, 3), (3, 5)):
        tracker = Tracker(TrackSettings(min_track_length=length))
        returned = [len(tracker.push(Window(t, frames[t:t + 1]))) for t in range(8)]
        assert returned == [0] * lag + [1] * (8 - lag)
        assert len(tracker.finish()) == lag


def test_min_track_length_must_be_positive():
    with pytest.raises(ConfigError, match="min_track_length"):
        TrackSettings(min_track_length=0)
