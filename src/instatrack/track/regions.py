"""Connected-region filter of Cheng et al. (2017) for mask propagation.

A refined per-object mask often contains, besides the object, spurious blobs
on similar-looking objects elsewhere in the frame. The filter keeps the
connected region that best matches the object's mask in the previous frame
(optionally shifted by the object's motion), plus every region large enough
to be a real part of the object (e.g. an object split by an occluder).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


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
                   min_fraction: float = 0.5, connectivity: int = 2) -> np.ndarray:
    """Keep the connected regions of ``mask`` that belong to the tracked object.

    ``mask``: ``(Y, X)`` bool, the object's thresholded refined score map.
    ``reference``: ``(Y, X)`` bool, the object's mask in the previous frame
    (already shifted by its motion if wanted); None or empty keeps ``mask``.

    Kept: the region with the highest IoU with ``reference`` (when none
    overlaps, the region whose centroid is nearest to the reference's), and
    every region whose area is at least ``min_fraction`` times the reference's
    area. ``connectivity`` 1 = 4-neighbours, 2 = 8-neighbours.
    Returns a ``(Y, X)`` bool mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if reference is None or not reference.any() or not mask.any():
        return mask.copy()
    reference = np.asarray(reference, dtype=bool)
    if reference.shape != mask.shape:
        raise ValueError(f"reference shape {reference.shape} != mask shape {mask.shape}")
    regions, count = ndi.label(mask, structure=ndi.generate_binary_structure(2, connectivity))
    areas = np.bincount(regions.ravel(), minlength=count + 1)[1:]
    inter = np.bincount(regions[reference], minlength=count + 1)[1:]
    ref_area = int(reference.sum())
    iou = inter / (areas + ref_area - inter)
    best = int(np.argmax(iou)) if iou.max() > 0 else _nearest_region(regions, count, reference)
    keep = areas >= min_fraction * ref_area
    keep[best] = True
    return np.concatenate([[False], keep])[regions]


def _nearest_region(regions: np.ndarray, count: int, reference: np.ndarray) -> int:
    """Index (0-based) of the region whose centroid is nearest to the reference's."""
    index = np.arange(1, count + 1)
    centres = np.array(ndi.center_of_mass(np.ones(regions.shape), regions, index))
    target = np.array(centroid(reference))
    return int(np.argmin(((centres - target) ** 2).sum(1)))


def assign_pixels(scores: np.ndarray, ids: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Label each pixel with the object of highest score, 0 where all are below ``threshold``.

    ``scores``: ``(K, Y, X)`` float, one map per object; ``ids``: ``(K,)`` the
    label value of each object. Returns ``(Y, X)`` int32.
    """
    ids = np.asarray(ids, dtype=np.int32)
    if len(scores) == 0:
        return np.zeros(scores.shape[1:], np.int32)
    best = scores.argmax(0)
    labels = ids[best]
    labels[np.take_along_axis(scores, best[None], 0)[0] < threshold] = 0
    return labels
