"""Label images: per-object statistics, small-object filtering, renumbering, IoU matching.

The one module of label helpers that the tracker (:mod:`instatrack.track`), the
post-processing (:mod:`instatrack.cluster`) and the measures
(:mod:`instatrack.metrics`) share; it imports none of them.

Conventions: label images are integer arrays (``(Y, X)`` unless said
otherwise); 0 is background, k > 0 is object k. In a ground truth ``gt``, -1
marks unannotated pixels; the overlap table drops them from BOTH images before
counting, so an unannotated region neither rewards nor penalises a prediction.

Every instance measure starts from the same table: how many pixels each
ground-truth object shares with each predicted object
(:func:`overlap_matrix`). It is built with one ``np.bincount`` over combined
label indices, so it stays fast for hundreds of objects per image.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from instatrack.errors import DataError

IGNORE = -1


class Overlap(NamedTuple):
    """Pixel intersection counts between the objects of two label images.

    ``counts[i, j]`` is the number of pixels with the i-th gt id and the j-th pred
    id, where index 0 is background on both axes: ``counts`` has shape
    ``(1 + n_gt, 1 + n_pred)``, ``gt_ids`` ``(n_gt,)`` and ``pred_ids``
    ``(n_pred,)`` list the object ids (sorted) that rows/columns 1.. stand for.
    """

    counts: np.ndarray
    gt_ids: np.ndarray
    pred_ids: np.ndarray

    @property
    def intersections(self) -> np.ndarray:
        """Object-object intersections, ``(n_gt, n_pred)``."""
        return self.counts[1:, 1:]

    @property
    def gt_sizes(self) -> np.ndarray:
        """Pixels per gt object (annotated pixels only), ``(n_gt,)``."""
        return self.counts[1:].sum(axis=1)

    @property
    def pred_sizes(self) -> np.ndarray:
        """Pixels per pred object (outside unannotated gt pixels), ``(n_pred,)``."""
        return self.counts[:, 1:].sum(axis=0)


def check_label_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate two label images and return them as integer arrays.

    Raises :class:`DataError` (one line) on a shape mismatch, a non-integer
    dtype or negative prediction labels / gt labels below -1.
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise DataError(f"label images differ in shape: gt {gt.shape} vs pred {pred.shape}")
    for name, arr in (("gt", gt), ("pred", pred)):
        if arr.dtype == bool:
            continue
        if not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"{name} label image has dtype {arr.dtype}, expected integers")
    if pred.size and pred.min() < 0:
        raise DataError(f"pred label image has negative label {pred.min()}")
    if gt.size and gt.min() < IGNORE:
        raise DataError(f"gt label image has label {gt.min()} (only -1 may be negative)")
    return gt.astype(np.int64, copy=False), pred.astype(np.int64, copy=False)


def _dense_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map labels (>= 0) to 0..n (0 stays background); return (index, object ids)."""
    top = int(labels.max()) if labels.size else 0
    if top < 4 * labels.size + 1024:
        present = np.bincount(labels, minlength=top + 1) > 0
        present[0] = True
        lut = np.cumsum(present) - 1
        ids = np.flatnonzero(present)[1:]
        return lut[labels], ids
    # Sparse huge ids: a lookup table would be larger than the image.
    ids, index = np.unique(labels, return_inverse=True)
    if ids[0] != 0:
        ids = np.concatenate([[0], ids])
        index = index + 1
    return index.reshape(labels.shape), ids[1:]


def overlap_matrix(gt: np.ndarray, pred: np.ndarray) -> Overlap:
    """Count the pixels every gt object shares with every pred object.

    Args:
        gt: ``(Y, X)`` (any shape) integer labels; -1 = unannotated, ignored.
        pred: integer labels of the same shape, >= 0.

    Returns:
        :class:`Overlap` with ``counts`` ``(1 + n_gt, 1 + n_pred)`` int64.
    """
    gt, pred = check_label_pair(gt, pred)
    keep = gt != IGNORE
    gt_flat, pred_flat = gt[keep], pred[keep]
    gt_index, gt_ids = _dense_index(gt_flat)
    pred_index, pred_ids = _dense_index(pred_flat)
    n_rows, n_cols = len(gt_ids) + 1, len(pred_ids) + 1
    flat = gt_index.astype(np.int64) * n_cols + pred_index
    counts = np.bincount(flat, minlength=n_rows * n_cols).reshape(n_rows, n_cols)
    return Overlap(counts.astype(np.int64), gt_ids, pred_ids)


def majority_matches(overlap: Overlap) -> np.ndarray:
    """For each gt object, the index (into ``pred_ids``) of the pred object covering more
    than half of it, or -1 (CTC's matching rule: at most one can), ``(n_gt,)`` int."""
    inter = overlap.intersections
    if not inter.size:
        return np.full(len(overlap.gt_ids), -1)
    best = inter.argmax(axis=1)
    covered = 2 * inter[np.arange(len(best)), best] > overlap.gt_sizes
    return np.where(covered, best, -1)


def iou_from_overlap(overlap: Overlap) -> np.ndarray:
    """Intersection over union of every gt/pred object pair, ``(n_gt, n_pred)`` float64."""
    inter = overlap.intersections
    union = overlap.gt_sizes[:, None] + overlap.pred_sizes[None, :] - inter
    return np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)


def iou_matrix(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every gt object with every pred object.

    Returns:
        ``(iou, gt_ids, pred_ids)``: ``iou`` ``(n_gt, n_pred)`` float64, rows and
        columns in the order of the sorted object ids.
    """
    overlap = overlap_matrix(gt, pred)
    return iou_from_overlap(overlap), overlap.gt_ids, overlap.pred_ids


def match_from_iou(iou: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching on an IoU matrix maximising the summed IoU of valid pairs.

    Pairs below ``threshold`` are zeroed before the Hungarian assignment so that
    they cannot displace a valid pair; a pair counts when ``iou >= threshold``.

    Returns:
        ``(rows, cols)`` int arrays of matched indices into ``iou``.
    """
    if iou.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    valid = np.where(iou >= threshold, iou, 0.0)
    rows, cols = linear_sum_assignment(valid, maximize=True)
    keep = (iou[rows, cols] >= threshold) & (iou[rows, cols] > 0)
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)


def match_iou(
    gt: np.ndarray, pred: np.ndarray, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Match gt and pred objects one-to-one by IoU (Hungarian assignment).

    Args:
        gt: integer labels, -1 = unannotated (ignored).
        pred: integer labels of the same shape.
        threshold: a pair is a match when its IoU is >= threshold (and > 0).

    Returns:
        ``(pairs, ious)``: ``pairs`` ``(K, 2)`` int64 of ``(gt_id, pred_id)``
        label values, ``ious`` ``(K,)`` float64 their IoU, sorted by gt id.
    """
    iou, gt_ids, pred_ids = iou_matrix(gt, pred)
    rows, cols = match_from_iou(iou, threshold)
    pairs = np.stack([gt_ids[rows], pred_ids[cols]], axis=1).astype(np.int64)
    return pairs.reshape(-1, 2), iou[rows, cols]


# -- per-object statistics and filters ------------------------------------------------------
class ObjectStats(NamedTuple):
    """Area (pixels) and centroid ``(y, x)`` (pixels) of one object of a label image."""

    area: int
    y: float
    x: float


def label_stats(labels: np.ndarray) -> dict[int, ObjectStats]:
    """``{label: ObjectStats}`` of every object of a ``(Y, X)`` label image, by label."""
    ys, xs = np.nonzero(labels)
    if len(ys) == 0:
        return {}
    values = labels[ys, xs]
    n = int(values.max()) + 1
    area = np.bincount(values, minlength=n)
    sum_y = np.bincount(values, weights=ys, minlength=n)
    sum_x = np.bincount(values, weights=xs, minlength=n)
    present = np.flatnonzero(area)
    return {int(k): ObjectStats(int(area[k]), float(sum_y[k] / area[k]),
                                float(sum_x[k] / area[k]))
            for k in present}


def solidity(mask: np.ndarray) -> float:
    """Area over convex hull area of a ``(Y, X)`` bool mask: 1 for a convex object, lower for
    a waisted one (two touching objects)."""
    from skimage.morphology import convex_hull_image

    return np.count_nonzero(mask) / max(np.count_nonzero(convex_hull_image(mask)), 1)


def weighted_percentile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The ``q`` percentile of ``values`` when each counts ``weights`` times (the plain
    percentile when the weights sum to 0): e.g. object areas weighted by themselves give
    the area of the object that holds a given share of all the objects' pixels."""
    order = np.argsort(values)
    values, cumulative = values[order], np.cumsum(weights[order])
    if cumulative[-1] <= 0:
        return float(np.percentile(values, q))
    return float(values[np.searchsorted(cumulative, q / 100 * cumulative[-1])])


def remove_small(labels: np.ndarray, min_area: int) -> np.ndarray:
    """``labels`` with every object of fewer than ``min_area`` pixels set to 0.

    ``labels`` is a label image of any shape (>= 0); the input itself is
    returned when nothing can be removed, else a copy of the same dtype.
    """
    if min_area <= 0 or labels.max() <= 0:
        return labels
    area = np.bincount(labels.ravel())
    small = area < min_area
    small[0] = False
    return np.where(small[labels], 0, labels).astype(labels.dtype)


def remove_small_pieces(labels: np.ndarray, min_area: int) -> np.ndarray:
    """``(Y, X)`` labels with every connected piece of an object (4-neighbours) of
    fewer than ``min_area`` pixels set to 0; an object may lose all its pieces."""
    from skimage.measure import label as connected

    if min_area <= 0 or labels.max() <= 0:
        return labels
    pieces = connected(labels, background=0, connectivity=1)
    return np.where(remove_small(pieces, min_area) > 0, labels, 0).astype(labels.dtype)


def renumber(labels: np.ndarray) -> np.ndarray:
    """Object ids ``> 0`` -> ``1..K`` in the order of the ids; 0 and -1 unchanged.

    Works on label images of any shape and keeps their dtype, so the ids of a
    ``(T, Y, X)`` movie stay consistent over time.
    """
    top = int(labels.max(initial=0))
    if top <= 0:
        return labels.copy()
    present = np.zeros(top + 1, bool)
    present[labels[labels > 0]] = True
    rank = np.cumsum(present).astype(labels.dtype)
    return np.where(labels > 0, rank[np.maximum(labels, 0)], labels)


def relabel(labels: np.ndarray, new_ids: dict[int, int]) -> np.ndarray:
    """``(Y, X)`` labels ``>= 0`` with each id ``k`` replaced by ``new_ids[k]`` (else 0); int32."""
    lut = np.zeros(int(labels.max(initial=0)) + 1, np.int32)
    for old, new in new_ids.items():
        lut[old] = new
    return lut[labels]


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
