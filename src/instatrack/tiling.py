"""Tiled inference: frames larger than memory allows, segmented tile by tile.

A frame is covered by overlapping tiles (:func:`tile_grid`). The network runs
on one tile at a time, the method's own post-processing turns the tile's
outputs into instance labels, and :func:`stitch` copies the tile's instances
into the frame's label image. The cores of the tiles (each tile minus half
the overlap on its inner sides) partition the frame, and an instance is taken
only from the tile whose core holds its centroid; the tile saw it whole when
the object reaches less than half the overlap beyond the core, so no instance
is cut by a tile border and none is found twice. When two tiles disagree about
the pixels of neighbouring instances, the one stitched first keeps its pixels
and the later one is pasted only when most of it is still free (else it is a
duplicate and dropped).

Only one tile's float network outputs exist at a time: memory is bounded by
the tile size; the frame's int32 label image and its raw pixels are the only
full-size arrays. Normalisation uses the percentiles of the whole frame
(:func:`~instatrack.data.normalize.input_ranges`), so a tile gets the
same input values as in an untiled pass. Tile origins sit on multiples of the
network's stride, so the tiles see the same pixel grid as the whole frame.

The tracker sees whole stitched frames, so track ids are consistent over time
exactly as without tiles.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Iterator

import numpy as np
from scipy import ndimage

from instatrack.api import Predictor, ProgressFn, TrackStream, finish_frame
from instatrack.errors import ConfigError, DataError

#: methods whose inference can run on tiles; the others say why not in WHY_NOT
TILEABLE = ("spatial-embedding", "recurrent-instance")
#: default overlap, as a share of the tile, for a tileable method that learnt scenes of its
#: crop (its ``scene_crops`` is set: recurrent-instance), whose every output depends on the
#: whole tile: it emits the objects of what it sees one after the other, so there is no
#: reach to measure and no overlap that gives the untiled result. Tiles are for a run
#: trained on crops of larger frames: at the crop size it sees scenes like those it learnt
#: on (docs/results.md, session 26: SIM+ 01, SEG 0.045 on whole frames, 0.447 in 128-px
#: tiles)
SCENE_OVERLAP = 1 / 3
WHY_NOT = {
    "cosine-hourglass": "its ConvGRU state and frame-pair clustering run over the whole "
                        "sequence; tiled tracking of it is not implemented yet",
    "spatial-propagation": "it follows the objects of the first frame, which move across "
                           "tile borders over time",
}
#: a pasted instance must keep more than this fraction of its pixels, else it is a duplicate
MIN_FREE = 0.5


@dataclasses.dataclass(frozen=True)
class Tile:
    """One tile of a frame, in frame pixels ``(y0, y1, x0, x1)`` (ends exclusive).

    ``outer`` is what the network sees, ``core`` the part whose instances the
    tile owns; the cores of a grid partition the frame.
    """

    outer: tuple[int, int, int, int]
    core: tuple[int, int, int, int]

    @property
    def window(self) -> tuple[slice, slice]:
        y0, y1, x0, x1 = self.outer
        return slice(y0, y1), slice(x0, x1)


def tile_grid(shape: tuple[int, int], tile: int, overlap: int, align: int = 1) -> list[Tile]:
    """Row-major tiles of at most about ``tile`` pixels, overlapping by at least ``overlap``.

    Tile origins are multiples of ``align`` (the network's stride), so the last
    tile of a row may be up to ``align - 1`` pixels larger than ``tile``. A side
    no longer than ``tile`` is one tile.
    """
    if tile < 1 or overlap < 0 or align < 1:
        raise ConfigError(f"need tile >= 1, overlap >= 0, align >= 1; got {tile}, {overlap}, "
                          f"{align}")
    if tile - overlap < align:
        raise ConfigError(f"--tile {tile} must exceed --overlap {overlap} by at least the "
                          f"network stride ({align} pixels)")
    rows = _axis_tiles(shape[0], tile, overlap, align)
    cols = _axis_tiles(shape[1], tile, overlap, align)
    return [Tile((y0, y1, x0, x1), (cy0, cy1, cx0, cx1))
            for y0, y1, cy0, cy1 in rows for x0, x1, cx0, cx1 in cols]


def _axis_tiles(length: int, tile: int, overlap: int, align: int
                ) -> list[tuple[int, int, int, int]]:
    """``(start, stop, core start, core stop)`` along one axis."""
    if length <= tile:
        return [(0, length, 0, length)]
    stride = (tile - overlap) // align * align
    last = (length - tile) // align * align
    starts = list(range(0, last, stride)) + [last]
    stops = [min(s + tile, length) for s in starts[:-1]] + [length]
    # core borders in the middle of each overlap
    borders = [0] + [(starts[i + 1] + stops[i]) // 2 for i in range(len(starts) - 1)] + [length]
    return [(s, e, borders[i], borders[i + 1]) for i, (s, e) in enumerate(zip(starts, stops,
                                                                              strict=True))]


def stitch(canvas: np.ndarray, labels: np.ndarray, tile: Tile, next_id: int,
           min_free: float = MIN_FREE) -> tuple[int, int]:
    """Copy the instances of one tile into ``canvas`` (in place).

    ``canvas`` ``(W, Y, X)`` int32 holds the frame's (or window's) labels so
    far, ``labels`` ``(W, y1 - y0, x1 - x0)`` the tile's labels (consistent
    over the W frames of a window). Instances whose centroid lies in the tile's
    core get ids ``next_id, next_id + 1, ...`` in label order; one is pasted
    onto the free pixels only when more than ``min_free`` of its pixels are
    free. Returns the next free id and how many pasted instances touch an inner
    edge of the tile (cut by it: the overlap is too small for them).
    """
    y0, y1, x0, x1 = tile.outer
    cy0, cy1, cx0, cx1 = tile.core
    if labels.shape != (canvas.shape[0], y1 - y0, x1 - x0):
        raise ValueError(f"tile labels {labels.shape} do not fit the tile {tile.outer}")
    flat = labels.ravel()
    count = np.bincount(flat)
    if len(count) <= 1:
        return next_id, 0
    per_row = labels.shape[1] * labels.shape[2]
    rows = (np.arange(flat.size) % per_row) // labels.shape[2]
    cols = np.arange(flat.size) % labels.shape[2]
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = y0 + np.bincount(flat, weights=rows) / count
        cx = x0 + np.bincount(flat, weights=cols) / count
    height, width = canvas.shape[1:]
    inner = (y0 > 0, y1 < height, x0 > 0, x1 < width)
    cut = 0
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or not (cy0 <= cy[label] < cy1 and cx0 <= cx[label] < cx1):
            continue
        mine = labels[box] == label
        target = canvas[box[0], box[1].start + y0:box[1].stop + y0,
                        box[2].start + x0:box[2].stop + x0]
        free = mine & (target == 0)
        if free.sum() <= min_free * count[label]:
            continue
        target[free] = next_id
        next_id += 1
        edges = (box[1].start == 0, box[1].stop == labels.shape[1],
                 box[2].start == 0, box[2].stop == labels.shape[2])
        cut += any(e and i for e, i in zip(edges, inner, strict=True))
    return next_id, cut


def segment_tiled(predict_tile: Callable[[np.ndarray], np.ndarray], image,
                  ranges: np.ndarray, tiles: list[Tile], window: int = 1) -> tuple[np.ndarray,
                                                                                   int]:
    """Labels ``(W, Y, X)`` int32 of one raw frame, stitched from ``tiles``.

    ``image`` ``(Y, X)`` / ``(Y, X, C)`` is any array-like that slices into
    numpy (crops are read one tile at a time); ``ranges`` are its per-channel
    percentiles; ``predict_tile`` maps a normalised ``(C, y, x)`` tile to its
    labels ``(W, y, x)``. Also returns how many instances were cut by a tile edge.
    """
    from instatrack.data.normalize import normalize_crop

    canvas = np.zeros((window, *image.shape[:2]), np.int32)
    next_id, cut = 1, 0
    for tile in tiles:
        crop = normalize_crop(np.asarray(image[tile.window]), ranges)
        if not np.isfinite(crop).all():
            raise DataError(f"tile {tile.outer}: contains NaN or infinite values")
        next_id, n_cut = stitch(canvas, np.asarray(predict_tile(crop), np.int32), tile, next_id)
        cut += n_cut
    return canvas, cut


def receptive_radius(network: Callable, channels: int, align: int, device="cpu",
                     limit: int = 4096) -> int:
    """How far (pixels) an input pixel reaches into ``network``'s outputs, measured.

    ``network`` maps a ``(1, C, Y, X)`` tensor to a tensor or a dict of them. A
    row of the input is changed and the output rows that change are counted,
    for two row phases, on a narrow strip of ``limit`` rows (cheap); at least
    ``limit // 2`` means the reach is that far or more. Outputs of a tile
    further than this from its edge equal those of the whole frame.
    """
    import torch

    generator = torch.Generator().manual_seed(0)
    strip = torch.randn(1, channels, limit, 2 * align, generator=generator).to(device)
    reach = 0
    with torch.inference_mode():
        base = _as_tensors(network(strip))
        for row in (limit // 2, limit // 2 + align // 2 + 1):
            changed = strip.clone()
            changed[..., row, :] += 10.0
            rows = torch.zeros(limit, dtype=torch.bool, device=strip.device)
            for a, b in zip(base, _as_tensors(network(changed)), strict=True):
                rows |= (a != b).flatten(0, 1).any(0).any(-1)
            hit = torch.nonzero(rows)[:, 0]
            if len(hit):
                reach = max(reach, row - int(hit.min()), int(hit.max()) - row)
    return reach


def _as_tensors(outputs) -> list:
    if isinstance(outputs, dict):
        return list(outputs.values())
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def network_alignment(model, method_name: str) -> int:
    """Pixels between tile origins that keep the network's pooling grid (its total stride)."""
    net = getattr(model, "_orig_mod", model)
    if method_name == "spatial-embedding":
        from instatrack.models.erfnet import STRIDE

        return STRIDE * max(1, round(1 / getattr(net, "input_scale", 1.0)))
    return int(getattr(net, "multiple", 16))


class TiledPredictor(Predictor):
    """A :class:`~instatrack.api.Predictor` whose network runs on tiles of each frame.

    ``tile`` and ``overlap`` in pixels; the overlap should exceed the diameter
    of the largest object (plus some context for the network). Same interface
    and outputs as the untiled predictor: ``segment``, ``stream``, ``track``.
    """

    def __init__(self, predictor: Predictor, tile: int, overlap: int | None = None,
                 warn_cut: bool = True):
        super().__init__(predictor.method, predictor.model, predictor.device)
        #: warn (once) when instances reach a tile's edge; off where every frame of a
        #: calibration or validation would repeat it
        self.warn_cut = warn_cut
        name = self.method.name
        if predictor.object_size is not None:
            raise ConfigError("--tile and --object-size cannot be combined yet; resize the "
                              "images beforehand")
        if name not in TILEABLE:
            raise ConfigError(f"--tile is not available for {name}: {WHY_NOT.get(name, '')}")
        self.align = network_alignment(self.model, name)
        #: the overlap that keeps every core pixel's network output exact (None: no such
        #: overlap, every output depends on the whole tile)
        self.exact_overlap = None
        if self.method.scene_crops:
            overlap = int(tile * SCENE_OVERLAP) // self.align * self.align \
                if overlap is None else overlap
        else:
            net = getattr(self.model, "_orig_mod", self.model)
            reach = receptive_radius(net, self.config.in_channels, self.align, self.device)
            self.exact_overlap = -(-2 * (reach + self.align) // self.align) * self.align
            overlap = self.exact_overlap if overlap is None else overlap
        if overlap < 0 or tile - overlap < self.align:
            raise ConfigError(f"--tile {tile} must exceed --overlap {overlap} by at least "
                              f"{self.align} pixels (the network's stride)")
        if self.exact_overlap is not None and overlap < self.exact_overlap:
            warnings.warn(f"--overlap {overlap} is below the network's reach "
                          f"({self.exact_overlap}): outputs near tile borders differ from an "
                          f"untiled pass", stacklevel=2)
        self.tile = tile
        self.overlap = overlap
        self.cut = 0  # instances cut by a tile edge so far

    def segment(self, image, name: str = "image") -> np.ndarray:
        """Instance labels ``(Y, X)`` int32 of one raw ``(Y, X)`` / ``(Y, X, C)`` image."""
        from instatrack.data.normalize import Norm

        shape = tuple(image.shape)
        if len(shape) not in (2, 3):
            raise DataError(f"{name}: expected a 2D image (Y, X) or (Y, X, C), got shape "
                            f"{shape}")
        channels = 1 if len(shape) == 2 else shape[2]
        if channels != self.config.in_channels:
            raise DataError(f"{name}: has {channels} channel(s), the model was trained on "
                            f"{self.config.in_channels}")
        ranges = Norm.of(self.config).ranges(image, name)
        labels, cut = segment_tiled(self.predict_tile, image, ranges, self.tiles(shape[:2]))
        if cut and not self.cut and self.warn_cut:
            warnings.warn(f"{name}: {cut} instance(s) reach the edge of their tile and may be "
                          f"cut; raise --overlap above the largest object's diameter "
                          f"(now {self.overlap})", stacklevel=2)
        self.cut += cut
        return labels[0]

    def tiles(self, shape: tuple[int, int]) -> list[Tile]:
        """The tiles of a ``(Y, X)`` frame, in the order they are stitched."""
        return tile_grid(shape, self.tile, self.overlap, self.align)

    def predict_tile(self, crop: np.ndarray) -> np.ndarray:
        """Labels ``(1, y, x)`` of one normalised ``(C, y, x)`` tile, by the method itself,
        small pieces merged, outlines refined and faint objects dropped on the tile when the
        config asks (never the whole image: it may not fit in memory)."""
        from instatrack.cluster.fragments import merged

        windows = self.method.predict(self.model, [crop], self.device)
        labels = next(iter(merged(windows, self.config, self.config.instance_area))).labels
        return finish_frame(labels[0], crop, self.config)[None]

    def stream(self, frames: Iterable[np.ndarray], first_masks: np.ndarray | None = None,
               progress: ProgressFn | None = None) -> TrackStream:
        """Track raw frames lazily, each segmented in tiles; see :class:`TrackStream`."""
        from instatrack.methods.base import Window
        from instatrack.track.link import Tracker

        def windows() -> Iterator[Window]:
            for t, frame in enumerate(frames):
                yield Window(t, self.segment(frame, name=f"frame {t}")[None])
                if progress is not None:
                    progress(t + 1)

        return TrackStream(windows(), Tracker(self.config))


def scene_tiled(predictor: Predictor, shape: tuple[int, ...]) -> Predictor:
    """``predictor``, or for a method that learnt scenes of its crop size
    (``scene_crops``) and frames of ``shape`` larger than that many crops, the same in
    tiles of the crop size: how validation and calibration see such frames, as
    ``--tile CROP`` does at inference (at whole-frame size they would choose weights and
    thresholds on a scene the net never learnt)."""
    crops = predictor.method.scene_crops
    crop = predictor.config.crop
    if (not crops or isinstance(predictor, TiledPredictor) or predictor.object_size is not None
            or shape[0] * shape[1] <= crops * crop[0] * crop[1]):
        return predictor
    return TiledPredictor(predictor, max(crop), warn_cut=False)


def instance_agreement(reference: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    """How many instances of ``reference`` ``(Y, X)`` reappear in ``labels``.

    ``identical``: same pixels exactly; ``matched``: IoU >= 0.5 (at most one
    partner each). Also the instance counts of both images. Used to check a
    tiled result against an untiled one.
    """
    from instatrack.metrics.matching import match_iou

    pairs, _ = match_iou(reference, labels, 0.5)
    boxes = ndimage.find_objects(reference)
    area_a, area_b = np.bincount(reference.ravel()), np.bincount(labels.ravel())
    identical = 0
    for a, b in pairs:
        box = boxes[int(a) - 1]
        identical += bool(area_a[a] == area_b[b]
                          and np.array_equal(reference[box] == a, labels[box] == b))
    return {"reference": int(len(np.unique(reference[reference > 0]))),
            "labels": int(len(np.unique(labels[labels > 0]))),
            "matched": len(pairs), "identical": identical}
