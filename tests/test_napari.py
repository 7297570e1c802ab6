"""The napari plugin in a real, headless viewer: manifest, sample, readers, writers, widget.

Skipped when napari is not installed (``pip install "instatrack[napari]"``). The
plugin is registered from the source tree's ``napari.yaml``, so the tests use
this checkout's manifest even when another copy of instatrack is installed.

A ``napari.Viewer`` needs OpenGL. Qt's ``offscreen`` platform (the default
here) has none on a bare Linux machine; there the tests run the same steps on
napari's ``ViewerModel`` (layers, readers, sample data, the widget in a real
Qt application) and say so. Under ``xvfb-run`` with ``QT_QPA_PLATFORM=xcb``
they use the full viewer with its window and dock widget. Set
``INSTATRACK_NAPARI_SCREENSHOT=docs/napari.png`` to save the viewer after
tracking (see docs/interop.md).
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
napari = pytest.importorskip("napari")
npe2 = pytest.importorskip("npe2")
pytest.importorskip("geff")
pytest.importorskip("ome_zarr")
# a Qt binding that cannot load its system libraries (e.g. no libGL.so.1 on a bare CI
# machine) raises ImportError here: skip rather than fail in a fixture
pytest.importorskip("qtpy.QtWidgets", reason="no usable Qt binding")

import instatrack.napari  # noqa: E402
from instatrack.cli import main  # noqa: E402
from instatrack.data.synth import generate_cells, write_ctc_synthetic  # noqa: E402
from instatrack.napari._reader import get_reader  # noqa: E402
from instatrack.napari._widget import RUN_FOLDER  # noqa: E402
from instatrack.napari._writer import write_ctc, write_geff  # noqa: E402
from instatrack.napari.layers import graph_from_labels, parents_from_tracks_graph  # noqa: E402

pytestmark = pytest.mark.napari

MANIFEST = Path(instatrack.napari.__file__).with_name("napari.yaml")
PLUGIN = "instatrack"


@pytest.fixture(scope="module")
def plugin():
    manager = npe2.PluginManager.instance()
    if PLUGIN not in manager._manifests:
        manager.register(npe2.PluginManifest.from_file(MANIFEST))
    return manager


def _opengl_viewer_works() -> bool:
    """Whether a napari.Viewer can draw here (it needs an OpenGL context)."""
    try:
        viewer = napari.Viewer(show=False)
    except Exception:  # no usable Qt platform or GL context
        return False
    try:
        viewer.add_image(np.zeros((4, 4)))
        return True
    except Exception:  # vispy cannot query OpenGL (e.g. Qt's offscreen platform)
        return False
    finally:
        try:
            viewer.close()
        except Exception:  # a viewer whose canvas never initialised may fail to close
            pass


@pytest.fixture(scope="module")
def full_viewer(plugin) -> bool:
    works = _opengl_viewer_works()
    if not works:
        warnings.warn("no OpenGL here: napari tests run on ViewerModel (use xvfb-run for the "
                      "full viewer)", UserWarning, stacklevel=1)
    return works


@pytest.fixture
def viewer(plugin, full_viewer):
    if full_viewer:
        viewer = napari.Viewer(show=False)
        yield viewer
        viewer.close()
    else:
        from napari.components import ViewerModel
        from napari.qt import get_qapp

        get_qapp()  # the widget and the worker's signals still need a Qt application
        yield ViewerModel()


def wait_for(condition, timeout: float = 120.0) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + timeout
    while not condition():
        QApplication.processEvents()
        if time.monotonic() > end:
            raise TimeoutError("the worker did not finish in time")
        time.sleep(0.02)


def test_manifest_is_valid():
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    manifest.validate_imports()
    assert {c.id for c in manifest.contributions.commands} >= {
        "instatrack.get_reader", "instatrack.write_ctc", "instatrack.write_geff",
        "instatrack.track_widget", "instatrack.synthetic_cells"}


def test_sample_opens_with_lineage(viewer):
    viewer.open_sample(PLUGIN, "synthetic_cells")
    kinds = {type(layer).__name__: layer for layer in viewer.layers}
    assert set(kinds) == {"Image", "Labels", "Tracks"}
    assert kinds["Image"].data.ndim == 3 and kinds["Labels"].data.shape == kinds["Image"].data.shape
    assert kinds["Tracks"].graph  # divisions in the synthetic sequence


def test_reader_opens_ctc_sequence_and_result(viewer, tmp_path):
    write_ctc_synthetic(tmp_path / "data", frames=6, size=(64, 72), seed=2)
    viewer.open(str(tmp_path / "data" / "01"), plugin=PLUGIN)
    kinds = [type(layer).__name__ for layer in viewer.layers]
    assert kinds == ["Image", "Labels", "Tracks"]
    assert viewer.layers[0].data.shape == (6, 64, 72)
    labels = np.asarray(viewer.layers[1].data)
    assert get_reader(str(tmp_path)) is None  # a dataset folder: no reader claims it

    write_ctc(str(tmp_path / "01_RES"), [(labels, {}, "labels"),
                                         viewer.layers[2].as_layer_data_tuple()])
    viewer.layers.clear()
    viewer.open(str(tmp_path / "01_RES"), plugin=PLUGIN)
    np.testing.assert_array_equal(viewer.layers[0].data, labels)
    assert [type(layer).__name__ for layer in viewer.layers] == ["Labels", "Tracks"]


def test_geff_writer_and_reader_keep_labels_and_lineage(viewer, tmp_path):
    seq = generate_cells(frames=8, size=(80, 80), seed=3, division_rate=0.15)
    parents = {label: parent for label, _, _, parent in seq.lineage if parent}
    assert parents
    layers = [(seq.labels, {"name": "gt"}, "labels"),
              (np.zeros((0, 4)), {"graph": {c: [p] for c, p in parents.items()}}, "tracks")]
    write_geff(str(tmp_path / "gt.zarr"), layers)
    viewer.open(str(tmp_path / "gt.zarr"), plugin=PLUGIN)
    labels, tracks = viewer.layers
    np.testing.assert_array_equal(labels.data, seq.labels)
    visible = {c: p for c, p in parents.items() if c in np.unique(seq.labels)
               and p in np.unique(seq.labels)}
    assert parents_from_tracks_graph(tracks.graph) == visible


def test_reader_opens_omezarr_with_its_labels(viewer, tmp_path):
    from instatrack.data.omezarr import OmeZarrLabelsWriter

    seq = generate_cells(frames=3, size=(70, 90), seed=0)
    writer = OmeZarrLabelsWriter(tmp_path / "x.zarr", 3, frame_of=lambda t: seq.images[t])
    for t, labels in enumerate(seq.labels):
        writer.write(t, labels)
    viewer.open(str(tmp_path / "x.zarr"), plugin=PLUGIN)
    image, labels = viewer.layers
    assert image.data.shape == (3, 70, 90)
    np.testing.assert_array_equal(np.asarray(labels.data), seq.labels)


def test_graph_from_labels_bridges_gaps_and_links_parents():
    labels = np.zeros((4, 8, 8), np.int32)
    labels[0, :2, :2] = labels[1, :2, :2] = 1  # track 1 in frames 0-1
    labels[2, 5:, 5:] = labels[3, 5:, 5:] = 2  # daughter 2 in frames 2-3
    labels[3, :2, 4:] = 3  # 3 in frame 3 only
    graph = graph_from_labels(labels, {2: 1, 3: 1})
    t_label = {n: (d["t"], d["label"]) for n, d in graph.nodes(data=True)}
    edges = {(t_label[u], t_label[v]) for u, v in graph.edges}
    assert edges == {((0, 1), (1, 1)), ((2, 2), (3, 2)), ((1, 1), (2, 2)), ((1, 1), (3, 3))}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("napari_run")
    write_ctc_synthetic(root / "data", frames=4, size=(48, 56), seed=0)
    assert main(["train", "--method", "spatial-embedding", "--data", str(root / "data"),
                 "--out", str(root / "run"), "--set", "crop=48,48", "--steps", "2",
                 "--quiet"]) == 0
    return root / "run"


def _widget(viewer, run_dir, image: str = "synthetic cells"):
    if hasattr(viewer, "window"):
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment / track")
    else:
        from instatrack.napari._widget import TrackWidget

        widget = TrackWidget(viewer)
    if run_dir in widget.model.choices:
        widget.model.value = run_dir
    else:
        widget.model.value = RUN_FOLDER
        widget.run_dir.value = run_dir
    widget.reset_choices()
    widget.image.value = viewer.layers[image]
    return widget


def test_widget_tracks_the_sample_end_to_end(viewer, tiny_run):
    """Sample (or ``INSTATRACK_NAPARI_INPUT``, a CTC sequence) -> widget -> Labels + Tracks."""
    source = os.environ.get("INSTATRACK_NAPARI_INPUT")
    if source:
        viewer.open(source, plugin=PLUGIN)
    else:
        viewer.open_sample(PLUGIN, "synthetic_cells")
    image = viewer.layers[0]
    widget = _widget(viewer, os.environ.get("INSTATRACK_NAPARI_RUN", tiny_run), image.name)
    widget.start.clicked.emit()
    assert not widget.start.enabled and widget.cancel.enabled
    wait_for(lambda: widget.worker is None, timeout=600)
    assert widget.progress.value == widget.progress.max == len(image.data)
    labels = viewer.layers[f"{image.name} tracked labels"]
    assert labels.data.shape == image.data.shape and "done" in widget.status.value
    if labels.data.max() > 0:
        assert type(viewer.layers[f"{image.name} tracked tracks"]).__name__ == "Tracks"
    shot = os.environ.get("INSTATRACK_NAPARI_SCREENSHOT")
    if shot and hasattr(viewer, "window"):
        _screenshot(viewer, image.name, Path(shot))


def _screenshot(viewer, name: str, path: Path) -> None:
    for layer in viewer.layers:
        layer.visible = "tracked" in layer.name or layer.name == name
    viewer.layers[f"{name} tracked labels"].opacity = 0.4
    viewer.dims.set_point(0, len(viewer.layers[name].data) - 1)
    viewer.window.resize(1200, 800)
    viewer.window._qt_window.show()
    viewer.reset_view()
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(path), canvas_only=False)


def test_widget_segments_and_can_be_cancelled(viewer, tiny_run):
    viewer.open_sample(PLUGIN, "synthetic_cells")
    widget = _widget(viewer, tiny_run)
    widget.mode.value = "segment"
    widget.start.clicked.emit()
    widget.cancel.clicked.emit()
    wait_for(lambda: widget.worker is None)
    assert widget.start.enabled and widget.status.value == "cancelled"
    assert "synthetic cells segmented" not in viewer.layers
    widget.start.clicked.emit()
    wait_for(lambda: widget.worker is None)
    assert viewer.layers["synthetic cells segmented"].data.shape == (24, 128, 128)


def test_widget_asks_for_a_run_folder(viewer, tmp_path):
    viewer.open_sample(PLUGIN, "synthetic_cells")
    widget = _widget(viewer, tmp_path)
    widget.start.clicked.emit()
    assert widget.worker is None and "run folder" in widget.status.value


def test_widget_runs_a_shipped_model_at_an_object_size(viewer):
    """The model list starts with the shipped models; "auto" estimates the object size."""
    viewer.open_sample(PLUGIN, "synthetic_cells")
    widget = _widget(viewer, "nuclei-se")
    assert widget.model.choices[-1] == RUN_FOLDER and "nuclei-se" in widget.model.choices
    widget.object_size.value = "big"
    widget.start.clicked.emit()
    assert widget.worker is None and "object size" in widget.status.value
    widget.mode.value = "segment"
    widget.object_size.value = "auto"
    widget.start.clicked.emit()
    wait_for(lambda: widget.worker is None, timeout=600)
    segmented = viewer.layers["synthetic cells segmented"]
    assert segmented.data.max() > 0 and "done" in widget.status.value

