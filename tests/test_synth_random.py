"""Randomised synthetic datasets: every sequence draws its own look, deterministically."""

from __future__ import annotations

import json

import numpy as np
import pytest

from instatrack.cli import main
from instatrack.data import open_dataset
from instatrack.data.synth import generate_cells
from instatrack.data.synth_appearance import Appearance
from instatrack.data.synth_random import RANGES, RECORD, cells_arguments, draw
from instatrack.errors import ConfigError


def test_draws_are_deterministic_inside_their_ranges_and_vary():
    draws = [draw(7, i) for i in range(12)]
    assert draws == [draw(7, i) for i in range(12)]
    assert draws != [draw(8, i) for i in range(12)]
    for name, (low, high, _) in RANGES.items():
        values = [d[name] for d in draws]
        assert all(low - 1e-4 <= v <= high + 1e-4 for v in values), name
        assert max(values) - min(values) > 0.2 * (high - low), f"{name} hardly varies"


def test_default_appearance_is_the_original_look():
    a = generate_cells(4, (48, 48), seed=1)
    b = generate_cells(4, (48, 48), seed=1, appearance=Appearance())
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)


def test_randomised_sequences_differ_in_size_and_look():
    sizes, backgrounds = [], []
    for i in range(6):
        drawn = draw(0, i)
        seq = generate_cells(2, (96, 96), drawn["seed"], **cells_arguments(drawn))
        areas = np.bincount(seq.labels[0].ravel())[1:]
        if (areas > 0).any():  # a few large nuclei may all lie outside a small field
            sizes.append(np.median(areas[areas > 0]))
        backgrounds.append(np.median(seq.images[0][seq.labels[0] == 0]))
    assert len(sizes) >= 4 and max(sizes) > 4 * min(sizes)
    assert max(backgrounds) > 1.5 * min(backgrounds)


def test_cli_writes_n_randomised_sequences(tmp_path):
    argv = ["--randomise", "--sequences", "3", "--frames", "3", "--size", "40", "48"]
    assert main(["synth", str(tmp_path / "a"), *argv]) == 0
    assert main(["synth", str(tmp_path / "b"), *argv]) == 0
    assert main(["synth", str(tmp_path / "c"), *argv, "--seed", "1", "--noise", "0.05"]) == 0
    sequences = open_dataset(tmp_path / "a")
    assert [s.name for s in sequences] == ["a/01", "a/02", "a/03"]
    assert all(len(s) == 3 and s.image(0).shape == (40, 48) for s in sequences)
    for name in ("01", "02", "03"):
        for sub in (name, f"{name}_GT/SEG", f"{name}_GT/TRA"):
            one = sorted((tmp_path / "a" / sub).iterdir())
            two = sorted((tmp_path / "b" / sub).iterdir())
            assert [p.read_bytes() for p in one] == [p.read_bytes() for p in two]
    record = json.loads((tmp_path / "c" / RECORD).read_text())
    assert [s["noise"] for s in record["sequences"]] == [0.05] * 3
    assert len({s["appearance"]["blur"] for s in record["sequences"]}) == 3


def test_cli_refuses_randomised_leaves(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "x"), "--kind", "leaves", "--randomise"]) == 2
    assert "cells only" in capsys.readouterr().err


@pytest.mark.parametrize("field", ["dome", "contrast", "bright_min"])
def test_bad_appearance_is_refused(field):
    from instatrack.errors import ConfigError

    with pytest.raises(ConfigError, match=field):
        Appearance(**{field: -1.0})


def test_ranges_move_one_draw_and_keep_the_others():
    from instatrack.data.synth_random import draw

    plain, moved = draw(3, 1), draw(3, 1, {"radius": (12.0, 32.0)})
    assert 12 <= moved["radius"] <= 32
    assert {k: v for k, v in plain.items() if k != "radius"} == \
        {k: v for k, v in moved.items() if k != "radius"}
    with pytest.raises(ConfigError, match="radiuz"):
        draw(3, 1, {"radiuz": (1.0, 2.0)})
    with pytest.raises(ConfigError, match="low <= high"):
        draw(3, 1, {"radius": (5.0, 2.0)})


def test_training_sequences_are_the_synth_command_s_set_in_memory(tmp_path, monkeypatch):
    """What training mixes in (synthetic_share) is what ``instatrack synth --randomise``
    writes with the same numbers, read back, frame for frame."""
    from instatrack.data import synth_random

    monkeypatch.setattr(synth_random, "TRAINING_SEQUENCES", 2)
    memory = synth_random.training_sequences(frames=3, size=(64, 64))
    assert main(["synth", str(tmp_path / "s"), "--randomise", "--sequences", "2", "--frames",
                 "3", "--size", "64", "64", "--seed", str(synth_random.TRAINING_SEED)]) == 0
    written = open_dataset(tmp_path / "s")
    assert len(memory) == len(written) == 2
    for a, b in zip(memory, written, strict=True):
        assert a.is_video and a.channels == b.channels == 1 and len(a) == len(b) == 3
        for t in range(3):
            np.testing.assert_array_equal(a.image(t), b.image(t))
            np.testing.assert_array_equal(a.labels(t), b.labels(t))


def test_later_ranges_leave_the_earlier_draws_as_they_were():
    """Spread cells were added after the shipped models' data: without ``--range arms``
    every draw, and so every movie, is what it was (values recorded before the change)."""
    drawn = draw(16, 0)
    assert (drawn["seed"], drawn["radius"]) == (401036374, 13.0028) and drawn["arms"] == 0
    assert draw(22, 5)["seed"] == 2132483862


def test_spread_cells_reach_out_in_arms_and_hold_several_cores():
    """With arms a cell reaches well past its body (lower solidity) and often holds
    several distance-transform peaks, yet stays one object; it is deterministic."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.measure import regionprops

    def shapes(width):
        look = None if width is None else Appearance(arms=3.0, arm_length=2.0, arm_width=width)
        labels = generate_cells(3, (192, 192), seed=4, radius=(14.0, 18.0), density=2.0,
                                appearance=look).labels[2]
        props = regionprops(labels)
        cores = [len(peak_local_max(ndi.distance_transform_edt(np.pad(p.image, 1)),
                                    min_distance=3, exclude_border=False)) for p in props]
        return labels, np.median([p.solidity for p in props]), np.mean(np.asarray(cores) > 1)

    _, solid_plain, multi_plain = shapes(None)
    thin, solid_thin, multi_thin = shapes(0.2)
    assert solid_thin < solid_plain - 0.1 and multi_thin > multi_plain
    assert np.array_equal(thin, shapes(0.2)[0])
    with pytest.raises(ConfigError, match="arms"):
        Appearance(arms=5.0)


def test_clutter_adds_light_without_ground_truth_and_leaves_the_cells_in_focus():
    """Out-of-focus cells and specks light the image where no object is annotated; the
    labels are those of the movie without it, and (noise-free) it only adds light."""
    def movie(look=None):
        return generate_cells(3, (128, 128), seed=5, radius=(10.0, 14.0), density=2.0,
                              noise=0.0, appearance=look)

    plain = movie()
    look = Appearance(ghosts=1.5, specks=0.5)
    cluttered = movie(look)
    np.testing.assert_array_equal(plain.labels, cluttered.labels)
    assert plain.lineage == cluttered.lineage
    extra = cluttered.images.astype(float) - plain.images.astype(float)
    background = plain.labels == 0
    assert extra[background].mean() > 5 and extra.min() >= 0
    assert np.array_equal(cluttered.images, movie(look).images)
    assert draw(16, 0, {"ghosts": (0.5, 0.5)})["ghosts"] == 0.5
    with pytest.raises(ConfigError, match="specks"):
        Appearance(specks=-1.0)


def test_ghost_light_dims_the_out_of_focus_cells_only():
    """``ghost_light`` scales the ghosts' light (0.4, the default, as before); the cells in
    focus and their labels stay, and a value outside (0, 1] is refused by name."""
    def movie(**look):
        return generate_cells(2, (128, 128), seed=5, radius=(10.0, 14.0), density=2.0,
                              noise=0.0, appearance=Appearance(**look))

    plain, bright, dim = movie(), movie(ghosts=1.5), movie(ghosts=1.5, ghost_light=0.1)
    np.testing.assert_array_equal(bright.labels, dim.labels)
    extra_bright = bright.images.astype(float) - plain.images
    extra_dim = dim.images.astype(float) - plain.images
    assert 0.15 < extra_dim.sum() / extra_bright.sum() < 0.35
    assert np.array_equal(movie(ghosts=1.5, ghost_light=0.4).images, bright.images)
    assert draw(16, 0)["ghost_light"] == 0.4
    with pytest.raises(ConfigError, match="ghost_light"):
        Appearance(ghost_light=0.0)
