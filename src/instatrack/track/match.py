"""Small pure helpers of the linker: IoU matching and per-label statistics.

Everything works on ``(Y, X)`` integer label images (0 = background) and is
vectorised over labels, so linking a frame costs a few passes over its pixels.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment


def overlap_table(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel counts of every pair of labels that overlap in ``a`` and ``b`` (same shape).

    Returns ``(a_ids, b_ids, counts)``, three ``(P,)`` arrays, one entry per
    overlapping pair of non-zero labels.
    """
    both = (a > 0) & (b > 0)
    pairs = np.stack([a[both], b[both]]).astype(np.int64)
    if pairs.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    unique, counts = np.unique(pairs, axis=1, return_counts=True)
    return unique[0], unique[1], counts


def match_iou(a: np.ndarray, b: np.ndarray, threshold: float) -> dict[int, int]:
    """One-to-one matching of the labels of ``a`` to those of ``b`` by IoU.

    Hungarian assignment maximising the summed IoU; pairs with IoU below
    ``threshold`` (or not overlapping) stay unmatched. ``a`` and ``b`` are
    ``(Y, X)`` label images of the same frame or of consecutive frames.
    Returns ``{label in b: label in a}``.
    """
    a_ids, b_ids, inter = overlap_table(a, b)
    if len(inter) == 0:
        return {}
    area_a = _areas(a, a_ids)
    area_b = _areas(b, b_ids)
    iou = inter / (area_a + area_b - inter)
    keep = iou >= threshold
    a_ids, b_ids, iou = a_ids[keep], b_ids[keep], iou[keep]
    if len(iou) == 0:
        return {}
    rows, a_index = np.unique(a_ids, return_inverse=True)
    cols, b_index = np.unique(b_ids, return_inverse=True)
    cost = np.zeros((len(rows), len(cols)))
    cost[a_index, b_index] = -iou
    r, c = linear_sum_assignment(cost)
    chosen = cost[r, c] < 0
    return {int(cols[j]): int(rows[i]) for i, j in zip(r[chosen], c[chosen], strict=True)}


def _areas(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    counts = np.bincount(labels.ravel(), minlength=int(ids.max()) + 1 if len(ids) else 1)
    return counts[ids]


def label_stats(labels: np.ndarray) -> dict[int, tuple[int, float, float]]:
    """``{label: (area, y, x)}`` (centroid in pixels) of a ``(Y, X)`` label image."""
    ys, xs = np.nonzero(labels)
    if len(ys) == 0:
        return {}
    values = labels[ys, xs]
    n = int(values.max()) + 1
    area = np.bincount(values, minlength=n)
    sum_y = np.bincount(values, weights=ys, minlength=n)
    sum_x = np.bincount(values, weights=xs, minlength=n)
    present = np.flatnonzero(area)
    return {int(k): (int(area[k]), float(sum_y[k] / area[k]), float(sum_x[k] / area[k]))
            for k in present}


def remove_small(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Copy of ``(Y, X)`` labels with the labels of fewer than ``min_area`` pixels set to 0."""
    if min_area <= 0 or labels.max() <= 0:
        return labels
    area = np.bincount(labels.ravel())
    small = area < min_area
    small[0] = False
    return np.where(small[labels], 0, labels).astype(labels.dtype)


def dilated_overlaps(labels: np.ndarray, target: np.ndarray, radius: int,
                     only: Iterable[int]) -> dict[int, dict[int, int]]:
    """For each label in ``only``, pixels of each ``target`` label under its dilation.

    ``labels`` and ``target`` are ``(Y, X)`` label images; each object of
    ``labels`` is dilated by ``radius`` pixels (a disc) inside its bounding
    box grown by ``radius``. Returns ``{label: {target label: pixel count}}``.
    """
    disc = _disc(radius)
    boxes = ndimage.find_objects(labels)
    result: dict[int, dict[int, int]] = {}
    for index in only:
        box = boxes[index - 1] if 0 < index <= len(boxes) else None
        if box is None:
            continue
        grown = tuple(slice(max(s.start - radius, 0), s.stop + radius) for s in box)
        mask = labels[grown] == index
        if radius > 0:
            mask = ndimage.binary_dilation(mask, structure=disc)
        under = target[grown][mask]
        ids, counts = np.unique(under[under > 0], return_counts=True)
        result[index] = {int(i): int(c) for i, c in zip(ids, counts, strict=True)}
    return result


def _disc(radius: int) -> np.ndarray:
    if radius <= 0:
        return np.ones((1, 1), bool)
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return yy * yy + xx * xx <= radius * radius
