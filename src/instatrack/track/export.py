"""Track graph -> CTC result folder, napari tracks, CSV table.

The graph is the one built by :class:`~instatrack.track.link.Tracker`: integer
nodes with attributes ``t``, ``label`` (track id), ``y``, ``x``, ``area``;
edges join consecutive nodes of a track and a parent's last node to a child's
first node (division or bridged gap).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

import networkx as nx
import numpy as np

Row = tuple[int, int, int, int]


def track_parents(graph: nx.DiGraph) -> dict[int, int]:
    """``{track id: parent track id or 0}`` for every track of ``graph``."""
    first = _first_nodes(graph)
    parents = {}
    for label, node in first.items():
        before = [graph.nodes[p]["label"] for p in graph.predecessors(node)]
        before = [p for p in before if p != label]
        parents[label] = int(before[0]) if before else 0
    return parents


def graph_to_ctc_table(graph: nx.DiGraph) -> list[Row]:
    """CTC ``res_track.txt`` rows ``(L, B, E, P)``, sorted by ``L``.

    ``L`` track id, ``B``/``E`` first/last frame, ``P`` parent track (0 = none).
    A track must be present in every frame of ``[B, E]`` in the masks (the
    :class:`~instatrack.track.link.Tracker` guarantees it for untracked windows).
    """
    spans: dict[int, list[int]] = {}
    for _, data in graph.nodes(data=True):
        label, t = int(data["label"]), int(data["t"])
        span = spans.setdefault(label, [t, t])
        span[0], span[1] = min(span[0], t), max(span[1], t)
    parents = track_parents(graph)
    return [(label, b, e, parents[label]) for label, (b, e) in sorted(spans.items())]


class CTCWriter:
    """Stream a CTC result folder: ``write(t, labels)`` per frame, then ``finish(graph)``.

    CTC requires a track to be present in every frame from its first to its
    last. Tracked windows (an object lost in some frames and found again, as
    in semi-supervised propagation) can break that; then each reappearance
    becomes a new track whose parent is the previous piece and the masks are
    relabelled on the fly. Labels of the Tracker's own (untracked) output
    never have gaps and pass unchanged.
    """

    def __init__(self, res_dir: str | Path, digits: int = 3):
        self.res_dir = Path(res_dir)
        self.res_dir.mkdir(parents=True, exist_ok=True)
        self.digits = digits
        self._pieces: dict[int, list[list[int]]] = {}  # label -> [[ctc id, begin, end, parent]]
        self._used: set[int] = set()

    def write(self, t: int, labels: np.ndarray) -> Path:
        """Write ``maskTTT.tif`` of frame ``t`` (labels ``(Y, X)``, track ids)."""
        from instatrack.data.ctc import write_mask

        if t >= 10 ** self.digits:
            raise ValueError(f"frame {t} does not fit in {self.digits} digits; pass digits=4")
        labels = np.asarray(labels)
        present = np.unique(labels[labels > 0])
        lut = {}
        for label in (int(v) for v in present):
            pieces = self._pieces.setdefault(label, [])
            if pieces and pieces[-1][2] == t - 1:
                pieces[-1][2] = t
            else:
                parent = pieces[-1][0] if pieces else 0
                ctc_id = label if label not in self._used else self._fresh_id()
                self._used.add(ctc_id)
                pieces.append([ctc_id, t, t, parent])
            if pieces[-1][0] != label:
                lut[label] = pieces[-1][0]
        if lut:
            table = np.arange(int(labels.max()) + 1)
            for label, ctc_id in lut.items():
                table[label] = ctc_id
            labels = table[labels]
        return write_mask(self.res_dir, t, labels, digits=self.digits)

    def finish(self, graph: nx.DiGraph) -> Path:
        """Write ``res_track.txt``; parents of first pieces come from ``graph``."""
        from instatrack.data.ctc import write_track_table

        parents = track_parents(graph)
        rows = []
        for label, pieces in self._pieces.items():
            for ctc_id, begin, end, parent in pieces:
                if not parent and parents.get(label):
                    parent = self._piece_before(parents[label], begin)
                rows.append((ctc_id, begin, end, parent))
        return write_track_table(self.res_dir / "res_track.txt", sorted(rows))

    def _piece_before(self, label: int, t: int) -> int:
        """CTC id of the last piece of track ``label`` that began before frame ``t``."""
        before = [p for p in self._pieces.get(label, []) if p[1] < t]
        return before[-1][0] if before else 0

    def _fresh_id(self) -> int:
        return max(max(self._used, default=0), max(self._pieces, default=0)) + 1


def write_ctc_result(res_dir: str | Path, frames: Iterable[tuple[int, np.ndarray]],
                     graph: nx.DiGraph, digits: int | None = None) -> Path:
    """Write ``maskTTT.tif`` (uint16) for each ``(t, labels (Y, X))`` and ``res_track.txt``.

    ``frames`` is consumed lazily, one frame at a time. ``digits`` of the frame
    numbers defaults to 3, or 4 when the graph reaches frame 1000. Tracks with
    gaps are split as CTC requires (see :class:`CTCWriter`). Returns ``res_dir``.
    """
    if digits is None:
        last = max((int(d["t"]) for _, d in graph.nodes(data=True)), default=0)
        digits = 4 if last >= 1000 else 3
    writer = CTCWriter(res_dir, digits)
    for t, labels in frames:
        writer.write(t, labels)
    writer.finish(graph)
    return writer.res_dir


def to_napari(graph: nx.DiGraph) -> tuple[np.ndarray, dict[int, list[int]]]:
    """napari ``Tracks`` layer data.

    Returns ``tracks`` ``(N, 4)`` float rows ``[track_id, t, y, x]`` sorted by
    track then time, and ``graph_dict`` ``{child track: [parent track]}``.
    """
    rows = sorted((d["label"], d["t"], d["y"], d["x"]) for _, d in graph.nodes(data=True))
    tracks = np.asarray(rows, dtype=float).reshape(-1, 4)
    links = {child: [parent] for child, parent in track_parents(graph).items() if parent}
    return tracks, links


def write_napari(out_dir: str | Path, graph: nx.DiGraph) -> tuple[Path, Path]:
    """Write :func:`to_napari` as ``napari_tracks.csv`` and ``napari_graph.json``.

    Load in napari with ``np.loadtxt(csv, delimiter=",", skiprows=1)`` and
    ``{int(k): v for k, v in json.load(f).items()}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tracks, links = to_napari(graph)
    table = out_dir / "napari_tracks.csv"
    np.savetxt(table, tracks, delimiter=",", header="track_id,t,y,x", comments="",
               fmt=["%d", "%d", "%.2f", "%.2f"])
    lineage = out_dir / "napari_graph.json"
    lineage.write_text(json.dumps({str(k): v for k, v in sorted(links.items())}) + "\n")
    return table, lineage


def write_tracks_csv(path: str | Path, graph: nx.DiGraph) -> Path:
    """One row per node: ``track_id, t, y, x, area, parent_track`` (0 = none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parents = track_parents(graph)
    rows = sorted((d["label"], d["t"], d["y"], d["x"], d["area"])
                  for _, d in graph.nodes(data=True))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["track_id", "t", "y", "x", "area", "parent_track"])
        for label, t, y, x, area in rows:
            writer.writerow([label, t, f"{y:.2f}", f"{x:.2f}", area, parents[label]])
    return path


def _first_nodes(graph: nx.DiGraph) -> dict[int, int]:
    first: dict[int, tuple[int, int]] = {}
    for node, data in graph.nodes(data=True):
        label, t = int(data["label"]), int(data["t"])
        if label not in first or t < first[label][0]:
            first[label] = (t, node)
    return {label: node for label, (_, node) in first.items()}
