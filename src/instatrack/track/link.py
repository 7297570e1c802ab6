"""Streaming linker: windows of instance labels -> tracked label frames + track graph.

A method yields :class:`~instatrack.methods.base.Window` objects. The
:class:`Tracker` turns them into final frames whose label values are track ids,
and grows a :class:`networkx.DiGraph` (see :mod:`instatrack.track`).

Which labels become final: a frame is final as soon as a window brings it for
the first time. With overlapping pair windows ``(t-1, t)``, ``(t, t+1)``, ...
the final labels of frame ``t`` are those of the window that ends at ``t``
(its newest frame, produced with the most temporal context), and frame 0 comes
from the first window. The links ``t -> t+1`` come from the next window: its
instances are matched to the final instances of the shared frame ``t`` by IoU
(Hungarian, at least ``iou_threshold``), and an instance keeps its identity
inside a window. Windows that follow each other (``W = 1``) are matched frame
to frame by IoU instead.

After the IoU links, every new object (no link) looks for a parent: the object
of frame ``t-1`` or of a recently ended track (up to
``max(max_gap + 1, division_search_frames)`` frames back) that overlaps it most
once the new object is dilated by ``division_dilation`` pixels; the overlap must
cover at least ``parent_overlap`` of the smaller of the two. Then, per parent:

- a track lost in ``t-1`` with one new object near it continues (same id);
- a track ended with two or more new objects within ``division_search_frames``
  frames divided: they become daughters;
- a track that continues into ``t`` but shrank to at most
  ``division_area_ratio`` of its area, with new objects next to it, divided and
  kept one daughter's mask: in the CTC convention the mother ENDS at ``t-1``
  and the continuing object is relabelled as a daughter;
- daughters must be alike: only those with at least ``division_balance`` of
  the largest daughter's area count (mitosis gives two similar halves; a small
  fragment beside a cell is a segmentation error, not a daughter). When fewer
  than two remain there is no division: the best candidate continues or
  bridges the track and the fragments start parentless tracks;
- a track ended 2..``max_gap + 1`` frames ago with one new object near it is
  bridged: CTC encodes a gap as a new track whose parent is the old one.

Objects that move further than their own size between frames (MSC stem cells)
overlap nothing. With ``max_distance`` > 0, a new object still without a
track after all the above continues a track lost in ``t-1`` whose last
centroid lies within ``max_distance`` pixels of its own: the pairs are
chosen by Hungarian assignment on centroid distance. Off (0) by default.

Short tracks can be dropped: with ``min_track_length`` > 1, a track shorter
than that many frames that has neither a parent nor children (a flickering
false object, not a daughter or a bridged gap) is removed from the frames
and the graph, unless it starts in the stream's first frame or ends in its
last frame (where it may be cut by the sequence bounds). Frames are then held
back ``min_track_length - 1 + max(max_gap + 1, division_search_frames,
division_min_frames)`` frames, long enough that no later link can reach the
track. Off (1) by default; windows with ``tracked=True`` are not filtered.

Divisions must persist: a division found in frame ``t`` stands only if at
least two daughters are still there (present, or ended in a division or a
gap of their own) ``division_min_frames - 1`` frames later. Otherwise the
daughters that vanished lose their parent (they stay as short parentless
tracks), and when exactly one daughter remains it takes the mother's id back:
the cell simply continued, and a flickering fragment beside it is not a
sister. To allow this, frames are returned ``division_min_frames - 1`` frames
after they are pushed (``finish()`` returns the rest); ``division_min_frames=1``
returns every frame at once and keeps every division.

Windows with ``tracked=True`` already carry identities: their label values are
kept verbatim as track ids, and an object that reappears after an absence is
linked to its previous node (no division search).

Memory: only the final labels of the last few frames are kept.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import networkx as nx
import numpy as np
from scipy.optimize import linear_sum_assignment

from instatrack.labels import dilated_overlaps, label_stats, match_iou, remove_small


class Tracker:
    """Link a stream of windows into tracks; see the module docstring for the rules.

    ``push(window)`` returns the frames that became final, as a list of
    ``(t, labels)`` with ``labels`` ``(Y, X)`` int32 (value = track id);
    ``finish()`` returns what is left; ``graph`` is the track graph so far.
    """

    def __init__(self, iou_threshold: float = 0.1, max_gap: int = 2,
                 division_search_frames: int = 3, division_dilation: int = 2,
                 min_area: int = 0, division_area_ratio: float = 0.8,
                 parent_overlap: float = 0.2, division_balance: float = 0.25,
                 division_min_frames: int = 3, max_distance: float = 0.0,
                 min_track_length: int = 1):
        if not 0 <= iou_threshold <= 1:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        if min(max_gap, division_search_frames, division_dilation, min_area) < 0:
            raise ValueError("max_gap, division_search_frames, division_dilation and "
                             "min_area must be >= 0")
        if not 0 <= division_balance <= 1:
            raise ValueError(f"division_balance must be in [0, 1], got {division_balance}")
        if division_min_frames < 1:
            raise ValueError(f"division_min_frames must be >= 1, got {division_min_frames}")
        if not max_distance >= 0:
            raise ValueError(f"max_distance must be >= 0 pixels, got {max_distance}")
        if min_track_length < 1:
            raise ValueError(f"min_track_length must be >= 1 frame, got {min_track_length}")
        self.iou_threshold = iou_threshold
        self.max_gap = max_gap
        self.division_search_frames = division_search_frames
        self.division_dilation = division_dilation
        self.min_area = min_area
        self.division_area_ratio = division_area_ratio
        self.parent_overlap = parent_overlap
        self.division_balance = division_balance
        self.division_min_frames = division_min_frames
        self.max_distance = max_distance
        self.graph = nx.DiGraph()
        self.min_track_length = min_track_length
        self._memory = max(max_gap + 1, division_search_frames, division_min_frames, 1)
        # frames are returned this many frames after they are pushed
        self._hold = division_min_frames - 1
        if min_track_length > 1:
            self._hold = max(self._hold, min_track_length - 1 + self._memory)
        self._first_t: int | None = None
        self._span: dict[int, list[int]] = {}  # track id -> [first node, last node]
        self._next_track = 1
        self._next_node = 0
        self._last_t: int | None = None
        self._recent: dict[int, np.ndarray] = {}  # t -> final labels, last few frames
        self._active: dict[int, int] = {}  # track id -> its node in frame _last_t
        self._ended: dict[int, tuple[int, int]] = {}  # track id -> (last t, last node)
        self._tracked_last: dict[int, int] = {}  # tracked windows: label -> last node
        self._waiting: dict[int, np.ndarray] = {}  # t -> labels not yet returned
        self._pending: list[_Division] = []  # divisions not yet confirmed
        self._finished = False

    @classmethod
    def from_config(cls, cfg) -> Tracker:
        """The tracker a method's config asks for (its ``link_*``/``division_*`` fields)."""
        return cls(iou_threshold=cfg.link_iou_threshold, max_gap=cfg.link_max_gap,
                   division_search_frames=cfg.division_search_frames,
                   division_dilation=cfg.division_dilation,
                   division_balance=cfg.division_balance,
                   division_min_frames=cfg.division_min_frames,
                   min_area=cfg.min_instance_area, max_distance=cfg.link_max_distance,
                   min_track_length=cfg.min_track_length)

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
        start = window.start
        first_new = start if self._last_t is None else self._last_t + 1
        done = []
        mapping: dict[int, int] = {}
        for t in range(first_new, window.stop):
            local = remove_small(labels[t - start], self.min_area)
            if t == first_new and self._last_t is not None:
                # The shared frame when windows overlap, else the new frame itself.
                ref = local
                if start <= self._last_t:
                    ref = remove_small(labels[self._last_t - start], self.min_area)
                pairs, _ = match_iou(self._recent[self._last_t], ref, self.iou_threshold)
                mapping = {int(b): int(a) for a, b in pairs}
            final, mapping = self._link_frame(t, local, mapping)
            self._waiting[t] = final
            mapping = self._confirm_divisions(t, mapping)
            done.extend(self._release(t - self._hold))
        return done

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """End of the stream: returns the frames still held back for the division check."""
        if self._finished:
            return []
        self._finished = True
        if self._last_t is not None:
            self._confirm_divisions(self._last_t, {}, final=True)
        done = self._release(None)
        self._recent.clear()
        self._ended.clear()
        self._active.clear()
        return done

    def _release(self, upto: int | None) -> list[tuple[int, np.ndarray]]:
        """Hand out the waiting frames up to ``upto`` (all when None), in order."""
        ready = sorted(k for k in self._waiting if upto is None or k <= upto)
        if self.min_track_length > 1:
            for k in ready:
                self._drop_short_tracks(self._waiting[k], final=upto is None)
        return [(k, self._waiting.pop(k)) for k in ready]

    def _drop_short_tracks(self, frame: np.ndarray, final: bool) -> None:
        """Remove the short parentless, childless tracks seen in ``frame`` (see the module doc)."""
        nodes = self.graph.nodes
        for track in np.unique(frame[frame > 0]).tolist():
            first, last = self._span[track]
            begin, end = nodes[first]["t"], nodes[last]["t"]
            settled = end < self._last_t and (final or self._last_t >= end + self._memory)
            if (not settled or end - begin + 1 >= self.min_track_length
                    or begin == self._first_t or self.graph.in_degree(first)
                    or self.graph.out_degree(last)):
                continue
            for k, waiting in self._waiting.items():
                if begin <= k <= end:
                    waiting[waiting == track] = 0
            self.graph.remove_nodes_from(self._chain(first))
            del self._span[track]

    # -- one frame ----------------------------------------------------------
    def _link_frame(self, t: int, local: np.ndarray, mapping: dict[int, int]
                    ) -> tuple[np.ndarray, dict[int, int]]:
        """Give every object of ``local`` (window labels of frame ``t``) a track id.

        ``mapping``: ``{local label: track id in frame t-1}``. Returns the final
        labels ``(Y, X)`` int32 and ``{local label: track id in frame t}``.
        """
        stats = label_stats(local)
        continuing = {a: mapping[a] for a in stats if mapping.get(a) in self._active}
        linked = set(continuing.values())
        for track, node in self._active.items():
            if track not in linked:
                self._ended[track] = (t - 1, node)
        new = [a for a in stats if a not in continuing]
        track_of, edges = self._resolve_new(t, new, continuing, stats, local)
        for a, track in continuing.items():
            if a not in track_of:
                track_of[a] = track
                edges.append((self._active[track], a))
        for a in new:
            if a not in track_of:
                track_of[a] = self._new_track()
        final = _relabel(local, track_of)
        nodes = self._add_nodes(t, stats, track_of)
        self.graph.add_edges_from((src, nodes[a]) for src, a in edges)
        self._active = {track_of[a]: nodes[a] for a in stats}
        self._advance(t, final)
        return final, track_of

    def _resolve_new(self, t: int, new: list[int], continuing: dict[int, int],
                     stats: dict, local: np.ndarray) -> tuple[dict[int, int], list]:
        """Continuations, gaps and divisions of the new objects of frame ``t``.

        Returns ``{local label: track id}`` for the objects it decided and the
        edges ``(parent node, local label)`` to add.
        """
        track_of: dict[int, int] = {}
        edges: list[tuple[int, int]] = []
        children: dict[int, list[tuple[float, int]]] = defaultdict(list)
        for a, (parent, score) in self._find_parents(t, new, stats, local).items():
            children[parent].append((score, a))
        by_track = {track: a for a, track in continuing.items()}
        for parent, scored in children.items():
            kids = [a for _, a in sorted(scored, reverse=True)]
            kind, node, kids = self._parent_kind(t, parent, kids, by_track.get(parent), stats)
            if kind == "division":
                for a in kids:
                    track_of[a] = self._new_track()
                    edges.append((node, a))
                self._pending.append(_Division(t, parent, node, [track_of[a] for a in kids]))
            elif kind in ("continue", "gap"):
                track_of[kids[0]] = parent if kind == "continue" else self._new_track()
                edges.append((node, kids[0]))
            if kind != "none":
                self._ended.pop(parent, None)
        for a, track, node in self._nearest_lost(t, [a for a in new if a not in track_of],
                                                 stats):
            track_of[a] = track
            edges.append((node, a))
            self._ended.pop(track)
        return track_of, edges

    def _nearest_lost(self, t: int, free: list[int], stats: dict
                      ) -> list[tuple[int, int, int]]:
        """``(object, track, last node)``: free objects that continue tracks lost in ``t-1``.

        Hungarian assignment on centroid distance; pairs further apart than
        ``max_distance`` pixels stay apart. Empty when ``max_distance`` is 0.
        """
        if self.max_distance <= 0 or not free:
            return []
        lost = [(k, node) for k, (last, node) in self._ended.items() if last == t - 1]
        if not lost:
            return []
        here = np.array([stats[a][1:] for a in free])
        there = np.array([(self.graph.nodes[n]["y"], self.graph.nodes[n]["x"])
                          for _, n in lost])
        distance = np.linalg.norm(here[:, None] - there[None], axis=-1)
        rows, cols = linear_sum_assignment(np.where(distance <= self.max_distance, distance,
                                                    1e12))
        return [(free[r], *lost[c]) for r, c in zip(rows, cols, strict=True)
                if distance[r, c] <= self.max_distance]

    def _parent_kind(self, t: int, parent: int, kids: list[int], continuing_object,
                     stats: dict) -> tuple[str, int, list[int]]:
        """``("division" | "continue" | "gap" | "none", parent's last node, objects)``.

        For a division the objects are all daughters (the continuing object
        included); otherwise the first object is the one that continues or
        bridges the track.
        """
        if continuing_object is not None:
            node = self._active[parent]
            shrank = (stats[continuing_object][0]
                      <= self.division_area_ratio * self.graph.nodes[node]["area"])
            daughters = self._alike([continuing_object, *kids], stats)
            divides = (shrank and self.division_search_frames >= 1
                       and continuing_object in daughters and len(daughters) >= 2)
            return ("division" if divides else "none"), node, daughters
        last_t, node = self._ended[parent]
        daughters = self._alike(kids, stats)
        if len(daughters) >= 2 and t - last_t <= self.division_search_frames:
            return "division", node, daughters
        if last_t == t - 1:
            return "continue", node, kids
        if t - last_t - 1 <= self.max_gap and len(daughters) == 1:
            return "gap", node, daughters
        return "none", node, kids

    def _alike(self, objects: list[int], stats: dict) -> list[int]:
        """The objects with at least ``division_balance`` of the largest one's area (in order)."""
        largest = max(stats[a][0] for a in objects)
        return [a for a in objects if stats[a][0] >= self.division_balance * largest]

    def _find_parents(self, t: int, new: list[int], stats: dict, local: np.ndarray
                      ) -> dict[int, tuple[int, float]]:
        """Best parent track of each new object: ``{local label: (track, overlap score)}``."""
        best: dict[int, tuple[int, float]] = {}
        if not new:
            return best
        for when, frame in self._recent.items():
            candidates = self._candidates_at(when, t)
            if not candidates:
                continue
            overlaps = dilated_overlaps(local, frame, self.division_dilation, only=new)
            for a, counts in overlaps.items():
                for track, pixels in counts.items():
                    if track not in candidates:
                        continue
                    area = self.graph.nodes[candidates[track]]["area"]
                    score = pixels / min(stats[a][0], area)
                    if score >= self.parent_overlap and score > best.get(a, (0, 0.0))[1]:
                        best[a] = (track, score)
        return best

    def _candidates_at(self, when: int, t: int) -> dict[int, int]:
        """Tracks whose last node is in frame ``when``: ``{track: node}``."""
        found = {k: node for k, (last, node) in self._ended.items() if last == when}
        if when == t - 1:
            found.update(self._active)
        return found

    # -- persistence of divisions -------------------------------------------
    def _confirm_divisions(self, t: int, mapping: dict[int, int], final: bool = False
                           ) -> dict[int, int]:
        """Judge the divisions whose daughters have been seen long enough (all if ``final``).

        Returns ``mapping`` (``{local label: track id}`` of frame ``t``) with
        the ids of daughters that went back to their mother's id replaced.
        """
        due = [d for d in self._pending
               if final or t - d.t + 1 >= self.division_min_frames]
        for division in due:
            self._pending.remove(division)
            until = min(division.t + self.division_min_frames - 1, t)
            alive = [k for k in division.daughters if self._persists(k, division.mother_node,
                                                                   until)]
            if len(alive) >= 2:
                continue
            for track in division.daughters:
                if track not in alive:
                    self.graph.remove_edge(division.mother_node,
                                           self._first_node(track, division.mother_node))
            if len(alive) == 1:
                self._merge(alive[0], division)
                mapping = {a: division.mother if k == alive[0] else k
                           for a, k in mapping.items()}
        return mapping

    def _first_node(self, track: int, mother_node: int) -> int:
        return next(n for n in self.graph.successors(mother_node)
                    if self.graph.nodes[n]["label"] == track)

    def _track_nodes(self, track: int, mother_node: int) -> list[int]:
        """The nodes of a daughter track in time order, from its first one."""
        return self._chain(self._first_node(track, mother_node))

    def _chain(self, first: int) -> list[int]:
        """``first`` and the nodes of the same track after it, in time order."""
        label = self.graph.nodes[first]["label"]
        nodes = [first]
        while True:
            same = [n for n in self.graph.successors(nodes[-1])
                    if self.graph.nodes[n]["label"] == label]
            if not same:
                return nodes
            nodes.append(same[0])

    def _persists(self, track: int, mother_node: int, until: int) -> bool:
        """Whether a daughter is seen in frame ``until`` or ended in a division or gap."""
        last = self._track_nodes(track, mother_node)[-1]
        return (self.graph.nodes[last]["t"] >= until
                or any(True for _ in self.graph.successors(last)))

    def _merge(self, track: int, division: _Division) -> None:
        """Give the one daughter ``track`` of an unconfirmed division its mother's id back."""
        mother = division.mother
        for node in self._track_nodes(track, division.mother_node):
            self.graph.nodes[node]["label"] = mother
        self._span[mother][1] = self._span.pop(track)[1]
        for k, frame in self._waiting.items():
            if k >= division.t:
                frame[frame == track] = mother
        if track in self._active:
            self._active[mother] = self._active.pop(track)
        if track in self._ended:
            self._ended[mother] = self._ended.pop(track)
        for division in self._pending:
            if division.mother == track:
                division.mother = mother

    # -- bookkeeping --------------------------------------------------------
    def _new_track(self) -> int:
        track = self._next_track
        self._next_track += 1
        return track

    def _add_nodes(self, t: int, stats: dict, track_of: dict[int, int]) -> dict[int, int]:
        nodes = {}
        for a, (area, y, x) in stats.items():
            node = self._next_node
            self._next_node += 1
            self.graph.add_node(node, t=t, label=track_of[a], y=y, x=x, area=area)
            nodes[a] = node
            self._span.setdefault(track_of[a], [node, node])[1] = node
        return nodes

    def _advance(self, t: int, final: np.ndarray) -> None:
        """Remember frame ``t``; forget what no later frame can link to."""
        if self._first_t is None:
            self._first_t = t
        self._last_t = t
        self._recent[t] = final
        horizon = t + 1 - self._memory
        for old in [k for k in self._recent if k < horizon]:
            del self._recent[old]
        for track in [k for k, (last, _) in self._ended.items() if last < horizon]:
            del self._ended[track]

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


@dataclasses.dataclass
class _Division:
    """A division found in frame ``t`` that waits for its daughters to persist."""

    t: int
    mother: int  # track id
    mother_node: int  # the mother's last node
    daughters: list[int]  # track ids


def _relabel(local: np.ndarray, track_of: dict[int, int]) -> np.ndarray:
    lut = np.zeros(int(local.max()) + 1, np.int32)
    for a, track in track_of.items():
        lut[a] = track
    return lut[local]


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
