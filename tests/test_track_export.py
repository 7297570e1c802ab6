"""Exports of the track graph: CTC folder (checked by py-ctcmetrics), napari, CSV."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile

from instatrack.track.export import (
    graph_to_ctc_table,
    to_napari,
    write_ctc_result,
    write_napari,
    write_tracks_csv,
)
from test_track_link import DIVISION, GAP, track_single


def ctc_valid(res_dir) -> int:
    """py-ctcmetrics' own verdict, called as its evaluate script does."""
    from ctc_metrics.metrics import valid
    from ctc_metrics.utils.filesystem import parse_masks, read_tracking_file
    from ctc_metrics.utils.representations import match

    masks = parse_masks(str(res_dir))
    tracks = read_tracking_file(str(res_dir / "res_track.txt"))
    labels = [match(None, m)[1] for m in masks]
    return valid(masks, tracks, labels)


def combined_movie() -> np.ndarray:
    """Division in frames 0..3 (tracks 1-3) next to a gap in frames 0..4 (shifted ids)."""
    gap = np.where(GAP > 0, GAP + 10, 0)
    out = np.zeros((5, 48, 96), np.int32)
    out[:4, :, :48] = DIVISION
    out[:, :, 48:] = gap
    return out


@pytest.fixture(scope="module")
def tracked():
    # The daughters leave after two frames: a two-frame persistence check keeps the division.
    return track_single(combined_movie(), division_min_frames=2)


def test_ctc_table_rows(tracked):
    tracker, _ = tracked
    assert graph_to_ctc_table(tracker.graph) == [
        (1, 0, 1, 0), (2, 0, 1, 0), (3, 2, 3, 1), (4, 2, 3, 1), (5, 3, 4, 2)]


def test_ctc_folder_is_valid_for_py_ctcmetrics(tracked, tmp_path):
    tracker, final = tracked
    res = write_ctc_result(tmp_path / "01_RES", sorted(final.items()), tracker.graph)
    names = sorted(p.name for p in res.iterdir())
    assert names == [f"mask{t:03d}.tif" for t in range(5)] + ["res_track.txt"]
    mask = tifffile.imread(res / "mask002.tif")
    assert mask.dtype == np.uint16 and set(np.unique(mask)) == {0, 3, 4}
    assert (res / "res_track.txt").read_text().splitlines()[2] == "3 2 3 1"
    assert ctc_valid(res) == 1


def test_ctc_folder_uses_four_digits_past_frame_999(tmp_path):
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_node(0, t=999, label=1, y=1.0, x=1.0, area=1)
    frame = np.zeros((4, 4), np.int32)
    frame[1, 1] = 1
    # frame 1000 is empty (no node in the graph): the names still follow the frame count
    res = write_ctc_result(tmp_path / "a", [(999, frame), (1000, 0 * frame)], graph)
    assert sorted(p.name for p in res.glob("mask*")) == ["mask0999.tif", "mask1000.tif"]
    res = write_ctc_result(tmp_path / "b", [(999, frame)], graph, last_frame=1000)
    assert (res / "mask0999.tif").is_file()
    with pytest.raises(ValueError, match="outside"):
        write_ctc_result(tmp_path / "c", [(1000, frame)], graph, last_frame=999)


def test_tracked_objects_lost_and_found_are_split_as_ctc_requires(tmp_path):
    from instatrack.methods.base import Window
    from instatrack.track.link import Tracker

    # Object 1 is missing in frame 2 (a propagated mask lost for a frame); object 3
    # stays. Tracked windows keep the ids, so the label movie has a gap for 1.
    movie = np.zeros((4, 16, 16), np.int32)
    movie[:, 2:6, 2:6] = 1
    movie[2] = 0
    movie[:, 9:13, 9:13] = 3
    tracker = Tracker()
    final = [f for t in range(4) for f in tracker.push(Window(t, movie[t:t + 1], tracked=True))]
    res = write_ctc_result(tmp_path / "01_RES", final, tracker.graph)
    rows = [tuple(map(int, line.split())) for line in
            (res / "res_track.txt").read_text().splitlines()]
    assert rows == [(1, 0, 1, 0), (3, 0, 3, 0), (4, 3, 3, 1)]
    assert set(np.unique(tifffile.imread(res / "mask003.tif"))) == {0, 3, 4}
    assert ctc_valid(res) == 1


def test_napari_tracks_and_lineage(tracked, tmp_path):
    tracker, _ = tracked
    tracks, links = to_napari(tracker.graph)
    assert tracks.shape == (tracker.graph.number_of_nodes(), 4)
    assert links == {3: [1], 4: [1], 5: [2]}
    first = tracks[0]
    assert first[0] == 1 and first[1] == 0 and first[2:] == pytest.approx([24, 24])
    table, lineage = write_napari(tmp_path, tracker.graph)
    assert np.loadtxt(table, delimiter=",", skiprows=1).shape == tracks.shape
    assert json.loads(lineage.read_text()) == {"3": [1], "4": [1], "5": [2]}


def test_tracks_csv_one_row_per_node(tracked, tmp_path):
    tracker, _ = tracked
    path = write_tracks_csv(tmp_path / "tracks.csv", tracker.graph)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == tracker.graph.number_of_nodes()
    assert list(rows[0]) == ["track_id", "t", "y", "x", "area", "parent_track"]
    parents = {int(r["track_id"]): int(r["parent_track"]) for r in rows}
    assert parents == {1: 0, 2: 0, 3: 1, 4: 1, 5: 2}
