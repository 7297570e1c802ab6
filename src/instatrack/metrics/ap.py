"""Average precision for label images without confidence scores.

Label images carry no per-object score, so there is no ranking to integrate a
precision-recall curve over (the COCO definition). We use the definition of the
2018 Data Science Bowl, also used by StarDist and Cellpose papers: at an IoU
threshold t, objects are matched one-to-one (Hungarian assignment on IoU, a pair
counts when IoU >= t) and

    AP_t = TP / (TP + FP + FN),

then ``AP`` is the mean of ``AP_t`` over the thresholds (0.5, 0.55, ..., 0.95 by
default) and ``AP50``/``AP75`` are ``AP_t`` at 0.5/0.75. It penalises both
missed and spurious objects in one number, which is what a segmentation without
scores can be judged on; precision ``TP/(TP+FP)`` and recall ``TP/(TP+FN)`` can
be read from :func:`detection_counts`.

By default TP, FP and FN are summed over all images before the ratio (StarDist's
``matching_dataset``), so images with few objects do not dominate; pass
``by_image=True`` for the per-image mean of the Kaggle DSB2018 leaderboard.
A threshold where gt and prediction are both empty (TP + FP + FN = 0) scores 1.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from instatrack.errors import DataError
from instatrack.metrics.matching import iou_from_overlap, match_from_iou, overlap_matrix

__all__ = ["DEFAULT_THRESHOLDS", "average_precision", "detection_counts"]

# Rounded so that 0.75 is exactly 0.75 and can be looked up.
DEFAULT_THRESHOLDS = np.round(np.arange(0.5, 1.0, 0.05), 10)


def _as_image_list(images: np.ndarray | Iterable[np.ndarray]) -> list[np.ndarray]:
    """A single 2D array is one image; anything else is iterated over its first axis."""
    if isinstance(images, np.ndarray) and images.ndim == 2:
        return [images]
    return list(images)


def detection_counts(
    gts: np.ndarray | Iterable[np.ndarray],
    preds: np.ndarray | Iterable[np.ndarray],
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
) -> np.ndarray:
    """True positives, false positives and false negatives per image and threshold.

    Args:
        gts: reference label images ``(Y, X)`` (one 2D array or several);
            -1 = unannotated pixels, ignored.
        preds: predicted label images, as many as ``gts``.
        thresholds: IoU thresholds; a matched pair counts when IoU >= threshold.

    Returns:
        ``(n_images, n_thresholds, 3)`` int64 with ``[TP, FP, FN]`` on the last axis.
    """
    gts, preds = _as_image_list(gts), _as_image_list(preds)
    if len(gts) != len(preds):
        raise DataError(f"got {len(gts)} reference images but {len(preds)} predicted")
    thresholds = np.asarray(list(thresholds), dtype=float)
    counts = np.zeros((len(gts), len(thresholds), 3), dtype=np.int64)
    for index, (gt, pred) in enumerate(zip(gts, preds, strict=True)):
        overlap = overlap_matrix(gt, pred)
        iou = iou_from_overlap(overlap)
        n_gt, n_pred = iou.shape
        for k, threshold in enumerate(thresholds):
            tp = len(match_from_iou(iou, threshold)[0])
            counts[index, k] = (tp, n_pred - tp, n_gt - tp)
    return counts


def _scores(counts: np.ndarray) -> np.ndarray:
    """``TP / (TP + FP + FN)`` over the last axis; 1 where nothing is there at all."""
    total = counts.sum(axis=-1)
    return np.divide(counts[..., 0], total, out=np.ones(total.shape), where=total > 0)


def average_precision(
    gts: np.ndarray | Iterable[np.ndarray],
    preds: np.ndarray | Iterable[np.ndarray],
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
    by_image: bool = False,
) -> dict[str, float]:
    """DSB2018-style AP of predicted label images (see the module docstring).

    Args:
        gts: reference label images ``(Y, X)``; -1 = unannotated, ignored.
        preds: predicted label images, as many as ``gts``.
        thresholds: IoU thresholds averaged into ``AP``.
        by_image: average per-image scores instead of pooling the counts.

    Returns:
        ``{"AP": ..., "AP50": ..., "AP75": ...}``.
    """
    thresholds = np.asarray(list(thresholds), dtype=float)
    if thresholds.size == 0 or np.any((thresholds <= 0) | (thresholds > 1)):
        raise DataError(f"IoU thresholds must be in (0, 1], got {thresholds.tolist()}")
    every = np.concatenate([thresholds, [0.5, 0.75]])
    counts = detection_counts(gts, preds, every)
    if len(counts) == 0:
        raise DataError("average_precision got no images")
    if by_image:
        per_threshold = _scores(counts).mean(axis=0)
    else:
        per_threshold = _scores(counts.sum(axis=0))
    return {
        "AP": float(per_threshold[: len(thresholds)].mean()),
        "AP50": float(per_threshold[-2]),
        "AP75": float(per_threshold[-1]),
    }
