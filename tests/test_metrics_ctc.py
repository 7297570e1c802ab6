"""CTC SEG/TRA/DET on tiny hand-built sequences, with values computed by hand.

AOGM weights (Matula et al. 2015): split NS 5, false negative FN 10, false
positive FP 1, redundant edge ED 1, missing edge EA 1.5, wrong edge semantics
EC 1. TRA = 1 - AOGM / (10 V + 1.5 E), DET = 1 - (5 NS + 10 FN + FP) / (10 V)
with V, E the vertices and edges of the reference graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from instatrack.errors import ConfigError, DataError
from instatrack.metrics.ctc import (
    AOGM_COUNTS,
    evaluate_ctc,
    match_frame,
    seg_frame,
    seg_score,
    validate_ctc_result,
)

SIZE = 20


def square(frame: np.ndarray, row: int, col: int, label: int, height=6, width=6) -> None:
    frame[row : row + height, col : col + width] = label


def write_ctc(root: Path, gt, gt_tracks: str, res, res_tracks: str) -> tuple[Path, Path]:
    """Write ``01_GT`` (TRA and dense SEG = TRA) and ``01_RES`` under ``root``."""
    gt_dir, res_dir = root / "01_GT", root / "01_RES"
    for folder in (gt_dir / "TRA", gt_dir / "SEG", res_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(gt):
        tifffile.imwrite(gt_dir / "TRA" / f"man_track{t:03d}.tif", frame.astype(np.uint16))
        tifffile.imwrite(gt_dir / "SEG" / f"man_seg{t:03d}.tif", frame.astype(np.uint16))
    for t, frame in enumerate(res):
        tifffile.imwrite(res_dir / f"mask{t:03d}.tif", frame.astype(np.uint16))
    (gt_dir / "TRA" / "man_track.txt").write_text(gt_tracks)
    (res_dir / "res_track.txt").write_text(res_tracks)
    return gt_dir, res_dir


def two_cells():
    """Two cells over two frames: V = 4, E = 2, AOGM_0 = 43, AOGM_D0 = 40."""
    gt = np.zeros((2, SIZE, SIZE), np.int32)
    square(gt[0], 2, 2, 1)
    square(gt[0], 12, 12, 2)
    square(gt[1], 3, 3, 1)
    square(gt[1], 12, 11, 2)
    return gt, "1 0 1 0\n2 0 1 0\n"


def division():
    """Mother 1 divides into 2 and 3: V = 3, E = 2 (both parent links), AOGM_0 = 33."""
    gt = np.zeros((2, SIZE, SIZE), np.int32)
    square(gt[0], 7, 7, 1)
    square(gt[1], 2, 2, 2)
    square(gt[1], 12, 12, 3)
    return gt, "1 0 0 0\n2 1 1 1\n3 1 1 1\n"


def score(tmp_path, gt, gt_tracks, res, res_tracks):
    gt_dir, res_dir = write_ctc(tmp_path, gt, gt_tracks, res, res_tracks)
    return evaluate_ctc(gt_dir, res_dir)


def test_perfect_result_scores_one(tmp_path):
    gt, tracks = two_cells()
    assert score(tmp_path, gt, tracks, gt, tracks) == {"SEG": 1.0, "TRA": 1.0, "DET": 1.0}


def test_missed_object(tmp_path):
    gt, tracks = two_cells()
    res = gt.copy()
    res[1][res[1] == 2] = 0
    result = score(tmp_path, gt, tracks, res, "1 0 1 0\n2 0 0 0\n")
    # one FN vertex (10) and its incoming edge missing (1.5)
    assert result["TRA"] == pytest.approx(1 - 11.5 / 43)
    assert result["DET"] == pytest.approx(1 - 10 / 40)
    assert result["SEG"] == pytest.approx(3 / 4)


def test_split_object(tmp_path):
    gt, tracks = two_cells()
    res = gt.copy()
    res[1, 3:9, 7:9] = 3  # cell 1 at frame 1 cut into 24 px (still matched) + 12 px
    result = score(tmp_path, gt, tracks, res, tracks + "3 1 1 0\n")
    assert result["TRA"] == pytest.approx(1 - 1 / 43)  # one FP vertex
    assert result["DET"] == pytest.approx(1 - 1 / 40)
    assert result["SEG"] == pytest.approx((3 + 24 / 36) / 4)


def test_merged_objects(tmp_path):
    gt, tracks = two_cells()
    res = gt.copy()
    res[1][res[1] == 2] = 1
    result = score(tmp_path, gt, tracks, res, "1 0 1 0\n2 0 0 0\n")
    # one vertex to split (5); the merged vertex drops both reference edges (2 x 1.5)
    assert result["TRA"] == pytest.approx(1 - 8 / 43)
    assert result["DET"] == pytest.approx(1 - 5 / 40)
    # both cells are covered by the merged object: Jaccard 36 / 72 each
    assert result["SEG"] == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)


def test_swapped_identities(tmp_path):
    gt, tracks = two_cells()
    res = gt.copy()
    res[1] = np.choose(gt[1], [0, 2, 1])
    result = score(tmp_path, gt, tracks, res, tracks)
    # two wrong edges (ED 2 x 1) and the two right ones missing (EA 2 x 1.5)
    assert result["TRA"] == pytest.approx(1 - 5 / 43)
    assert result["DET"] == 1.0
    assert result["SEG"] == 1.0


def test_broken_track(tmp_path):
    gt, tracks = two_cells()
    res = gt.copy()
    res[1][res[1] == 1] = 3
    result = score(tmp_path, gt, tracks, res, "1 0 0 0\n2 0 1 0\n3 1 1 0\n")
    assert result["TRA"] == pytest.approx(1 - 1.5 / 43)
    assert result["DET"] == 1.0


def test_division_found(tmp_path):
    gt, tracks = division()
    assert score(tmp_path, gt, tracks, gt, tracks)["TRA"] == 1.0


def test_missed_division_without_links(tmp_path):
    gt, tracks = division()
    result = score(tmp_path, gt, tracks, gt, "1 0 0 0\n2 1 1 0\n3 1 1 0\n")
    assert result["TRA"] == pytest.approx(1 - 3 / 33)  # two missing parent links
    assert result["DET"] == 1.0


def test_missed_division_continued_track(tmp_path):
    gt, tracks = division()
    res = gt.copy()
    res[1][res[1] == 2] = 1
    result = score(tmp_path, gt, tracks, res, "1 0 1 0\n3 1 1 0\n")
    # the link to daughter 2 exists with the wrong semantics (EC 1), the other is missing
    assert result["TRA"] == pytest.approx(1 - 2.5 / 33)


def test_branching_correctness_counts_divisions(tmp_path):
    gt, tracks = division()
    gt_dir, res_dir = write_ctc(tmp_path, gt, tracks, gt, tracks)
    assert evaluate_ctc(gt_dir, res_dir, ["BC(0)", "BC(2)"]) == {"BC(0)": 1.0, "BC(2)": 1.0}
    gt_dir, res_dir = write_ctc(tmp_path, gt, tracks, gt, "1 0 0 0\n2 1 1 0\n3 1 1 0\n")
    assert evaluate_ctc(gt_dir, res_dir, ["BC(1)"]) == {"BC(1)": 0.0}
    with pytest.raises(ConfigError, match="BC"):
        evaluate_ctc(gt_dir, res_dir, ["BC(x)"])


def test_empty_result_scores_zero(tmp_path):
    gt, tracks = two_cells()
    gt_dir, res_dir = write_ctc(tmp_path, gt, tracks, np.zeros_like(gt), "")
    assert validate_ctc_result(res_dir, gt_dir).valid is False
    assert evaluate_ctc(gt_dir, res_dir) == {"SEG": 0.0, "TRA": 0.0, "DET": 0.0}


def test_error_counts_say_what_tra_lost(tmp_path):
    gt, tracks = two_cells()
    res = gt.copy()
    res[1][res[1] == 2] = 0                 # cell 2 missed in frame 1: one node, one link
    square(res[1], 0, 14, 3, height=3, width=3)  # and a speck of background
    gt_dir, res_dir = write_ctc(tmp_path, gt, tracks, res, "1 0 1 0\n2 0 0 0\n3 1 1 0\n")
    counts = evaluate_ctc(gt_dir, res_dir, AOGM_COUNTS)
    assert counts == {"FN": 1, "FP": 1, "NS": 0, "ED": 0, "EA": 1, "EC": 0}
    both = evaluate_ctc(gt_dir, res_dir, ["TRA", "FN"])
    assert both["TRA"] == pytest.approx(1 - (10 + 1 + 1.5) / 43) and both["FN"] == 1
    empty_dir = write_ctc(tmp_path / "empty", gt, tracks, np.zeros_like(gt), "")[1]
    assert evaluate_ctc(gt_dir, empty_dir, ["FN", "EA", "TRA"]) == {"FN": 4, "EA": 2, "TRA": 0.0}


def test_sequence_folder_and_metric_choice(tmp_path):
    gt, tracks = two_cells()
    write_ctc(tmp_path, gt, tracks, gt, tracks)
    (tmp_path / "01").mkdir()
    result = evaluate_ctc(tmp_path / "01", tmp_path / "01_RES", metrics=["DET"])
    assert result == {"DET": 1.0}
    with pytest.raises(ConfigError, match="AOGM"):
        evaluate_ctc(tmp_path / "01_GT", tmp_path / "01_RES", metrics=["AOGM"])


# ---------------------------------------------------------------- validation


@pytest.fixture
def good_result(tmp_path):
    gt, tracks = two_cells()
    return write_ctc(tmp_path, gt, tracks, gt, tracks)


def _expect_error(res_dir, gt_dir, *fragments):
    with pytest.raises(DataError) as error:
        validate_ctc_result(res_dir, gt_dir)
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_good_result_is_valid_for_the_library(good_result):
    gt_dir, res_dir = good_result
    check = validate_ctc_result(res_dir, gt_dir)
    assert check.valid is True
    assert check.n_frames == 2
    assert check.tracks.tolist() == [[1, 0, 1, 0], [2, 0, 1, 0]]


def test_missing_folder_and_track_file(good_result, tmp_path):
    gt_dir, res_dir = good_result
    _expect_error(tmp_path / "02_RES", gt_dir, "02_RES", "does not exist")
    (res_dir / "res_track.txt").unlink()
    _expect_error(res_dir, gt_dir, "res_track.txt", "missing")


def test_missing_and_extra_frames(good_result):
    gt_dir, res_dir = good_result
    extra = res_dir / "mask002.tif"
    tifffile.imwrite(extra, np.zeros((SIZE, SIZE), np.uint16))
    _expect_error(res_dir, gt_dir, "mask002.tif", "not in the GT")
    extra.unlink()
    (res_dir / "mask001.tif").unlink()
    _expect_error(res_dir, gt_dir, "mask001.tif", "missing", "frame 1")


@pytest.mark.parametrize(
    ("tracks", "fragment"),
    [
        ("1 0 1 0\n2 0 x 0\n", "line 2"),
        ("1 0 1\n2 0 1 0\n", "line 1"),
        ("1 0 1 0\n2 0 1 -1\n", "line 2: negative value"),
        ("1 0 1 0\n2 1 0 0\n", "end < begin"),
        ("1 0 1 0\n1 0 1 0\n", "several lines"),
        ("1 0 1 0\n2 0 1 9\n", "parent 9"),
    ],
)
def test_malformed_track_file(good_result, tracks, fragment):
    gt_dir, res_dir = good_result
    (res_dir / "res_track.txt").write_text(tracks)
    _expect_error(res_dir, gt_dir, "res_track.txt", fragment)


def test_label_not_in_track_file_or_outside_its_frames(good_result):
    gt_dir, res_dir = good_result
    (res_dir / "res_track.txt").write_text("1 0 1 0\n")
    _expect_error(res_dir, gt_dir, "mask000.tif", "label 2 is not in res_track.txt")
    (res_dir / "res_track.txt").write_text("1 0 1 0\n2 1 1 0\n")
    _expect_error(res_dir, gt_dir, "mask000.tif", "label 2", "outside", "[1, 1]")


def test_track_missing_from_a_frame(good_result):
    gt_dir, res_dir = good_result
    mask = tifffile.imread(res_dir / "mask001.tif")
    mask[mask == 2] = 0
    tifffile.imwrite(res_dir / "mask001.tif", mask)
    _expect_error(res_dir, gt_dir, "mask001.tif", "track 2", "missing")


def test_eight_bit_and_wrong_shape_masks(good_result):
    gt_dir, res_dir = good_result
    mask = tifffile.imread(res_dir / "mask000.tif")
    tifffile.imwrite(res_dir / "mask000.tif", mask.astype(np.uint8))
    _expect_error(res_dir, gt_dir, "mask000.tif", "uint8")
    tifffile.imwrite(res_dir / "mask000.tif", np.pad(mask, ((0, 1), (0, 0))))
    _expect_error(res_dir, gt_dir, "mask000.tif", "shape")


# ---------------------------------------------------------------- pure SEG


def test_seg_frame_by_hand():
    gt, _ = two_cells()
    pred = gt[0].copy()
    pred[2:8, 2:5] = 0  # cell 1 half covered: 18 of 36 px is not > 50%
    pred[12:18, 18:20] = 2  # cell 2 grown by 12 px: Jaccard 36 / 48
    assert seg_frame(gt[0], pred) == (pytest.approx(36 / 48), 2)
    assert seg_score([gt[0], gt[0]], [pred, gt[0]]) == pytest.approx((36 / 48 + 2) / 4)
    assert np.isnan(seg_score([np.zeros((4, 4), int)], [np.zeros((4, 4), int)]))


def test_seg_frame_ignores_unannotated_pixels():
    gt, _ = two_cells()
    gt = gt[0].copy()
    pred = gt.copy()
    pred[12:18, 18:20] = 2
    gt[12:18, 18:20] = -1  # the extra pixels fall in an unannotated area
    assert seg_frame(gt, pred) == (pytest.approx(2.0), 2)


def _random_labels(rng, size=48, n=12):
    labels = np.zeros((size, size), np.int32)
    for label in range(1, n + 1):
        row, col = rng.integers(0, size - 8, size=2)
        height, width = rng.integers(4, 12, size=2)
        labels[row : row + height, col : col + width] = label
    return labels


def test_seg_frame_agrees_with_py_ctcmetrics(tmp_path):
    rng = np.random.default_rng(3)
    gts, preds = [], []
    for t in range(3):
        gt = _random_labels(rng)
        pred = np.roll(gt, rng.integers(-2, 3, size=2), axis=(0, 1))
        pred[rng.random(pred.shape) < 0.05] = 0
        pred[pred == 3] = 5  # a merge
        # unique labels per frame keep the track files trivially consistent
        gts.append(np.where(gt > 0, gt + 100 * t, 0))
        preds.append(np.where(pred > 0, pred + 100 * t, 0))

    def table(frames):
        return "".join(
            f"{label} {t} {t} 0\n" for t, f in enumerate(frames) for label in np.unique(f)[1:]
        )

    gt_dir, res_dir = write_ctc(tmp_path, gts, table(gts), preds, table(preds))
    library = evaluate_ctc(gt_dir, res_dir, metrics=("SEG",))["SEG"]
    assert 0.1 < library < 0.95  # neither trivial nor perfect
    assert seg_score(gts, preds) == pytest.approx(library, abs=1e-12)


def test_match_frame_equals_the_library_match(tmp_path):
    from ctc_metrics.utils.representations import match

    rng = np.random.default_rng(7)
    for case in range(4):
        ref = _random_labels(rng).astype(np.uint16)
        comp = np.roll(ref, rng.integers(-3, 4, size=2), axis=(0, 1))
        comp[rng.random(comp.shape) < 0.2] = 0
        comp[comp == 2] = 1  # merge
        ref_path, comp_path = tmp_path / f"ref{case}.tif", tmp_path / f"comp{case}.tif"
        tifffile.imwrite(ref_path, ref)
        tifffile.imwrite(comp_path, comp)
        ours, theirs = match_frame(ref_path, comp_path), match(str(ref_path), str(comp_path))
        assert ours[:4] == tuple(list(x) for x in theirs[:4])
        np.testing.assert_allclose(ours[4], theirs[4], rtol=0, atol=1e-15)


def test_library_matching_gives_the_same_scores(tmp_path):
    gt, tracks = two_cells()
    merged = gt.copy()
    merged[1][merged[1] == 2] = 1
    gt_dir, res_dir = write_ctc(tmp_path, gt, tracks, merged, "1 0 1 0\n2 0 0 0\n")
    fast = evaluate_ctc(gt_dir, res_dir)
    assert evaluate_ctc(gt_dir, res_dir, library_matching=True) == fast
