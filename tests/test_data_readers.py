"""CVPPP, DAVIS and plain-folder readers on synthetic files; open_dataset auto-detection."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from instatrack.data import open_dataset
from instatrack.data.cvppp import CVPPPSequence
from instatrack.data.davis import (
    DAVISSequence,
    davis_palette,
    read_annotation,
    write_annotation,
)
from instatrack.data.folder import FolderSequence
from instatrack.data.synth import generate_leaves, write_cvppp_synthetic
from instatrack.data.types import Sequence
from instatrack.errors import DataError


def test_cvppp_reader_drops_alpha_and_reads_indices(tmp_path):
    out = write_cvppp_synthetic(tmp_path, n=2, size=(40, 48), seed=1)
    truth = generate_leaves(2, (40, 48), 1)
    rgba = np.concatenate([truth.images[0], np.full((40, 48, 1), 255, np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(out / "A1" / "plant001_rgb.png")
    for path in (out, out / "A1"):
        (seq,) = open_dataset(path)
        assert isinstance(seq, CVPPPSequence) and isinstance(seq, Sequence)
        assert len(seq) == 2 and not seq.is_video and seq.channels == 3
        np.testing.assert_array_equal(seq.image(0), truth.images[0])
        np.testing.assert_array_equal(seq.labels(1), truth.labels[1])
        assert seq.labels(1).dtype == np.int32
    (out / "A1" / "plant002_label.png").unlink()
    assert CVPPPSequence(out / "A1").labels(1) is None


def test_cvppp_rejects_colour_labels(tmp_path):
    out = write_cvppp_synthetic(tmp_path, n=1, size=(16, 16), seed=0)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(out / "A1" / "plant001_label.png")
    with pytest.raises(DataError, match=r"plant001_label\.png: expected a palette"):
        CVPPPSequence(out / "A1").labels(0)


def _davis(tmp_path, annotations):
    frames = tmp_path / "JPEGImages" / "480p" / "clip"
    masks = tmp_path / "Annotations" / "480p" / "clip"
    frames.mkdir(parents=True)
    masks.mkdir(parents=True)
    for t in range(3):
        Image.fromarray(np.full((12, 16, 3), 40 * t, np.uint8)).save(frames / f"{t:05d}.jpg")
    for t, mask in annotations.items():
        Image.fromarray(mask).save(masks / f"{t:05d}.png")
    return tmp_path


def test_davis_2016_binary_and_missing_frames(tmp_path):
    mask = np.zeros((12, 16), np.uint8)
    mask[2:6, 3:9] = 255
    root = _davis(tmp_path, {0: mask, 2: mask})
    (seq,) = open_dataset(root)
    assert isinstance(seq, DAVISSequence) and seq.is_video and seq.channels == 3
    assert len(seq) == 3 and seq.image(1).shape == (12, 16, 3)
    assert seq.labels(1) is None
    labels = seq.labels(2)
    assert labels.dtype == np.int32 and set(np.unique(labels).tolist()) == {0, 1}
    assert labels.sum() == 24


def test_davis_palette_round_trip(tmp_path):
    ids = np.zeros((12, 16), np.int32)
    ids[1:4, 1:4], ids[6:9, 6:12] = 1, 3
    path = write_annotation(tmp_path / "a" / "00000.png", ids)
    with Image.open(path) as im:
        assert im.mode == "P"
        assert im.getpalette()[:12] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]
    np.testing.assert_array_equal(read_annotation(path), ids)
    assert len(davis_palette()) == 768
    with pytest.raises(DataError, match="0..255"):
        write_annotation(tmp_path / "b.png", ids + 300)


def test_plain_folder_matched_by_stem(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("a", "b", "c"):
        tifffile.imwrite(tmp_path / "images" / f"{name}.tif", np.ones((10, 12), np.uint16))
    labels = np.zeros((10, 12), np.uint16)
    labels[2:5, 2:5] = 4
    tifffile.imwrite(tmp_path / "masks" / "a.tif", labels)
    Image.fromarray(labels.astype(np.uint8)).save(tmp_path / "masks" / "c_mask.png")
    (seq,) = open_dataset(tmp_path)
    assert isinstance(seq, FolderSequence) and not seq.is_video and seq.channels == 1
    np.testing.assert_array_equal(seq.labels(0), labels)
    assert seq.labels(1) is None
    np.testing.assert_array_equal(seq.labels(2), labels)
    tifffile.imwrite(tmp_path / "masks" / "b.tif", np.zeros((3, 3), np.uint16))
    with pytest.raises(DataError, match=r"b\.tif: mask shape"):
        FolderSequence(tmp_path).labels(1)


def test_open_dataset_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"junk: not a recognised dataset"):
        open_dataset(tmp_path / "junk")
    with pytest.raises(DataError, match="got a file"):
        open_dataset(tmp_path / "junk" / "readme.txt")
