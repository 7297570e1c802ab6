"""Object size: resize frames so the user's objects look as large as the training objects.

A model learns objects of one size in pixels; the same nuclei at another
magnification, or a dataset with larger cells, need the input resized first.
Sizes are diameters of the circle of the same area. :func:`scale_for` gives the
factor from a size the user states or one estimated from a first pass of the
model (:func:`estimate_diameter`), like Cellpose's diameter.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from instatrack.errors import ConfigError

#: sizes within this ratio of the training size are left alone
TOLERANCE = 1.25
#: the factor is kept inside [1 / LIMIT, LIMIT]
LIMIT = 4.0


def diameter(area: float) -> float:
    """Diameter in pixels of the circle of ``area`` pixels."""
    return float(2.0 * np.sqrt(max(area, 0.0) / np.pi))


def estimate_diameter(labels: np.ndarray) -> float | None:
    """Median object diameter of a label image ``(..., Y, X)``; None without objects."""
    counts = np.bincount(np.asarray(labels, np.int64).ravel())[1:]
    counts = counts[counts > 0]
    if not len(counts):
        return None
    return diameter(float(np.median(counts)))


def scale_for(object_size: float, trained_size: float) -> float:
    """The resize factor that brings ``object_size`` to ``trained_size`` (both diameters).

    1 when they agree within :data:`TOLERANCE`; limited to [1/LIMIT, LIMIT].
    """
    if object_size <= 0 or trained_size <= 0:
        raise ConfigError(f"object size must be > 0 pixels, got {object_size}")
    factor = trained_size / object_size
    if 1 / TOLERANCE <= factor <= TOLERANCE:
        return 1.0
    return float(np.clip(factor, 1 / LIMIT, LIMIT))


def resize_image(image: np.ndarray, factor: float) -> np.ndarray:
    """``(C, Y, X)`` float image resized by ``factor`` (linear; smoothed first when shrinking)."""
    if factor == 1:
        return image
    out_shape = [max(1, round(n * factor)) for n in image.shape[-2:]]
    zoom = [o / n for o, n in zip(out_shape, image.shape[-2:], strict=True)]
    channels = []
    for channel in image:
        if factor < 1:  # against aliasing of the noise
            channel = ndi.gaussian_filter(channel, 0.5 * (1 / factor - 1))
        channels.append(ndi.zoom(channel, zoom, order=1, grid_mode=True, mode="grid-mirror"))
    return np.stack(channels).astype(np.float32)


def resize_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(..., y, x)`` labels resampled by nearest neighbour to ``(..., Y, X) = shape``."""
    if tuple(labels.shape[-2:]) == tuple(shape):
        return labels
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * labels.shape[-2] / shape[0]).astype(int),
                      labels.shape[-2] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * labels.shape[-1] / shape[1]).astype(int),
                      labels.shape[-1] - 1)
    return labels[..., rows[:, None], cols[None, :]]


def parse_object_size(value: str | float | None) -> float | str | None:
    """``None`` / ``"auto"`` / a diameter in pixels (from ``--object-size``)."""
    if value is None or value == "auto":
        return value
    try:
        size = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--object-size must be a diameter in pixels or 'auto', got "
                          f"{value!r}") from None
    if not size > 0:
        raise ConfigError(f"--object-size must be > 0 pixels, got {value!r}")
    return size


class RescaledSequence:
    """A :class:`~instatrack.data.types.Sequence` whose frames and labels are resized by
    ``factor`` (linear for images, nearest for labels), for training at another object size."""

    def __init__(self, seq, factor: float):
        self.seq, self.factor = seq, float(factor)
        self.name, self.is_video, self.channels = seq.name, seq.is_video, seq.channels

    def __len__(self) -> int:
        return len(self.seq)

    def image(self, t: int) -> np.ndarray:
        raw = np.asarray(self.seq.image(t), np.float32)
        planes = raw[None] if raw.ndim == 2 else np.moveaxis(raw, -1, 0)
        out = resize_image(planes, self.factor)
        return out[0] if raw.ndim == 2 else np.moveaxis(out, 0, -1)

    def labels(self, t: int) -> np.ndarray | None:
        labels = self.seq.labels(t)
        if labels is None:
            return None
        shape = tuple(max(1, round(n * self.factor)) for n in labels.shape[-2:])
        return resize_labels(labels, shape)

    def frame_path(self, t: int):
        return self.seq.frame_path(t)


def rescaled(sequences, factor: float) -> list:
    """``sequences`` resized by ``factor`` (themselves when it is 1)."""
    if factor == 1:
        return list(sequences)
    return [RescaledSequence(seq, factor) for seq in sequences]


def data_object_size(sequences, frames_per_sequence: int = 5) -> float | None:
    """Median object diameter over the first annotated frames of every sequence (None
    without annotations)."""
    diameters = []
    for seq in sequences:
        found = 0
        for t in range(len(seq)):
            labels = seq.labels(t)
            if labels is None:
                continue
            size = estimate_diameter(np.where(labels > 0, labels, 0))
            if size is not None:
                diameters.append(size)
            found += 1
            if found == frames_per_sequence:
                break
    return float(np.median(diameters)) if diameters else None


def to_object_size(sequences, size: float) -> list:
    """Each sequence resized so that its median object diameter (:func:`data_object_size`)
    becomes ``size``; one without annotations, or already within :data:`TOLERANCE`, stays."""
    out = []
    for seq in sequences:
        found = data_object_size([seq])
        factor = 1.0 if found is None else scale_for(found, size)
        out.append(seq if factor == 1 else RescaledSequence(seq, factor))
    return out
