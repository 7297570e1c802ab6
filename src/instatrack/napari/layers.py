"""Layer data <-> instatrack's track graph, without napari: what the reader and writers share.

A napari ``Tracks`` layer holds rows ``[track_id, t, y, x]`` and a ``graph``
``{child track: [parent track]}``; a ``Labels`` layer ``(T, Y, X)`` holds track
ids. :func:`graph_from_labels` rebuilds instatrack's graph (nodes ``t, label,
y, x, area``) from the two, which is all a CTC result or a GEFF needs.
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx
import numpy as np

LayerData = tuple[object, dict, str]


def graph_from_labels(frames: Iterable[np.ndarray], parents: dict[int, int] | None = None
                      ) -> nx.DiGraph:
    """Track graph of label frames ``(Y, X)`` whose values are track ids.

    Consecutive appearances of a label are joined by an edge (also across
    frames where it is missing); ``parents`` ``{track: parent track}`` adds an
    edge from the parent's last node before the child starts to the child's
    first node.
    """
    from scipy import ndimage as ndi

    graph = nx.DiGraph()
    nodes: dict[int, list[int]] = {}
    for t, frame in enumerate(frames):
        frame = np.asarray(frame)
        ids = np.unique(frame[frame > 0])
        if not len(ids):
            continue
        centres = ndi.center_of_mass(np.ones(frame.shape), frame, ids)
        areas = ndi.sum_labels(np.ones(frame.shape), frame, ids)
        for label, (y, x), area in zip(ids.tolist(), centres, areas, strict=True):
            node = graph.number_of_nodes()
            graph.add_node(node, t=t, label=label, y=float(y), x=float(x), area=int(area))
            if nodes.get(label):
                graph.add_edge(nodes[label][-1], node)
            nodes.setdefault(label, []).append(node)
    for child, parent in (parents or {}).items():
        if child in nodes and parent in nodes:
            start = graph.nodes[nodes[child][0]]["t"]
            before = [n for n in nodes[parent] if graph.nodes[n]["t"] < start]
            if before:
                graph.add_edge(before[-1], nodes[child][0])
    return graph


def parents_from_tracks_graph(links: dict | None) -> dict[int, int]:
    """``{child: parent}`` from a Tracks layer's ``graph`` ``{child: [parent, ...]}``."""
    parents = {}
    for child, before in (links or {}).items():
        before = [before] if np.isscalar(before) else list(before)
        if before:
            parents[int(child)] = int(before[0])
    return parents


def tracks_layer(graph: nx.DiGraph, name: str, **kwargs) -> LayerData | None:
    """A ``Tracks`` layer tuple of ``graph`` (lineage as the layer's ``graph``); None if empty."""
    from instatrack.track.export import to_napari

    if graph.number_of_nodes() == 0:
        return None
    data, links = to_napari(graph)
    return data, {"name": name, "graph": links, "tail_length": 10, **kwargs}, "tracks"


def result_layers(labels, graph: nx.DiGraph, name: str = "instatrack") -> list[LayerData]:
    """``Labels`` (+ ``Tracks``) layer tuples of a tracked sequence."""
    layers: list[LayerData] = [(labels, {"name": f"{name} labels"}, "labels")]
    tracks = tracks_layer(graph, f"{name} tracks")
    return layers + ([tracks] if tracks else [])
