"""Track graph -> CTC result folder, napari tracks, CSV table.

The graph is the one built by :class:`~instatrack.track.link.Tracker`: integer
nodes with attributes ``t``, ``label`` (track id), ``y``, ``x``, ``area``;
edges join consecutive nodes of a track and a parent's last node to a child's
first node (division or bridged gap). Every export is derived from the graph,
the single truth; file names and the track-file writer are those of
:mod:`instatrack.data.ctc`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path

import networkx as nx
import numpy as np

from instatrack.data.ctc import (
    MASK_PREFIX,
    RES_TRACK_FILE,
    file_name,
    frame_digits,
    read_mask,
    write_mask,
    write_track_table,
)

Row = tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class CTCTrack:
    """One row of ``res_track.txt`` and the graph track it comes from.

    CTC requires a track to be present in every frame from ``begin`` to
    ``end``. A graph track absent in some frames (tracked windows: an object
    lost and found again) becomes several CTC tracks; the first keeps the
    graph's ``label`` as ``ctc_id``, each later one gets a fresh id and the
    previous piece as ``parent``.
    """

    ctc_id: int
    label: int
    begin: int
    end: int
    parent: int  # ctc id, 0 = none

    @property
    def row(self) -> Row:
        return self.ctc_id, self.begin, self.end, self.parent


def track_parents(graph: nx.DiGraph) -> dict[int, int]:
    """``{track id: parent track id or 0}`` for every track of ``graph``."""
    return {label: parent for label, (_, parent, _) in _track_starts(graph).items()}


def ctc_tracks(graph: nx.DiGraph) -> list[CTCTrack]:
    """The CTC tracks of ``graph``, sorted by ``ctc_id`` (see :class:`CTCTrack`)."""
    times: dict[int, list[int]] = {}
    for _, data in graph.nodes(data=True):
        times.setdefault(int(data["label"]), []).append(int(data["t"]))
    runs = {label: _runs(sorted(ts)) for label, ts in times.items()}
    fresh = max(runs, default=0)
    ids: dict[tuple[int, int], int] = {}  # (label, run begin) -> ctc id
    for begin, label in sorted((b, label) for label, rs in runs.items() for b, _ in rs[1:]):
        fresh += 1
        ids[label, begin] = fresh
    starts = _track_starts(graph)
    tracks = []
    for label, label_runs in runs.items():
        for k, (begin, end) in enumerate(label_runs):
            if k == 0:
                ctc_id = label
                _, parent_label, parent_t = starts[label]
                parent = _run_id(runs, ids, parent_label, parent_t) if parent_label else 0
            else:
                ctc_id = ids[label, begin]
                parent = ids.get((label, label_runs[k - 1][0]), label)
            tracks.append(CTCTrack(ctc_id, label, begin, end, parent))
    return sorted(tracks, key=lambda track: track.ctc_id)


def graph_to_ctc_table(graph: nx.DiGraph) -> list[Row]:
    """CTC ``res_track.txt`` rows ``(L, B, E, P)`` of :func:`ctc_tracks`, sorted by ``L``."""
    return [track.row for track in ctc_tracks(graph)]


def shift_frames(graph: nx.DiGraph, first_frame: int) -> nx.DiGraph:
    """A copy of ``graph`` whose node times are frame numbers: stream index + ``first_frame``."""
    shifted = graph.copy()
    if first_frame:
        for _, data in shifted.nodes(data=True):
            data["t"] = int(data["t"]) + first_frame
    return shifted


class CTCWriter:
    """Stream a CTC result folder: ``write(t, labels)`` per frame, then ``finish(graph)``.

    ``t`` is the frame number the mask is named by. ``last_frame``, when known,
    fixes the width of the numbers (:func:`~instatrack.data.ctc.frame_digits`);
    without it the masks written so far are renamed when a wider number comes.
    Masks are written as they come, with the graph's track ids; ``finish``
    derives the CTC tracks from the graph (:func:`ctc_tracks`), relabels the
    frames of tracks that were split at a gap and writes ``res_track.txt``.
    """

    def __init__(self, res_dir: str | Path, last_frame: int | None = None):
        self.res_dir = Path(res_dir)
        self.res_dir.mkdir(parents=True, exist_ok=True)
        self.last_frame = last_frame
        self.digits = frame_digits(last_frame if last_frame is not None else 0)
        self.written: dict[int, Path] = {}  # frame number -> mask file

    def write(self, t: int, labels: np.ndarray) -> Path:
        """Write ``maskTTT.tif`` of frame ``t`` (labels ``(Y, X)``, track ids)."""
        if t < 0 or (self.last_frame is not None and t > self.last_frame):
            raise ValueError(f"frame {t} is outside 0..{self.last_frame}, the frames this "
                             f"CTCWriter was made for")
        if t in self.written:
            raise ValueError(f"frame {t} was already written")
        if frame_digits(t) > self.digits:
            self._widen(frame_digits(t))
        self.written[t] = write_mask(self.res_dir, t, labels, digits=self.digits)
        return self.written[t]

    def read(self, t: int) -> np.ndarray:
        """The mask of frame ``t`` as written (after :meth:`finish`, with the CTC ids)."""
        return read_mask(self.written[t])

    def finish(self, graph: nx.DiGraph) -> Path:
        """Relabel split tracks in the masks and write ``res_track.txt``; returns its path."""
        tracks = ctc_tracks(graph)
        unwritten = sorted({int(d["t"]) for _, d in graph.nodes(data=True)} - set(self.written))
        if unwritten:
            raise ValueError(f"the graph has objects in frame {unwritten[0]}, which was not "
                             f"written")
        renamed: dict[int, dict[int, int]] = {}  # frame -> {graph label: ctc id}
        for track in tracks:
            if track.ctc_id != track.label:
                for t in range(track.begin, track.end + 1):
                    renamed.setdefault(t, {})[track.label] = track.ctc_id
        for t, lut in sorted(renamed.items()):
            mask = read_mask(self.written[t]).astype(np.int64)
            table = np.arange(max(int(mask.max()), max(lut)) + 1)
            table[list(lut)] = list(lut.values())
            write_mask(self.res_dir, t, table[mask], digits=self.digits)
        return write_track_table(self.res_dir / RES_TRACK_FILE, [t.row for t in tracks])

    def _widen(self, digits: int) -> None:
        for t, path in self.written.items():
            self.written[t] = path.rename(path.with_name(file_name(MASK_PREFIX, t, digits)))
        self.digits = digits


def write_ctc_result(res_dir: str | Path, frames: Iterable[tuple[int, np.ndarray]],
                     graph: nx.DiGraph, last_frame: int | None = None) -> Path:
    """Write ``maskTTT.tif`` (uint16) for each ``(t, labels (Y, X))`` and ``res_track.txt``.

    ``frames`` is consumed lazily, one frame at a time; ``t`` is the frame
    number. ``last_frame``: see :class:`CTCWriter`. Tracks with gaps are split
    as CTC requires (see :class:`CTCTrack`). Returns ``res_dir``.
    """
    writer = CTCWriter(res_dir, last_frame)
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


def _track_starts(graph: nx.DiGraph) -> dict[int, tuple[int, int, int]]:
    """``{track id: (first node, parent track id or 0, parent node's t or -1)}``."""
    first: dict[int, tuple[int, int]] = {}
    for node, data in graph.nodes(data=True):
        label, t = int(data["label"]), int(data["t"])
        if label not in first or t < first[label][0]:
            first[label] = (t, node)
    starts = {}
    for label, (_, node) in first.items():
        before = [p for p in graph.predecessors(node) if graph.nodes[p]["label"] != label]
        if before:
            parent = graph.nodes[before[0]]
            starts[label] = (node, int(parent["label"]), int(parent["t"]))
        else:
            starts[label] = (node, 0, -1)
    return starts


def _runs(times: list[int]) -> list[tuple[int, int]]:
    """``[(begin, end)]`` of the runs of consecutive frames in sorted ``times``."""
    runs: list[list[int]] = []
    for t in times:
        if runs and t == runs[-1][1] + 1:
            runs[-1][1] = t
        elif not runs or t > runs[-1][1]:
            runs.append([t, t])
    return [(b, e) for b, e in runs]


def _run_id(runs: dict[int, list[tuple[int, int]]], ids: dict[tuple[int, int], int],
            label: int, t: int) -> int:
    """CTC id of the piece of track ``label`` that holds frame ``t`` (or ends last before it)."""
    before = [(b, e) for b, e in runs.get(label, []) if b <= t]
    if not before:
        return 0
    begin = before[-1][0]
    return label if begin == runs[label][0][0] else ids[label, begin]
