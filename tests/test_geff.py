"""GEFF track graphs: instatrack -> GEFF -> geff's reader/validator, geff's CTC converter,
read back into instatrack's graph, scored by ``evaluate``, and ``track --format geff``."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest

geff = pytest.importorskip("geff")

from instatrack.api import TrackResult  # noqa: E402
from instatrack.cli import main  # noqa: E402
from instatrack.data.geff import (  # noqa: E402
    Calibration,
    geff_to_ctc,
    is_geff,
    labels_are_tracklets,
    lineage_ids,
    read_geff,
    tracklets,
)
from instatrack.data.synth import generate_cells  # noqa: E402
from instatrack.methods.base import Window  # noqa: E402
from instatrack.metrics.evaluate import evaluate  # noqa: E402
from instatrack.track.link import Tracker  # noqa: E402
from instatrack.track.rules import TrackSettings  # noqa: E402

ATTRS = ("t", "label", "y", "x", "area")


def track_ground_truth(labels: np.ndarray) -> TrackResult:
    """Link exact synthetic masks with the Tracker: a real instatrack graph with divisions.

    Every object is kept (no minimum area): the masks are the ground truth.
    """
    tracker, frames = Tracker(TrackSettings(min_instance_area=0)), {}
    for t in range(len(labels)):
        frames.update(tracker.push(Window(t, labels[t:t + 1])))
    frames.update(tracker.finish())
    return TrackResult(np.stack([frames[t] for t in sorted(frames)]), tracker.graph)


@pytest.fixture(scope="module")
def result() -> TrackResult:
    seq = generate_cells(frames=10, size=(96, 96), seed=1, division_rate=0.1)
    result = track_ground_truth(seq.labels)
    parents = [n for n in result.graph if result.graph.out_degree(n) > 1]
    assert parents, "the fixture should hold a division"
    return result


def test_geff_read_gives_the_same_nodes_edges_and_attributes(result, tmp_path):
    group = result.to_geff(tmp_path / "res.zarr")
    geff.validate_structure(str(group))
    graph, metadata = geff.read(str(group))
    assert set(graph.nodes) == set(result.graph.nodes)
    assert set(graph.edges) == set(result.graph.edges)
    for node, data in result.graph.nodes(data=True):
        assert {k: graph.nodes[node][k] for k in ATTRS} == {k: data[k] for k in ATTRS}
    assert [(a.name, a.type, a.unit) for a in metadata.axes] == [
        ("t", "time", "frame"), ("y", "space", "pixel"), ("x", "space", "pixel")]
    assert metadata.track_node_props == {"lineage": "lineage", "tracklet": "label"}
    assert metadata.related_objects[0].type == "labels"
    masks = np.asarray(__import__("zarr").open_array(str(tmp_path / "res.zarr" / "masks")))
    np.testing.assert_array_equal(masks, result.labels)


def test_geff_data_validation_passes(result, tmp_path):
    from geff.validate.data import ValidationConfig

    group = result.to_geff(tmp_path / "res.zarr", masks=False)
    config = ValidationConfig(graph=True, tracklet=True, lineage=True)
    geff.read(str(group), data_validation=config)


def test_read_geff_round_trip_and_masks(result, tmp_path):
    result.to_geff(tmp_path / "res.zarr")
    assert is_geff(tmp_path / "res.zarr") and is_geff(tmp_path / "res.zarr" / "tracks")
    tracks = read_geff(tmp_path / "res.zarr")
    assert nx.utils.graphs_equal(tracks.graph, result.graph)
    for t, frame in enumerate(result.labels):
        np.testing.assert_array_equal(tracks.track_masks(t), frame)


def test_calibration_sets_axis_scale_and_units(result, tmp_path):
    calibration = Calibration(pixel_size=0.65, space_unit="micrometer", frame_interval=5,
                              time_unit="minute")
    group = result.to_geff(tmp_path / "res.zarr", masks=False, calibration=calibration)
    _, metadata = geff.read(str(group))
    t, y, x = metadata.axes
    assert (t.scale, t.scaled_unit) == (5, "minute")
    assert (y.scale, y.scaled_unit, x.scale, x.unit) == (0.65, "micrometer", 0.65, "pixel")


def test_existing_output_is_not_overwritten(result, tmp_path):
    result.to_geff(tmp_path / "res.zarr")
    with pytest.raises(ValueError, match="not empty"):
        result.to_geff(tmp_path / "res.zarr")
    result.to_geff(tmp_path / "res.zarr", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.zarr"]  # no staging left


def test_geff_ctc_converter_agrees_with_instatrack(result, tmp_path):
    """geff's own CTC -> GEFF converter and instatrack's writer give the same tracks."""
    from geff.convert import from_ctc_to_geff

    result.to_ctc(tmp_path / "RES")
    from_ctc_to_geff(tmp_path / "RES", tmp_path / "theirs.geff")
    theirs, _ = geff.read(str(tmp_path / "theirs.geff"))
    ours, _ = geff.read(str(result.to_geff(tmp_path / "ours.zarr", masks=False)))

    def keyed(graph, label):
        key = {n: (d["t"], d[label]) for n, d in graph.nodes(data=True)}
        nodes = {key[n]: (round(d["y"], 6), round(d["x"], 6)) for n, d in graph.nodes(data=True)}
        return nodes, {(key[u], key[v]) for u, v in graph.edges}

    assert keyed(theirs, "tracklet_id") == keyed(ours, "label")


def test_foreign_geff_reads_and_scores_like_its_ctc_folder(result, tmp_path):
    """A GEFF from another tool (geff's converter: ``tracklet_id``, masks in a sibling
    array, group ``tracks.geff``) scores the same as the CTC folder it came from."""
    from geff.convert import from_ctc_to_geff

    seq = generate_cells(frames=10, size=(96, 96), seed=1, division_rate=0.1)
    gt = tmp_path / "01_GT"
    for sub in ("SEG", "TRA"):
        (gt / sub).mkdir(parents=True)
    import tifffile

    from instatrack.data.ctc import write_track_table

    for t, frame in enumerate(seq.labels):
        tifffile.imwrite(gt / "SEG" / f"man_seg{t:03d}.tif", frame.astype(np.uint16))
        tifffile.imwrite(gt / "TRA" / f"man_track{t:03d}.tif", frame.astype(np.uint16))
    write_track_table(gt / "TRA" / "man_track.txt", seq.lineage)

    result.to_ctc(tmp_path / "RES")
    from_ctc_to_geff(tmp_path / "RES", tmp_path / "foreign.zarr" / "tracks",
                     segmentation_store=tmp_path / "foreign.zarr" / "seg")
    tracks = read_geff(tmp_path / "foreign.zarr")
    assert tracks.graph.number_of_nodes() == result.graph.number_of_nodes()
    assert {"t", "label", "y", "x"} <= set(next(iter(tracks.graph.nodes.values())))
    expected = evaluate(gt, tmp_path / "RES")
    assert evaluate(gt, tmp_path / "foreign.zarr") == pytest.approx(expected)
    assert evaluate(gt, tmp_path / "foreign.zarr")["TRA"] > 0.95
    converted = geff_to_ctc(tmp_path / "foreign.zarr", tmp_path / "RES2")
    assert evaluate(gt, converted) == pytest.approx(expected)
    # the per-object table (evaluate --objects) reads the GEFF as it reads the CTC folder
    from instatrack.metrics.objects import object_table

    assert object_table(gt, tmp_path / "foreign.zarr") == object_table(gt, tmp_path / "RES")


def test_geff_without_track_ids_gets_tracklets(tmp_path):
    graph = nx.DiGraph()
    for node, t in enumerate([0, 1, 2, 2]):
        graph.add_node(node, t=t, y=1.0 * node, x=2.0)
    graph.add_edges_from([(0, 1), (1, 2), (1, 3)])
    geff.write(graph, str(tmp_path / "plain.geff"), axis_names=["t", "y", "x"],
               axis_types=["time", "space", "space"])
    tracks = read_geff(tmp_path / "plain.geff")
    labels = nx.get_node_attributes(tracks.graph, "label")
    assert labels[0] == labels[1] and len({labels[1], labels[2], labels[3]}) == 3
    assert tracks.masks is None


def _graph(nodes: dict[int, tuple[int, int]], edges) -> nx.DiGraph:
    graph = nx.DiGraph()
    for node, (t, label) in nodes.items():
        graph.add_node(node, t=t, label=label, y=0.0, x=0.0, area=1)
    graph.add_edges_from(edges)
    return graph


def test_tracklet_rules_on_a_division_and_a_bridged_gap():
    # track 1 (0 -> 1) divides into 2 (2 -> 3) and 3 (4); track 4 bridges a gap after 3
    graph = _graph({0: (0, 1), 1: (1, 1), 2: (2, 2), 3: (3, 2), 4: (2, 3), 5: (5, 4)},
                   [(0, 1), (1, 2), (1, 4), (2, 3), (4, 5)])
    assert not labels_are_tracklets(graph)  # 3 -> 4 is a bridged gap: one path in GEFF terms
    ids = tracklets(graph)
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[4] == ids[5]
    assert len({ids[0], ids[2], ids[4]}) == 3
    graph.remove_node(5)
    assert labels_are_tracklets(graph)
    assert set(lineage_ids(graph).values()) == {1}


@pytest.fixture(scope="module")
def run(tiny_cosine_run):
    return tiny_cosine_run


def track_geff(run, frames, out, *more) -> int:
    return main(["track", "--model", str(run / "run"), "--input", str(frames),
                 "--output", str(out), "--format", "geff", "--quiet",
                 "--set", "cluster_min_cluster_size=30", *map(str, more)])


def digest(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_cli_track_format_geff_then_evaluate(run, tmp_path, capsys):
    out = tmp_path / "res.zarr"
    assert track_geff(run, run / "data" / "01", out, "--movie", tmp_path / "m.gif") == 0
    assert (tmp_path / "m.gif").is_file()
    geff.validate_structure(str(out / "tracks"))
    assert read_geff(out).masks.shape == (4, 48, 56)
    capsys.readouterr()
    assert main(["evaluate", "--gt", str(run / "data" / "01_GT"), "--res", str(out),
                 "--json", "--objects", str(tmp_path / "objects.csv")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert {"SEG", "TRA", "DET", "objects"} <= set(scores)
    assert (tmp_path / "objects.csv").read_text().startswith("frame,")


def test_cli_track_format_geff_refuses_a_used_output(run, tmp_path, capsys):
    """An existing GEFF is left as it was without --overwrite, replaced whole with it."""
    out = tmp_path / "res.zarr"
    assert track_geff(run, run / "data" / "01", out) == 0
    (out / "notes.txt").write_text("mine")
    before = digest(out)
    capsys.readouterr()
    assert track_geff(run, run / "data" / "01", out, "--movie", tmp_path / "m.gif") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "--overwrite" in err[0], err
    assert digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.zarr"]  # no movie, no staging
    assert track_geff(run, run / "data" / "01", out, "--overwrite") == 0
    assert not (out / "notes.txt").exists()
    geff.validate_structure(str(out / "tracks"))


def test_cli_track_format_geff_keeps_frame_numbers(run, tmp_path, capsys):
    """Frames t002..t003 are tracked as frames 2, 3: node ``t`` indexes the masks, and
    ``evaluate`` scores them against ground truth numbered the same."""
    import shutil

    from instatrack.data.ctc import read_track_table, write_track_table

    data = tmp_path / "data"
    shutil.copytree(run / "data", data)
    for t in (0, 1):
        (data / "01" / f"t{t:03d}.tif").unlink()
        (data / "01_GT" / "SEG" / f"man_seg{t:03d}.tif").unlink(missing_ok=True)
        (data / "01_GT" / "TRA" / f"man_track{t:03d}.tif").unlink()
    table = data / "01_GT" / "TRA" / "man_track.txt"
    rows = [(label, max(begin, 2), end, parent) for label, begin, end, parent
            in read_track_table(table) if end >= 2]
    kept = {label for label, *_ in rows}
    write_track_table(table, [(l, b, e, p if p in kept else 0) for l, b, e, p in rows])
    out = tmp_path / "res.zarr"
    assert track_geff(run, data / "01", out) == 0
    tracks = read_geff(out)
    assert tracks.masks.shape == (4, 48, 56) and not np.asarray(tracks.masks[:2]).any()
    assert {d["t"] for _, d in tracks.graph.nodes(data=True)} <= {2, 3}
    capsys.readouterr()
    assert main(["evaluate", "--gt", str(data / "01_GT"), "--res", str(out), "--json"]) == 0
    assert {"SEG", "TRA", "DET"} <= set(json.loads(capsys.readouterr().out))
