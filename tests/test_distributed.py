"""Dask: plates, frames and tiles in parallel give the serial results, byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from instatrack.cli import main
from scale_runs import random_run

pytest.importorskip("dask.distributed")
zarr = pytest.importorskip("zarr")
from instatrack.distributed import (  # noqa: E402
    RunSpec,
    find_sequences,
    open_client,
    segment_images,
    track_plate,
)


@pytest.fixture(scope="module")
def client():
    with open_client(workers=2, processes=False) as c:
        yield c


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    """Two synthetic sequences of three frames, as a folder of sequence folders."""
    from instatrack.data.synth import write_ctc_synthetic

    root = tmp_path_factory.mktemp("plate")
    for k in range(2):
        data = write_ctc_synthetic(root / f"src{k}", frames=3, size=(64, 72), seed=k)
        (data / "01").rename(root / f"well{k}")
    return root


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def serial_track(run: Path, plate: Path, out: Path, *flags: str) -> Path:
    for seq in sorted(p for p in plate.iterdir() if p.is_dir() and p.name.startswith("well")):
        assert main(["track", "--model", str(run), "--input", str(seq), "--output",
                     str(out / seq.name), "--quiet", *flags]) == 0
    return out


@pytest.mark.parametrize("method", ["spatial-embedding", "cosine-hourglass"])
def test_a_plate_on_the_cluster_equals_the_serial_runs(client, plate, tmp_path, method):
    run = random_run(tmp_path / "run", method)
    expected = files(serial_track(run, plate, tmp_path / "serial", "--tables"))
    sequences = [s for s in find_sequences(plate) if s.name.startswith("well")]
    results = track_plate(client, RunSpec(str(run)), sequences, tmp_path / "dask",
                          tables=True)
    assert set(results) == {"well0", "well1"} and results["well0"]["frames"] == 3
    assert files(tmp_path / "dask") == expected  # no work files left behind either


def test_zarr_plate_input_gives_the_same_tracks(client, plate, tmp_path):
    from instatrack.data.io import read_image

    run = random_run(tmp_path / "run")
    group = zarr.open_group(str(tmp_path / "plate.zarr"), mode="w")
    for name in ("well0", "well1"):
        frames = np.stack([read_image(p) for p in sorted((plate / name).iterdir())])
        group.create_array(name, shape=frames.shape, dtype=frames.dtype,
                           chunks=(1, 32, 72))[:] = frames
    sequences = find_sequences(tmp_path / "plate.zarr")
    assert [s.name for s in sequences] == ["well0", "well1"] and len(sequences[0].frames()) == 3
    track_plate(client, RunSpec(str(run)), sequences, tmp_path / "dask")
    assert files(tmp_path / "dask") == files(serial_track(run, plate, tmp_path / "serial"))


def test_tiles_of_an_image_in_parallel_equal_the_serial_tiled_segmentation(client, tmp_path):
    from instatrack.data.io import write_labels
    from scale_runs import cells_image

    run = random_run(tmp_path / "run")
    images = tmp_path / "images"
    for k in range(2):
        write_labels(images / f"im{k}.tif", cells_image((150, 190), seed=k)[0])
    assert main(["segment", "--model", str(run), "--input", str(images), "--output",
                 str(tmp_path / "serial"), "--tile", "96", "--quiet"]) == 0
    assert segment_images(client, RunSpec(str(run), tile=96), images, tmp_path / "dask") == 2
    assert files(tmp_path / "dask") == files(tmp_path / "serial")


def test_cli_rejects_what_the_cluster_cannot_do(plate, tmp_path, capsys):
    run = random_run(tmp_path / "run")
    assert main(["track", "--model", str(run), "--input", str(plate), "--output",
                 str(tmp_path / "out"), "--workers", "1", "--movie", "m.gif"]) == 2
    assert "--movie" in capsys.readouterr().err
