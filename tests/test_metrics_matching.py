"""Overlap tables and one-to-one IoU matching on hand-built label images."""

from __future__ import annotations

import numpy as np
import pytest

from instatrack.errors import DataError
from instatrack.metrics.matching import (
    iou_matrix,
    match_from_iou,
    match_iou,
    overlap_matrix,
)


def _two_objects():
    gt = np.zeros((6, 6), np.int32)
    gt[0:2, 0:2] = 1  # 4 px
    gt[3:6, 3:6] = 7  # 9 px, sparse id
    pred = np.zeros((6, 6), np.int32)
    pred[0:2, 0:3] = 5  # 6 px: 4 on gt 1, 2 on background
    pred[4:6, 3:6] = 2  # 6 px inside gt 7
    return gt, pred


def test_overlap_counts_by_hand():
    gt, pred = _two_objects()
    overlap = overlap_matrix(gt, pred)
    np.testing.assert_array_equal(overlap.gt_ids, [1, 7])
    np.testing.assert_array_equal(overlap.pred_ids, [2, 5])
    # rows: background, gt 1, gt 7; columns: background, pred 2, pred 5
    expected = [[36 - 13 - 2, 0, 2], [0, 0, 4], [3, 6, 0]]
    np.testing.assert_array_equal(overlap.counts, expected)
    np.testing.assert_array_equal(overlap.gt_sizes, [4, 9])
    np.testing.assert_array_equal(overlap.pred_sizes, [6, 6])


def test_iou_and_match_by_hand():
    gt, pred = _two_objects()
    iou, gt_ids, pred_ids = iou_matrix(gt, pred)
    np.testing.assert_allclose(iou, [[0, 4 / 6], [6 / 9, 0]])
    pairs, ious = match_iou(gt, pred, threshold=0.5)
    np.testing.assert_array_equal(pairs, [[1, 5], [7, 2]])
    np.testing.assert_allclose(ious, [4 / 6, 6 / 9])
    pairs, _ = match_iou(gt, pred, threshold=0.67)
    np.testing.assert_array_equal(pairs, np.zeros((0, 2)))


def test_ignored_pixels_do_not_count():
    gt, pred = _two_objects()
    gt[0:2, 2] = -1  # the two pred-5 pixels outside gt 1 become unannotated
    iou, _, _ = iou_matrix(gt, pred)
    assert iou[0, 1] == pytest.approx(1.0)
    assert overlap_matrix(gt, pred).counts.sum() == 36 - 2


def test_hungarian_beats_greedy_below_half():
    # Greedy would take (0, 0) and leave gt 1 unmatched; the optimum matches both.
    iou = np.array([[0.6, 0.5], [0.4, 0.0]])
    rows, cols = match_from_iou(iou, threshold=0.35)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (1, 0)]
    rows, _ = match_from_iou(iou, threshold=0.55)
    assert rows.tolist() == [0]


def test_huge_sparse_ids_and_empty_images():
    gt = np.zeros((4, 4), np.int64)
    gt[:2] = 10**12
    pred = gt.copy()
    pairs, ious = match_iou(gt, pred)
    np.testing.assert_array_equal(pairs, [[10**12, 10**12]])
    assert ious.tolist() == [1.0]
    empty = np.zeros((4, 4), np.int32)
    assert overlap_matrix(empty, empty).counts.tolist() == [[16]]
    assert match_iou(empty, pred)[0].shape == (0, 2)


def test_many_labels_fast_and_consistent():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 400, size=(256, 256))
    pred = np.roll(gt, 1, axis=0)
    overlap = overlap_matrix(gt, pred)
    assert overlap.counts.sum() == gt.size
    i, j = 5, 17
    expected = np.count_nonzero((gt == overlap.gt_ids[i]) & (pred == overlap.pred_ids[j]))
    assert overlap.intersections[i, j] == expected


@pytest.mark.parametrize(
    ("gt", "pred", "message"),
    [
        (np.zeros((3, 3), int), np.zeros((3, 4), int), "shape"),
        (np.zeros((3, 3), float), np.zeros((3, 3), int), "dtype"),
        (np.zeros((3, 3), int), -np.ones((3, 3), int), "negative"),
        (np.full((3, 3), -2), np.zeros((3, 3), int), "-1"),
    ],
)
def test_bad_inputs_raise_one_line(gt, pred, message):
    with pytest.raises(DataError, match=message) as error:
        overlap_matrix(gt, pred)
    assert "\n" not in str(error.value)
