"""Per-object score maps -> one label image: the connected-region filter of
Cheng et al. (2017) for mask propagation.

A refined per-object mask often contains, besides the object, spurious blobs
on similar-looking objects elsewhere in the frame. The filter keeps the
connected region that best matches the object's mask in the previous frame
(optionally shifted by the object's motion), plus every region large enough
to be a real part of the object (e.g. an object split by an occluder).
:func:`assign_pixels` then gives each pixel to one object, and
:class:`ObjectMemory` keeps each object's last mask and motion between frames.
:func:`filter_and_assign` does all of it for one frame, as
:class:`RegionSettings` say.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage as ndi

from instatrack.settings import Settings, require


@dataclasses.dataclass(frozen=True)
class RegionSettings(Settings):
    """How per-object score maps become labels (keys of the spatial-propagation config).

    ``score_threshold``: refined score a pixel needs to belong to an object;
    ``region_min_fraction`` and ``region_max_distance``: the extra regions kept
    (:func:`filter_regions`; ``inf`` keeps every large region, as the paper);
    ``contest``: who gets a pixel that several objects claim, ``"distance"``
    (the object whose previous mask is nearest) or ``"score"`` (the highest
    score, as the paper); ``region_motion``: shift each previous mask by the
    object's last motion before comparing; ``flow_prior`` (0 = off): each object's
    mask in the previous frame, carried into this one by optical flow, is blended
    into its score map with this weight before thresholding
    (:mod:`instatrack.cluster.flow`). Above 0.5 a pixel the flow carries is kept and
    one it does not is added only at the carried outline: the score maps find the
    object in frame 1 and again after it is lost, the flow follows it in between.
    0.55 was chosen on held-out synthetic videos with two parent networks (0.25, 0.4
    and 0.55 tried; docs/propagation_pretraining.md, "Masks carried by optical flow").
    ``flow_radius``: the flow's window radius in pixels; best at 4 on 240x432 frames,
    at 7 (the default) on 480x854 ones, so larger frames want a larger radius.
    ``flow_scale``: the flow is computed on both frames shrunk by this factor (the
    window with them) and enlarged back, for speed (1 = full size). ``flow_edge``: what a
    pixel carries whose source lies beyond the previous frame: ``"background"``;
    ``"nearest"``, the mask at the frame's edge, so an object cut by the edge goes on
    beyond it; ``"moving"`` (the default), the same where the pixel moves as the object
    does (:func:`~instatrack.cluster.flow.carry_masks`): chosen on held-out synthetic
    videos, where objects come into view (session 36: 0.878 -> 0.943 on the plain set,
    0.839 -> 0.928 on the faster one, against 0.962 and 0.916 with ``"nearest"``), and
    the one of the two that does not take in what a panning camera brings into view
    beside an object (DAVIS ``motocross-jump`` 0.480 -> 0.482; 0.451 with ``"nearest"``).
    """

    post_processing = True

    score_threshold: float = 0.5
    region_min_fraction: float = 0.5
    region_max_distance: float = 1.0
    contest: str = "distance"
    region_motion: bool = True
    flow_prior: float = 0.55
    flow_radius: int = 7
    flow_scale: float = 1.0
    flow_edge: str = "moving"

    def check(self) -> None:
        super().check()
        require(0 < self.score_threshold < 1,
                f"score_threshold must be in (0, 1), got {self.score_threshold}")
        require(self.region_min_fraction >= 0,
                f"region_min_fraction must be >= 0, got {self.region_min_fraction}")
        require(self.region_max_distance >= 0,
                f"region_max_distance must be >= 0, got {self.region_max_distance}")
        require(self.contest in ("distance", "score"),
                f"contest must be 'distance' or 'score', got {self.contest!r}")
        require(0 <= self.flow_prior < 1,
                f"flow_prior must be in [0, 1), got {self.flow_prior}")
        require(self.flow_radius >= 1, f"flow_radius must be >= 1, got {self.flow_radius}")
        require(0 < self.flow_scale <= 1, f"flow_scale must be in (0, 1], got {self.flow_scale}")
        require(self.flow_edge in ("background", "nearest", "moving"),
                f"flow_edge must be 'background', 'nearest' or 'moving', got {self.flow_edge!r}")


def shift_mask(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``(Y, X)`` mask moved by ``(dy, dx)`` pixels; what leaves the frame is dropped."""
    out = np.zeros_like(mask)
    Y, X = mask.shape
    if abs(dy) >= Y or abs(dx) >= X:
        return out
    src_y = slice(max(-dy, 0), Y - max(dy, 0))
    src_x = slice(max(-dx, 0), X - max(dx, 0))
    dst_y = slice(max(dy, 0), Y - max(-dy, 0))
    dst_x = slice(max(dx, 0), X - max(-dx, 0))
    out[dst_y, dst_x] = mask[src_y, src_x]
    return out


def centroid(mask: np.ndarray) -> tuple[float, float] | None:
    """``(y, x)`` centre of mass of a ``(Y, X)`` mask, None when it is empty."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    return float(ys.mean()), float(xs.mean())


def filter_regions(mask: np.ndarray, reference: np.ndarray | None,
                   min_fraction: float = 0.5, max_distance: float = np.inf,
                   claimed: np.ndarray | None = None, connectivity: int = 2) -> np.ndarray:
    """Keep the connected regions of ``mask`` that belong to the tracked object.

    ``mask``: ``(Y, X)`` bool, the object's thresholded refined score map.
    ``reference``: ``(Y, X)`` bool, the object's mask in the previous frame
    (already shifted by its motion if wanted); None or empty keeps ``mask``.

    Kept: the region that best matches ``reference`` (:func:`best_region`), and
    every other region whose area is at least ``min_fraction`` times the
    reference's area, that lies within ``max_distance * sqrt(reference area)``
    pixels of the reference and that does not touch ``claimed`` (pixels that
    other objects' best regions hold). The last two conditions are not in the
    paper, which keeps every large region; they stop look-alike objects from
    being taken for parts of this one. ``connectivity`` 1 = 4-neighbours,
    2 = 8-neighbours. Returns a ``(Y, X)`` bool mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if reference is None or not np.any(reference) or not mask.any():
        return mask.copy()
    reference = _check_reference(reference, mask)
    regions, count = _label(mask, connectivity)
    best, areas = _best_index(regions, count, reference)
    keep = areas >= min_fraction * reference.sum()
    keep[best] = False
    if keep.any() and claimed is not None:
        keep &= np.bincount(regions[claimed], minlength=count + 1)[1:] == 0
    if keep.any() and np.isfinite(max_distance):
        limit = max_distance * np.sqrt(reference.sum())
        keep &= _region_distances(regions, count, reference) <= limit
    keep[best] = True
    return np.concatenate([[False], keep])[regions]


def best_region(mask: np.ndarray, reference: np.ndarray | None, connectivity: int = 2
                ) -> np.ndarray:
    """The connected region of ``mask`` ``(Y, X)`` that best matches ``reference``.

    Highest IoU with ``reference``; when no region overlaps it, the region whose
    centroid is nearest to the reference's. All of ``mask`` when ``reference``
    is None or empty; empty when ``mask`` is. Returns ``(Y, X)`` bool.
    """
    mask = np.asarray(mask, dtype=bool)
    if reference is None or not np.any(reference) or not mask.any():
        return mask.copy()
    regions, count = _label(mask, connectivity)
    best, _ = _best_index(regions, count, _check_reference(reference, mask))
    return regions == best + 1


def _check_reference(reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    reference = np.asarray(reference, dtype=bool)
    if reference.shape != mask.shape:
        raise ValueError(f"reference shape {reference.shape} != mask shape {mask.shape}")
    return reference


def _label(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    return ndi.label(mask, structure=ndi.generate_binary_structure(2, connectivity))


def _best_index(regions: np.ndarray, count: int, reference: np.ndarray
                ) -> tuple[int, np.ndarray]:
    """0-based index of the best-matching region and the ``(count,)`` region areas."""
    areas = np.bincount(regions.ravel(), minlength=count + 1)[1:]
    inter = np.bincount(regions[reference], minlength=count + 1)[1:]
    iou = inter / (areas + reference.sum() - inter)
    if iou.max() > 0:
        return int(np.argmax(iou)), areas
    return _nearest_region(regions, count, reference), areas


def _region_distances(regions: np.ndarray, count: int, reference: np.ndarray) -> np.ndarray:
    """``(count,)`` smallest distance in pixels from each region to the reference mask."""
    distance = ndi.distance_transform_edt(~reference)
    return np.asarray(ndi.minimum(distance, regions, np.arange(1, count + 1)), dtype=float)


def _nearest_region(regions: np.ndarray, count: int, reference: np.ndarray) -> int:
    """Index (0-based) of the region whose centroid is nearest to the reference's."""
    index = np.arange(1, count + 1)
    centres = np.array(ndi.center_of_mass(np.ones(regions.shape), regions, index))
    target = np.array(centroid(reference))
    return int(np.argmin(((centres - target) ** 2).sum(1)))


def assign_pixels(scores: np.ndarray, ids: np.ndarray, threshold: float = 0.5,
                  references: np.ndarray | None = None) -> np.ndarray:
    """Label each pixel with the object of highest score, 0 where all are below ``threshold``.

    ``scores``: ``(K, Y, X)`` float, one map per object; ``ids``: ``(K,)`` the
    label value of each object. With ``references`` (``(K, Y, X)`` bool, each
    object's previous mask), a pixel that several objects score above
    ``threshold`` goes instead to the object whose reference is nearest
    (ties: highest score); look-alike objects that touch have near-equal
    scores, and their previous masks tell them apart better.
    Returns ``(Y, X)`` int32.
    """
    ids = np.asarray(ids, dtype=np.int32)
    if len(scores) == 0:
        return np.zeros(scores.shape[1:], np.int32)
    above = scores >= threshold
    best = scores.argmax(0)
    contested = above.sum(0) > 1
    if references is not None and contested.any():
        rank = np.full(scores.shape, np.inf)
        for k in np.flatnonzero(above[:, contested].any(1)):
            if references[k].any():
                rank[k] = ndi.distance_transform_edt(~references[k])
        # distance first, score only to break ties
        rank = np.where(above, rank - 1e-3 * scores, np.inf)
        best = np.where(contested, rank.argmin(0), best)
    labels = ids[best]
    labels[~above.any(0)] = 0
    return labels


def filter_and_assign(scores: np.ndarray, memory: ObjectMemory, ids: np.ndarray,
                      settings: RegionSettings) -> np.ndarray:
    """Region filter per object, then pixel assignment; updates ``memory``.

    ``scores``: ``(K, Y, X)`` refined per-object scores (changed in place),
    ``ids``: ``(K,)`` the objects' labels. A region that is some object's best
    match is not kept as a mere large region of another, so look-alike objects
    do not swallow each other. Returns ``(Y, X)`` int32 labels.
    """
    masks = scores >= settings.score_threshold
    references = [memory.reference(k, settings.region_motion) for k in range(len(ids))]
    best = np.stack([best_region(m, r) for m, r in zip(masks, references, strict=True)])
    claims = best.sum(0)
    for k in range(len(ids)):
        keep = filter_regions(masks[k], references[k], settings.region_min_fraction,
                              settings.region_max_distance, claimed=claims - best[k] > 0)
        scores[k][~keep] = 0.0
    contest = np.stack(references) if settings.contest == "distance" else None
    labels = assign_pixels(scores, ids, settings.score_threshold, contest)
    memory.update(labels[None] == ids[:, None, None])
    return labels


class ObjectMemory:
    """Last non-empty mask and motion of each object, for the region filter, and
    ``latest``: the ``(K, Y, X)`` masks of the last frame recorded (empty where an
    object was not found), which the flow carries on (``flow_prior``)."""

    def __init__(self, masks: np.ndarray):
        self.masks = masks.copy()
        self.latest = self.masks
        self.centres = [centroid(m) for m in masks]
        self.motion = [(0, 0)] * len(masks)

    def reference(self, k: int, use_motion: bool) -> np.ndarray:
        """Object ``k``'s previous mask, moved by its last displacement if ``use_motion``."""
        if not use_motion or self.motion[k] == (0, 0):
            return self.masks[k]
        return shift_mask(self.masks[k], *self.motion[k])

    def update(self, masks: np.ndarray) -> None:
        """Record ``(K, Y, X)`` new masks; a vanished object keeps its last mask, at rest."""
        self.latest = masks
        for k, mask in enumerate(masks):
            centre = centroid(mask)
            if centre is None:
                self.motion[k] = (0, 0)
                continue
            old = self.centres[k]
            self.motion[k] = (round(centre[0] - old[0]), round(centre[1] - old[1]))
            self.masks[k], self.centres[k] = mask, centre
