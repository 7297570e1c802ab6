"""Synthetic DAVIS-layout videos: deterministic, moving, annotated, readable by the DAVIS reader."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from instatrack.cli import main
from instatrack.data import open_dataset
from instatrack.data.synth_video import (
    RECORD,
    VideoSettings,
    generate_video,
    star_radius,
    write_davis_videos,
)
from instatrack.errors import ConfigError


def test_a_video_is_deterministic_per_seed_and_differs_between_seeds():
    a = generate_video(3, (48, 64), seed=5)
    b = generate_video(3, (48, 64), seed=5)
    c = generate_video(3, (48, 64), seed=6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_frames_are_colour_and_labels_name_the_same_objects_over_time():
    images, labels = generate_video(4, (64, 96), seed=2)
    assert images.shape == (4, 64, 96, 3) and images.dtype == np.uint8
    assert labels.shape == (4, 64, 96) and labels.dtype == np.int32
    # colour: the channels differ
    assert np.abs(images[..., 0].astype(int) - images[..., 1]).mean() > 1
    ids = np.unique(labels[0])
    assert ids[0] == 0 and len(ids) >= 2, "frame 0 shows an annotated object"
    assert set(np.unique(labels).tolist()) == set(range(labels.max() + 1))


def test_objects_and_camera_move():
    for seed in range(3):
        images, labels = generate_video(4, (64, 96), seed=seed)
        assert not np.array_equal(labels[0], labels[-1]), seed
        background = (labels[0] == 0) & (labels[-1] == 0)
        assert np.abs(images[0].astype(float) - images[-1])[background].mean() > 1, seed


def test_distractors_are_drawn_but_not_annotated():
    settings = VideoSettings(max_objects=3, distractor_rate=1.0)
    for seed in range(4):
        _, labels = generate_video(2, (48, 48), seed=seed, settings=settings)
        assert labels.max() <= 1, "with every other object a distractor, one is annotated"


def test_star_radius_is_one_without_harmonics_and_positive_with_them():
    theta = np.linspace(0, 2 * np.pi, 50)
    assert np.allclose(star_radius(theta, np.zeros((0, 3))), 1)
    harmonics = np.array([[2, 0.3, 0.0], [3, 0.2, 1.0]])
    assert star_radius(theta, harmonics).min() > 0


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="radius"):
        VideoSettings(radius=(0.5, 0.1))
    with pytest.raises(ConfigError, match="size"):
        generate_video(2, (8, 8))


def test_written_videos_open_as_davis_with_their_labels(tmp_path):
    write_davis_videos(tmp_path, videos=2, frames=3, size=(40, 56), seed=1)
    record = json.loads((tmp_path / RECORD).read_text())
    assert [v["video"] for v in record["videos"]] == ["synth-000", "synth-001"]
    sequences = open_dataset(tmp_path)
    assert [s.name for s in sequences] == ["synth-000", "synth-001"]
    seq = sequences[0]
    assert len(seq) == 3 and seq.channels == 3 and seq.image(0).shape == (40, 56, 3)
    _, labels = generate_video(3, (40, 56), record["videos"][0]["seed"])
    assert np.array_equal(seq.labels(2), labels[2])


def test_cli_writes_videos(tmp_path, capsys):
    out = tmp_path / "videos"
    assert main(["synth", str(out), "--kind", "video", "--sequences", "2", "--frames", "2",
                 "--size", "32", "48"]) == 0
    assert "2 synthetic DAVIS video(s)" in capsys.readouterr().out
    assert len(open_dataset(out)) == 2
    assert main(["synth", str(tmp_path / "x"), "--kind", "video", "--randomise"]) == 2


def test_a_wide_scale_range_draws_approaching_and_receding_objects():
    with pytest.raises(ConfigError, match="scale_range"):
        VideoSettings(scale_range=(1.2, 2.0))
    wide = VideoSettings(zoom=0.15, scale_range=(0.3, 3.0), max_objects=1, speed=0.0)

    def area_change(settings):
        changes = []
        for seed in range(6):
            labels = generate_video(12, (96, 96), seed, settings)[1] > 0
            areas = labels.sum((1, 2))
            changes.append(areas.max() / max(areas.min(), 1))
        return max(changes)

    assert area_change(wide) > 2.5 > area_change(VideoSettings(max_objects=1, speed=0.0))


def test_cli_changes_video_settings(tmp_path):
    out = tmp_path / "videos"
    assert main(["synth", str(out), "--kind", "video", "--frames", "2", "--size", "32", "48",
                 "--video-set", "zoom=0.1", "--video-set", "scale_range=0.5,2"]) == 0
    settings = json.loads((out / RECORD).read_text())["settings"]
    assert settings["zoom"] == 0.1 and settings["scale_range"] == [0.5, 2.0]
    assert main(["synth", str(tmp_path / "x"), "--video-set", "zoom=0.1"]) == 2
    assert main(["synth", str(tmp_path / "y"), "--kind", "video", "--video-set", "zoomm=1"]) == 2


def test_photographs_texture_the_background_and_leave_photos_0_as_before():
    plain = generate_video(2, (48, 64), seed=3)
    off = generate_video(2, (48, 64), seed=3, settings=VideoSettings(photos=0.0))
    assert np.array_equal(plain[0], off[0]) and np.array_equal(plain[1], off[1])
    photo = generate_video(2, (48, 64), seed=3, settings=VideoSettings(photos=1.0))
    again = generate_video(2, (48, 64), seed=3, settings=VideoSettings(photos=1.0))
    assert np.array_equal(photo[0], again[0]), "deterministic per seed"
    assert not np.array_equal(photo[0], plain[0])
    with pytest.raises(ConfigError, match="photos"):
        VideoSettings(photos=1.5)


def test_a_photo_texture_fills_any_shape_in_range():
    from instatrack.data.synth_video import photo_texture

    rng = np.random.default_rng(0)
    for shape in [(7, 9), (300, 40), (900, 1300)]:
        texture = photo_texture(rng, shape)
        assert texture.shape == (*shape, 3) and texture.dtype == np.float32
        assert 0 <= texture.min() and texture.max() <= 1 and texture.std() > 0


def test_hard_motion_settings_leave_0_as_before_and_are_checked():
    plain = generate_video(3, (64, 96), seed=4)
    off = generate_video(3, (64, 96), seed=4, settings=VideoSettings(
        articulation=0.0, motion_blur=0.0, flat=0.0, thin=0.0, restyle=0.0))
    assert np.array_equal(plain[0], off[0]) and np.array_equal(plain[1], off[1])
    for bad in ({"articulation": -0.1}, {"motion_blur": 4.0}, {"flat": 1.5}, {"thin": -0.5},
                {"restyle": 2.0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            VideoSettings(**bad)


def test_motion_blur_smears_the_frames_and_leaves_the_annotation_sharp():
    settings = VideoSettings(speed=0.1, noise=(0.0, 0.0), blur=(0.0, 0.0))
    sharp = generate_video(4, (64, 96), seed=2, settings=settings)
    smeared = generate_video(4, (64, 96), seed=2, settings=dataclasses.replace(
        settings, motion_blur=1.5))
    assert np.array_equal(sharp[1], smeared[1]), "draws no random number; labels unchanged"
    assert np.array_equal(sharp[0][0], smeared[0][0]), "frame 0 has no motion to smear"
    assert not np.array_equal(sharp[0][1:], smeared[0][1:])


def test_articulated_parts_swing_and_flat_parts_are_one_colour():
    from instatrack.data.synth_video import _new_object

    rng = np.random.default_rng(1)
    settings = VideoSettings(articulation=1.0, flat=1.0)
    objects = [_new_object(rng, (120, 160), settings) for _ in range(20)]
    for obj in objects:
        assert all(np.ptp(part.texture.reshape(-1, 3), 0).max() == 0 for part in obj.parts)
        assert obj.parts[0].swing == (0.0, 0.0, 0.0), "the main part does not swing"
        assert all(0.3 <= part.swing[0] <= 1.0 for part in obj.parts[1:])
    assert any(len(obj.parts) > 1 for obj in objects)
    frames, labels = generate_video(8, (64, 96), seed=7, settings=VideoSettings(
        articulation=1.0, max_objects=1, distractor_rate=0.0))
    assert all((labels[t] > 0).any() for t in range(8))


def test_wheels_show_the_background_between_spokes_that_turn():
    from scipy import ndimage as ndi

    frames, labels = generate_video(4, (96, 128), seed=3, settings=VideoSettings(
        thin=1.0, max_objects=1, distractor_rate=0.0, speed=0.0, spin=0.0, zoom=0.0,
        warp=0.0, camera_speed=0.0))
    masks = labels > 0
    for mask in masks:
        holes = ndi.binary_fill_holes(mask) & ~mask
        assert mask.any() and holes.sum() > 0.2 * mask.sum(), "rim and spokes, not a disc"
    assert not np.array_equal(masks[0], masks[3]), "the spokes turn"


def test_restyled_parts_fade_into_a_second_texture():
    from instatrack.data.synth_video import _new_object

    rng = np.random.default_rng(2)
    for _ in range(10):
        for part in _new_object(rng, (120, 160), VideoSettings(restyle=0.5)).parts:
            assert part.later.shape == part.texture.shape and 0.25 <= part.fade <= 0.5
            assert np.array_equal(part.look(0), part.texture)
            assert np.allclose(part.look(4), part.later), "all the way after 1 / fade frames"
            halfway = part.look(1)
            assert not np.allclose(halfway, part.texture) and not np.allclose(halfway, part.later)
    frames, labels = generate_video(4, (64, 96), seed=5, settings=VideoSettings(restyle=0.3))
    assert frames.shape == (4, 64, 96, 3) and (labels > 0).any()
