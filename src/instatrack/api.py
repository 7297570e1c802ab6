"""The thin user facade: load a trained run, segment images, track sequences.

>>> model = instatrack.load("runs/sim")                      # doctest: +SKIP
>>> model = instatrack.load("nuclei-se")     # a shipped model  # doctest: +SKIP
>>> labels = model.segment(image)                            # (Y, X) int32
>>> result = model.track(frames)                             # doctest: +SKIP
>>> result.labels.shape, result.graph.number_of_nodes()      # (T, Y, X), networkx.DiGraph

For long sequences use :meth:`Predictor.stream`, which yields one tracked
frame at a time (memory does not grow with the sequence) and exposes the
track graph once the stream is exhausted.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import networkx as nx
import numpy as np

from instatrack.errors import DataError, DataWarning

ProgressFn = Callable[[int], None]
#: sizes the first frame is tried at when the object size is estimated, the magnified
#: one (> 1) last: it is skipped when those before it found objects of the training size
AUTO_SIZE_FACTORS = (1.0, 0.5, 0.25, 2.0)
#: a pass of the size estimate must find at least this many objects to count
AUTO_MIN_OBJECTS = 3
#: a sequence's object size is estimated on (up to) this many of its first frames
AUTO_SIZE_FRAMES = 3


@dataclasses.dataclass
class TrackResult:
    """A tracked sequence: ``labels`` ``(T, Y, X)`` int32 (value = track id) and the track graph."""

    labels: np.ndarray
    graph: nx.DiGraph

    def to_ctc(self, res_dir: str | Path, overwrite: bool = True) -> Path:
        """Write ``maskTTT.tif`` + ``res_track.txt`` (CTC result layout) into ``res_dir``.

        The folder appears, or replaces an existing one, only once it is complete;
        with ``overwrite=False`` an existing non-empty ``res_dir`` is refused.
        """
        from instatrack.data.output import Outputs
        from instatrack.track.export import write_ctc_result

        with Outputs(overwrite) as outputs:
            write_ctc_result(outputs.folder(res_dir), enumerate(self.labels), self.graph,
                             last_frame=len(self.labels) - 1)
        return Path(res_dir)

    def to_geff(self, path: str | Path, masks: bool = True, calibration=None,
                overwrite: bool = False) -> Path:
        """Write the graph as GEFF in ``path/tracks`` (+ ``path/masks``); needs ``[geff]``.

        ``calibration``: a :class:`instatrack.data.geff.Calibration` (pixel size,
        frame interval and their units). As with :meth:`to_ctc`, the folder appears
        (or replaces an existing one, with ``overwrite``) only once it is complete;
        an existing non-empty ``path`` is refused without ``overwrite``. Returns the
        GEFF group's path.
        """
        from instatrack.data.geff import GEFF_GROUP, write_geff
        from instatrack.data.output import Outputs

        with Outputs(overwrite) as outputs:
            write_geff(outputs.folder(path), self.graph, self.labels if masks else None,
                       calibration=calibration)
        return Path(path) / GEFF_GROUP


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

    def __init__(self, method, model, device, object_size: float | str | None = None):
        self.method = method
        self.model = model
        self.device = device
        #: diameter in pixels of the objects to find, "auto" (estimated from a first
        #: pass over the first frame) or None (the input is used at its own size)
        self.object_size = object_size
        #: the factor the last frames segmented or tracked were resized by for the
        #: network (None before any): what ``object_size`` came to, e.g. an estimate
        self.scale: float | None = None

    @property
    def config(self):
        return self.method.config

    def prepare(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """Raw ``(Y, X)`` / ``(Y, X, C)`` image -> normalised ``(C, Y, X)`` network input."""
        from instatrack.data.normalize import Norm

        image = np.asarray(image)
        if image.ndim not in (2, 3):
            raise DataError(f"{name}: expected a 2D image (Y, X) or (Y, X, C), got shape "
                            f"{image.shape}")
        prepared = Norm.of(self.config)(image, name)
        if prepared.shape[0] != self.config.in_channels:
            raise DataError(f"{name}: has {prepared.shape[0]} channel(s), the model was trained "
                            f"on {self.config.in_channels}")
        return prepared

    @property
    def trained_size(self) -> float:
        """Median diameter in pixels of the training objects (0 when the run did not record it)."""
        from instatrack.data.rescale import diameter

        return diameter(self.config.instance_area[1])

    @property
    def requested_size(self) -> float | str | None:
        """:attr:`object_size`, or ``"auto"`` when it is None and the run was trained with
        every dataset resized to one object size (``object_size`` in its config)."""
        if self.object_size is None and self.config.object_size > 0:
            return "auto"
        return self.object_size

    def input_scale(self, first: np.ndarray, *more: np.ndarray) -> float:
        """Factor the frames are resized by so objects match the training size.

        ``first`` (and ``more``) are the first prepared ``(C, Y, X)`` frames, used when
        :attr:`object_size` is ``"auto"``: the median of each frame's estimate counts,
        so one noisy frame does not set the factor of a whole sequence. The model
        segments a frame at each of
        :data:`AUTO_SIZE_FACTORS`. A model cuts objects far larger than it knows
        into pieces of its own size, so the pass that comes closest to the training
        size may be wrong; pieces make objects look smaller, never larger, so the
        largest size found (in the frame's pixels, by a pass with at least
        :data:`AUTO_MIN_OBJECTS` objects) is taken, and one more pass at the factor it
        gives corrects it. The magnified pass (factor 2, four times a frame's pixels)
        is skipped once a pass has found objects of the training size or larger: then
        it can only find pieces smaller than those (it was never the largest on the
        first frames of SIM+, GOWT1, MSC, DSB2018 and synthetic cells, for ``nuclei-ch``
        and ``nuclei-se``; docs/results.md, session 51). A run trained with
        ``object_size`` (every dataset resized to one object size) estimates by
        default.
        """
        from instatrack.data.rescale import LIMIT, scale_for

        requested = self.requested_size
        if requested is None:  # as in training (a fine-tuned run may rescale)
            return self.config.rescale or 1.0
        if self.trained_size <= 0:
            raise DataError("this run does not record the size of its training objects, so "
                            "--object-size cannot be used with it")
        if requested != "auto":
            return scale_for(float(requested), self.trained_size)

        def estimate(image: np.ndarray) -> float | None:
            """The object diameter in ``image``'s pixels, or None when nothing is found."""
            sizes: list[float] = []
            for f in AUTO_SIZE_FACTORS:
                # objects found at the training size or larger are, magnified, larger
                # than the model knows, so a magnified pass cuts them into smaller pieces
                # and cannot raise the largest size: skipped (it cost 4x a frame's pass)
                if f > 1 and sizes and max(sizes) >= self.trained_size:
                    continue
                if size := self.size_at(image, f):
                    sizes.append(size)
            if not sizes:
                return None
            return self.size_at(image, self.correction_factor(max(sizes))) or max(sizes)

        sizes = [size for image in (first, *more) if (size := estimate(image))]
        if not sizes:
            return 1.0
        size = float(np.median(sizes))
        factor = scale_for(size, self.trained_size)
        if not 1 / LIMIT < factor < LIMIT:
            # an estimate at the limit is often wrong: spread cells cut into many small
            # pieces looked 4x too small to a nuclei model (docs/results.md, session 48)
            warnings.warn(DataWarning(
                f"--object-size auto: the objects look {size:.0f} px across and the model "
                f"knows {self.trained_size:.0f} px, so the frames are resized x{factor:g}, "
                f"the most it resizes; if your objects are not that size (many small "
                f"pieces, slow frames), state it with --object-size PIXELS"), stacklevel=2)
        return factor

    def correction_factor(self, largest: float) -> float:
        """The factor of the size estimate's last pass, which corrects the ``largest``
        diameter the passes of :data:`AUTO_SIZE_FACTORS` found: the one that brings it to
        the training size, within the resize limit."""
        from instatrack.data.rescale import LIMIT

        return float(np.clip(self.trained_size / largest, 1 / LIMIT, LIMIT))

    def size_at(self, image: np.ndarray, factor: float) -> float | None:
        """The median object diameter, in the frame's own pixels, the model finds in a
        prepared frame ``image`` ``(C, Y, X)`` resized by ``factor``: one pass of the size
        estimate (:meth:`input_scale`); None when it finds fewer than
        :data:`AUTO_MIN_OBJECTS` objects."""
        from instatrack.data.rescale import estimate_diameter, resize_image

        frame = resize_image(image, factor)
        found = [w.labels for w in self.method.predict(self.model, [frame], self.device)]
        labels = np.concatenate(found) if found else np.zeros((1, 1), np.int32)
        if len(np.unique(labels[labels > 0])) < AUTO_MIN_OBJECTS:
            return None
        return estimate_diameter(labels) / factor

    def _windows(self, prepared: Iterable[np.ndarray], first_masks: np.ndarray | None):
        """The method's windows over ``prepared`` frames, resized for :attr:`object_size`,
        small pieces merged into the objects they touch, outlines refined, instances grown
        and faint objects dropped when the config asks (:mod:`instatrack.cluster.fragments`,
        :func:`finish_frame`)."""
        from instatrack.cluster.fragments import merged
        from instatrack.data.rescale import resize_image, resize_labels

        # the last stages read the frames themselves, so those are kept until used
        finish = finishes(self.config)
        seen: dict[int, np.ndarray] = {}
        frames = iter(_recorded(prepared, seen) if finish else prepared)
        # only an estimate reads frames ahead (a live stream waits for nothing else)
        ahead = AUTO_SIZE_FRAMES if self.requested_size == "auto" else 1
        head = list(itertools.islice(frames, ahead))
        if not head:
            return iter(())
        factor = self.scale = self.input_scale(*head)
        sizes = self.config.instance_area  # pieces are merged at the network's scale
        if factor == 1:
            windows = merged(self.method.predict(self.model, itertools.chain(head, frames),
                                                 self.device, first_masks=first_masks),
                             self.config, sizes)
        else:
            shape = head[0].shape[-2:]
            scaled = (resize_image(frame, factor) for frame in itertools.chain(head, frames))
            if first_masks is not None:
                inner = tuple(max(1, round(n * factor)) for n in shape)
                first_masks = resize_labels(np.asarray(first_masks), inner)
            windows = (dataclasses.replace(w, labels=resize_labels(w.labels, shape))
                       for w in merged(self.method.predict(self.model, scaled, self.device,
                                                           first_masks=first_masks),
                                       self.config, sizes))
        return _finished(windows, seen, self.config) if finish else windows

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Instance labels ``(Y, X)`` int32 of one still image."""
        window = next(iter(self._windows([self.prepare(image)], None)))
        return window.labels[0]

    def stream(self, frames: Iterable[np.ndarray], first_masks: np.ndarray | None = None,
               progress: ProgressFn | None = None) -> TrackStream:
        """Track raw frames lazily; see :class:`TrackStream`."""
        from instatrack.track.link import Tracker

        tracker = Tracker(self.config)

        def prepared() -> Iterator[np.ndarray]:
            for t, frame in enumerate(frames):
                yield self.prepare(frame, name=f"frame {t}")
                if progress is not None:
                    progress(t + 1)

        return TrackStream(self._windows(prepared(), first_masks), tracker)

    def track(self, frames: Iterable[np.ndarray], first_masks: np.ndarray | None = None,
              progress: ProgressFn | None = None) -> TrackResult:
        """Track a whole sequence in memory; returns labels ``(T, Y, X)`` and the graph."""
        stream = self.stream(frames, first_masks, progress)
        tracked = dict(stream)
        if not tracked:
            raise DataError("no frames to track")
        labels = np.stack([tracked[t] for t in sorted(tracked)])
        return TrackResult(labels=labels, graph=stream.graph)


def _recorded(frames: Iterable[np.ndarray], seen: dict[int, np.ndarray]
              ) -> Iterator[np.ndarray]:
    """``frames`` passed through, each also kept in ``seen`` under its index."""
    for t, frame in enumerate(frames):
        seen[t] = frame
        yield frame


def finishes(settings) -> bool:
    """Whether any stage of :func:`finish_frame` is on in ``settings``."""
    return (settings.refine_boundaries > 0 or bool(settings.grow_foreground)
            or settings.merge_coreless > 0 or settings.min_area_share > 0
            or settings.min_contrast > 0 or settings.min_foreground > 0)


def finish_frame(labels: np.ndarray, image: np.ndarray, settings) -> np.ndarray:
    """The stages that read the frame itself, last, on one frame's labels ``(Y, X)``:
    outlines refined (:mod:`instatrack.cluster.boundaries`), instances grown over the
    foreground connected to them (:mod:`instatrack.cluster.grow`), objects without a
    core of their own merged (:func:`~instatrack.cluster.fragments.merge_coreless`),
    objects small beside the frame's others dropped
    (:func:`~instatrack.cluster.fragments.drop_small`), then objects barely brighter than
    the background and objects lying in it dropped (:mod:`instatrack.cluster.contrast`);
    each is a no-op when off. The channels are averaged once for all."""
    from instatrack.cluster.boundaries import frame_plane, refine_boundaries
    from instatrack.cluster.contrast import drop_background, drop_faint
    from instatrack.cluster.fragments import drop_small, merge_coreless
    from instatrack.cluster.grow import grow_instances

    plane = frame_plane(image, labels)
    labels = grow_instances(refine_boundaries(labels, plane, settings), plane, settings)
    labels = drop_small(merge_coreless(labels, settings.merge_coreless),
                        settings.min_area_share)
    labels = drop_faint(labels, plane, settings.min_contrast)
    return drop_background(labels, plane, settings.min_foreground)


def _finished(windows: Iterable, seen: dict[int, np.ndarray], settings) -> Iterator:
    """``windows`` with every frame finished (:func:`finish_frame`) on the frame it came
    from; frames before a window are dropped from ``seen`` (windows come in order)."""
    for window in windows:
        for t in [t for t in seen if t < window.start]:
            del seen[t]
        labels = np.stack([finish_frame(frame, seen[window.start + i], settings)
                           for i, frame in enumerate(window.labels)])
        yield dataclasses.replace(window, labels=labels)


def load(model: str | Path, device=None, overrides: Sequence[str] = (),
         weights: str = "weights.pt", object_size: float | str | None = None) -> Predictor:
    """Load a run folder written by ``instatrack train`` (config + weights), or the
    pretrained model shipped with instatrack under the name ``model`` (``instatrack
    models`` lists them; an existing folder wins over a name). Nothing is written.

    ``overrides``: ``key=value`` strings changing post-processing settings
    (clustering thresholds, linking), e.g. ``["cluster_min_cluster_size=200"]``.
    ``weights``: ``weights.pt`` (best validation score) or ``last.pt``.
    ``object_size``: diameter in pixels of the objects in the data to process,
    ``"auto"`` to estimate it, or None; frames are resized so that objects look
    as large as in training (see :mod:`instatrack.data.rescale`).
    """
    import torch

    from instatrack.runs import Run

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    method, net = Run.resolve(model).load_model(device, weights=weights, overrides=overrides)
    from instatrack.data.rescale import parse_object_size

    return Predictor(method, net, device, object_size=parse_object_size(object_size))
