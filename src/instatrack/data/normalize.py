"""Percentile normalisation of raw images into network input."""

from __future__ import annotations

import numpy as np

from instatrack.errors import DataError


def normalize(image: np.ndarray, low: float = 1.0, high: float = 99.8,
              name: str = "image") -> np.ndarray:
    """Raw ``(Y, X)`` or ``(Y, X, C)`` image -> ``(C, Y, X)`` float32.

    Each channel is mapped so that its ``low`` percentile becomes 0 and its
    ``high`` percentile 1 (values outside are kept, not clipped). A constant
    channel becomes 0 instead of dividing by zero. ``name`` is used in errors.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise DataError(f"{name}: expected a non-empty (Y, X) or (Y, X, C) image, got shape "
                        f"{image.shape}")
    if not 0 <= low < high <= 100:
        raise DataError(f"{name}: need 0 <= low < high <= 100 percentiles, got {low}, {high}")
    channels = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)
    out = channels.astype(np.float32)
    if not np.isfinite(out).all():
        problem = "NaN" if np.isnan(out).any() else "infinite"
        raise DataError(f"{name}: image contains {problem} values")
    for c, channel in enumerate(out):
        lo, hi = np.percentile(channel, (low, high))
        scale = hi - lo if hi - lo > 1e-12 * max(abs(hi), 1.0) else 1.0
        out[c] = (channel - np.float32(lo)) / np.float32(scale)
    return out


def percentile_ranges(image, low: float = 1.0, high: float = 99.8,
                      name: str = "image") -> np.ndarray:
    """Per-channel ``(lo, hi)`` percentiles of a ``(Y, X)`` / ``(Y, X, C)`` array, ``(C, 2)``.

    The same values :func:`normalize` uses, computed without a float copy of
    the whole image for 8- and 16-bit images (a histogram built over blocks of
    rows), so a frame far larger than memory allows for floats can be
    normalised tile by tile with :func:`normalize_crop`. ``image`` may be any
    array-like that slices into numpy (a zarr array, a memory map).
    """
    shape = tuple(image.shape)
    if len(shape) not in (2, 3) or 0 in shape:
        raise DataError(f"{name}: expected a non-empty (Y, X) or (Y, X, C) image, got shape "
                        f"{shape}")
    if not 0 <= low < high <= 100:
        raise DataError(f"{name}: need 0 <= low < high <= 100 percentiles, got {low}, {high}")
    channels = 1 if len(shape) == 2 else shape[2]
    dtype = np.dtype(image.dtype)
    ranges = np.empty((channels, 2))
    for c in range(channels):
        if dtype.kind in "ui" and dtype.itemsize <= 2:
            ranges[c] = _histogram_percentiles(image, c, (low, high))
        else:
            channel = np.asarray(image[..., c] if len(shape) == 3 else image, np.float32)
            if not np.isfinite(channel).all():
                raise DataError(f"{name}: image contains NaN or infinite values")
            ranges[c] = np.percentile(channel, (low, high))
    return ranges


def normalize_crop(crop: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """A ``(Y, X)`` / ``(Y, X, C)`` crop -> ``(C, Y, X)`` float32, mapped by ``ranges``.

    With the ranges of the whole image (:func:`percentile_ranges`) every crop
    gets exactly the values :func:`normalize` gives those pixels.
    """
    crop = np.asarray(crop)
    channels = crop[None] if crop.ndim == 2 else np.moveaxis(crop, -1, 0)
    out = channels.astype(np.float32)
    for c, (lo, hi) in enumerate(ranges):
        scale = hi - lo if hi - lo > 1e-12 * max(abs(hi), 1.0) else 1.0
        out[c] = (out[c] - np.float32(lo)) / np.float32(scale)
    return out


def _histogram_percentiles(image, channel: int, q: tuple[float, float],
                           block_pixels: int = 1 << 20) -> np.ndarray:
    """numpy's linear-method percentiles of one 8/16-bit channel from its histogram."""
    dtype = np.dtype(image.dtype)
    offset = -int(np.iinfo(dtype).min)
    counts = np.zeros(1 << (8 * dtype.itemsize), np.int64)
    rows = max(1, block_pixels // image.shape[1])
    for y in range(0, image.shape[0], rows):
        block = np.asarray(image[y:y + rows])
        block = block[..., channel] if block.ndim == 3 else block
        counts += np.bincount((block.astype(np.int32) + offset).ravel(), minlength=len(counts))
    cumulative = np.cumsum(counts)
    n = int(cumulative[-1])
    # numpy's "linear" method: virtual index (n - 1) q, lerp of its two neighbours
    virtual = (n - 1) * np.true_divide(q, 100)
    previous = np.floor(virtual)
    gamma = virtual - previous
    below = np.minimum(previous, n - 1).astype(np.int64)
    above = np.minimum(previous + 1, n - 1).astype(np.int64)
    values = (np.searchsorted(cumulative, np.stack([below, above]), side="right")
              - offset).astype(np.float32)
    a, b = values
    diff = b - a
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
