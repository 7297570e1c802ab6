"""``evaluate --objects``: which objects are wrong and how, and that the rows add up to the
measures' own counts."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile

from instatrack.cli import main
from instatrack.errors import DataError
from instatrack.metrics import evaluate
from instatrack.metrics.objects import COLUMNS, frame_rows, object_table, summary
from test_metrics_ctc import SIZE, two_cells, write_ctc


def every_error():
    """A frame with one object of each verdict, and the found labels."""
    ref, found = np.zeros((40, 60), int), np.zeros((40, 60), int)
    ref[2:12, 2:12] = 1
    found[2:12, 2:12] = 5  # ok
    ref[2:12, 20:30] = 2
    found[2:12, 20:25], found[2:12, 25:30] = 6, 7  # cut in two halves
    ref[20:30, 2:12], ref[20:30, 12:22] = 3, 4
    found[20:30, 2:22] = 8  # two references as one
    ref[20:30, 30:36] = 9
    found[18:32, 28:40] = 10  # reaches far beyond it
    ref[14:24, 44:56] = 12
    found[14:24, 44:49] = 13  # holds it, but only part of it ... (covered 5/12)
    found[14:24, 49:56] = 14  # ... and the rest is another object: a cut, not too small
    ref[30:40, 45:58] = 11  # nothing there: missed
    found[2:8, 40:50] = 15  # nothing annotated there: false
    return ref, found


def test_each_reference_object_gets_its_verdict():
    ref, found = every_error()
    rows = {(r["kind"], r["reference"] or r["found"]): r for r in frame_rows(ref, found, 3)}
    verdicts = {key: r["verdict"] for key, r in rows.items()}
    assert verdicts == {
        ("outline", 1): "ok", ("outline", 2): "cut", ("outline", 3): "merged",
        ("outline", 4): "merged", ("outline", 9): "too large", ("outline", 12): "cut",
        ("outline", 11): "missed",
        # the halves of cut objects match nothing either (CTC counts them as false)
        ("found", 6): "false", ("found", 7): "false", ("found", 13): "false",
        ("found", 15): "false"}
    assert rows["outline", 2]["others"] == "6 7" and rows["outline", 2]["found"] == ""
    assert rows["outline", 12]["found"] == 14 and rows["outline", 12]["others"] == "13"
    assert rows["outline", 3]["others"] == "4" and rows["outline", 3]["iou"] == 0.5
    assert rows["outline", 9]["inside"] == pytest.approx(60 / 168, abs=1e-4)
    assert rows["outline", 1]["frame"] == 3 and rows["outline", 1]["iou"] == 1.0
    # a false object's `inside` tells a piece of a cell from one in the background
    assert rows["found", 6]["inside"] == 1.0 and rows["found", 15]["inside"] == 0.0
    assert summary(rows.values()) == {"found false": 4, "outline missed": 1, "outline cut": 2,
                                      "outline merged": 2, "outline too large": 1,
                                      "outline ok": 1}


def test_too_small_and_markers_that_are_missed_only():
    ref, found = np.zeros((20, 20), int), np.zeros((20, 20), int)
    ref[0:10, 0:10] = 1
    found[0:10, 0:5] = 2  # half of it: not more than half, so no match; one piece: missed
    assert [r["verdict"] for r in frame_rows(ref, found)] == ["missed", "false"]
    found[0:10, 0:6] = 2  # 60 %: a match, and FITS of it is covered
    assert frame_rows(ref, found)[0]["verdict"] == "ok"
    ref[0:10, 0:12] = 1
    found[0:10, 0:7] = 2  # 70 of 120 px: a match that covers 58 % of it
    assert frame_rows(ref, found)[0]["verdict"] == "too small"
    # markers: a matched one adds no row, a missed one does (whatever covers it), and an
    # unannotated pixel (-1) counts for neither side
    markers = np.full((20, 20), -1)
    markers[2:4, 2:4] = 7
    markers[15:17, 15:17] = 8
    rows = frame_rows(markers, found, 1, kind="marker")
    assert [(r["kind"], r["reference"], r["verdict"]) for r in rows] == [("marker", 8, "missed")]


def test_a_ctc_result_adds_up_to_tra_counts(tmp_path):
    gt, tracks = two_cells()
    res = gt.copy()
    res[1][res[1] == 2] = 0  # cell 2 missed in frame 1
    res[0][SIZE - 3:, SIZE - 3:] = 9  # and a false object in frame 0
    gt_dir, res_dir = write_ctc(tmp_path, gt, tracks, res, "1 0 1 0\n2 0 0 0\n9 0 0 0\n")
    rows = object_table(gt_dir, res_dir)
    scores = evaluate(gt_dir, res_dir)
    counts = summary(rows)
    assert counts["marker missed"] == scores["FN"] == 1
    assert counts["found false"] == scores["FP"] == 1
    assert counts == {"found false": 1, "marker missed": 1, "outline missed": 1,
                      "outline ok": 3}
    # the sequence folder next to NN_GT works as well
    assert object_table(tmp_path / "01", res_dir) == rows
    (res_dir / "mask001.tif").unlink()
    with pytest.raises(DataError, match="mask001.tif"):
        object_table(gt_dir, res_dir)


def test_label_image_folders_pair_by_name(tmp_path):
    ref, found = every_error()
    (tmp_path / "gt").mkdir()
    (tmp_path / "res").mkdir()
    tifffile.imwrite(tmp_path / "gt" / "a.tif", ref.astype(np.uint16))
    tifffile.imwrite(tmp_path / "res" / "a_pred.tif", found.astype(np.uint16))
    rows = object_table(tmp_path / "gt", tmp_path / "res")
    assert {r["frame"] for r in rows} == {"a"} and len(rows) == 11
    assert object_table(tmp_path / "gt" / "a.tif", tmp_path / "res" / "a_pred.tif") == rows


def test_evaluate_objects_writes_the_table_and_prints_the_counts(tmp_path, capsys):
    gt, tracks = two_cells()
    gt_dir, res_dir = write_ctc(tmp_path, gt, tracks, gt, tracks)
    table = tmp_path / "objects.csv"
    assert main(["evaluate", "--gt", str(gt_dir), "--res", str(res_dir), "--objects",
                 str(table)]) == 0
    out = capsys.readouterr().out
    assert "outline ok" in out and str(table) in out
    with table.open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 4
    assert {r["verdict"] for r in rows} == {"ok"}
    assert main(["evaluate", "--gt", str(gt_dir), "--res", str(res_dir), "--json",
                 "--objects", str(table)]) == 0
    assert json.loads(capsys.readouterr().out)["objects"] == {"outline ok": 4}
    # a table into a folder that is not there: one line naming it, nothing written
    assert main(["evaluate", "--gt", str(gt_dir), "--res", str(res_dir), "--objects",
                 str(tmp_path / "none" / "t.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none" in err


def test_snr_tells_background_from_a_dim_cell(tmp_path):
    """With the raw frame, each row says how far its object stands over the background in
    noise standard deviations: a false object on flat background near 0, a dim missed
    cell and a bright matched one by their light; without the frame the column is empty."""
    rng = np.random.default_rng(0)
    image = 100 + rng.normal(0, 2, (40, 60))
    ref, found = np.zeros((40, 60), int), np.zeros((40, 60), int)
    ref[2:12, 2:12] = 1
    found[2:12, 2:12] = 5
    image[2:12, 2:12] += 20  # bright, found
    ref[25:35, 40:50] = 2
    image[25:35, 40:50] += 6  # dim, missed
    found[20:32, 5:20] = 6  # flat background, found
    rows = {(r["kind"], r["reference"] or r["found"]): r["snr"]
            for r in frame_rows(ref, found, image=image)}
    assert rows[("outline", 1)] > 8 and 2 < rows[("outline", 2)] < 4.5
    assert abs(rows[("found", 6)]) < 0.5
    assert {r["snr"] for r in frame_rows(ref, found)} == {""}
    # a CTC result: the sequence folder beside NN_GT gives the frames
    gt, tracks = two_cells()
    gt_dir, res_dir = write_ctc(tmp_path, gt, tracks, gt, tracks)
    assert {r["snr"] for r in object_table(gt_dir, res_dir)} == {""}
    (tmp_path / "01").mkdir()
    for t, frame in enumerate(gt):
        light = 50 + 30 * (frame > 0) + rng.normal(0, 1, frame.shape)
        tifffile.imwrite(tmp_path / "01" / f"t{t:03d}.tif", light.astype(np.uint16))
    assert all(r["snr"] > 10 for r in object_table(gt_dir, res_dir))
