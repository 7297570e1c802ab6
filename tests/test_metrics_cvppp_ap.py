"""Symmetric best Dice, DiC, foreground Dice and AP on hand-built label images."""

from __future__ import annotations

import numpy as np
import pytest

from instatrack.errors import DataError
from instatrack.metrics.ap import DEFAULT_THRESHOLDS, average_precision, detection_counts
from instatrack.metrics.cvppp import best_dice, dic, dice, symmetric_best_dice


def leaves():
    """Two 4x4 leaves A (label 1) and B (label 2) on a 16x16 grid."""
    gt = np.zeros((16, 16), np.int32)
    gt[0:4, 0:4] = 1
    gt[10:14, 10:14] = 2
    return gt


def test_split_leaf_by_hand():
    gt = leaves()
    pred = np.zeros_like(gt)
    pred[0:4, 0:4] = 1  # A exact
    pred[10:14, 10:12] = 2  # B cut in two halves of 8 px
    pred[10:14, 12:14] = 3
    # BD(gt, pred): A -> 1, B -> 2*8/(16+8) = 2/3; BD(pred, gt): 1, 2/3, 2/3
    assert best_dice(gt, pred) == pytest.approx((1 + 2 / 3) / 2)
    assert best_dice(pred, gt) == pytest.approx((1 + 4 / 3) / 3)
    assert symmetric_best_dice(gt, pred) == pytest.approx(7 / 9)
    assert dic(gt, pred) == 1
    assert dice(gt, pred) == 1.0


def test_missed_leaf_by_hand():
    gt = leaves()
    pred = np.where(gt == 1, 5, 0)
    assert symmetric_best_dice(gt, pred) == pytest.approx(0.5)
    assert dic(gt, pred) == -1
    assert dice(gt, pred) == pytest.approx(2 * 16 / (32 + 16))


def test_empty_image_conventions():
    gt, empty = leaves(), np.zeros((16, 16), np.int32)
    assert symmetric_best_dice(empty, empty) == 1.0
    assert best_dice(empty, empty) == 1.0
    assert symmetric_best_dice(gt, empty) == 0.0
    assert symmetric_best_dice(empty, gt) == 0.0
    assert best_dice(empty, gt) == 0.0
    assert dice(empty, empty) == 1.0
    assert dice(gt, empty) == 0.0
    assert dic(empty, empty) == 0
    assert dic(empty, gt) == 2


def test_unannotated_pixels_are_ignored():
    gt = leaves()
    pred = gt.copy()
    pred[6:9, 6:9] = 7  # spurious object...
    gt[5:10, 5:10] = -1  # ...inside an unannotated region
    assert symmetric_best_dice(gt, pred) == 1.0
    assert best_dice(pred, gt) == 1.0
    assert dic(gt, pred) == 0
    assert dice(gt, pred) == 1.0


def ap_image():
    """gt A exact, gt B (10x10) found with IoU 72/100, gt C missed, one spurious object."""
    gt = np.zeros((40, 40), np.int32)
    pred = np.zeros_like(gt)
    gt[0:5, 0:5], pred[0:5, 0:5] = 1, 1
    gt[10:20, 10:20], pred[10:19, 10:18] = 2, 2
    gt[30:35, 30:35] = 3
    pred[30:35, 0:5] = 4
    return gt, pred


def test_detection_counts_by_hand():
    gt, pred = ap_image()
    counts = detection_counts(gt, pred, [0.5, 0.72, 0.73])
    # at IoU >= 0.72 B still matches; above it only A does
    assert counts.tolist() == [[[2, 1, 1], [2, 1, 1], [1, 2, 2]]]


def test_average_precision_by_hand():
    gt, pred = ap_image()
    result = average_precision(gt, pred)
    # thresholds 0.5..0.7: 2 / (2 + 1 + 1); 0.75..0.95: 1 / (1 + 2 + 2)
    assert result == pytest.approx({"AP": (5 * 0.5 + 5 * 0.2) / 10, "AP50": 0.5, "AP75": 0.2})
    assert len(DEFAULT_THRESHOLDS) == 10 and 0.75 in DEFAULT_THRESHOLDS


def test_pooled_versus_per_image():
    gt, pred = ap_image()
    perfect = np.zeros((8, 8), np.int32)
    perfect[2:6, 2:6] = 1
    gts, preds = [gt, perfect], [pred, perfect]
    # pooled: 3 / 5 up to 0.7, 2 / 6 above
    assert average_precision(gts, preds)["AP"] == pytest.approx((0.6 + 1 / 3) / 2)
    # per image: mean of (0.5, 1) and of (0.2, 1)
    assert average_precision(gts, preds, by_image=True)["AP"] == pytest.approx((0.75 + 0.6) / 2)


def test_ap_empty_and_errors():
    empty = np.zeros((8, 8), np.int32)
    assert average_precision(empty, empty)["AP"] == 1.0
    gt, _ = ap_image()
    assert average_precision(gt, np.zeros_like(gt))["AP50"] == 0.0
    with pytest.raises(DataError, match="thresholds"):
        average_precision(gt, gt, thresholds=[1.5])
    with pytest.raises(DataError, match="2 reference images but 1"):
        average_precision([gt, gt], [gt])
