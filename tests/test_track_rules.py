"""The tracker's rules and graph edits, called directly on plain data."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from instatrack.config import TrainConfig
from instatrack.errors import ConfigError
from instatrack.labels import ObjectStats
from instatrack.track import lineage
from instatrack.track.rules import (
    SPLIT_BACK_FRAMES,
    TrackSettings,
    alike_daughters,
    delay,
    division_stands,
    find_parents,
    is_flicker,
    memory,
    nearest_lost,
    parent_kind,
    split_mother,
)

DEFAULT = TrackSettings()


def stats(**areas: int) -> dict[int, ObjectStats]:
    """``{label: ObjectStats}`` from ``o<label>=area`` (centroids at the origin)."""
    return {int(k[1:]): ObjectStats(area, 0.0, 0.0) for k, area in areas.items()}


# -- settings ---------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["division_dilation", "link_max_gap", "min_instance_area",
                                 "division_search_frames", "division_area_ratio",
                                 "link_parent_overlap"])
def test_negative_settings_are_refused_by_name(key):
    with pytest.raises(ConfigError, match=key):
        TrackSettings(**{key: -3})
    # the same check through a method's config (flat --set keys)
    with pytest.raises(ConfigError, match=key):
        TrainConfig.build(overrides=[f"{key}=-3"])


def test_a_config_is_the_tracker_settings_it_composes():
    config = TrainConfig.build(overrides=["link_max_gap=5", "division_balance=0.5"])
    assert isinstance(config, TrackSettings)
    assert TrackSettings.of(config) == TrackSettings(link_max_gap=5, division_balance=0.5)


def test_memory_and_delay():
    assert memory(DEFAULT) == 3 and delay(DEFAULT) == 2 + SPLIT_BACK_FRAMES
    assert delay(TrackSettings(division_split_solidity=0)) == 2
    assert memory(TrackSettings(link_max_gap=5)) == 6
    assert delay(TrackSettings(division_min_frames=1, division_split_solidity=0)) == 0
    assert delay(TrackSettings(min_track_length=3)) == 3 - 1 + 3


# -- decisions --------------------------------------------------------------------------------
def test_alike_daughters_keep_order_and_drop_slivers():
    areas = stats(o1=100, o2=30, o3=20)
    assert alike_daughters([2, 1, 3], areas, DEFAULT) == [2, 1]
    assert alike_daughters([2, 1, 3], areas, TrackSettings(division_balance=0.0)) == [2, 1, 3]


@pytest.mark.parametrize(("t", "last_t", "kids", "kind", "objects"), [
    (5, 4, [1, 2], "division", [1, 2]),  # two alike objects beside a track lost in t-1
    (5, 2, [1, 2], "division", [1, 2]),  # ... or within division_search_frames
    (5, 1, [1, 2], "none", [1, 2]),  # too late for a division
    (5, 4, [1, 3], "continue", [1, 3]),  # a cell and a sliver: the cell continues
    (5, 3, [1], "gap", [1]),  # seen again after one empty frame
    (5, 3, [1, 3], "gap", [1]),  # the sliver is no daughter and bridges nothing
    (5, 1, [1], "none", [1]),  # gap longer than link_max_gap
])
def test_parent_kind_of_a_track_that_ended(t, last_t, kids, kind, objects):
    areas = stats(o1=100, o2=90, o3=10)
    assert parent_kind(t, last_t, 100, None, kids, areas, DEFAULT) == (kind, objects)


def test_parent_kind_of_a_continuing_track_that_shrank():
    areas = stats(o1=60, o2=50, o3=5)
    # shrank to 60 % of 100 px with an alike object beside it: both are daughters
    assert parent_kind(5, 4, 100, 1, [2], areas, DEFAULT) == ("division", [1, 2])
    # kept its size: a neighbour entered
    assert parent_kind(5, 4, 62, 1, [2], areas, DEFAULT)[0] == "none"
    # only a sliver beside it
    assert parent_kind(5, 4, 100, 1, [3], areas, DEFAULT)[0] == "none"
    # no division search at all
    off = TrackSettings(division_search_frames=0)
    assert parent_kind(5, 4, 100, 1, [2], areas, off)[0] == "none"
    # shrank only to 60 %: a division when the ratio allows no more than 0.5
    assert parent_kind(5, 4, 100, 1, [2], areas, TrackSettings(division_area_ratio=0.5))[0] \
        == "none"


def test_nearest_lost_assigns_rather_than_takes_the_nearest_first():
    free = {1: ObjectStats(9, 30.0, 15.0), 2: ObjectStats(9, 30.0, 27.0)}
    lost = [(7, 10.0, 6.0), (8, 10.0, 16.0)]
    settings = TrackSettings(link_max_distance=25)
    assert sorted(nearest_lost([1, 2], free, lost, settings)) == [(1, 7), (2, 8)]
    assert nearest_lost([1, 2], free, lost, TrackSettings(link_max_distance=21)) == [(1, 8)]
    assert nearest_lost([1, 2], free, lost, DEFAULT) == []  # off


def test_find_parents_needs_enough_overlap_after_dilation():
    local = np.zeros((20, 20), np.int32)
    local[2:6, 2:6] = 1  # 16 px, 1 px from track 5
    local[12:16, 12:16] = 2  # far from everything
    previous = np.zeros((20, 20), np.int32)
    previous[2:6, 7:11] = 5
    areas = stats(o1=16, o2=16)
    parents = find_parents(local, [1, 2], areas, {4: previous}, {4: {5: 16}}, DEFAULT)
    assert list(parents) == [1] and parents[1][0] == 5
    assert find_parents(local, [1, 2], areas, {4: previous}, {4: {5: 16}},
                        TrackSettings(division_dilation=0)) == {}
    # only the candidates of a frame may be parents
    assert find_parents(local, [1], areas, {4: previous}, {4: {6: 16}}, DEFAULT) == {}
    # the dilated object covers 4 of the track's 16 px: a parent at 0.2, not at 0.3
    assert parents[1][1] == 0.25
    assert find_parents(local, [1], areas, {4: previous}, {4: {5: 16}},
                        TrackSettings(link_parent_overlap=0.3)) == {}


def test_division_stands_with_two_daughters():
    assert division_stands([3, 4]) and not division_stands([3]) and not division_stands([])


@pytest.mark.parametrize(("begin", "end", "last_t", "final", "flicker"), [
    (4, 5, 20, False, True),  # short, settled
    (4, 5, 6, False, False),  # a later frame may still link to it
    (4, 5, 6, True, True),  # ... unless the stream ended
    (4, 6, 20, False, False),  # long enough
    (0, 1, 20, False, False),  # starts in the first frame
    (18, 20, 20, True, False),  # reaches the last frame
])
def test_is_flicker(begin, end, last_t, final, flicker):
    settings = TrackSettings(min_track_length=3)
    assert is_flicker(begin, end, 0, last_t, False, False, final, settings) is flicker


def test_a_flicker_with_a_parent_or_children_stays():
    settings = TrackSettings(min_track_length=3)
    assert not is_flicker(4, 5, 0, 20, True, False, False, settings)
    assert not is_flicker(4, 5, 0, 20, False, True, False, settings)


# -- graph edits ------------------------------------------------------------------------------
def division_graph() -> tuple[nx.DiGraph, lineage.Division]:
    """Mother 1 (nodes 0, 1) divides at t = 2 into 2 (nodes 2, 4) and 3 (node 3)."""
    graph = nx.DiGraph()
    for node, (t, label) in enumerate([(0, 1), (1, 1), (2, 2), (2, 3), (3, 2)]):
        graph.add_node(node, t=t, label=label)
    graph.add_edges_from([(0, 1), (1, 2), (1, 3), (2, 4)])
    return graph, lineage.Division(t=2, mother=1, mother_node=1, daughters=[2, 3])


def test_chain_and_persistence_of_daughters():
    graph, _ = division_graph()
    assert lineage.chain(graph, 0) == [0, 1] and lineage.chain(graph, 2) == [2, 4]
    assert lineage.persists(graph, 1, 2, until=3)
    assert not lineage.persists(graph, 1, 3, until=3)


def test_unconfirmed_division_rejoins_the_mother():
    graph, division = division_graph()
    lineage.disown(graph, division.mother_node, 3)
    lineage.rejoin_mother(graph, division, 2)
    assert [graph.nodes[n]["label"] for n in (0, 1, 2, 4)] == [1, 1, 1, 1]
    assert graph.in_degree(3) == 0 and graph.nodes[3]["label"] == 3


def test_drop_track_removes_its_nodes():
    graph, _ = division_graph()
    lineage.drop_track(graph, 2)
    assert sorted(graph.nodes) == [0, 1, 3]


def _discs(shape, *discs):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    out = np.zeros(shape, bool)
    for cy, cx, r in discs:
        out |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return out


def test_split_mother_cuts_a_waisted_mother_at_its_waist_and_keeps_every_pixel():
    mother = _discs((40, 60), (20, 22, 8), (20, 36, 8))
    mother[2, 2] = True  # a stray pixel apart from the rest: still handed to a part
    daughters = [_discs((40, 60), (20, 18, 7)), _discs((40, 60), (20, 40, 7))]
    parts = split_mother(mother, daughters, DEFAULT)
    assert parts is not None
    assert not (parts[0] & parts[1]).any() and np.array_equal(parts[0] | parts[1], mother)
    assert parts[0][20, 22] and parts[1][20, 36] and parts[0][2, 2]
    assert abs(parts[0].sum() - parts[1].sum()) < 0.1 * mother.sum()


def test_split_mother_keeps_convex_mothers_lopsided_cuts_and_the_off_switch():
    daughters = [_discs((40, 60), (20, 18, 7)), _discs((40, 60), (20, 40, 7))]
    assert split_mother(_discs((40, 60), (20, 29, 12)), daughters, DEFAULT) is None
    waisted = _discs((40, 60), (20, 22, 8), (20, 36, 8))
    assert split_mother(waisted, daughters, TrackSettings(division_split_solidity=0)) is None
    # a small bud beside a large cell: the cut would leave a part under division_balance
    lopsided = _discs((40, 60), (20, 22, 12), (20, 37, 3))
    assert split_mother(lopsided, daughters, DEFAULT) is None
