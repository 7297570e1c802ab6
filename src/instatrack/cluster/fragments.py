"""Small pieces cut off an object, merged back into the object they touch.

Clustering embeddings sometimes splits one object into a main part and a small
piece beside it (a rim, a lobe). The piece matches no true object, so it costs a
false detection, and it leaves its object's mask short. Measured on the
cosine-hourglass trained on SIM+ (`runs/ch-sim-big`, test frames 45–64): 79 of its
96 false objects touched a true nucleus; their median area was 128 px, where the
training nuclei's median is 760 px (docs/results.md, session 10).

:func:`merge_fragments`, every method, after the network and before the outlines
are refined and the frames linked: an object smaller than ``merge_fragments``
times the training objects' median area (``instance_area`` in the run's config),
and whose outer ring lies at least :data:`CONTACT` on one other object, takes that
object's label (the one it shares most of its ring with); a chain of pieces
ends up in the big one. An isolated small object is left alone
(``min_instance_area`` is for those), and so is a piece that touches only
background. Two daughters just after a division are each about half the median
area, above the default limit. ``merge_fragments = 0`` (the default) is off.

:func:`merge_halves`, the same place: a nucleus with a dark nucleolus may be cut
in two halves of about equal size, which ``merge_fragments`` leaves (neither is
small). Measured on the ``nuclei-se`` recipe trained without GOWT1
(``runs/loo-gowt1-share05-s1``, GOWT1 test frames 36–91): 118 touching pairs of found
objects lay on one nucleus (the two halves), 11 on two touching nuclei; the union of
the halves is convex (solidity, its area over its convex hull's, 0.85–0.96, 91 of
them ≥ 0.9), that of two nuclei is not (0.80–0.87), and two nuclei together are
about twice a nucleus's area (2.1–2.2 times the frame's median object, the halves
1.7–1.8 times). Two touching objects are merged when their union's solidity
is at least ``merge_halves``, the union is at most :data:`HALVES_AREA` times the
median area of the frame's objects (the frame's own: the objects may not be the
training size), and their shared border is at least :data:`CONTACT` of the smaller
one's outer ring. Two daughters just after a division are usually
a waisted pair (less convex); calibration tries it (``merge_halves = 0``, the
default, is off) and keeps it only where it scores. The two parts :func:`split_pairs`
has just cut are never merged back: with ``split_pairs=0.95`` and ``merge_halves=0.9``
both on, an object of solidity 0.90–0.95 was cut and joined again, so the split did
nothing there (GOWT1's pair of nuclei pressed flat, docs/results.md, session 48).

:func:`split_pairs`, the converse, first: two touching nuclei clustered as one object
(the cosine-hourglass merged 11 pairs on SIM+'s test frames, each a missed nucleus
and two broken links; docs/results.md, session 16). An object at least
:data:`PAIR_AREA` times the frame's median object and less convex than ``split_pairs``
is cut in two along the watershed of its distance transform between its two
farthest-apart peaks, when both parts are at least :data:`PART_AREA` of the median
object and each is more convex than the whole (a waist, not a lobe). ``split_pairs =
0`` (the default) is off.

:func:`drop_small` (``min_area_share``), among the last stages, on the frame after the
instances are grown and before the faint ones are dropped: an object smaller than
that share of the frame's typical object is removed, whether it touches another or
not. The typical object is the area-weighted median (the area of the object that holds
the frame's median labelled pixel), which many small false objects do not pull down
as they do the plain median. A learned model run on MSC made 87–90 false objects in 12
frames, a median 700–900 px where an MSC cell covers tens of thousands (seed 1 of the
recipe with MSC-like cells, docs/results.md, session 45); the classical pipeline drops
such pieces with its absolute ``min_instance_area`` (2000–4000 px chosen on MSC), which a
model that meets objects at every size cannot carry. A share holds at any size, and two
daughters just after a division are each about half their mother. ``0`` (the default)
is off; calibration tries it. Tiled inference judges each tile by the tile's own objects.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage as ndi

from instatrack.labels import remove_small, weighted_percentile
from instatrack.labels import solidity as solidity_of
from instatrack.settings import Settings, require

#: share of a piece's one-pixel outer ring that must lie on the object it merges into
CONTACT = 0.2
#: two halves merged are at most this many times the median area of the frame's objects
HALVES_AREA = 2.0
#: an object split in two is at least this many times the median area of the frame's objects
PAIR_AREA = 1.5
#: each part of a split is at least this share of the median area of the frame's objects
PART_AREA = 0.4


@dataclasses.dataclass(frozen=True)
class FragmentSettings(Settings):
    """``merge_fragments``: objects smaller than this fraction of the training objects'
    median area that touch another object are merged into it (0 = off;
    :func:`merge_fragments`). ``merge_halves``: two touching objects whose union is
    at least this convex (solidity) and about one object's size are merged (0 = off;
    :func:`merge_halves`). ``split_pairs``: an object of about two objects' size less
    convex than this is cut in two at its waist (0 = off; :func:`split_pairs`).
    ``merge_coreless``: an object holding no peak of the distance transform at least this
    deep (a share of its height) is merged into the object it touches most, on the frame
    after the instances are grown (0 = off; :func:`merge_coreless`). ``min_area_share``:
    objects smaller than this share of the frame's typical object (its area-weighted
    median) are dropped (0 = off; :func:`drop_small`)."""

    post_processing = True
    after_method = True
    calibration = {"merge_fragments": (0.0, 0.25)}
    # split_pairs 0.95: two round nuclei pressed flat against each other are a nearly
    # convex pair (GOWT1 01's cells 1 and 2: the object holding both has a solidity
    # between 0.9 and 0.95; docs/results.md, session 44)
    calibration_last = {"split_pairs": (0.85, 0.9, 0.95), "merge_halves": (0.9,),
                        "merge_coreless": (0.1, 0.3, 0.5, 0.7),
                        # not 0.2: a fifth of MSC 02's annotated cells (frames 0-35) are
                        # under 0.2 of their frame's typical cell, 3 % under 0.1, none under
                        # 0.05 (SIM+ 01: 1.0 / 1.3 / 2.8 % under 0.05 / 0.1 / 0.2, cells cut by
                        # the frame's edge; docs/results.md, session 46)
                        "min_area_share": (0.05, 0.1)}

    merge_fragments: float = 0.0
    split_pairs: float = 0.0
    merge_halves: float = 0.0
    merge_coreless: float = 0.0
    min_area_share: float = 0.0

    def check(self) -> None:
        super().check()
        require(0 <= self.merge_fragments < 1,
                f"merge_fragments must be in [0, 1) (0 = off), got {self.merge_fragments}")
        require(0 <= self.merge_halves <= 1,
                f"merge_halves must be a solidity in [0, 1] (0 = off), got {self.merge_halves}")
        require(0 <= self.merge_coreless < 1,
                f"merge_coreless must be a depth in [0, 1) (0 = off), got {self.merge_coreless}")
        require(0 <= self.min_area_share < 1,
                f"min_area_share must be in [0, 1) (0 = off), got {self.min_area_share}")
        require(0 <= self.split_pairs <= 1,
                f"split_pairs must be a solidity in [0, 1] (0 = off), got {self.split_pairs}")


def merge_fragments(labels: np.ndarray, limit: float, contact: float = CONTACT) -> np.ndarray:
    """``labels`` ``(Y, X)`` int with every object of fewer than ``limit`` pixels that
    touches another (``contact`` of its outer ring on it) relabelled as that object.

    Every decision is made on ``labels`` as given; a piece that joins another piece
    ends in the object that one joins (two pieces that choose each other join the
    larger)."""
    if limit <= 0 or not labels.any():
        return labels
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    area = dict(zip(ids.tolist(), areas.tolist(), strict=True))
    boxes = ndi.find_objects(labels)
    target: dict[int, int] = {}
    for label in (i for i in area if area[i] < limit):
        others, shared, ring = _touching(labels, boxes[label - 1], label)
        if others.size and shared.max() >= contact * ring:
            target[label] = int(others[np.argmax(shared)])
    return _joined(labels, target, area)


def _joined(labels: np.ndarray, target: dict[int, int], area: dict[int, int]) -> np.ndarray:
    """``labels`` with each object ``k`` in ``target`` relabelled as the object its chain
    ``k -> target[k] -> ...`` ends in; a cycle ends in its largest object."""
    if not target:
        return labels
    lookup = np.arange(int(labels.max()) + 1, dtype=labels.dtype)
    for label in target:
        seen, end = {label}, target[label]
        while end in target and end not in seen:  # follow the chain of pieces
            seen.add(end)
            end = target[end]
        if end in seen:  # a cycle of pieces: the largest of them stays
            end = max(seen, key=lambda i: (area[i], i))
        lookup[label] = end
    return _relabelled(labels, lookup)


def _touching(labels: np.ndarray, box: tuple[slice, ...], label: int
              ) -> tuple[np.ndarray, np.ndarray, int]:
    """``(others, shared, ring)`` of object ``label`` (bounding box ``box``): the other
    objects on its one-pixel outer ring, the ring pixels each holds, and the ring's size."""
    window = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
    part = labels[window]
    mask = part == label
    ring = ndi.binary_dilation(mask) & ~mask
    around = part[ring]
    others, shared = np.unique(around[around > 0], return_counts=True)
    return others, shared, int(np.count_nonzero(ring))


def _relabelled(labels: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """A copy of ``labels`` with every object ``k`` relabelled ``lookup[k]``."""
    out = labels.copy()
    inside = out > 0
    out[inside] = lookup[out[inside]]
    return out


def typical_area(areas: np.ndarray) -> float:
    """The area-weighted median of ``areas`` (> 0): the area of the object that holds the
    median pixel of all the objects together. Small objects, however many, move it only
    as far as their pixels weigh."""
    areas = np.asarray(areas, np.float64)
    return weighted_percentile(areas, areas, 50)


def drop_small(labels: np.ndarray, share: float) -> np.ndarray:
    """``labels`` ``(Y, X)`` int without the objects of fewer pixels than ``share`` times
    the frame's typical object (:func:`typical_area`). 0 = off."""
    if share <= 0 or not labels.any():
        return labels
    areas = np.bincount(labels.ravel())[1:]
    return remove_small(labels, math.ceil(share * typical_area(areas[areas > 0])))


def merge_coreless(labels: np.ndarray, depth: float) -> np.ndarray:
    """``labels`` ``(Y, X)`` int with every object that holds no core merged into the
    touching object it shares most border with (a chain of such objects ends in one
    that has a core; objects that touch nothing are left).

    A core is a peak of the distance transform of the union of the objects (the
    objects' own borders do not count, the background does) whose saddle to any higher
    peak lies at most ``1 - depth`` of its height: the peaks of
    ``log(distance)`` at least ``-log(1 - depth)`` deep. Scale-free, so it works on the
    frame at any size. 0 = off."""
    from skimage.morphology import h_maxima

    if depth <= 0 or not labels.any():
        return labels
    distance = ndi.distance_transform_edt(labels > 0)
    cores = h_maxima(np.log(np.maximum(distance, 0.5)), -np.log(1.0 - depth)) > 0
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    area = dict(zip(ids.tolist(), areas.tolist(), strict=True))
    held = set(np.unique(labels[cores]).tolist())
    boxes = ndi.find_objects(labels)
    target: dict[int, int] = {}
    for label in (i for i in area if i not in held):
        others, shared, _ = _touching(labels, boxes[label - 1], label)
        if others.size:
            target[label] = int(others[np.argmax(shared)])
    return _joined(labels, target, area)


def merge_halves(labels: np.ndarray, solidity: float, max_area: float | None = None,
                 contact: float = CONTACT, split_offset: int | None = None) -> np.ndarray:
    """``labels`` ``(Y, X)`` int with touching pairs merged whose union has at least
    ``solidity`` (area over convex hull area) and at most ``max_area`` pixels (default
    :data:`HALVES_AREA` times the median area of the objects in ``labels``), and whose
    shared border is at least ``contact`` of the smaller one's outer ring.

    The most convex pairs merge first; an object merges at most once, so a nucleus
    cut in three keeps one cut (the pairs are judged on ``labels`` as given). A pair
    takes the lower of its two labels, so that the frames of a window which merge the
    same pair agree on its label. ``split_offset``: the offset :func:`split_pairs` gave
    the parts it cut (``k`` and ``split_offset + k``); those two are never merged back,
    since the split judged their union two nuclei (without it, a union as convex as
    ``solidity`` but less than ``split_pairs`` was cut and joined again)."""
    if solidity <= 0 or not labels.any():
        return labels
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    area = dict(zip(ids.tolist(), areas.tolist(), strict=True))
    if max_area is None:
        max_area = HALVES_AREA * float(np.median(areas))
    boxes = ndi.find_objects(labels)
    pairs = []
    for label in area:
        others, shared, ring = _touching(labels, boxes[label - 1], label)
        for other, count in zip(others.tolist(), shared.tolist(), strict=True):
            # each pair once, from its smaller object (its ring sets the contact)
            if (area[other], other) < (area[label], label) \
                    or area[label] + area[other] > max_area or count < contact * ring \
                    or (split_offset is not None
                        and max(label, other) - split_offset == min(label, other)):
                continue
            box = tuple(slice(min(a.start, b.start), max(a.stop, b.stop))
                        for a, b in zip(boxes[label - 1], boxes[other - 1], strict=True))
            convexity = solidity_of(np.isin(labels[box], (label, other)))
            if convexity >= solidity:
                pairs.append((convexity, label, other))
    lookup = np.arange(int(labels.max()) + 1, dtype=labels.dtype)
    used: set[int] = set()
    for _, label, other in sorted(pairs, reverse=True):
        if label not in used and other not in used:
            lookup[max(label, other)] = min(label, other)
            used.update((label, other))
    return _relabelled(labels, lookup) if used else labels


def split_pairs(labels: np.ndarray, solidity: float, offset: int | None = None) -> np.ndarray:
    """``labels`` ``(Y, X)`` int with every object of at least :data:`PAIR_AREA` times the
    median area that is less convex than ``solidity`` cut in two at its waist, where
    the cut leaves two parts of at least :data:`PART_AREA` of the median area, each more
    convex than the whole. The larger part keeps label ``k``, the smaller takes ``offset
    + k`` (default ``offset``: the largest label + 1; give a window's, so that its frames
    which split the same object agree on the new label)."""
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    if solidity <= 0 or not labels.any():
        return labels
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    median = float(np.median(areas))
    radius = max(1, int(np.sqrt(median / np.pi) / 2))
    boxes = ndi.find_objects(labels)
    out = labels
    offset = int(labels.max()) + 1 if offset is None else offset
    for label, area in zip(ids.tolist(), areas.tolist(), strict=True):
        if area < PAIR_AREA * median:
            continue
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in boxes[label - 1])
        mask = labels[box] == label
        whole = solidity_of(mask)
        if whole >= solidity:
            continue
        distance = ndi.distance_transform_edt(mask)
        peaks = peak_local_max(distance, min_distance=radius, labels=mask.astype(int))
        if len(peaks) < 2:
            continue
        # the two peaks farthest apart: the two nuclei's centres
        gaps = np.linalg.norm(peaks[:, None] - peaks[None], axis=-1)
        i, j = np.unravel_index(np.argmax(gaps), gaps.shape)
        markers = np.zeros(mask.shape, np.int32)
        markers[tuple(peaks[i])], markers[tuple(peaks[j])] = 1, 2
        parts = watershed(-distance, markers, mask=mask)
        sizes = [np.count_nonzero(parts == k) for k in (1, 2)]
        if min(sizes) < PART_AREA * median or \
                min(solidity_of(parts == k) for k in (1, 2)) <= whole:
            continue
        if out is labels:
            out = labels.copy()
        out[box][parts == 1 + int(np.argmin(sizes))] = offset + label
    return out


def merged(windows, settings, instance_area: tuple[float, float]):
    """``windows`` (the method's, labels ``(T, Y, X)``) with each frame's fragments merged,
    pairs split and halves merged, or ``windows`` itself when all three stages are off."""
    limit = settings.merge_fragments * instance_area[1]
    halves, pairs = settings.merge_halves, settings.split_pairs
    if limit <= 0 and halves <= 0 and pairs <= 0:
        return windows

    def window(w):
        # new labels above every label of the window, the same in each of its frames
        offset = int(w.labels.max()) + 1
        return dataclasses.replace(w, labels=np.stack([
            merge_halves(split_pairs(merge_fragments(f, limit), pairs, offset), halves,
                         split_offset=offset if pairs > 0 else None)
            for f in w.labels]))

    return (window(w) for w in windows)
