"""DAVIS J, F and their statistics on hand-built masks."""

from __future__ import annotations

import numpy as np
import pytest

from instatrack.errors import DataError
from instatrack.metrics.davis import (
    boundary_map,
    boundary_tolerance,
    contour_accuracy,
    davis_per_frame,
    davis_with_per_frame,
    evaluate_davis,
    jf_statistics,
    region_similarity,
)


def square(col: int, size: int = 20) -> np.ndarray:
    """10x10 square at rows 5..14, cols col..col+9."""
    mask = np.zeros((size, size), bool)
    mask[5:15, col : col + 10] = True
    return mask


def test_region_similarity_by_hand():
    assert region_similarity(square(5), square(8)) == pytest.approx(70 / 130)
    empty = np.zeros((20, 20), bool)
    assert region_similarity(empty, empty) == 1.0
    assert region_similarity(square(5), empty) == 0.0


def test_boundary_and_tolerance():
    assert np.count_nonzero(boundary_map(square(5))) == 36
    # a mask filling the image has its boundary on the image border
    assert np.count_nonzero(boundary_map(np.ones((4, 4), bool))) == 12
    assert boundary_tolerance((20, 20)) == 1  # ceil(0.008 * 28.3)
    assert boundary_tolerance((480, 854)) == 8  # ceil(0.008 * 979.7), DAVIS 480p
    assert boundary_tolerance((480, 854), bound_th=3) == 3


def test_contour_accuracy_by_hand():
    # Shifted 3 px with a 1 px tolerance: of the 36 predicted boundary pixels,
    # 8 + 8 on the top/bottom rows and 2 at the corners of the left side are
    # within 1 px of the reference boundary -> precision 18/36; recall likewise.
    assert contour_accuracy(square(5), square(8)) == pytest.approx(0.5)
    assert contour_accuracy(square(5), square(6)) == 1.0  # within tolerance
    assert contour_accuracy(square(5), square(8), bound_th=3) == 1.0
    empty = np.zeros((20, 20), bool)
    assert contour_accuracy(empty, empty) == 1.0
    assert contour_accuracy(square(5), empty) == 0.0
    assert contour_accuracy(empty, square(5)) == 0.0


def test_jf_statistics_by_hand():
    stats = jf_statistics([1.0, 0.8, 0.6, 0.4, 0.2, 0.0, 0.4, 0.6])
    assert stats["mean"] == pytest.approx(0.5)
    assert stats["recall"] == pytest.approx(0.5)  # 1.0, 0.8, 0.6, 0.6 are > 0.5
    assert stats["decay"] == pytest.approx(0.9 - 0.5)  # first two vs last two frames
    assert jf_statistics([0.7]) == {"mean": 0.7, "recall": 1.0, "decay": 0.0}
    assert np.isnan(jf_statistics([])["mean"])


def two_object_video():
    gt = np.zeros((3, 20, 20), np.int32)
    gt[:, 0:5, 0:5] = 1
    gt[:, 10:16, 10:16] = 2
    pred = gt.copy()
    pred[1][pred[1] == 2] = 0  # object 2 lost in the middle frame
    return gt, pred


def test_evaluate_davis_by_hand():
    gt, pred = two_object_video()
    result = evaluate_davis(gt, pred, skip_first_last=False)
    # object 1: J = F = 1 in every frame; object 2: 1, 0, 1 -> mean 2/3, recall 2/3
    assert result["J_mean"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["F_mean"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["J_recall"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["J_decay"] == pytest.approx(0.0)  # first frame 1, last frame 1
    assert result["J&F"] == pytest.approx(5 / 6)
    assert result["n_objects"] == 2
    # DAVIS protocol: only the middle frame counts
    assert evaluate_davis(gt, pred)["J&F"] == pytest.approx(0.5)


def test_per_frame_shows_where_an_object_is_lost():
    gt, pred = two_object_video()
    frames = davis_per_frame(gt, pred)
    # every frame, the first and last included; object 2 lost in frame 1 halves it
    assert frames["J"] == pytest.approx([1.0, 0.5, 1.0])
    assert frames["F"] == pytest.approx([1.0, 0.5, 1.0])
    with pytest.raises(DataError, match="3 reference frames and 2"):
        davis_per_frame(gt, pred[:2])
    summary, again = davis_with_per_frame(gt, pred)  # both from one scoring
    assert again == frames and summary == evaluate_davis(gt, pred)
    two = davis_with_per_frame(gt[:2], pred[:2])[0]  # too short to leave frames out
    assert two == evaluate_davis(gt[:2], pred[:2], skip_first_last=False)


def test_single_object_compares_foregrounds():
    gt = np.zeros((3, 20, 20), np.int32)
    gt[:, 4:12, 4:12] = 255  # DAVIS 2016 stores the object as 255
    pred = (gt > 0).astype(np.int32)
    assert evaluate_davis(gt, pred)["J&F"] == 1.0
    assert evaluate_davis(gt, pred, binary=False)["J&F"] == 0.0


def test_absent_object_frames_and_errors():
    gt, _ = two_object_video()
    gt[2][gt[2] == 2] = 0  # object 2 leaves; predicting nothing there is right
    pred = gt.copy()
    assert evaluate_davis(gt, pred, skip_first_last=False)["J&F"] == 1.0
    with pytest.raises(DataError, match="no object"):
        evaluate_davis(np.zeros((2, 4, 4), int), np.zeros((2, 4, 4), int))
    with pytest.raises(DataError, match="3 reference frames and 2"):
        evaluate_davis(gt, pred[:2])
