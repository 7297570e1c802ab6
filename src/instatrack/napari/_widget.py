"""napari dock widget: segment or track an image layer with a shipped model or a trained run.

The work runs in a napari ``thread_worker`` over :func:`segment_frames` /
:func:`track_frames`, generators that yield the number of frames done (for
the progress bar) and return the result, so that the cancel button stops
them between two frames and the viewer stays responsive.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
)

from instatrack.napari.layers import result_layers

if TYPE_CHECKING:
    import napari


def image_frames(data, rgb: bool = False) -> np.ndarray:
    """An image layer's data as frames ``(T, Y, X[, C])`` (a single 2D image becomes T = 1)."""
    frames = data  # not np.asarray: a dask array stays lazy, read one frame at a time
    if frames.ndim == (3 if rgb else 2):
        frames = frames[None]
    if frames.ndim != (4 if rgb else 3):
        raise ValueError(f"expected an image (T, Y, X) or (Y, X), got shape {frames.shape}")
    return frames


def segment_frames(predictor, frames) -> Generator[int, None, np.ndarray]:
    """Segment each frame on its own; yields frames done, returns labels ``(T, Y, X)``."""
    out = np.zeros(frames.shape[:3], np.int32)
    for t in range(len(frames)):
        out[t] = predictor.segment(np.asarray(frames[t]))
        yield t + 1
    return out


def track_frames(predictor, frames) -> Generator[int, None, tuple[np.ndarray, object]]:
    """Track the sequence; yields frames done, returns labels ``(T, Y, X)`` and the graph."""
    out = np.zeros(frames.shape[:3], np.int32)
    stream = predictor.stream(np.asarray(frames[t]) for t in range(len(frames)))
    done = 0
    for t, labels in stream:
        out[t] = labels
        done += 1
        yield done
    return out, stream.graph


#: the model choice that uses the run folder field instead of a shipped model
RUN_FOLDER = "run folder ..."


def model_choices() -> list[str]:
    """The shipped models' names, then :data:`RUN_FOLDER`."""
    from instatrack import pretrained

    return [*pretrained.names(), RUN_FOLDER]


class TrackWidget(Container):
    """Pick a model (shipped, or a run folder) and an image layer; Run segments or
    tracks it, Cancel stops it. ``object size``: the objects' diameter in pixels,
    ``auto``, or empty for the size the model was trained at."""

    def __init__(self, viewer: napari.viewer.Viewer):
        import napari

        self.viewer = viewer
        self._layer_type = napari.layers.Image
        choices = model_choices()
        self.model = ComboBox(label="model", choices=choices, value=choices[0])
        self.run_dir = FileEdit(mode="d", label="run folder")
        self.object_size = LineEdit(label="object size (px)", value="")
        self.image = ComboBox(label="image", choices=self._image_layers)
        self.mode = ComboBox(label="mode", choices=["track", "segment"], value="track")
        self.start = PushButton(text="Run")
        self.cancel = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(min=0, max=1, value=0, label="progress")
        self.status = Label(value="")
        super().__init__(widgets=[self.model, self.run_dir, self.object_size, self.image,
                                  self.mode, self.start, self.cancel, self.progress,
                                  self.status])
        self.start.changed.connect(self.run)
        self.cancel.changed.connect(self.stop)
        self.worker = None
        viewer.layers.events.inserted.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self.reset_choices)

    def _image_layers(self, _widget=None) -> list:
        return [(layer.name, layer) for layer in self.viewer.layers
                if isinstance(layer, self._layer_type)]

    def run(self) -> None:
        """Start segmenting / tracking the chosen layer in a worker thread."""
        from napari.qt.threading import thread_worker

        from instatrack.data.rescale import parse_object_size
        from instatrack.errors import ConfigError

        layer = self.image.value
        model = self.model.value
        if model == RUN_FOLDER:
            model = Path(self.run_dir.value)
            if not (model / "config.json").is_file():
                self.status.value = "choose a run folder (with config.json)"
                return
        if layer is None:
            self.status.value = "choose an image layer"
            return
        try:
            size = parse_object_size(self.object_size.value.strip() or None)
        except ConfigError as err:
            self.status.value = str(err).replace("--object-size", "object size")
            return
        frames = image_frames(layer.data, rgb=layer.rgb)
        self.progress.max, self.progress.value = len(frames), 0
        mode = self.mode.value
        work = track_frames if mode == "track" else segment_frames

        def job():
            from instatrack.api import load

            predictor = load(model, object_size=size)
            return (yield from work(predictor, frames))

        self.worker = thread_worker(job, start_thread=False)()
        self.worker.yielded.connect(self._advance)
        self.worker.returned.connect(lambda result: self._show(result, mode, layer.name))
        self.worker.errored.connect(lambda err: setattr(self.status, "value", f"error: {err}"))
        self.worker.finished.connect(self._done)
        self.start.enabled, self.cancel.enabled = False, True
        self.status.value = f"{mode}ing {layer.name} ..."
        self.worker.start()

    def stop(self) -> None:
        """Ask the worker to stop after the current frame."""
        if self.worker is not None:
            self.worker.quit()
            self.status.value = "cancelled"

    def _advance(self, done: int) -> None:
        self.progress.value = done

    def _show(self, result, mode: str, name: str) -> None:
        if mode == "track":
            labels, graph = result
            layers = result_layers(labels, graph, name=f"{name} tracked")
        else:
            layers = [(result, {"name": f"{name} segmented"}, "labels")]
        for data, meta, kind in layers:
            if meta["name"] in self.viewer.layers:
                self.viewer.layers.remove(meta["name"])
            getattr(self.viewer, f"add_{kind}")(data, **meta)
        self.status.value = f"{mode} done: {len(np.unique(layers[0][0])) - 1} object ids"

    def _done(self) -> None:
        self.start.enabled, self.cancel.enabled = True, False
        self.worker = None
