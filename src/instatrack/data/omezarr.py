"""OME-Zarr (OME-NGFF 0.4 / 0.5) images read frame by frame, and labels written beside them.

:class:`OmeZarrImage` opens the full-resolution level of a ``(T, C, Y, X)``,
``(T, Y, X)`` (or ``(C, Y, X)`` / ``(Y, X)``, one frame) image and reads one
frame at a time, so memory stays bounded by a frame's chunks whatever the
length of the sequence. Singleton ``z`` axes are dropped; 3D stacks are not
supported. It is a :class:`~instatrack.data.types.Sequence` (frames without
files), so :func:`~instatrack.data.open_images` gives it to ``segment`` and
``track`` like a folder of frames.

:class:`OmeZarrLabelsWriter` writes instance labels as a multiscale labels image
of that image, ``IMAGE.zarr/labels/<name>/``, which napari-ome-zarr and other
viewers open together with the image. Given a new output folder it first
becomes an OME-Zarr image itself (the frames are copied into it as they are
tracked), so the input is never modified unless the output *is* the input. Adding
labels to the input is the one result instatrack writes in place, not atomically
(:func:`check_labels_in_place`).

Needs the ``[zarr]`` extra (zarr, ome-zarr).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from instatrack.data.types import check_index
from instatrack.errors import DataError, require

LABELS_NAME = "instatrack"
#: lowest resolution level kept in a pyramid (pixels along the shorter side)
MIN_LEVEL_SIZE = 64
MAX_LEVELS = 5


def ome_attrs(path: Path) -> dict:
    """The OME attributes of the zarr group at ``path`` (v2 ``.zattrs`` or v3 ``zarr.json``)."""
    for name in (".zattrs", "zarr.json"):
        try:
            attrs = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        if name == "zarr.json":
            attrs = attrs.get("attributes", {})
        return attrs.get("ome", attrs)
    return {}


def is_omezarr(path: str | Path) -> bool:
    """Whether ``path`` is an OME-Zarr image (a zarr group with ``multiscales``); no imports."""
    path = Path(path)
    return path.is_dir() and "multiscales" in ome_attrs(path)


def labels_path(image: str | Path, name: str = LABELS_NAME) -> Path:
    """Where the labels image ``name`` of the OME-Zarr ``image`` lives: ``image/labels/name``."""
    return Path(image) / "labels" / name


def check_labels_in_place(image: str | Path, overwrite: bool, name: str = LABELS_NAME) -> None:
    """Refuse to add labels ``name`` to ``image`` when it already has them, unless ``overwrite``.

    Labels written into the input image cannot be staged and moved in: a run
    that fails half-way leaves the labels it wrote, so existing ones are only
    replaced on request.
    """
    if labels_path(image, name).exists() and not overwrite:
        raise DataError(f"{image}: already holds labels/{name}; pass --overwrite to replace "
                        f"them (labels added to the input image are written in place, so a "
                        f"failed run leaves them half-written)")


class OmeZarrImage:
    """One OME-Zarr image, read lazily frame by frame: a :class:`~instatrack.data.types.Sequence`.

    ``axes``: axis names of the stored array (e.g. ``"tcyx"``); ``shape`` its
    shape; ``len()`` the number of frames (1 without a ``t`` axis), numbered
    ``times`` 0, 1, ...; :meth:`image` returns ``(Y, X)`` or ``(Y, X, C)``.
    ``paths`` is None: the frames are not files (:meth:`frame_path` names the image).
    """

    paths = None
    is_video = True

    def __init__(self, path: str | Path):
        zarr = require("zarr", "zarr")
        self.path = Path(path)
        if not is_omezarr(self.path):
            raise DataError(f"{self.path}: not an OME-Zarr image (no 'multiscales' metadata)")
        self.multiscale = ome_attrs(self.path)["multiscales"][0]
        self.axes = "".join(_axis_name(a) for a in self.multiscale.get("axes", "tczyx"))
        dataset = self.multiscale["datasets"][0]
        try:
            self.array = zarr.open_array(str(self.path / dataset["path"]), mode="r")
        except Exception as err:  # zarr raises several kinds for a missing or broken array
            raise DataError(f"{self.path}: cannot open level {dataset['path']!r} ({err})") from None
        self.shape = tuple(self.array.shape)
        if len(self.axes) != len(self.shape):
            raise DataError(f"{self.path}: axes {self.axes!r} do not match the array's shape "
                            f"{self.shape}")
        if not self.axes.endswith("yx"):
            raise DataError(f"{self.path}: the last axes must be y, x; got {self.axes!r}")
        if "z" in self.axes and self.shape[self.axes.index("z")] > 1:
            raise DataError(f"{self.path}: 3D stacks (z = {self.shape[self.axes.index('z')]}) "
                            f"are not supported")
        self.scale = _level_scale(dataset, len(self.shape))
        self.units = {_axis_name(a): a.get("unit") for a in self.multiscale.get("axes", [])
                      if isinstance(a, dict)}
        self.name = self.path.name
        self.times = list(range(len(self)))

    def __len__(self) -> int:
        return self.shape[self.axes.index("t")] if "t" in self.axes else 1

    def __repr__(self) -> str:
        return f"OmeZarrImage({str(self.path)!r}: {self.axes} {self.shape} {self.array.dtype})"

    @property
    def channels(self) -> int:
        return self.shape[self.axes.index("c")] if "c" in self.axes else 1

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.shape[-2], self.shape[-1]

    def frame_path(self, t: int) -> Path:
        """The image itself (its frames are not files), for messages."""
        check_index(self, t)
        return self.path

    def image(self, t: int) -> np.ndarray:
        """Frame ``t`` as ``(Y, X)`` or ``(Y, X, C)``, read from its chunks only."""
        t = check_index(self, t)
        index = tuple(t if a == "t" else 0 if a == "z" else slice(None) for a in self.axes)
        data = np.asarray(self.array[index])
        if "c" in self.axes:
            data = np.moveaxis(data, 0, -1)
            if data.shape[-1] == 1:
                data = data[..., 0]
        return data

    def labels(self, t: int) -> None:
        """No training labels: an input image."""
        check_index(self, t)
        return None

    def calibration(self):
        """:class:`~instatrack.data.geff.Calibration` from the scale and units of ``t``, ``x``."""
        from instatrack.data.geff import Calibration

        scale = dict(zip(self.axes, self.scale, strict=True))
        return Calibration(pixel_size=scale.get("x", 1.0), space_unit=self.units.get("x"),
                           frame_interval=scale.get("t", 1.0), time_unit=self.units.get("t"))


def _axis_name(axis) -> str:
    return axis["name"] if isinstance(axis, dict) else str(axis)


def _level_scale(dataset: dict, ndim: int) -> list[float]:
    for transform in dataset.get("coordinateTransformations", []):
        if transform.get("type") == "scale":
            return [float(v) for v in transform["scale"]]
    return [1.0] * ndim


def pyramid_shapes(shape: tuple[int, int]) -> list[tuple[int, int]]:
    """``(Y, X)`` of each level: halved while the shorter side stays >= ``MIN_LEVEL_SIZE``."""
    shapes = [tuple(shape)]
    while len(shapes) < MAX_LEVELS and min(shapes[-1]) // 2 >= MIN_LEVEL_SIZE:
        y, x = shapes[-1]
        shapes.append(((y + 1) // 2, (x + 1) // 2))
    return shapes


class OmeZarrLabelsWriter:
    """Stream labels into ``out/labels/<name>``: ``write(t, labels)`` per frame, ``finish()``.

    ``image``: the input :class:`OmeZarrImage`, or None when the input is not
    OME-Zarr. When ``out`` is not the input image, ``out`` becomes an OME-Zarr
    image holding a copy of the frames (``frame_of(t)`` reads frame ``t``
    ``(Y, X)`` / ``(Y, X, C)``; defaults to ``image.image``) so that the labels
    have their image; a non-empty ``out`` is refused unless ``overwrite``. When
    ``out`` is the input image, the labels are added to it in place, and labels
    ``name`` it already holds are refused unless ``overwrite``
    (:func:`check_labels_in_place`). The labels have the image's axes, with one
    channel; every frame must have the first one's shape.
    """

    def __init__(self, out: str | Path, n_frames: int, image: OmeZarrImage | None = None,
                 frame_of: Callable[[int], np.ndarray] | None = None,
                 name: str = LABELS_NAME, overwrite: bool = False):
        self.out = Path(out)
        self.n_frames = n_frames
        self.image = image
        self.name = name
        self.in_place = image is not None and self.out.resolve() == image.path.resolve()
        self.frame_of = frame_of or (image.image if image is not None else None)
        if self.in_place:
            check_labels_in_place(self.out, overwrite, name)
        elif self.frame_of is None:
            raise ValueError("a new OME-Zarr output needs frame_of to copy the image")
        elif _holds_something(self.out) and not overwrite:
            raise DataError(f"{self.out}: already exists and is not empty; choose a new "
                            f"output path")
        self.axes = image.axes if image is not None else ""
        self._labels: list = []
        self._images: list = []

    def write(self, t: int, labels: np.ndarray) -> None:
        """Store frame ``t`` (labels ``(Y, X)``) at every level, and its image if copying."""
        labels = np.asarray(labels)
        if not self._labels:
            self._create(labels.shape)
        if labels.shape != self._labels[0].shape[-2:]:
            raise DataError(f"frame {t}: labels of shape {labels.shape}, the first frame's are "
                            f"{self._labels[0].shape[-2:]}; an OME-Zarr image holds frames of "
                            f"one shape")
        for level, array in enumerate(self._labels):
            step = 2 ** level
            array[self._index(t, "cz")] = labels[::step, ::step].astype(np.uint32)
        if self._images:
            frame = np.asarray(self.frame_of(t))
            for level, array in enumerate(self._images):
                data = _downscale(frame, 2 ** level, array.shape[-2:])
                array[self._index(t, "z")] = data.astype(array.dtype)

    def read(self, t: int) -> np.ndarray:
        """Frame ``t`` of the labels written so far, full resolution ``(Y, X)``."""
        if not self._labels:
            raise ValueError("no labels written yet")
        return np.asarray(self._labels[0][self._index(t, "cz")])

    def finish(self, graph=None) -> Path:
        """Returns the labels group ``out/labels/<name>``; the graph is not stored here."""
        return labels_path(self.out, self.name)

    def _index(self, t: int, single: str) -> tuple:
        """Where frame ``t`` goes; the axes in ``single`` have one element."""
        return tuple(t if a == "t" else 0 if a in single else slice(None) for a in self.axes)

    def _create(self, frame_shape: tuple[int, int]) -> None:
        zarr = require("zarr", "zarr")
        FormatV04 = require("ome_zarr.format", "zarr").FormatV04  # noqa: N806

        if self.image is not None and self.image.frame_shape != tuple(frame_shape):
            raise DataError(f"labels shape {tuple(frame_shape)} differs from the image's "
                            f"{self.image.frame_shape}")
        shapes = pyramid_shapes(frame_shape)
        if self.in_place:
            root = zarr.open_group(str(self.out), mode="a")
            fmt = _format(root)
        else:
            root = zarr.open_group(str(self.out), mode="w", zarr_format=2)
            fmt = FormatV04()
            sample = np.asarray(self.frame_of(0))
            channels = sample.shape[-1] if sample.ndim == 3 else 1
            if not self.axes:
                self.axes = "tcyx" if channels > 1 else "tyx"
            self._images = [root.create_array(str(i), shape=self._shape(s, channels),
                                              chunks=self._shape(s, 1, chunks=True),
                                              dtype=sample.dtype, fill_value=0)
                            for i, s in enumerate(shapes)]
            _write_multiscale(root, self.axes, self._scales(len(shapes)), self._units(), fmt)
        labels = root.require_group("labels")
        group = labels.create_group(self.name, overwrite=True)
        self._labels = [group.create_array(str(i), shape=self._shape(s, 1),
                                           chunks=self._shape(s, 1, chunks=True),
                                           dtype="uint32", fill_value=0)
                        for i, s in enumerate(shapes)]
        _write_multiscale(group, self.axes, self._scales(len(shapes)), self._units(), fmt)
        _register_labels(labels, self.name, fmt)

    def _shape(self, yx: tuple[int, int], channels: int, chunks: bool = False) -> tuple:
        """Array (or chunk) shape of one level: one frame, full channels, ``(Y, X)`` tiles."""
        sizes = {"t": 1 if chunks else self.n_frames, "c": channels, "z": 1}
        tiles = tuple(min(s, 1024) for s in yx) if chunks else tuple(yx)
        return tuple(sizes[a] for a in self.axes[:-2]) + tiles

    def _scales(self, n_levels: int) -> list[list[float]]:
        base = self.image.scale if self.image is not None else [1.0] * len(self.axes)
        return [[s * 2 ** level if a in "yx" else s for a, s in zip(self.axes, base, strict=True)]
                for level in range(n_levels)]

    def _units(self) -> dict[str, str]:
        if self.image is None:
            return {}
        return {a: u for a, u in self.image.units.items() if u}


def _holds_something(path: Path) -> bool:
    """Whether ``path`` is a file or a folder that is not empty."""
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def _downscale(frame: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """``(Y, X[, C])`` -> ``(C, y, x)`` or ``(y, x)``: block means over ``factor`` pixels."""
    if factor > 1:
        from skimage.transform import downscale_local_mean

        factors = (factor, factor) + ((1,) if frame.ndim == 3 else ())
        frame = downscale_local_mean(frame, factors)[: shape[0], : shape[1]]
    return np.moveaxis(frame, -1, 0) if frame.ndim == 3 else frame


def _format(group):
    return require("ome_zarr.writer", "zarr").check_format(group)


def _write_multiscale(group, axes: str, scales: list[list[float]], units: dict, fmt) -> None:
    write_multiscales_metadata = require("ome_zarr.writer", "zarr").write_multiscales_metadata
    kinds = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
    axis_list = [{"name": a, "type": kinds[a], **({"unit": units[a]} if a in units else {})}
                 for a in axes]
    datasets = [{"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": s}]}
                for i, s in enumerate(scales)]
    write_multiscales_metadata(group, datasets, fmt=fmt, axes=axis_list)


def _register_labels(labels_group, name: str, fmt) -> None:
    """Add ``image-label`` metadata to ``labels/<name>`` and list ``name`` once in ``labels``."""
    writer = require("ome_zarr.writer", "zarr")
    others = [n for n in writer.get_metadata(labels_group).get("labels", []) if n != name]
    writer.add_metadata(labels_group, {"labels": others}, fmt=fmt)
    writer.write_label_metadata(labels_group, name, fmt=fmt, source={"image": "../../"})
