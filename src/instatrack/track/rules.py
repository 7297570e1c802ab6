"""The tracker's settings and its decisions, as pure functions over plain data.

:class:`~instatrack.track.link.Tracker` feeds every frame through these
functions; each one can be called, and is tested, on its own. Objects are the
labels of one frame, described by :class:`~instatrack.labels.ObjectStats`
(area, centroid); a track's *last node* is its object in the last frame it was
seen. The rules, in the order the tracker applies them to the objects of frame
``t`` that no IoU link continued (the *new* objects):

1. :func:`find_parents`: each new object's parent is the track, seen in one of
   the last frames, that overlaps it most once the object is dilated by
   ``division_dilation`` pixels; the overlap must cover at least
   ``link_parent_overlap`` of the smaller of the two.
2. :func:`parent_kind`: what a parent and its new objects are: a division, a
   continuation, a gap bridged, or nothing (details there); daughters must be
   alike (:func:`alike_daughters`).
3. :func:`nearest_lost`: with ``link_max_distance`` > 0, new objects still
   without a track continue the nearest tracks lost in ``t - 1``.

Later, :func:`division_stands` judges a division once its daughters have had
``division_min_frames`` frames to vanish, :func:`split_mother` cuts the mother's object in
the frame before a division that stands when it is two touching daughters, and
:func:`is_flicker` finds the short tracks that ``min_track_length`` removes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from instatrack.labels import ObjectStats, dilated_overlaps, solidity
from instatrack.settings import Settings, require

#: frames before a division in which :func:`split_mother` may find two touching daughters
#: kept as one object, frame by frame backwards. 2 was measured on SIM+ with the wide
#: cosine-hourglass (docs/results.md, session 21): it found the one pair merged for two
#: frames in seed 2 (TRA +0.0011) and cut a true mother, two frames before its daughters
#: appear and as waisted as they (solidity 0.77-0.81), in seed 0 (TRA -0.0009)
SPLIT_BACK_FRAMES = 1


@dataclasses.dataclass(frozen=True)
class TrackSettings(Settings):
    """How instances are linked into tracks; the keys are shared by every method.

    ``min_instance_area``: objects smaller than this (pixels) are dropped
    before linking. ``link_iou_threshold``: IoU a link between consecutive
    frames needs. ``link_max_gap``: frames a track may be missing and still be
    bridged. ``link_max_distance``: pixels between centroids within which a new
    object continues a track lost in the previous frame (0 = off; for objects
    that move past their own size). ``min_track_length``: frames below which a
    track with no parent and no children is dropped, except at the first and
    last frame (1 = off). ``division_search_frames``: frames after a track
    ends in which its daughters may appear; ``division_dilation``: pixels by
    which new objects are grown to find their parent; ``division_balance``:
    share of the largest daughter's area a daughter needs; ``division_min_frames``:
    frames two daughters must persist for a division to stand (1 = every division);
    ``division_area_ratio``: a track that continues but shrank to at most this share
    of its area, with an alike new object beside it, divided (it kept one
    daughter's mask). ``link_parent_overlap``: share of the smaller of a new object
    and a track that they must overlap (after the dilation) for the track to be
    its parent. ``division_split_solidity``: when a division stands, the mother's object in
    the frame before it is split between the two daughters if its solidity is below this
    (a waisted object: two daughters that touch in their first frame, which the
    segmentation kept as one), each part at least ``division_balance`` of the other;
    0 = off (:func:`split_mother`).
    """

    post_processing = True

    min_instance_area: int = 20
    link_iou_threshold: float = 0.1
    link_max_gap: int = 2
    link_max_distance: float = 0.0
    min_track_length: int = 1
    division_search_frames: int = 3
    division_dilation: int = 2
    division_balance: float = 0.25
    division_min_frames: int = 3
    division_area_ratio: float = 0.8
    link_parent_overlap: float = 0.2
    division_split_solidity: float = 0.9

    def check(self) -> None:
        super().check()
        for name in ("min_instance_area", "link_max_gap", "division_search_frames",
                     "division_dilation"):
            require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        require(0 <= self.link_iou_threshold < 1,
                f"link_iou_threshold must be in [0, 1), got {self.link_iou_threshold}")
        require(self.link_max_distance >= 0,
                f"link_max_distance must be >= 0 pixels, got {self.link_max_distance}")
        require(self.min_track_length >= 1,
                f"min_track_length must be >= 1 frame, got {self.min_track_length}")
        require(0 <= self.division_balance <= 1,
                f"division_balance must be in [0, 1], got {self.division_balance}")
        require(self.division_min_frames >= 1,
                f"division_min_frames must be >= 1, got {self.division_min_frames}")
        require(0 <= self.division_split_solidity <= 1,
                f"division_split_solidity must be in [0, 1] (0 = off), got "
                f"{self.division_split_solidity}")
        for name in ("division_area_ratio", "link_parent_overlap"):
            require(0 < getattr(self, name) <= 1,
                    f"{name} must be in (0, 1], got {getattr(self, name)}")


def memory(settings: TrackSettings) -> int:
    """Frames back that a new object can still be linked to (gap, late division, check)."""
    return max(settings.link_max_gap + 1, settings.division_search_frames,
               settings.division_min_frames, 1)


def delay(settings: TrackSettings) -> int:
    """Frames a frame is held back before it is final (no later rule can change it)."""
    hold = settings.division_min_frames - 1
    if settings.division_split_solidity > 0:  # the frames before a division stay editable
        hold += SPLIT_BACK_FRAMES
    if settings.min_track_length > 1:
        hold = max(hold, settings.min_track_length - 1 + memory(settings))
    return hold


def find_parents(local: np.ndarray, new: Sequence[int], stats: Mapping[int, ObjectStats],
                 recent: Mapping[int, np.ndarray], candidates: Mapping[int, Mapping[int, int]],
                 settings: TrackSettings) -> dict[int, tuple[int, float]]:
    """Best parent track of each new object: ``{object: (track, overlap score)}``.

    ``local``: ``(Y, X)`` labels of the frame, ``new`` its new objects,
    ``stats`` its objects' stats; ``recent``: ``{t: (Y, X) track labels}`` of
    the last frames; ``candidates``: ``{t: {track: area of its last node}}``,
    the tracks that may be parents and whose last node is in frame ``t``. The
    score is the overlap of the dilated object with the track in pixels over
    the smaller of the two areas; ties keep the first (earliest frame) found.
    """
    best: dict[int, tuple[int, float]] = {}
    if not new:
        return best
    for when, frame in recent.items():
        areas = candidates.get(when)
        if not areas:
            continue
        overlaps = dilated_overlaps(local, frame, settings.division_dilation, only=new)
        for a, counts in overlaps.items():
            for track, pixels in counts.items():
                if track not in areas:
                    continue
                score = pixels / min(stats[a].area, areas[track])
                if score >= settings.link_parent_overlap and score > best.get(a, (0, 0.0))[1]:
                    best[a] = (track, score)
    return best


def alike_daughters(objects: Sequence[int], stats: Mapping[int, ObjectStats],
                    settings: TrackSettings) -> list[int]:
    """The objects with at least ``division_balance`` of the largest one's area, in order.

    Mitosis gives two similar halves; a small fragment beside a cell is a
    segmentation error, not a daughter.
    """
    largest = max(stats[a].area for a in objects)
    return [a for a in objects if stats[a].area >= settings.division_balance * largest]


def parent_kind(t: int, last_t: int, last_area: int, continuing: int | None,
                kids: Sequence[int], stats: Mapping[int, ObjectStats],
                settings: TrackSettings) -> tuple[str, list[int]]:
    """What a parent track and the new objects of frame ``t`` that chose it are.

    ``last_t``, ``last_area``: frame and area of the parent's last node;
    ``continuing``: its object in frame ``t`` when an IoU link continued it,
    else None; ``kids``: the new objects, best overlap first. Returns the kind
    and the objects it concerns:

    - ``"division"``, with the daughters: a continuing track shrank to at most
      ``division_area_ratio`` of its area and has an alike new object beside
      it (its own object is then a daughter too), or a track ended at most
      ``division_search_frames`` frames ago has two alike new objects;
    - ``"continue"``, best object first: the track was lost in ``t - 1``;
    - ``"gap"``, the one object: the track ended 2..``link_max_gap + 1`` frames
      ago and one alike object is there (CTC encodes a gap as a new track
      whose parent is the old one);
    - ``"none"``: nothing; the objects start their own tracks.
    """
    if continuing is not None:
        shrank = stats[continuing].area <= settings.division_area_ratio * last_area
        daughters = alike_daughters([continuing, *kids], stats, settings)
        divides = (shrank and settings.division_search_frames >= 1
                   and continuing in daughters and len(daughters) >= 2)
        return ("division" if divides else "none"), daughters
    daughters = alike_daughters(kids, stats, settings)
    if len(daughters) >= 2 and t - last_t <= settings.division_search_frames:
        return "division", daughters
    if last_t == t - 1:
        return "continue", list(kids)
    if t - last_t - 1 <= settings.link_max_gap and len(daughters) == 1:
        return "gap", daughters
    return "none", list(kids)


def nearest_lost(free: Sequence[int], stats: Mapping[int, ObjectStats],
                 lost: Sequence[tuple[int, float, float]], settings: TrackSettings
                 ) -> list[tuple[int, int]]:
    """``(object, track)`` pairs: free objects that continue tracks lost in the previous frame.

    ``lost``: ``(track, y, x)`` of each track lost in the previous frame, at
    its last centroid. Hungarian assignment on centroid distance; pairs further
    apart than ``link_max_distance`` pixels stay apart. Empty when it is 0.
    """
    if settings.link_max_distance <= 0 or not free or not lost:
        return []
    here = np.array([(stats[a].y, stats[a].x) for a in free])
    there = np.array([(y, x) for _, y, x in lost])
    distance = np.linalg.norm(here[:, None] - there[None], axis=-1)
    limit = settings.link_max_distance
    rows, cols = linear_sum_assignment(np.where(distance <= limit, distance, 1e12))
    return [(free[r], lost[c][0]) for r, c in zip(rows, cols, strict=True)
            if distance[r, c] <= limit]


def division_stands(alive: Sequence[int]) -> bool:
    """A division stands when at least two of its daughters persisted.

    ``alive``: the daughters that :func:`~instatrack.track.lineage.persists` finds.
    """
    return len(alive) >= 2


def is_flicker(begin: int, end: int, first_t: int, last_t: int, has_parent: bool,
               has_children: bool, final: bool, settings: TrackSettings) -> bool:
    """Whether the track seen in frames ``begin..end`` is dropped as short (``min_track_length``).

    Only a track with neither a parent nor children, that does not start in the
    stream's first frame ``first_t`` nor reach its newest frame ``last_t``, and
    that no later frame can still link to (``memory`` frames have passed, or the
    stream is ``final``), is judged.
    """
    settled = end < last_t and (final or last_t >= end + memory(settings))
    return (settled and end - begin + 1 < settings.min_track_length and begin != first_t
            and not has_parent and not has_children)


def split_mother(mother: np.ndarray, daughters: Sequence[np.ndarray],
                 settings: TrackSettings) -> list[np.ndarray] | None:
    """The mother's mask in the frame before a division cut into one part per daughter, or
    None to keep it whole.

    ``mother``: its ``(Y, X)`` bool mask; ``daughters``: the two daughters' masks in their
    first frame. Only a waisted mother (solidity, its area over its convex hull's, below
    ``division_split_solidity``) is cut: a cell about to divide is convex, two daughters
    touching are not. The cut is a watershed of the distance to the mask's outline from
    the pixels each daughter alone overlaps (its centroid if none), so it runs along the
    waist; each part must hold at least ``division_balance`` of the other's area and
    ``min_instance_area`` pixels.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    if settings.division_split_solidity <= 0 or len(daughters) != 2 or not mother.any():
        return None
    rows, cols = ndi.find_objects(mother.astype(np.uint8))[0]
    (y0, y1), (x0, x1) = (rows.start, rows.stop), (cols.start, cols.stop)
    inside = mother[y0:y1, x0:x1]
    if solidity(inside) >= settings.division_split_solidity:
        return None
    markers = np.zeros(inside.shape, np.int32)
    a, b = (d[y0:y1, x0:x1] for d in daughters)
    for k, (own, whole) in enumerate(((a, daughters[0]), (b, daughters[1])), 1):
        alone = own & inside  # where the daughter lies a frame later (daughters are disjoint)
        if alone.any():
            markers[alone] = k
            continue
        ys, xs = np.nonzero(whole)
        dy, dx = np.nonzero(inside & (markers == 0))
        if len(ys) and len(dy):
            i = np.argmin((dy - ys.mean() + y0) ** 2 + (dx - xs.mean() + x0) ** 2)
            markers[dy[i], dx[i]] = k
    if set(np.unique(markers[markers > 0])) != {1, 2}:
        return None
    cut = watershed(-ndi.distance_transform_edt(inside), markers, mask=inside)
    if (inside & (cut == 0)).any():  # pieces no marker reaches go to the nearest part
        _, (iy, ix) = ndi.distance_transform_edt(cut == 0, return_indices=True)
        cut = np.where(inside, cut[iy, ix], 0)
    areas = [int((cut == k).sum()) for k in (1, 2)]
    if min(areas) < max(settings.min_instance_area, 1) or \
            min(areas) < settings.division_balance * max(areas):
        return None
    parts = []
    for k in (1, 2):
        part = np.zeros_like(mother)
        part[y0:y1, x0:x1] = cut == k
        parts.append(part)
    return parts
