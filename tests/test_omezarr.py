"""OME-Zarr: frames read one at a time, labels written as a labels image that ome-zarr-py's
reader opens with the right axes and shape, and the CLI's ``--format ome-zarr``."""

from __future__ import annotations

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
pytest.importorskip("ome_zarr")

from ome_zarr.format import FormatV04  # noqa: E402
from ome_zarr.io import parse_url  # noqa: E402
from ome_zarr.reader import Label, Labels, Multiscales, Reader  # noqa: E402
from ome_zarr.writer import write_image  # noqa: E402

from instatrack.cli import main  # noqa: E402
from instatrack.data import open_images  # noqa: E402
from instatrack.data.ctc import CTCSequence  # noqa: E402
from instatrack.data.omezarr import (  # noqa: E402
    OmeZarrImage,
    OmeZarrLabelsWriter,
    is_omezarr,
    labels_path,
    pyramid_shapes,
)
from instatrack.data.synth import generate_cells, write_ctc_synthetic  # noqa: E402
from instatrack.errors import DataError  # noqa: E402

UNITS = {"t": "minute", "y": "micrometer", "x": "micrometer"}


@pytest.fixture(scope="module")
def seq():
    return generate_cells(frames=4, size=(160, 140), seed=0)


def write_input(path, images, axes="tyx", version="0.4"):
    """An OME-Zarr image as other tools write it (ome-zarr-py's writer)."""
    fmt, zarr_format = (FormatV04(), 2) if version == "0.4" else (None, 3)
    root = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    scale = {"t": 5.0, "c": 1.0, "z": 1.0, "y": 0.5, "x": 0.5}
    write_image(images, root, axes=axes, fmt=fmt, scale={a: scale[a] for a in axes},
                axes_units={a: u for a, u in UNITS.items() if a in axes})
    return path


def read_nodes(path):
    """``{spec type: [node]}`` of what ome-zarr-py's reader finds at ``path``."""
    found = {}
    for node in Reader(parse_url(str(path)))():
        for spec in node.specs:
            found.setdefault(type(spec), []).append(node)
    return found


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_frames_are_read_one_at_a_time(seq, tmp_path, version):
    image = OmeZarrImage(write_input(tmp_path / "in.zarr", seq.images, version=version))
    assert (len(image), image.axes, image.channels, image.times) == (4, "tyx", 1, [0, 1, 2, 3])
    for t in range(len(image)):
        np.testing.assert_array_equal(image.image(t), seq.images[t])
    calibration = image.calibration()
    assert (calibration.pixel_size, calibration.space_unit) == (0.5, "micrometer")
    assert (calibration.frame_interval, calibration.time_unit) == (5.0, "minute")


def test_channels_come_last_like_an_image_file(seq, tmp_path):
    images = np.stack([seq.images, seq.images // 2], axis=1)  # (T, C, Y, X)
    image = OmeZarrImage(write_input(tmp_path / "in.zarr", images, axes="tcyx"))
    assert image.image(3).shape == (160, 140, 2)
    np.testing.assert_array_equal(image.image(3)[..., 1], images[3, 1])


def test_3d_stacks_and_other_folders_are_refused(tmp_path):
    write_input(tmp_path / "z.zarr", np.zeros((2, 3, 64, 64), np.uint8), axes="tzyx")
    with pytest.raises(DataError, match="3D stacks"):
        OmeZarrImage(tmp_path / "z.zarr")
    (tmp_path / "plain").mkdir()
    assert not is_omezarr(tmp_path / "plain")
    with pytest.raises(DataError, match="not an OME-Zarr"):
        OmeZarrImage(tmp_path / "plain")


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_labels_beside_the_input_open_with_ome_zarr_reader(seq, tmp_path, version):
    path = write_input(tmp_path / "in.zarr", seq.images, version=version)
    for _ in range(2):  # writing twice replaces the labels, listed once
        writer = OmeZarrLabelsWriter(path, 4, image=OmeZarrImage(path), overwrite=True)
        for t, labels in enumerate(seq.labels):
            writer.write(t, labels)
    found = read_nodes(path)
    assert len(found[Labels]) == 1 and len(found[Label]) == 1
    label = found[Label][0]
    assert [a["name"] for a in label.metadata["axes"]] == ["t", "y", "x"]
    assert label.metadata["axes"][1]["unit"] == "micrometer"
    assert [d.shape for d in label.data] == [(4, 160, 140), (4, 80, 70)]
    np.testing.assert_array_equal(np.asarray(label.data[0]), seq.labels)
    np.testing.assert_array_equal(np.asarray(label.data[1][2]), seq.labels[2, ::2, ::2])


def test_new_output_holds_the_image_and_its_labels(seq, tmp_path):
    rgb = np.stack([seq.images] * 3, axis=-1)  # (T, Y, X, C), as read from RGB files
    writer = OmeZarrLabelsWriter(tmp_path / "out.zarr", 4, frame_of=lambda t: rgb[t])
    for t, labels in enumerate(seq.labels):
        writer.write(t, labels)
    found = read_nodes(tmp_path / "out.zarr")
    image = [n for n in found[Multiscales] if Label not in map(type, n.specs)][0]
    assert [d.shape for d in image.data] == [(4, 3, 160, 140), (4, 3, 80, 70)]
    label = found[Label][0]
    assert [a["name"] for a in label.metadata["axes"]] == ["t", "c", "y", "x"]
    assert label.data[0].shape == (4, 1, 160, 140)
    np.testing.assert_array_equal(OmeZarrImage(tmp_path / "out.zarr").image(1), rgb[1])


def test_pyramid_stops_at_small_levels():
    assert pyramid_shapes((512, 300)) == [(512, 300), (256, 150), (128, 75)]
    assert pyramid_shapes((50, 50)) == [(50, 50)]


def test_open_images_picks_the_reader(seq, tmp_path):
    write_ctc_synthetic(tmp_path / "data", frames=2, size=(32, 32))
    assert isinstance(open_images(tmp_path / "data" / "01", video=True), CTCSequence)
    assert isinstance(open_images(write_input(tmp_path / "in.zarr", seq.images), video=True),
                      OmeZarrImage)


def test_labels_in_place_are_replaced_only_on_request(seq, tmp_path):
    path = write_input(tmp_path / "in.zarr", seq.images)
    OmeZarrLabelsWriter(path, 4, image=OmeZarrImage(path)).write(0, seq.labels[0])
    with pytest.raises(DataError, match="already holds labels/instatrack.*--overwrite"):
        OmeZarrLabelsWriter(path, 4, image=OmeZarrImage(path))
    with pytest.raises(DataError, match="not empty"):
        OmeZarrLabelsWriter(tmp_path, 4, frame_of=lambda t: seq.images[t])


def test_frames_of_another_shape_are_refused(seq, tmp_path):
    writer = OmeZarrLabelsWriter(tmp_path / "out.zarr", 2, frame_of=lambda t: seq.images[t])
    writer.write(0, seq.labels[0])
    with pytest.raises(DataError, match="one shape"):
        writer.write(1, seq.labels[1][:100])


@pytest.fixture(scope="module")
def run(tiny_cosine_run):
    return tiny_cosine_run


def test_cli_track_omezarr_in_place_and_to_a_new_store(run, tmp_path):
    from instatrack.data.io import list_images, read_image

    frames = np.stack([read_image(p) for p in list_images(run / "data" / "01")])
    path = write_input(tmp_path / "in.zarr", frames)
    common = ["--model", str(run / "run"), "--quiet", "--set", "cluster_min_cluster_size=30"]
    assert main(["track", *common, "--input", str(path), "--output", str(path),
                 "--format", "ome-zarr", "--tables", "--movie", str(tmp_path / "m.gif")]) == 0
    label = read_nodes(path)[Label][0]
    assert label.data[0].shape == (4, 48, 56)
    assert (tmp_path / "m.gif").is_file()
    # a folder of TIFFs in, a new OME-Zarr (image + labels) out
    assert main(["track", *common, "--input", str(run / "data" / "01"),
                 "--output", str(tmp_path / "new.zarr"), "--format", "ome-zarr"]) == 0
    found = read_nodes(tmp_path / "new.zarr")
    assert found[Label][0].data[0].shape == (4, 48, 56)
    np.testing.assert_array_equal(OmeZarrImage(tmp_path / "new.zarr").image(2), frames[2])


def test_cli_segment_omezarr(run, tmp_path):
    from instatrack.data.io import list_images, read_image

    frames = np.stack([read_image(p) for p in list_images(run / "data" / "01")])
    path = write_input(tmp_path / "in.zarr", frames)
    common = ["--model", str(run / "run"), "--quiet"]
    assert main(["segment", *common, "--input", str(path), "--output", str(path),
                 "--format", "ome-zarr"]) == 0
    assert read_nodes(path)[Label][0].data[0].shape == (4, 48, 56)
    assert main(["segment", *common, "--input", str(path), "--output",
                 str(tmp_path / "tifs")]) == 0
    assert len(list((tmp_path / "tifs").glob("frame*.tif"))) == 4


def digest(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_cli_labels_in_place_are_refused_without_overwrite(run, tmp_path, capsys):
    """Labels in the input are the one result written in place: existing ones are kept
    unless --overwrite; a new store is staged like any output."""
    from instatrack.data.io import list_images, read_image

    frames = np.stack([read_image(p) for p in list_images(run / "data" / "01")])
    path = write_input(tmp_path / "in.zarr", frames)
    track = ["track", "--model", str(run / "run"), "--quiet", "--input", str(path),
             "--format", "ome-zarr"]
    assert main([*track, "--output", str(path)]) == 0
    before = digest(labels_path(path))
    capsys.readouterr()
    assert main([*track, "--output", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "labels/instatrack" in err[0] and "--overwrite" in err[0], err
    assert digest(labels_path(path)) == before
    assert main([*track, "--output", str(path), "--overwrite"]) == 0
    # a new store: an existing non-empty folder is refused and left as it was
    (tmp_path / "used.zarr").mkdir()
    (tmp_path / "used.zarr" / "keep.txt").write_text("mine")
    assert main([*track, "--output", str(tmp_path / "used.zarr")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert digest(tmp_path / "used.zarr") == {"keep.txt": b"mine"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging, lock
