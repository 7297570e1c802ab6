"""The thin user facade: load a trained run, segment images, track sequences.

>>> model = instatrack.load("runs/sim")                      # doctest: +SKIP
>>> labels = model.segment(image)                            # (Y, X) int32
>>> result = model.track(frames)                             # doctest: +SKIP
>>> result.labels.shape, result.graph.number_of_nodes()      # (T, Y, X), networkx.DiGraph

For long sequences use :meth:`Predictor.stream`, which yields one tracked
frame at a time (memory does not grow with the sequence) and exposes the
track graph once the stream is exhausted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import networkx as nx
import numpy as np

from instatrack.errors import DataError

ProgressFn = Callable[[int], None]


@dataclasses.dataclass
class TrackResult:
    """A tracked sequence: ``labels`` ``(T, Y, X)`` int32 (value = track id) and the track graph."""

    labels: np.ndarray
    graph: nx.DiGraph

    def to_ctc(self, res_dir: str | Path) -> Path:
        """Write ``maskTTT.tif`` + ``res_track.txt`` (CTC result layout)."""
        from instatrack.track.export import write_ctc_result

        write_ctc_result(res_dir, enumerate(self.labels), self.graph)
        return Path(res_dir)

    def to_geff(self, path: str | Path, masks: bool = True, calibration=None,
                overwrite: bool = False) -> Path:
        """Write the graph as GEFF in ``path/tracks`` (+ ``path/masks``); needs ``[geff]``.

        ``calibration``: a :class:`instatrack.data.geff.Calibration` (pixel size,
        frame interval and their units). Returns the GEFF group's path.
        """
        from instatrack.data.geff import write_geff

        return write_geff(path, self.graph, self.labels if masks else None,
                          calibration=calibration, overwrite=overwrite)


class TrackStream:
    """Iterator of ``(t, labels)`` tracked frames; ``graph`` is complete once exhausted."""

    def __init__(self, windows: Iterable, tracker):
        self._windows = windows
        self.tracker = tracker
        self.exhausted = False

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        for window in self._windows:
            yield from self.tracker.push(window)
        yield from self.tracker.finish()
        self.exhausted = True

    @property
    def graph(self) -> nx.DiGraph:
        return self.tracker.graph


class Predictor:
    """A trained method with its network, ready for inference."""

    def __init__(self, method, model, device):
        self.method = method
        self.model = model
        self.device = device

    @property
    def config(self):
        return self.method.config

    def prepare(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """Raw ``(Y, X)`` / ``(Y, X, C)`` image -> normalised ``(C, Y, X)`` network input."""
        from instatrack.data.normalize import normalize

        image = np.asarray(image)
        if image.ndim not in (2, 3):
            raise DataError(f"{name}: expected a 2D image (Y, X) or (Y, X, C), got shape "
                            f"{image.shape}")
        prepared = normalize(image, self.config.norm_low, self.config.norm_high)
        if prepared.shape[0] != self.config.in_channels:
            raise DataError(f"{name}: has {prepared.shape[0]} channel(s), the model was trained "
                            f"on {self.config.in_channels}")
        return prepared

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Instance labels ``(Y, X)`` int32 of one still image."""
        window = next(iter(self.method.predict(self.model, [self.prepare(image)], self.device)))
        return window.labels[0]

    def stream(self, frames: Iterable[np.ndarray], first_masks: np.ndarray | None = None,
               progress: ProgressFn | None = None) -> TrackStream:
        """Track raw frames lazily; see :class:`TrackStream`."""
        from instatrack.track.link import Tracker

        tracker = Tracker.from_config(self.config)

        def prepared() -> Iterator[np.ndarray]:
            for t, frame in enumerate(frames):
                yield self.prepare(frame, name=f"frame {t}")
                if progress is not None:
                    progress(t + 1)

        windows = self.method.predict(self.model, prepared(), self.device,
                                      first_masks=first_masks)
        return TrackStream(windows, tracker)

    def track(self, frames: Iterable[np.ndarray], first_masks: np.ndarray | None = None,
              progress: ProgressFn | None = None) -> TrackResult:
        """Track a whole sequence in memory; returns labels ``(T, Y, X)`` and the graph."""
        stream = self.stream(frames, first_masks, progress)
        tracked = dict(stream)
        if not tracked:
            raise DataError("no frames to track")
        labels = np.stack([tracked[t] for t in sorted(tracked)])
        return TrackResult(labels=labels, graph=stream.graph)


def load(run_dir: str | Path, device=None, overrides: Sequence[str] = (),
         weights: str = "weights.pt") -> Predictor:
    """Load the run folder written by ``instatrack train`` (config + weights).

    ``overrides``: ``key=value`` strings changing post-processing settings
    (clustering thresholds, linking), e.g. ``["cluster_min_cluster_size=200"]``.
    ``weights``: ``weights.pt`` (best validation score) or ``last.pt``.
    """
    import torch

    from instatrack.runs import load_model

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    method, model = load_model(run_dir, device, weights=weights, overrides=overrides)
    return Predictor(method, model, device)
