"""Pictures: overlays, overlay movie, lineage tree, training curves."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from instatrack import plot
from instatrack.errors import DataError
from test_track_link import DIVISION, track_single


def test_label_colours_are_stable_and_distinct():
    first = plot.label_colours(np.array([1, 2, 3, 40]))
    again = plot.label_colours(np.array([40, 1]))
    assert first.dtype == np.uint8 and first.shape == (4, 3)
    assert np.array_equal(again, first[[3, 0]])
    assert len({tuple(c) for c in plot.label_colours(np.arange(1, 30))}) == 29


def test_label_overlay_tints_instances_only():
    image = np.tile(np.arange(16, dtype=np.uint16) * 100, (16, 1))
    labels = np.zeros((16, 16), np.int32)
    labels[4:10, 4:10] = 3
    rgb = plot.label_overlay(image, labels)
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    grey = plot.to_rgb(image)
    assert np.array_equal(rgb[labels == 0], grey[labels == 0])
    assert grey[12, 15, 0] == 255 and grey[12, 0, 0] == 0 and (grey[..., 0] == grey[..., 2]).all()
    colour = plot.label_colours(np.array([3]))[0]
    assert np.array_equal(rgb[4, 4], colour)  # contour pixel in full colour
    assert not np.array_equal(rgb[7, 7], grey[7, 7])  # tinted inside
    with pytest.raises(DataError, match="do not fit"):
        plot.label_overlay(image, labels[:8])


def test_label_overlay_of_colour_image():
    image = np.zeros((8, 8, 3), np.uint8)
    rgb = plot.label_overlay(image, np.zeros((8, 8), np.int32))
    assert np.array_equal(rgb, image)


def test_overlay_movie_gif_has_one_frame_per_time_point(tmp_path):
    tracker, final = track_single(DIVISION)
    frames = [(DIVISION[t] > 0).astype(np.float32) * 100 for t in range(4)]
    labels = (final[t] for t in range(4))
    path = plot.overlay_movie(iter(frames), labels, tracker.graph, tmp_path / "movie.gif")
    assert path.suffix == ".gif"
    with Image.open(path) as gif:
        assert gif.n_frames == 4
        assert min(gif.size) >= 256  # enlarged so the ids can be read
    if plot._has_ffmpeg():
        mp4 = plot.overlay_movie(frames, [final[t] for t in range(4)], None, tmp_path / "m.mp4")
        assert mp4.is_file() and mp4.suffix == ".mp4"
    else:  # refused up front, never silently written as a GIF
        with pytest.raises(DataError, match="imageio-ffmpeg"):
            plot.overlay_movie(frames, [final[t] for t in range(4)], None, tmp_path / "m.mp4")
        assert not list(tmp_path.glob("m.*"))
    with pytest.raises(DataError, match=r"m\.avi: unsupported movie type"):
        plot.overlay_movie(frames, [final[t] for t in range(4)], None, tmp_path / "m.avi")


def test_overlay_movie_from_files(tmp_path):
    import tifffile

    tracker, final = track_single(DIVISION)
    images, masks = [], []
    for t in range(4):
        images.append(tmp_path / f"t{t:03d}.tif")
        masks.append(tmp_path / f"mask{t:03d}.tif")
        tifffile.imwrite(images[-1], (DIVISION[t] * 50).astype(np.uint16))
        tifffile.imwrite(masks[-1], final[t].astype(np.uint16))
    path = plot.overlay_movie_from_files(images, masks, tracker.graph, tmp_path / "f.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == 4


def test_lineage_tree_png(tmp_path):
    tracker, _ = track_single(DIVISION)
    path = plot.lineage_tree(tracker.graph, tmp_path / "lineage.png")
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size[0] > 300
    assert plot._lineage_order([(1, 0, 1, 0), (4, 0, 3, 0), (2, 2, 3, 1), (3, 2, 3, 1)]) == [
        1, 2, 3, 4]


def test_training_curves_png(tmp_path):
    rows = [{"step": s, "loss": 1.0 / s, "lr": 1e-4, "steps_per_s": 3.0} for s in range(1, 50)]
    rows[10]["val_seg"] = 0.5
    rows[40]["val_seg"] = 0.7
    rows.append({"step": 50, "loss": float("nan")})
    path = plot.training_curves(rows, tmp_path / "curves.png")
    with Image.open(path) as png:
        assert png.format == "PNG"
    assert plot._series(rows)["val_seg"] == ([11.0, 41.0], [0.5, 0.7])
    assert len(plot._series(rows)["loss"][0]) == 49  # the NaN is left out
    assert plot.training_curves([], tmp_path / "empty.png").is_file()
