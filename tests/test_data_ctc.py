"""CTC reader/writers on synthetic files, marker relabelling, and error messages."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from instatrack.data import open_dataset
from instatrack.data.ctc import (
    CTCSequence,
    find_ctc_sequences,
    read_track_table,
    relabel_seg_by_markers,
    write_mask,
    write_track_table,
)
from instatrack.data.synth import generate_cells, write_ctc_synthetic
from instatrack.errors import DataError


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_ctc_synthetic(tmp_path_factory.mktemp("ctc") / "SYN", frames=6, size=(48, 48),
                               seed=2)


def test_reads_dense_tra_with_track_ids(dataset):
    seq = CTCSequence(dataset / "01")
    truth = generate_cells(frames=6, size=(48, 48), seed=2)
    assert len(seq) == 6 and seq.is_video and seq.channels == 1 and seq.name == "SYN/01"
    assert seq.dense_tra
    assert sorted(seq.seg_frames) == list(range(6)) == sorted(seq.tra_frames)
    assert seq.lineage == truth.lineage
    np.testing.assert_array_equal(seq.image(3), truth.images[3])
    labels = seq.labels(3)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, truth.labels[3])
    assert seq.frame_path(-1).name == "t005.tif"


def test_find_sequences_from_dataset_or_sequence(dataset):
    assert [s.seq_dir.name for s in find_ctc_sequences(dataset)] == ["01"]
    assert [s.seq_dir.name for s in find_ctc_sequences(dataset / "01")] == ["01"]
    assert [s.seq_dir.name for s in open_dataset(dataset)] == ["01"]


def test_marker_relabelling_hand_computed():
    seg = np.zeros((12, 12), np.int32)
    seg[1:5, 1:5] = 7        # overlaps marker 3 (4 px) and marker 4 (1 px) -> 3
    seg[7:11, 1:5] = 9       # no marker -> fresh id 1000 + 9
    tra = np.zeros_like(seg)
    tra[2:4, 2:4] = 3
    tra[4, 4] = 4            # claimed only by seg 7, which keeps its larger marker 3
    tra[8, 9] = 5            # marker without a SEG instance -> region marked -1
    out = relabel_seg_by_markers(seg, tra, fresh_offset=1000)
    assert out.dtype == np.int32
    assert set(np.unique(out[1:5, 1:5]).tolist()) == {3}
    assert set(np.unique(out[7:11, 1:5]).tolist()) == {1009}
    # marker 5 is one pixel: radius 0.5 * sqrt(1/pi) + 3 = 3.28 -> disk of radius 3.28
    assert out[8, 9] == -1 and out[8, 6] == -1 and out[8, 5] == 0 and out[11, 9] == -1
    assert out[5, 9] == -1 and out[4, 9] == 0
    # marker 4 had no instance of its own: pixels around it that are background become -1
    assert out[5, 5] == -1 and out[1:5, 1:5].min() == 3


def test_sparse_seg_with_markers(tmp_path):
    seq_dir, gt = tmp_path / "D" / "01", tmp_path / "D" / "01_GT"
    for folder in (seq_dir, gt / "SEG", gt / "TRA"):
        folder.mkdir(parents=True)
    seg = np.zeros((20, 20), np.uint16)
    seg[2:8, 2:8] = 1
    for t in range(3):
        tifffile.imwrite(seq_dir / f"t{t:03d}.tif", np.full((20, 20), t, np.uint16))
        tra = np.zeros((20, 20), np.uint16)
        tra[4:6, 4:6] = 2
        tra[14:16, 14:16] = 5
        tifffile.imwrite(gt / "TRA" / f"man_track{t:03d}.tif", tra)
    tifffile.imwrite(gt / "SEG" / "man_seg001.tif", seg)
    write_track_table(gt / "TRA" / "man_track.txt", [(2, 0, 2, 0), (5, 0, 2, 0)])
    seq = CTCSequence(seq_dir)
    assert not seq.dense_tra
    assert seq.labels(0) is None and seq.labels(2) is None
    labels = seq.labels(1)
    assert set(np.unique(labels[2:8, 2:8]).tolist()) == {2}
    assert labels[15, 15] == -1 and labels[0, 19] == 0


def test_four_digit_names(tmp_path):
    folder = tmp_path / "X" / "02"
    folder.mkdir(parents=True)
    for t in (8, 9, 10):
        tifffile.imwrite(folder / f"t{t:04d}.tif", np.zeros((8, 8), np.uint8))
    seq = CTCSequence(folder)
    assert [p.name for p in seq.paths] == ["t0008.tif", "t0009.tif", "t0010.tif"]
    assert seq.times == [8, 9, 10]
    assert seq.gt_dir is None and seq.labels(0) is None


def test_track_table_round_trip_and_masks(tmp_path):
    rows = [(1, 0, 4, 0), (2, 5, 9, 1), (3, 5, 7, 1)]
    path = write_track_table(tmp_path / "res_track.txt", rows)
    assert path.read_text().splitlines()[1] == "2 5 9 1"
    assert read_track_table(path) == rows
    mask = write_mask(tmp_path, 7, np.array([[0, 3], [300, 1]]), digits=4)
    assert mask.name == "mask0007.tif"
    stored = tifffile.imread(mask)
    assert stored.dtype == np.uint16 and stored.tolist() == [[0, 3], [300, 1]]


@pytest.mark.parametrize("line", ["1 0 4", "1 0 x 0", "1 5 4 0", "0 0 1 0"])
def test_malformed_track_table(tmp_path, line):
    path = tmp_path / "man_track.txt"
    path.write_text(f"1 0 3 0\n{line}\n")
    with pytest.raises(DataError, match=r"man_track\.txt, line 2"):
        read_track_table(path)


def test_missing_folder_corrupt_tiff_and_shape_mismatch(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        CTCSequence(tmp_path / "nowhere")
    with pytest.raises(DataError, match="nowhere"):
        open_dataset(tmp_path / "nowhere")
    folder = tmp_path / "S" / "01"
    folder.mkdir(parents=True)
    tifffile.imwrite(folder / "t000.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(folder / "t001.tif", np.zeros((8, 9), np.uint8))
    with pytest.raises(DataError, match=r"t001\.tif.*differs"):
        CTCSequence(folder)
    (folder / "t001.tif").write_bytes(b"this is not a tiff file at all")
    with pytest.raises(DataError, match=r"t001\.tif: cannot read"):
        CTCSequence(folder)
    empty = tmp_path / "E"
    empty.mkdir()
    with pytest.raises(DataError, match="no CTC sequence"):
        find_ctc_sequences(empty)
