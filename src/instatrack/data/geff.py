"""GEFF (graph exchange file format) track graphs, with their masks, and conversion to CTC.

GEFF is the zarr-based graph format that trackastra, ultrack, motile-tracker,
laptrack, TrackMate and traccuracy read and write. :func:`write_geff` stores
instatrack's track graph (see :mod:`instatrack.track.export`) in this layout::

    result.zarr/
      tracks/   the GEFF group: nodes (t, y, x, area, label, lineage) and edges
      masks/    optional (T, Y, X) uint32 labels; a node's ``label`` is its value there

``label`` is the track id, as in instatrack's masks and CTC results. The axes
``t, y, x`` are in frames and pixels; a :class:`Calibration` adds the physical
scale and units. ``lineage`` numbers the connected trees. ``label`` is
declared as the GEFF tracklet property when every track is a maximal
unbranched path (a bridged gap, a parent with one child, breaks that rule).

:func:`read_geff` reads any GEFF (also those written by other tools) back into
instatrack's graph, and :func:`geff_to_ctc` writes it as a CTC result folder
so that the CTC measures can score it. Needs the ``[geff]`` extra.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import networkx as nx
import numpy as np

from instatrack.errors import DataError, require

GEFF_GROUP = "tracks"
MASKS = "masks"
#: node properties instatrack writes, in the order of the GEFF arrays
NODE_PROPS = ("t", "y", "x", "area", "label", "lineage")


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Physical size of a pixel and of a frame step (units as OME-NGFF names them).

    ``space_unit`` e.g. ``"micrometer"``, ``time_unit`` e.g. ``"minute"``; None
    keeps the axis in pixels / frames.
    """

    pixel_size: float = 1.0
    space_unit: str | None = None
    frame_interval: float = 1.0
    time_unit: str | None = None


@dataclasses.dataclass
class GeffTracks:
    """A GEFF read back: ``graph`` as instatrack builds it, and the masks if there are any.

    ``masks``: the related labels, a lazily read zarr array ``(T, ..., Y, X)``
    whose values are ``seg_ids`` (for instatrack's own files, the track ids),
    or None; ``metadata``: the file's :class:`geff_spec.GeffMetadata`.
    """

    graph: nx.DiGraph
    masks: object | None
    metadata: object
    seg_ids: dict[int, int] = dataclasses.field(default_factory=dict)

    def track_masks(self, t: int) -> np.ndarray:
        """Frame ``t`` of the masks, ``(Y, X)`` int32, its values changed to track ids.

        Objects that no node of frame ``t`` names become background.
        """
        if self.masks is None:
            raise DataError("this GEFF has no masks (no related 'labels' object)")
        frame = np.asarray(self.masks[t])
        while frame.ndim > 2 and frame.shape[0] == 1:
            frame = frame[0]
        if frame.ndim != 2:
            raise DataError(f"masks frame {t}: expected (Y, X) after dropping singleton axes, "
                            f"got {frame.shape}")
        table = np.zeros(int(frame.max()) + 1, np.int32)
        for node, seg in self._by_frame().get(t, ()):
            if 0 < seg < len(table):
                table[seg] = self.graph.nodes[node]["label"]
        return table[frame]

    def _by_frame(self) -> dict[int, list[tuple[int, int]]]:
        if not hasattr(self, "_frames"):
            self._frames: dict[int, list[tuple[int, int]]] = {}
            for node, seg in self.seg_ids.items():
                self._frames.setdefault(self.graph.nodes[node]["t"], []).append((node, seg))
        return self._frames


# -- rules over the graph ----------------------------------------------------------------------
def lineage_ids(graph: nx.DiGraph) -> dict[int, int]:
    """``{node: lineage}``: connected trees numbered 1, 2, ... by their earliest node."""
    trees = sorted(nx.weakly_connected_components(graph),
                   key=lambda nodes: min((graph.nodes[n]["t"], n) for n in nodes))
    return {node: i for i, nodes in enumerate(trees, start=1) for node in nodes}


def labels_are_tracklets(graph: nx.DiGraph) -> bool:
    """Whether each ``label`` is a maximal unbranched path, as GEFF defines a tracklet.

    True unless an edge joins two labels although neither end branches (the
    CTC encoding of a bridged gap), or one label is not a single chain.
    """
    for u, v in graph.edges:
        same = graph.nodes[u]["label"] == graph.nodes[v]["label"]
        unbranched = graph.out_degree(u) == 1 and graph.in_degree(v) == 1
        if same != unbranched:
            return False
    return True


def tracklets(graph: nx.DiGraph) -> dict[int, int]:
    """``{node: tracklet}`` for a graph without track ids: maximal unbranched paths.

    An edge continues a tracklet when its source has one successor and its
    target one predecessor. Tracklets are numbered 1, 2, ... in order of their
    first node's ``(t, node)``.
    """
    starts = [n for n in graph if not _continues(graph, n)]
    starts.sort(key=lambda n: (graph.nodes[n]["t"], n))
    ids = {}
    for i, start in enumerate(starts, start=1):
        node = start
        while True:
            ids[node] = i
            following = list(graph.successors(node))
            if len(following) != 1 or not _continues(graph, following[0]):
                break
            node = following[0]
    return ids


def _continues(graph: nx.DiGraph, node: int) -> bool:
    """Whether ``node`` continues the tracklet of its predecessor."""
    before = list(graph.predecessors(node))
    return len(before) == 1 and graph.out_degree(before[0]) == 1


# -- writing -----------------------------------------------------------------------------------
class GeffWriter:
    """Stream a GEFF result: ``write(t, labels)`` per frame (the masks), then ``finish(graph)``.

    ``path``: the top-level zarr folder (``result.zarr``), new or empty unless
    ``overwrite``; ``n_frames`` sizes the masks array, indexed by the nodes'
    ``t`` (a sequence whose frame numbers start at ``k`` leaves ``0..k-1``
    empty). ``masks=False`` writes the graph only. The folder fills as frames
    come; write into a staging folder (:class:`~instatrack.data.output.Outputs`)
    for a result that appears only when complete.
    """

    def __init__(self, path: str | Path, n_frames: int, masks: bool = True,
                 calibration: Calibration | None = None, overwrite: bool = False):
        self.path = Path(path)
        self.n_frames = n_frames
        self.masks = masks
        self.calibration = calibration or Calibration()
        holds = self.path.is_file() or (self.path.is_dir() and any(self.path.iterdir()))
        if holds and not overwrite:
            raise DataError(f"{self.path}: already exists and is not empty; choose a new "
                            f"output path")
        self._root = None
        self._array = None

    def write(self, t: int, labels: np.ndarray) -> None:
        """Store frame ``t`` (``(Y, X)`` track ids) in ``masks``."""
        if not self.masks:
            return
        labels = np.asarray(labels)
        if labels.ndim != 2:
            raise DataError(f"frame {t}: labels must be 2D (Y, X), got shape {labels.shape}")
        if self._array is None:
            self._array = self._group().create_array(
                MASKS, shape=(self.n_frames, *labels.shape), chunks=(1, *labels.shape),
                dtype="uint32", fill_value=0, overwrite=True)
            self._array.attrs["axes"] = ["t", "y", "x"]
        if not 0 <= t < self._array.shape[0]:
            raise DataError(f"frame {t} out of range 0..{self._array.shape[0] - 1}")
        self._array[t] = labels.astype(np.uint32)

    def read(self, t: int) -> np.ndarray:
        """Frame ``t`` of the masks written so far, ``(Y, X)``."""
        if self._array is None:
            raise ValueError("no masks written yet")
        return np.asarray(self._array[t])

    def finish(self, graph: nx.DiGraph) -> Path:
        """Write the GEFF group ``tracks``; returns its path."""
        self._group()
        return write_geff_graph(self.path / GEFF_GROUP, graph, self.calibration,
                                masks=f"../{MASKS}" if self._array is not None else None)

    def _group(self):
        if self._root is None:
            zarr = require("zarr", "geff")
            self._root = zarr.open_group(str(self.path), mode="w", zarr_format=2)
        return self._root


def write_geff(path: str | Path, graph: nx.DiGraph, labels: Sequence[np.ndarray] | None = None,
               calibration: Calibration | None = None, overwrite: bool = False) -> Path:
    """Write ``graph`` (and the ``(T, Y, X)`` ``labels``, if given) to ``path``; see module doc.

    ``labels``: an array ``(T, Y, X)`` or a sequence of frames, read one at a
    time. Returns the path of the GEFF group (``path/tracks``), the one to give
    to ``geff.read``.
    """
    writer = GeffWriter(path, 0 if labels is None else len(labels), masks=labels is not None,
                        calibration=calibration, overwrite=overwrite)
    for t, frame in enumerate(() if labels is None else labels):
        writer.write(t, frame)
    return writer.finish(graph)


def write_geff_graph(group: str | Path, graph: nx.DiGraph, calibration: Calibration,
                     masks: str | None = None) -> Path:
    """Write the GEFF group itself; ``masks`` is the labels' path relative to it."""
    geff = require("geff", "geff")
    from geff_spec import GeffMetadata, RelatedObject

    lineage = lineage_ids(graph)
    out = nx.DiGraph()
    for node, data in graph.nodes(data=True):
        out.add_node(int(node), t=int(data["t"]), y=float(data["y"]), x=float(data["x"]),
                     area=int(data.get("area", 0)), label=int(data["label"]),
                     lineage=lineage[node])
    out.add_edges_from((int(u), int(v)) for u, v in graph.edges)
    track_props = {"lineage": "lineage"}
    if labels_are_tracklets(graph):
        track_props["tracklet"] = "label"
    metadata = GeffMetadata(
        geff_version=geff.__version__, directed=True, axes=_axes(calibration),
        node_props_metadata={}, edge_props_metadata={}, track_node_props=track_props,
        related_objects=None if masks is None else [
            RelatedObject(type="labels", path=masks, node_prop="label")],
        extra={"instatrack": {"track_id": "label", "version": _version()}},
    )
    geff.write(out, str(group), metadata=metadata, overwrite=True)
    return Path(group)


def _axes(calibration: Calibration) -> list:
    from geff_spec import Axis

    time = dict(scale=calibration.frame_interval, scaled_unit=calibration.time_unit) \
        if calibration.time_unit else {}
    space = dict(scale=calibration.pixel_size, scaled_unit=calibration.space_unit) \
        if calibration.space_unit else {}
    return [Axis(name="t", type="time", unit="frame", **time),
            Axis(name="y", type="space", unit="pixel", **space),
            Axis(name="x", type="space", unit="pixel", **space)]


def _version() -> str:
    from instatrack import __version__

    return __version__


# -- reading -----------------------------------------------------------------------------------
def is_geff(path: str | Path) -> bool:
    """Whether ``path`` is a GEFF group or a zarr folder holding one (:func:`find_geff_group`)."""
    try:
        find_geff_group(path)
    except DataError:
        return False
    return True


def find_geff_group(path: str | Path) -> Path:
    """The GEFF group at ``path``, in ``path/tracks`` or the one child group of ``path`` that is
    a GEFF (e.g. ``tracks.geff``); DataError if there is none."""
    path = Path(path)
    for group in (path, path / GEFF_GROUP):
        if _has_geff_attrs(group):
            return group
    children = sorted(p for p in path.iterdir() if _has_geff_attrs(p)) if path.is_dir() else []
    if len(children) == 1:
        return children[0]
    if children:
        names = ", ".join(p.name for p in children)
        raise DataError(f"{path}: holds several GEFF groups ({names}); give one of them")
    raise DataError(f"{path}: not a GEFF (no geff metadata in it or in a group inside it)")


def _has_geff_attrs(group: Path) -> bool:
    v2 = _json(group / ".zattrs")
    v3 = _json(group / "zarr.json").get("attributes", {})
    return "geff" in v2 or "geff" in v3


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def read_geff(path: str | Path, validate: bool = True) -> GeffTracks:
    """Read a GEFF into instatrack's graph (node attributes ``t, label, y, x, area``).

    ``label`` (the track id) is, in order of preference: the property named by
    instatrack's own metadata, the file's declared tracklet property, or the
    maximal unbranched paths of the graph (:func:`tracklets`). The masks (a
    related ``labels`` object) are opened lazily; :meth:`GeffTracks.track_masks`
    gives one frame with track ids.
    """
    geff = require("geff", "geff")
    group = find_geff_group(path)
    try:
        raw, metadata = geff.read(str(group), structure_validation=validate)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise DataError(f"{group}: invalid GEFF ({err})") from None
    if not raw.is_directed():
        raise DataError(f"{group}: the graph is undirected; tracks need directed edges")
    t_name, y_name, x_name = _axis_names(metadata, group)
    track_prop = _track_prop(metadata)
    seg_prop = _seg_prop(metadata)
    for node, data in raw.nodes(data=True):
        if t_name not in data:
            raise DataError(f"{group}: node {node} has no {t_name!r} property")
        data["t"] = int(round(data[t_name]))
    ids = tracklets(raw) if track_prop is None else None
    graph, seg_ids = nx.DiGraph(), {}
    for node, data in raw.nodes(data=True):
        label = ids[node] if ids is not None else data.get(track_prop)
        if label is None:
            raise DataError(f"{group}: node {node} has no track id {track_prop!r}")
        graph.add_node(node, t=data["t"], label=int(label), y=float(data.get(y_name, np.nan)),
                       x=float(data.get(x_name, np.nan)), area=int(data.get("area", 0)))
        if seg_prop is not None and data.get(seg_prop) is not None:
            seg_ids[node] = int(data[seg_prop])
    graph.add_edges_from(raw.edges)
    return GeffTracks(graph=graph, masks=_open_masks(group, metadata), metadata=metadata,
                      seg_ids=seg_ids)


def _axis_names(metadata, group: Path) -> tuple[str, str, str]:
    axes = metadata.axes or []
    time = [a.name for a in axes if a.type == "time"] or ["t"]
    space = [a.name for a in axes if a.type == "space"] or ["y", "x"]
    if len(space) > 2:
        raise DataError(f"{group}: {len(space)} spatial axes; instatrack handles 2D (y, x)")
    if len(space) < 2:
        raise DataError(f"{group}: need two spatial axes (y, x), found {space}")
    return time[0], space[0], space[1]


def _track_prop(metadata) -> str | None:
    own = (metadata.extra or {}).get("instatrack", {}).get("track_id")
    return own or (metadata.track_node_props or {}).get("tracklet")


def _seg_prop(metadata) -> str | None:
    for obj in metadata.related_objects or []:
        if obj.type == "labels":
            return obj.node_prop or obj.label_prop
    return None


def _open_masks(group: Path, metadata):
    labels = [o for o in metadata.related_objects or [] if o.type == "labels"]
    if not labels:
        return None
    import zarr

    location = (group / labels[0].path).resolve()
    try:
        return zarr.open_array(str(location), mode="r")
    except Exception as err:  # zarr raises several kinds for a missing or broken array
        raise DataError(f"{group}: cannot open its labels {location} ({err})") from None


def geff_to_ctc(path: str | Path, res_dir: str | Path, first_frame: int = 0) -> Path:
    """Write the GEFF at ``path`` (graph + masks) as a CTC result folder; returns ``res_dir``.

    Frame ``t`` of the masks becomes ``maskTTT.tif``, from ``first_frame`` on:
    a sequence tracked from frame ``k`` has empty masks before ``k``, which a
    ground truth starting at ``k`` does not want. Reads one frame of masks at
    a time. Tracks with gaps are split as CTC requires (see
    :class:`~instatrack.track.export.CTCWriter`).
    """
    from instatrack.track.export import write_ctc_result

    tracks = read_geff(path)
    if tracks.masks is None:
        raise DataError(f"{path}: this GEFF has no masks; the CTC measures need them")
    n_frames = tracks.masks.shape[0]
    outside = sorted(t for _, t in tracks.graph.nodes(data="t") if not first_frame <= t < n_frames)
    if outside:
        raise DataError(f"{path}: has objects in frame {outside[0]}; the masks hold frames "
                        f"0..{n_frames - 1}, written from frame {first_frame} on")
    frames = ((t, tracks.track_masks(t)) for t in range(first_frame, n_frames))
    return write_ctc_result(res_dir, frames, tracks.graph, last_frame=max(n_frames - 1, 0))
