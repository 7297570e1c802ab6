"""Edits of the track graph that the tracker makes once later frames have spoken.

The graph is a :class:`networkx.DiGraph` as described in :mod:`instatrack.track`:
one node per object per frame with ``t``, ``label`` (track id), ``y``, ``x``,
``area``; edges join consecutive nodes of a track and a parent's last node to
each child's first node. These functions walk and change it; they know
nothing of frames or settings.
"""

from __future__ import annotations

import dataclasses

import networkx as nx


@dataclasses.dataclass
class Division:
    """A division found in frame ``t`` that waits for its daughters to persist."""

    t: int
    mother: int  # track id
    mother_node: int  # the mother's last node
    daughters: list[int]  # track ids


def chain(graph: nx.DiGraph, first: int) -> list[int]:
    """``first`` and the nodes of the same track after it, in time order."""
    label = graph.nodes[first]["label"]
    nodes = [first]
    while True:
        same = [n for n in graph.successors(nodes[-1]) if graph.nodes[n]["label"] == label]
        if not same:
            return nodes
        nodes.append(same[0])


def daughter_start(graph: nx.DiGraph, mother_node: int, track: int) -> int:
    """The first node of the daughter track ``track`` of ``mother_node``."""
    return next(n for n in graph.successors(mother_node) if graph.nodes[n]["label"] == track)


def persists(graph: nx.DiGraph, mother_node: int, track: int, until: int) -> bool:
    """Whether daughter ``track`` is seen in frame ``until`` or ended in a division or gap."""
    last = chain(graph, daughter_start(graph, mother_node, track))[-1]
    return graph.nodes[last]["t"] >= until or any(True for _ in graph.successors(last))


def disown(graph: nx.DiGraph, mother_node: int, track: int) -> None:
    """Cut daughter ``track`` from its mother: it becomes a track without a parent."""
    graph.remove_edge(mother_node, daughter_start(graph, mother_node, track))


def rejoin_mother(graph: nx.DiGraph, division: Division, track: int) -> None:
    """Give the nodes of the one daughter ``track`` left of a division the mother's id."""
    for node in chain(graph, daughter_start(graph, division.mother_node, track)):
        graph.nodes[node]["label"] = division.mother


def drop_track(graph: nx.DiGraph, first: int) -> None:
    """Remove the track that starts at node ``first``."""
    graph.remove_nodes_from(chain(graph, first))


def hand_down(graph: nx.DiGraph, division: Division, parent: int,
              parts: list[tuple[int, int, float, float]]) -> None:
    """The mother's last node becomes its daughters' first nodes: ``parts`` are
    ``(node id, area, y, x)``, one per daughter in ``division.daughters``' order, in the
    mother's last frame, each joined to ``parent`` (the mother's node before) and to the
    daughter's node after. The division then happens a frame earlier, at ``parent``."""
    node = division.mother_node
    t = graph.nodes[node]["t"]
    firsts = [daughter_start(graph, node, track) for track in division.daughters]
    graph.remove_node(node)
    for (new, area, y, x), first, track in zip(parts, firsts, division.daughters, strict=True):
        graph.add_node(new, t=t, label=track, y=y, x=x, area=area)
        graph.add_edge(parent, new)
        graph.add_edge(new, first)
    division.mother_node, division.t = parent, t
