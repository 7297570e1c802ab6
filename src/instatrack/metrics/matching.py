"""Pixel overlaps between two label images and one-to-one IoU matching.

Every instance metric in this package starts from the same table: how many pixels
each ground-truth object shares with each predicted object. It is built with one
``np.bincount`` over combined label indices, so it stays fast for hundreds of
objects per image.

Conventions for the label images ``gt`` and ``pred`` (both ``(Y, X)`` or any
equal shape, integer dtype): 0 is background, k > 0 is object k. In ``gt``,
-1 marks unannotated pixels; they are dropped from BOTH images before counting,
so an unannotated region neither rewards nor penalises a prediction.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
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
