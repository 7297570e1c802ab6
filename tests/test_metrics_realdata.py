"""Ground truth scored against itself on the shared real datasets gives perfect scores.

CTC sequences are cut to their first frames (a truncated GT copy in tmp_path) to
stay fast. For GOWT1 and MSC the SEG ground truth is sparse and the TRA ground
truth is markers, so "the GT as a result" is built per frame: every SEG object
takes the track id of the marker it overlaps most (one-to-one assignment), and
markers of cells without a SEG object are painted where no SEG object lies.
That result reproduces every SEG object exactly and covers every marker by its
own track, so SEG = TRA = DET = 1.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy.optimize import linear_sum_assignment

from conftest import shared_dataset
from instatrack.metrics import evaluate, evaluate_ctc, validate_ctc_result
from instatrack.metrics.matching import overlap_matrix

pytestmark = pytest.mark.realdata
N_FRAMES = 10


def gt_as_result(seg: np.ndarray | None, tra: np.ndarray) -> np.ndarray:
    """One RES frame ``(Y, X)`` uint16 equal to the GT (see the module docstring)."""
    res = np.zeros_like(tra)
    claimed = set()
    if seg is not None:
        overlap = overlap_matrix(seg, tra)
        rows, cols = linear_sum_assignment(overlap.intersections, maximize=True)
        assigned = overlap.intersections[rows, cols] > 0
        assert assigned.sum() == len(overlap.gt_ids), "a SEG object has no marker"
        for row, col in zip(rows[assigned], cols[assigned], strict=True):
            res[seg == overlap.gt_ids[row]] = overlap.pred_ids[col]
            claimed.add(int(overlap.pred_ids[col]))
    for marker in np.unique(tra[tra > 0]).tolist():
        if marker not in claimed:
            res[(tra == marker) & (res == 0)] = marker
    return res


def truncated_copy(sequence_gt: Path, out: Path, n_frames: int) -> tuple[Path, Path]:
    """Copy the first ``n_frames`` of a CTC GT and write the GT-as-result next to it."""
    gt_dir, res_dir = out / "01_GT", out / "01_RES"
    for folder in (gt_dir / "TRA", gt_dir / "SEG", res_dir):
        folder.mkdir(parents=True)
    rows = []
    for line in (sequence_gt / "TRA" / "man_track.txt").read_text().split("\n"):
        if line.strip():
            label, begin, end, parent = map(int, line.split())
            if begin < n_frames:
                rows.append(f"{label} {begin} {min(end, n_frames - 1)} {parent}\n")
    (gt_dir / "TRA" / "man_track.txt").write_text("".join(rows))
    (res_dir / "res_track.txt").write_text("".join(rows))
    for t in range(n_frames):
        tra_path = sequence_gt / "TRA" / f"man_track{t:03d}.tif"
        seg_path = sequence_gt / "SEG" / f"man_seg{t:03d}.tif"
        shutil.copy(tra_path, gt_dir / "TRA" / tra_path.name)
        seg = None
        if seg_path.exists():
            shutil.copy(seg_path, gt_dir / "SEG" / seg_path.name)
            seg = tifffile.imread(seg_path)
        res = gt_as_result(seg, tifffile.imread(tra_path))
        tifffile.imwrite(res_dir / f"mask{t:03d}.tif", res)
    return gt_dir, res_dir


@pytest.mark.parametrize(
    ("dataset", "sequence"),
    [("Fluo-N2DH-SIM+", "01"), ("Fluo-N2DH-GOWT1", "01"), ("Fluo-C2DL-MSC", "02")],
)
def test_ctc_ground_truth_against_itself(tmp_path, dataset, sequence):
    sequence_gt = shared_dataset(dataset) / f"{sequence}_GT"
    gt_dir, res_dir = truncated_copy(sequence_gt, tmp_path, N_FRAMES)
    assert any((gt_dir / "SEG").iterdir())
    assert validate_ctc_result(res_dir, gt_dir).valid
    result = evaluate_ctc(gt_dir, res_dir)
    assert result == pytest.approx({"SEG": 1.0, "TRA": 1.0, "DET": 1.0})


def test_ctc_perturbed_result_scores_below_one(tmp_path):
    sequence_gt = shared_dataset("Fluo-N2DH-SIM+") / "01_GT"
    gt_dir, res_dir = truncated_copy(sequence_gt, tmp_path, 3)
    mask = tifffile.imread(res_dir / "mask001.tif")
    tifffile.imwrite(res_dir / "mask001.tif", np.roll(mask, 4, axis=1))
    result = evaluate_ctc(gt_dir, res_dir)
    assert 0.3 < result["SEG"] < 1.0
    assert result["DET"] <= 1.0 and result["TRA"] <= 1.0
    # the fast object matching gives what the library's own matching gives
    assert evaluate_ctc(gt_dir, res_dir, library_matching=True) == result


def test_cvppp_labels_against_themselves(tmp_path):
    source = shared_dataset("CVPPP2017_LSC_A1") / "A1"
    labels = sorted(source.glob("plant*_label.png"))[:3]
    gt_dir, res_dir = tmp_path / "gt", tmp_path / "res"
    gt_dir.mkdir()
    res_dir.mkdir()
    for path in labels:
        shutil.copy(path, gt_dir / path.name)
        shutil.copy(path, res_dir / path.name.replace("_label", ""))
    result = evaluate(gt_dir, res_dir)
    assert result["n_images"] == 3
    assert result["SBD"] == result["Dice"] == result["AP"] == 1.0
    assert result["absDiC"] == 0.0


def test_davis_annotations_against_themselves_and_shifted(tmp_path):
    source = shared_dataset("DAVIS2016_sample") / "Annotations" / "480p" / "motocross-jump"
    gt_dir, same_dir, shifted_dir = tmp_path / "gt", tmp_path / "same", tmp_path / "shifted"
    for folder in (gt_dir, same_dir, shifted_dir):
        folder.mkdir()
    for path in sorted(source.glob("*.png"))[:5]:
        shutil.copy(path, gt_dir / path.name)
        mask = (np.array(Image.open(path)) > 0).astype(np.uint8)
        Image.fromarray(mask).save(same_dir / path.name)
        Image.fromarray(np.roll(mask, 20, axis=1)).save(shifted_dir / path.name)
    assert evaluate(gt_dir, same_dir)["J&F"] == 1.0
    shifted = evaluate(gt_dir, shifted_dir)
    assert 0.0 < shifted["J_mean"] < 1.0 and 0.0 < shifted["F_mean"] < 1.0


def test_dsb_mask_against_itself(tmp_path):
    mask = tifffile.imread(shared_dataset("DSB2018_stardist_sample") / "mask2d.tif")
    from instatrack.metrics import average_precision

    assert average_precision(mask, mask) == {"AP": 1.0, "AP50": 1.0, "AP75": 1.0}
    shifted = average_precision(mask, np.roll(mask, 2, axis=0))
    assert 0.0 < shifted["AP"] < shifted["AP50"] <= 1.0
