"""``evaluate``: layout detection and the measures of each layout, on tiny folders."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from instatrack.errors import ConfigError, DataError
from instatrack.metrics import evaluate
from instatrack.metrics._io import read_label_image
from instatrack.metrics.evaluate import detect_layout
from test_metrics_ctc import two_cells, write_ctc


def palette_png(path, labels):
    image = Image.fromarray(labels.astype(np.uint8), "P")
    image.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    image.save(path)


def two_leaves():
    gt = np.zeros((16, 16), np.int32)
    gt[0:4, 0:4] = 1
    gt[10:14, 10:14] = 2
    return gt


@pytest.fixture
def cvppp(tmp_path):
    gt_dir, res_dir = tmp_path / "A1", tmp_path / "pred"
    gt_dir.mkdir()
    res_dir.mkdir()
    leaves = two_leaves()
    for plant in ("plant001", "plant002"):
        palette_png(gt_dir / f"{plant}_label.png", leaves)
        Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(gt_dir / f"{plant}_rgb.png")
    palette_png(res_dir / "plant001.png", leaves * 3)  # ids differ, objects equal
    tifffile.imwrite(res_dir / "plant002_label.tif", np.where(leaves == 1, 1, 0).astype(np.uint16))
    return gt_dir, res_dir


def test_cvppp_folder_by_hand(cvppp):
    gt_dir, res_dir = cvppp
    assert detect_layout(gt_dir, res_dir) == "cvppp"
    result = evaluate(gt_dir, res_dir)
    # plant001 perfect; plant002 misses leaf 2: SBD 0.5, DiC -1, Dice 2*16/48
    assert result["SBD"] == pytest.approx(0.75)
    assert result["DiC"] == pytest.approx(-0.5)
    assert result["absDiC"] == pytest.approx(0.5)
    assert result["Dice"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["AP50"] == pytest.approx(3 / 4)  # TP 3, FN 1 pooled
    assert result["n_images"] == 2


def test_cvppp_missing_prediction_names_the_plant(cvppp):
    gt_dir, res_dir = cvppp
    (res_dir / "plant002_label.tif").unlink()
    with pytest.raises(DataError, match="plant002_label.png"):
        evaluate(gt_dir, res_dir)


def test_plain_image_folders_pair_by_stem(tmp_path):
    gt_dir, res_dir = tmp_path / "gt", tmp_path / "res"
    gt_dir.mkdir()
    res_dir.mkdir()
    leaves = two_leaves()
    tifffile.imwrite(gt_dir / "mask2d.tif", leaves.astype(np.uint16))
    tifffile.imwrite(gt_dir / "img2d.tif", np.full((16, 16), 7, np.uint16))  # raw, no prediction
    tifffile.imwrite(res_dir / "mask2d_pred.tif", leaves.astype(np.uint16))
    assert detect_layout(gt_dir, res_dir) == "images"
    result = evaluate(gt_dir, res_dir)
    assert result["n_images"] == 1
    assert result["SBD"] == result["AP"] == result["Dice"] == 1.0
    assert result["DiC"] == 0.0
    single = evaluate(gt_dir / "mask2d.tif", res_dir / "mask2d_pred.tif")
    assert single == result


def test_davis_folder(tmp_path):
    gt_dir, res_dir = tmp_path / "Annotations", tmp_path / "res"
    gt_dir.mkdir()
    res_dir.mkdir()
    for t in range(4):
        mask = np.zeros((20, 30), np.uint8)
        mask[5:15, 3 + t : 13 + t] = 255
        Image.fromarray(mask).save(gt_dir / f"{t:05d}.png")
        palette_png(res_dir / f"{t:05d}.png", (mask > 0).astype(np.uint8))
    assert detect_layout(gt_dir, res_dir) == "davis"
    result = evaluate(gt_dir, res_dir)
    root = tmp_path / "DAVIS"
    (root / "Annotations" / "480p").mkdir(parents=True)
    gt_dir.rename(root / "Annotations" / "480p" / "bear")
    assert evaluate(root, res_dir) == result
    gt_dir = root / "Annotations" / "480p" / "bear"
    (root / "Annotations" / "480p" / "dog").mkdir()
    with pytest.raises(DataError, match="2 videos"):
        evaluate(root, res_dir)
    assert result["J_mean"] == result["F_mean"] == result["J&F"] == 1.0
    assert result["J_decay"] == 0.0 and result["F_recall"] == 1.0
    (res_dir / "00002.png").unlink()
    with pytest.raises(DataError, match="00002.png"):
        evaluate(gt_dir, res_dir)


def test_ctc_folders(tmp_path):
    gt, tracks = two_cells()
    gt_dir, res_dir = write_ctc(tmp_path, gt, tracks, gt, tracks)
    assert detect_layout(gt_dir, res_dir) == "ctc"
    assert evaluate(gt_dir, res_dir) == {"SEG": 1.0, "TRA": 1.0, "DET": 1.0, "FN": 0, "FP": 0,
                                         "NS": 0, "ED": 0, "EA": 0, "EC": 0}


def test_colour_coded_labels_are_numbered(tmp_path):
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[0:2, 0:2] = (255, 0, 0)
    rgb[3:6, 3:6] = (0, 0, 255)
    Image.fromarray(rgb).save(tmp_path / "leaves.png")
    labels = read_label_image(tmp_path / "leaves.png")
    assert labels.dtype == np.int32
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2]
    assert np.count_nonzero(labels == labels[0, 0]) == 4 and labels[2, 2] == 0


def test_bad_arguments(tmp_path, cvppp):
    gt_dir, res_dir = cvppp
    with pytest.raises(ConfigError, match="layout"):
        evaluate(gt_dir, res_dir, layout="coco")
    with pytest.raises(DataError, match="not found"):
        evaluate(tmp_path / "nowhere", res_dir)
    with pytest.raises(DataError, match="two folders or two files"):
        evaluate(gt_dir, res_dir / "plant001.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no label images"):
        evaluate(tmp_path / "empty", res_dir)
