"""CVPPP leaf-segmentation measures: symmetric best Dice, difference in count, Dice.

Definitions (Scharr et al., "Leaf segmentation in plant phenotyping: a collation
study", MVA 2016):

* ``BD(a, b)`` best Dice: for each object of ``a`` the largest Dice with any
  object of ``b``, averaged over the objects of ``a``.
* ``SBD(gt, pred) = min(BD(gt, pred), BD(pred, gt))``.
* ``DiC = #pred - #gt`` (signed); ``|DiC|`` is its absolute value.
* foreground Dice of ``gt > 0`` against ``pred > 0``.

Empty images: ``BD`` of two images without objects is 1 (nothing to miss), and 0
when exactly one of them has objects; hence ``SBD`` is 1 for two empty images
and 0 when only one is empty. Foreground Dice of two empty images is 1.

Pixels with ``gt == -1`` are unannotated and ignored in every measure; object
counts use the labels > 0.
"""

from __future__ import annotations

import numpy as np

from instatrack.metrics.matching import IGNORE, check_label_pair, overlap_matrix

__all__ = ["best_dice", "dic", "dice", "symmetric_best_dice"]


def _best_dice_both_ways(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """``(BD(gt, pred), BD(pred, gt))`` from one overlap table."""
    overlap = overlap_matrix(gt, pred)
    n_gt, n_pred = len(overlap.gt_ids), len(overlap.pred_ids)
    if n_gt == 0 or n_pred == 0:
        both_empty = float(n_gt == 0 and n_pred == 0)
        return both_empty, both_empty
    inter = overlap.intersections
    sizes = overlap.gt_sizes[:, None] + overlap.pred_sizes[None, :]
    dice_table = 2.0 * inter / np.maximum(sizes, 1)
    return float(dice_table.max(axis=1).mean()), float(dice_table.max(axis=0).mean())


def best_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Best Dice ``BD(a, b)``: mean over the objects of ``a`` of their best Dice in ``b``.

    Args:
        a: ``(Y, X)`` integer labels.
        b: ``(Y, X)`` integer labels, same shape. Pixels that are -1 in either
            image (the reference's unannotated pixels) are ignored.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape == b.shape:
        # Either argument may be the reference carrying -1 (unannotated) pixels.
        ignored = (a == IGNORE) | (b == IGNORE)
        if ignored.any():
            a, b = np.where(ignored, IGNORE, a), np.where(ignored, 0, b)
    return _best_dice_both_ways(a, b)[0]


def symmetric_best_dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """CVPPP symmetric best Dice ``min(BD(gt, pred), BD(pred, gt))`` in [0, 1].

    Args:
        gt: ``(Y, X)`` reference labels (-1 = unannotated, ignored).
        pred: ``(Y, X)`` predicted labels.
    """
    return min(_best_dice_both_ways(gt, pred))


def _count(labels: np.ndarray) -> int:
    return int(np.count_nonzero(np.unique(labels) > 0))


def dic(gt: np.ndarray, pred: np.ndarray) -> int:
    """Difference in count ``#pred - #gt`` (signed; CVPPP's |DiC| is ``abs`` of it).

    Args:
        gt: ``(Y, X)`` reference labels; objects are the labels > 0.
        pred: ``(Y, X)`` predicted labels; objects wholly inside ``gt == -1``
            pixels are not counted.
    """
    gt, pred = check_label_pair(gt, pred)
    # A predicted object lying wholly in unannotated pixels is not counted.
    return _count(np.where(gt == IGNORE, 0, pred)) - _count(gt)


def dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """Foreground Dice ``2 |G & P| / (|G| + |P|)`` of ``gt > 0`` and ``pred > 0``.

    Pixels with ``gt == -1`` are ignored; two empty foregrounds give 1.
    """
    gt, pred = check_label_pair(gt, pred)
    keep = gt != IGNORE
    fg_gt, fg_pred = gt[keep] > 0, pred[keep] > 0
    total = int(fg_gt.sum()) + int(fg_pred.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(fg_gt & fg_pred)) / total
