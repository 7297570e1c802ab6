"""Small pure helpers of the linker: IoU matching and per-label statistics.

Everything works on ``(Y, X)`` integer label images (0 = background) and is
vectorised over labels, so linking a frame costs a few passes over its pixels.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from instatrack.metrics.matching import match_iou as metrics_match_iou


def match_iou(a: np.ndarray, b: np.ndarray, threshold: float) -> dict[int, int]:
    """One-to-one matching of the labels of ``a`` to those of ``b`` by IoU.

    Hungarian assignment maximising the summed IoU (the metrics' matching,
    :func:`instatrack.metrics.matching.match_iou`); pairs with IoU below
    ``threshold`` (or not overlapping) stay unmatched. ``a`` and ``b`` are
    ``(Y, X)`` label images of the same frame or of consecutive frames.
    Returns ``{label in b: label in a}``.
    """
    pairs, _ = metrics_match_iou(a, b, threshold)
    return {int(label_b): int(label_a) for label_a, label_b in pairs}


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
