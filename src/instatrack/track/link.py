"""Streaming linker: windows of instance labels -> tracked label frames + track graph.

A method yields :class:`~instatrack.methods.base.Window` objects. The
:class:`Tracker` turns them into final frames whose label values are track ids,
and grows a :class:`networkx.DiGraph` (see :mod:`instatrack.track`). It only
feeds frames through the rules of :mod:`instatrack.track.rules` and applies
the graph edits of :mod:`instatrack.track.lineage`; its settings are a
:class:`~instatrack.track.rules.TrackSettings` (a method's config is one).

Which labels become final: a frame is final as soon as a window brings it for
the first time. With overlapping pair windows ``(t-1, t)``, ``(t, t+1)``, ...
the final labels of frame ``t`` are those of the window that ends at ``t``
(its newest frame, produced with the most temporal context), and frame 0 comes
from the first window. The links ``t -> t+1`` come from the next window: its
instances are matched to the final instances of the shared frame ``t`` by IoU
(Hungarian, at least ``link_iou_threshold``), and an instance keeps its
identity inside a window. Windows that follow each other (``W = 1``) are
matched frame to frame by IoU instead. The objects no IoU link continued then
go through the rules: parents, divisions, gaps, distance (see
:mod:`~instatrack.track.rules`).

Divisions must persist: a division found in frame ``t`` stands only if at
least two daughters are still there (present, or ended in a division or a
gap of their own) ``division_min_frames - 1`` frames later. Otherwise the
daughters that vanished lose their parent (they stay as short parentless
tracks), and when exactly one daughter remains it takes the mother's id back:
the cell simply continued, and a flickering fragment beside it is not a
sister. When a division stands, the mother's object in the frame before it is cut
between the two daughters if it is two touching daughters kept as one
(``division_split_solidity``, :func:`~instatrack.track.rules.split_mother`): they then
start a frame earlier. Short tracks (``min_track_length``) are dropped from the frames and
the graph. So that these edits reach the frames, each frame is returned
:func:`~instatrack.track.rules.delay` frames after it is pushed (``finish()``
returns the rest); by default ``division_min_frames - 1`` plus one for the split.

Windows with ``tracked=True`` already carry identities: their label values are
kept verbatim as track ids, and an object that reappears after an absence is
linked to its previous node (no division search, no filtering).

Memory: only the final labels of the last few frames are kept.
"""

from __future__ import annotations

from collections import defaultdict

import networkx as nx
import numpy as np

from instatrack.labels import ObjectStats, label_stats, match_iou, relabel, remove_small
from instatrack.track import lineage
from instatrack.track.rules import (
    SPLIT_BACK_FRAMES,
    TrackSettings,
    delay,
    division_stands,
    find_parents,
    is_flicker,
    memory,
    nearest_lost,
    parent_kind,
    split_mother,
)


class Tracker:
    """Link a stream of windows into tracks; see the module docstring.

    ``push(window)`` returns the frames that became final, as a list of
    ``(t, labels)`` with ``labels`` ``(Y, X)`` int32 (value = track id);
    ``finish()`` returns what is left; ``graph`` is the track graph so far.
    """

    def __init__(self, settings: TrackSettings | None = None):
        self.settings = settings if settings is not None else TrackSettings()
        self.graph = nx.DiGraph()
        self._tracks = _Tracks()
        self._first_t: int | None = None
        self._last_t: int | None = None
        self._recent: dict[int, np.ndarray] = {}  # t -> final labels, last few frames
        self._waiting: dict[int, np.ndarray] = {}  # t -> labels not yet returned
        self._pending: list[lineage.Division] = []  # divisions not yet confirmed
        self._tracked_last: dict[int, int] = {}  # tracked windows: label -> last node
        self._finished = False

    @property
    def frames_in_memory(self) -> int:
        """How many label frames the tracker currently keeps."""
        return len(self._recent.keys() | self._waiting.keys())

    def push(self, window) -> list[tuple[int, np.ndarray]]:
        """Add one window; returns the ``(t, labels (Y, X) int32)`` frames that became final."""
        if self._finished:
            raise ValueError("this Tracker has finished its stream; start a new one")
        labels = _check_window(window, self._last_t)
        if window.tracked:
            return self._push_tracked(window.start, labels)
        start, min_area = window.start, self.settings.min_instance_area
        first_new = start if self._last_t is None else self._last_t + 1
        done = []
        mapping: dict[int, int] = {}
        for t in range(first_new, window.stop):
            local = remove_small(labels[t - start], min_area)
            if t == first_new and self._last_t is not None:
                # The shared frame when windows overlap, else the new frame itself.
                ref = local
                if start <= self._last_t:
                    ref = remove_small(labels[self._last_t - start], min_area)
                pairs, _ = match_iou(self._recent[self._last_t], ref,
                                     self.settings.link_iou_threshold)
                mapping = {int(b): int(a) for a, b in pairs}
            final, mapping = self._link_frame(t, local, mapping)
            self._waiting[t] = final
            mapping = self._confirm_divisions(t, mapping)
            done.extend(self._release(t - delay(self.settings)))
        return done

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """End of the stream: returns the frames still held back."""
        if self._finished:
            return []
        self._finished = True
        if self._last_t is not None:
            self._confirm_divisions(self._last_t, {}, final=True)
        done = self._release(None)
        self._recent.clear()
        self._tracks.forget()
        return done

    # -- one frame ----------------------------------------------------------
    def _link_frame(self, t: int, local: np.ndarray, mapping: dict[int, int]
                    ) -> tuple[np.ndarray, dict[int, int]]:
        """Give every object of ``local`` (window labels of frame ``t``) a track id.

        ``mapping``: ``{local label: track id in frame t-1}`` (IoU links).
        Returns the final labels ``(Y, X)`` int32 and ``{local label: track id}``.
        """
        tracks = self._tracks
        stats = label_stats(local)
        continuing = {a: mapping[a] for a in stats if mapping.get(a) in tracks.active}
        linked = set(continuing.values())
        for track, node in tracks.active.items():
            if track not in linked:
                tracks.ended[track] = (t - 1, node)
        new = [a for a in stats if a not in continuing]
        track_of, edges = self._resolve_new(t, new, continuing, stats, local)
        for a, track in continuing.items():
            if a not in track_of:
                track_of[a] = track
                edges.append((tracks.active[track], a))
        for a in new:
            if a not in track_of:
                track_of[a] = tracks.new()
        final = relabel(local, track_of)
        nodes = self._add_nodes(t, stats, track_of)
        self.graph.add_edges_from((src, nodes[a]) for src, a in edges)
        tracks.active = {track_of[a]: nodes[a] for a in stats}
        self._advance(t, final)
        return final, track_of

    def _resolve_new(self, t: int, new: list[int], continuing: dict[int, int],
                     stats: dict[int, ObjectStats], local: np.ndarray
                     ) -> tuple[dict[int, int], list[tuple[int, int]]]:
        """Divisions, continuations and gaps of the new objects of frame ``t``.

        Returns ``{local label: track id}`` for the objects decided and the
        edges ``(parent node, local label)`` to add.
        """
        tracks = self._tracks
        track_of: dict[int, int] = {}
        edges: list[tuple[int, int]] = []
        children: dict[int, list[tuple[float, int]]] = defaultdict(list)
        parents = find_parents(local, new, stats, self._recent, self._candidates(t, new),
                               self.settings)
        for a, (parent, score) in parents.items():
            children[parent].append((score, a))
        by_track = {track: a for a, track in continuing.items()}
        for parent, scored in children.items():
            kids = [a for _, a in sorted(scored, reverse=True)]
            own = by_track.get(parent)
            last_t, node = (t - 1, tracks.active[parent]) if own is not None \
                else tracks.ended[parent]
            kind, objects = parent_kind(t, last_t, self.graph.nodes[node]["area"], own, kids,
                                        stats, self.settings)
            if kind == "division":
                for a in objects:
                    track_of[a] = tracks.new()
                    edges.append((node, a))
                self._pending.append(lineage.Division(t, parent, node,
                                                      [track_of[a] for a in objects]))
            elif kind in ("continue", "gap"):
                track_of[objects[0]] = parent if kind == "continue" else tracks.new()
                edges.append((node, objects[0]))
            if kind != "none":
                tracks.ended.pop(parent, None)
        free = [a for a in new if a not in track_of]
        lost = [(track, self.graph.nodes[node]["y"], self.graph.nodes[node]["x"])
                for track, (last, node) in tracks.ended.items() if last == t - 1]
        for a, track in nearest_lost(free, stats, lost, self.settings):
            track_of[a] = track
            edges.append((tracks.ended.pop(track)[1], a))
        return track_of, edges

    def _candidates(self, t: int, new: list[int]) -> dict[int, dict[int, int]]:
        """``{frame: {track: area of its last node}}`` of the tracks that may be parents."""
        if not new:
            return {}
        nodes: dict[int, dict[int, int]] = defaultdict(dict)
        for track, (last, node) in self._tracks.ended.items():
            nodes[last][track] = node
        nodes[t - 1].update(self._tracks.active)
        area = self.graph.nodes
        return {when: {k: area[n]["area"] for k, n in found.items()}
                for when, found in nodes.items()}

    # -- later frames: divisions that do not persist, short tracks ------------
    def _confirm_divisions(self, t: int, mapping: dict[int, int], final: bool = False
                           ) -> dict[int, int]:
        """Judge the divisions whose daughters have been seen long enough (all if ``final``).

        Returns ``mapping`` (``{local label: track id}`` of frame ``t``) with
        the ids of daughters that went back to their mother's id replaced.
        """
        frames = self.settings.division_min_frames
        for division in [d for d in self._pending if final or t - d.t + 1 >= frames]:
            self._pending.remove(division)
            until = min(division.t + frames - 1, t)
            alive = [k for k in division.daughters
                     if lineage.persists(self.graph, division.mother_node, k, until)]
            if division_stands(alive):
                if len(alive) == len(division.daughters) == 2:
                    self._split_mother(division)
                continue
            for track in division.daughters:
                if track not in alive:
                    lineage.disown(self.graph, division.mother_node, track)
            if len(alive) == 1:
                self._rejoin_mother(division, alive[0])
                mapping = {a: division.mother if k == alive[0] else k
                           for a, k in mapping.items()}
        return mapping

    def _split_mother(self, division: lineage.Division) -> None:
        """Cut the mother's object in the frame before a standing division between the two
        daughters when it is two touching daughters (:func:`~instatrack.track.rules.split_mother`):
        they then start a frame earlier, and the mother ends a frame earlier; and again,
        up to :data:`~instatrack.track.rules.SPLIT_BACK_FRAMES` frames back."""
        for _ in range(SPLIT_BACK_FRAMES):
            if not self._split_mother_once(division):
                return

    def _split_mother_once(self, division: lineage.Division) -> bool:
        nodes = self.graph.nodes
        node, before = division.mother_node, division.t - 1
        label = nodes[node]["label"]
        parent = [n for n in self.graph.predecessors(node) if nodes[n]["label"] == label]
        if nodes[node]["t"] != before or not parent or before not in self._waiting \
                or division.t not in self._waiting:
            return False
        frame, after = self._waiting[before], self._waiting[division.t]
        parts = split_mother(frame == label, [after == k for k in division.daughters],
                             self.settings)
        if parts is None:
            return False
        made = []
        for part, track in zip(parts, division.daughters, strict=True):
            frame[part] = track
            ys, xs = np.nonzero(part)
            made.append((self._tracks.prepend(track), len(ys), float(ys.mean()),
                         float(xs.mean())))
        lineage.hand_down(self.graph, division, parent[0], made)
        self._tracks.span[label][1] = parent[0]
        return True

    def _rejoin_mother(self, division: lineage.Division, track: int) -> None:
        """The one daughter ``track`` left of an unconfirmed division takes the mother's id."""
        mother = division.mother
        lineage.rejoin_mother(self.graph, division, track)
        self._tracks.rename(track, mother)
        for k, frame in self._waiting.items():
            if k >= division.t:
                frame[frame == track] = mother
        for pending in self._pending:
            if pending.mother == track:
                pending.mother = mother

    def _release(self, upto: int | None) -> list[tuple[int, np.ndarray]]:
        """Hand out the waiting frames up to ``upto`` (all when None), in order."""
        ready = sorted(k for k in self._waiting if upto is None or k <= upto)
        if self.settings.min_track_length > 1:
            for k in ready:
                self._drop_short_tracks(self._waiting[k], final=upto is None)
        return [(k, self._waiting.pop(k)) for k in ready]

    def _drop_short_tracks(self, frame: np.ndarray, final: bool) -> None:
        """Remove the tracks seen in ``frame`` that :func:`is_flicker` judges short."""
        nodes = self.graph.nodes
        for track in np.unique(frame[frame > 0]).tolist():
            first, last = self._tracks.span[track]
            begin, end = nodes[first]["t"], nodes[last]["t"]
            if not is_flicker(begin, end, self._first_t, self._last_t,
                              self.graph.in_degree(first) > 0, self.graph.out_degree(last) > 0,
                              final, self.settings):
                continue
            for k, waiting in self._waiting.items():
                if begin <= k <= end:
                    waiting[waiting == track] = 0
            lineage.drop_track(self.graph, first)
            del self._tracks.span[track]

    # -- bookkeeping --------------------------------------------------------
    def _add_nodes(self, t: int, stats: dict[int, ObjectStats], track_of: dict[int, int]
                   ) -> dict[int, int]:
        """One graph node per object of frame ``t``; returns ``{local label: node}``."""
        nodes = {}
        for a, s in stats.items():
            node = self._tracks.new_node(track_of[a])
            self.graph.add_node(node, t=t, label=track_of[a], y=s.y, x=s.x, area=s.area)
            nodes[a] = node
        return nodes

    def _advance(self, t: int, final: np.ndarray) -> None:
        """Remember frame ``t``; forget what no later frame can link to."""
        if self._first_t is None:
            self._first_t = t
        self._last_t = t
        self._recent[t] = final
        horizon = t + 1 - memory(self.settings)
        for old in [k for k in self._recent if k < horizon]:
            del self._recent[old]
        self._tracks.forget(before=horizon)

    def _push_tracked(self, start: int, labels: np.ndarray) -> list[tuple[int, np.ndarray]]:
        first_new = start if self._last_t is None else self._last_t + 1
        done = []
        for t in range(first_new, start + len(labels)):
            final = labels[t - start].astype(np.int32)
            stats = label_stats(final)
            nodes = self._add_nodes(t, stats, {a: a for a in stats})
            for a, node in nodes.items():
                if a in self._tracked_last:
                    self.graph.add_edge(self._tracked_last[a], node)
                self._tracked_last[a] = node
            self._last_t = t
            done.append((t, final))
        return done


class _Tracks:
    """Track ids and node ids handed out, and where each track is."""

    def __init__(self) -> None:
        self._next_track = 1
        self._next_node = 0
        self.span: dict[int, list[int]] = {}  # track id -> [first node, last node]
        self.active: dict[int, int] = {}  # track id -> its node in the newest frame
        self.ended: dict[int, tuple[int, int]] = {}  # track id -> (last t, last node)

    def new(self) -> int:
        """A new track id."""
        self._next_track += 1
        return self._next_track - 1

    def new_node(self, track: int) -> int:
        """A new node id, the newest node of ``track``."""
        node = self._next_node
        self._next_node += 1
        self.span.setdefault(track, [node, node])[1] = node
        return node

    def prepend(self, track: int) -> int:
        """A new node id, the first node of ``track``, which already has nodes."""
        node = self._next_node
        self._next_node += 1
        self.span[track][0] = node
        return node

    def rename(self, track: int, to: int) -> None:
        """Track ``track`` continues track ``to``, under the id ``to``."""
        self.span[to][1] = self.span.pop(track)[1]
        if track in self.active:
            self.active[to] = self.active.pop(track)
        if track in self.ended:
            self.ended[to] = self.ended.pop(track)

    def forget(self, before: int | None = None) -> None:
        """Forget the tracks that ended before frame ``before`` (all active and ended if None)."""
        if before is None:
            self.active.clear()
            self.ended.clear()
            return
        for track in [k for k, (last, _) in self.ended.items() if last < before]:
            del self.ended[track]


def _check_window(window, last_t: int | None) -> np.ndarray:
    labels = np.asarray(window.labels)
    if labels.ndim != 3 or len(labels) == 0:
        raise ValueError(f"window labels must be (W, Y, X), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError("window labels must be non-negative integers")
    if last_t is not None:
        if window.start > last_t + 1:
            raise ValueError(f"window starts at frame {window.start}, but frame "
                             f"{last_t + 1} has not been seen: windows must not skip frames")
        if window.stop <= last_t + 1:
            raise ValueError(f"window {window.start}..{window.stop - 1} brings no new frame "
                             f"after frame {last_t}")
    return labels.astype(np.int32, copy=False)
