"""Synthetic cells and leaves: determinism, exact partition labels, CTC-consistent lineage."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import tifffile

from instatrack.data.ctc import read_track_table
from instatrack.data.synth import (
    generate_cells,
    generate_leaves,
    write_ctc_synthetic,
    write_cvppp_synthetic,
)


@pytest.fixture(scope="module")
def movie():
    # a high division rate and drift make divisions, entries and exits all happen
    return generate_cells(frames=25, size=(64, 64), seed=3, division_rate=0.15, speed=2.0)


def test_shapes_and_dtypes(movie):
    assert movie.images.shape == (25, 64, 64) and movie.images.dtype == np.uint16
    assert movie.labels.shape == (25, 64, 64) and movie.labels.dtype == np.int32
    assert movie.labels.min() == 0


def test_deterministic_per_seed(movie):
    again = generate_cells(frames=25, size=(64, 64), seed=3, division_rate=0.15, speed=2.0)
    np.testing.assert_array_equal(again.images, movie.images)
    np.testing.assert_array_equal(again.labels, movie.labels)
    assert again.lineage == movie.lineage
    other = generate_cells(frames=25, size=(64, 64), seed=4, division_rate=0.15, speed=2.0)
    assert not np.array_equal(other.labels, movie.labels)


def test_lineage_matches_masks(movie):
    rows = {label: (b, e, p) for label, b, e, p in movie.lineage}
    assert len(rows) == len(movie.lineage)
    present = {t: set(np.unique(movie.labels[t]).tolist()) - {0} for t in range(25)}
    assert set().union(*present.values()) == set(rows)
    for label, (b, e, _) in rows.items():
        frames = [t for t in range(25) if label in present[t]]
        assert frames == list(range(b, e + 1)), label  # contiguous, exactly B..E


def test_divisions_follow_ctc_rules(movie):
    rows = {label: (b, e, p) for label, b, e, p in movie.lineage}
    daughters = [(label, b, p) for label, (b, e, p) in rows.items() if p]
    assert daughters, "the fixture should contain divisions"
    for label, b, parent in daughters:
        assert b == rows[parent][1] + 1, label
        mother = movie.labels[b - 1] == parent
        daughter = movie.labels[b] == label
        assert (mother & daughter).any(), "a daughter starts inside her mother's footprint"


def test_cells_enter_and_leave(movie):
    rows = movie.lineage
    assert any(b > 0 and p == 0 for _, b, _, p in rows), "some cell enters"
    ends_without_children = [label for label, _, e, _ in rows
                             if e < 24 and not any(r[3] == label for r in rows)]
    assert ends_without_children, "some cell leaves the field"


def test_no_tiny_objects_and_images_look_like_cells(movie):
    areas = np.bincount(movie.labels.ravel())
    assert areas[1:][areas[1:] > 0].min() >= 12
    fg = movie.images[movie.labels > 0].mean()
    bg = movie.images[movie.labels == 0].mean()
    assert fg > bg + 100


def test_knobs_change_difficulty():
    dense = generate_cells(frames=2, size=(96, 96), seed=0, density=20)
    sparse = generate_cells(frames=2, size=(96, 96), seed=0, density=3)
    assert len(np.unique(dense.labels[0])) > 2 * len(np.unique(sparse.labels[0]))
    clean = generate_cells(frames=1, size=(64, 64), seed=0, noise=0.0)
    noisy = generate_cells(frames=1, size=(64, 64), seed=0, noise=0.4)
    bg = clean.labels[0] == 0
    assert noisy.images[0][bg].std() > 2 * clean.images[0][bg].std()


def test_write_ctc_synthetic_is_valid_for_py_ctcmetrics(tmp_path):
    from ctc_metrics.scripts.validate import validate_sequence

    out = write_ctc_synthetic(tmp_path / "syn", frames=12, size=(64, 64), seed=1,
                              division_rate=0.15)
    assert (out / "01" / "t011.tif").is_file()
    assert len(list((out / "01_GT" / "SEG").glob("man_seg*.tif"))) == 12
    rows = read_track_table(out / "01_GT" / "TRA" / "man_track.txt")
    mask = tifffile.imread(out / "01_GT" / "TRA" / "man_track005.tif")
    assert mask.dtype == np.uint16
    assert set(np.unique(mask).tolist()) - {0} == {r[0] for r in rows if r[1] <= 5 <= r[2]}
    res = tmp_path / "res"
    res.mkdir()
    for path in (out / "01_GT" / "TRA").glob("man_track*.tif"):
        shutil.copy(path, res / path.name.replace("man_track", "mask"))
    shutil.copy(out / "01_GT" / "TRA" / "man_track.txt", res / "res_track.txt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # py-ctcmetrics reports each problem as a warning
        assert validate_sequence(str(res), threads=1)["Valid"] == 1


def test_leaves_partition_and_layout(tmp_path):
    from PIL import Image

    leaves = generate_leaves(n=3, size=(64, 80), seed=2, leaves=(6, 9))
    assert leaves.images.shape == (3, 64, 80, 3) and leaves.images.dtype == np.uint8
    for labels in leaves.labels:
        ids = np.unique(labels)
        assert ids[0] == 0 and np.array_equal(ids, np.arange(len(ids)))  # ids 1..K
        assert 6 <= len(ids) - 1 <= 9
    again = generate_leaves(n=3, size=(64, 80), seed=2, leaves=(6, 9))
    np.testing.assert_array_equal(again.labels, leaves.labels)
    green = leaves.images[0][leaves.labels[0] > 0].mean(0)
    assert green[1] > green[0] and green[1] > green[2]
    out = write_cvppp_synthetic(tmp_path, n=2, size=(48, 48), seed=0)
    label = Image.open(out / "A1" / "plant002_label.png")
    assert label.mode == "P"
    rgb = np.asarray(Image.open(out / "A1" / "plant002_rgb.png"))
    assert rgb.shape == (48, 48, 3)
    np.testing.assert_array_equal(np.asarray(label), generate_leaves(2, (48, 48), 0).labels[1])


@pytest.mark.parametrize("knob", [{"density": -1}, {"noise": -0.1}, {"division_rate": 2},
                                  {"radius": (5, 2)}, {"frames": 0}, {"size": (4, 64)}])
def test_bad_knobs_raise_config_error(knob):
    from instatrack.errors import ConfigError

    with pytest.raises(ConfigError, match=next(iter(knob))):
        generate_cells(**{"frames": 2, "size": (32, 32), **knob})


def test_dim_and_dense_phases():
    from instatrack.data.synth import generate_cells

    plain = generate_cells(frames=12, size=(96, 96), seed=3, noise=0.05)
    phased = generate_cells(frames=12, size=(96, 96), seed=3, noise=0.05,
                            dim_phases=[(4, 8, 5.0)], dense_phases=[(6, 12, 3.0)])
    np.testing.assert_array_equal(plain.labels[:5], phased.labels[:5])

    def contrast(seq, t):
        image, labels = seq.images[t].astype(float), seq.labels[t]
        return np.median(image[labels > 0]) - np.median(image[labels == 0])

    assert contrast(phased, 5) < contrast(plain, 5) / 3
    assert contrast(phased, 9) == pytest.approx(contrast(plain, 9), rel=0.3)
    counts = [len(np.unique(frame)) - 1 for frame in phased.labels]
    assert counts[-1] > 1.5 * counts[5]


def test_bad_phase_is_refused():
    from instatrack.data.synth import parse_phase
    from instatrack.errors import ConfigError

    with pytest.raises(ConfigError, match="START:STOP:FACTOR"):
        parse_phase("3:x", "--dim-phase")


def test_visible_outline_grows_blurred_small_nuclei_only():
    """A small nucleus blurred by optics of its radius gets the edge an annotator sees;
    a large sharp one keeps its drawn outline; none shrinks."""
    from instatrack.data.synth import visible_outlines

    yy, xx = np.mgrid[0:64, 0:64]
    small = ((yy - 20) ** 2 + (xx - 20) ** 2 < 4 ** 2).astype(np.int32)
    large = ((yy - 40) ** 2 + (xx - 40) ** 2 < 16 ** 2).astype(np.int32) * 2
    labels = small + large
    signal = (labels > 0).astype(float)
    grown = visible_outlines(labels, signal, blur=3.0)
    assert ((grown > 0) >= (labels > 0)).all()
    assert (grown == 1).sum() > 1.4 * (labels == 1).sum()
    sharp = visible_outlines(large, (large > 0).astype(float), blur=0.7)
    assert (sharp == 2).sum() <= 1.1 * (large == 2).sum()
    sequence = generate_cells(frames=2, size=(48, 48), seed=0, outline="visible")
    assert sequence.labels.max() > 0
