"""Normalisation of raw images into network input: two modes, one owner.

``percentile`` (the default) maps each channel's ``low`` percentile to 0 and its
``high`` percentile to 1, frame by frame. On a dim frame that stretch turns the
noise into large values. ``noise`` keeps the same 0 (the ``low`` percentile) but
divides by :data:`NOISE_UNITS` robust noise standard deviations, so the noise has
the same size in every frame and a dim frame stays dim (objects near 0.1 at a
contrast of 1/8) instead of being stretched. On clean frames of the shared
datasets both modes give about the same values (their 1-99.8 % range is 22-39
noise stds). Which one generalises better is measured in docs/robustness.md.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from instatrack.errors import DataError

#: the ways a channel can be mapped (``norm_mode`` in the config)
NORM_MODES = ("percentile", "noise")
#: ``noise`` mode: noise stds per unit of input (the shared datasets' clean frames
#: span 22-39 between their 1 and 99.8 % percentiles)
NOISE_UNITS = 35.0
#: rows sampled for the noise estimate (enough for a stable median, cheap on huge frames)
NOISE_ROWS = 512


class Norm(NamedTuple):
    """How a run maps raw intensities to network input (``norm_*`` config keys)."""

    low: float = 1.0
    high: float = 99.8
    mode: str = "percentile"

    @classmethod
    def of(cls, config) -> Norm:
        return cls(config.norm_low, config.norm_high, config.norm_mode)

    def __call__(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """Raw ``(Y, X)`` / ``(Y, X, C)`` image -> ``(C, Y, X)`` float32 (:func:`normalize`)."""
        return normalize(image, self.low, self.high, name, self.mode)

    def ranges(self, image, name: str = "image") -> np.ndarray:
        """Per-channel ``(C, 2)`` mapping of a whole image, for :func:`normalize_crop`."""
        return input_ranges(image, self.low, self.high, name, self.mode)


#: the default mapping (1-99.8 percentiles, frame by frame)
PERCENTILES = Norm()


def normalize(image: np.ndarray, low: float = 1.0, high: float = 99.8,
              name: str = "image", mode: str = "percentile") -> np.ndarray:
    """Raw ``(Y, X)`` or ``(Y, X, C)`` image -> ``(C, Y, X)`` float32.

    Each channel is mapped so that its ``low`` percentile becomes 0 and its
    ``high`` percentile 1 (``mode="percentile"``), or 0 and :data:`NOISE_UNITS`
    noise stds 1 (``mode="noise"``). Values outside are kept, not clipped. A
    constant channel becomes 0 instead of dividing by zero. ``name`` is used in
    errors.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise DataError(f"{name}: expected a non-empty (Y, X) or (Y, X, C) image, got shape "
                        f"{image.shape}")
    _check(low, high, mode, name)
    channels = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)
    out = channels.astype(np.float32)
    if not np.isfinite(out).all():
        problem = "NaN" if np.isnan(out).any() else "infinite"
        raise DataError(f"{name}: image contains {problem} values")
    for c, channel in enumerate(out):
        out[c] = _mapped(channel, channel_range(channel, low, high, mode))
    return out


def channel_range(channel: np.ndarray, low: float, high: float,
                  mode: str = "percentile") -> tuple[float, float]:
    """``(lo, hi)`` that one float ``(Y, X)`` channel is mapped to 0 and 1 by."""
    lo, hi = np.percentile(channel, (low, high))
    if mode == "noise":
        hi = lo + noise_scale(lo, hi, noise_std(channel))
    return float(lo), float(hi)


def level_and_noise(values) -> tuple[float, float]:
    """Median and robust std (1.4826 times the median absolute deviation, a Gaussian's
    std) of a set of pixel values, e.g. a frame's background."""
    values = np.asarray(values)
    level = float(np.median(values))
    return level, 1.4826 * float(np.median(np.abs(values - level)))


def noise_std(channel) -> float:
    """Robust std of pixel noise in a ``(Y, X)`` channel: the median absolute deviation
    of differences between neighbours in a row (objects' edges are few, so they do
    not move the median), over up to :data:`NOISE_ROWS` evenly spaced rows.

    Pairs of neighbours both at the channel's lowest or both at its highest value
    are left out: a background clipped at 0 (GOWT1: 55 % of a frame, 83 % when its
    contrast is divided by 8) carries no noise to measure, and counting its zero
    differences took the estimate to 0 however noisy the objects were."""
    step = max(1, channel.shape[0] // NOISE_ROWS)
    rows = np.asarray(channel[::step], np.float32)
    if rows.shape[-1] < 2:
        return 0.0
    lowest, highest = rows.min(), rows.max()
    left, right = rows[..., :-1], rows[..., 1:]
    clipped = ((left == lowest) & (right == lowest)) | ((left == highest) & (right == highest))
    steps = (right - left)[~clipped]
    if steps.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(steps - np.median(steps))) / np.sqrt(2))


def noise_scale(lo: float, hi: float, sigma: float) -> float:
    """``noise`` mode's unit: :data:`NOISE_UNITS` noise stds, at least a quarter of the
    percentile range (a noiseless image then peaks near 4 instead of dividing by 0)."""
    return max(NOISE_UNITS * sigma, (hi - lo) / 4)


def _check(low: float, high: float, mode: str, name: str) -> None:
    if not 0 <= low < high <= 100:
        raise DataError(f"{name}: need 0 <= low < high <= 100 percentiles, got {low}, {high}")
    if mode not in NORM_MODES:
        raise DataError(f"{name}: normalisation mode must be one of {', '.join(NORM_MODES)}, "
                        f"got {mode!r}")


def _mapped(channel: np.ndarray, bounds) -> np.ndarray:
    lo, hi = bounds
    scale = hi - lo if hi - lo > 1e-12 * max(abs(hi), 1.0) else 1.0
    return (channel - np.float32(lo)) / np.float32(scale)


def input_ranges(image, low: float = 1.0, high: float = 99.8, name: str = "image",
                 mode: str = "percentile") -> np.ndarray:
    """Per-channel ``(lo, hi)`` of a ``(Y, X)`` / ``(Y, X, C)`` array, ``(C, 2)``.

    The same values :func:`normalize` uses, computed without a float copy of
    the whole image for 8- and 16-bit images (a histogram built over blocks of
    rows; the noise from sampled rows), so a frame far larger than memory
    allows for floats can be normalised tile by tile with :func:`normalize_crop`.
    ``image`` may be any array-like that slices into numpy (a zarr array, a
    memory map).
    """
    shape = tuple(image.shape)
    if len(shape) not in (2, 3) or 0 in shape:
        raise DataError(f"{name}: expected a non-empty (Y, X) or (Y, X, C) image, got shape "
                        f"{shape}")
    _check(low, high, mode, name)
    channels = 1 if len(shape) == 2 else shape[2]
    dtype = np.dtype(image.dtype)
    ranges = np.empty((channels, 2))
    # noise mode: the rows normalize() samples, read once for every channel
    rows = np.asarray(image[::max(1, shape[0] // NOISE_ROWS)]) if mode == "noise" else None
    for c in range(channels):
        if dtype.kind in "ui" and dtype.itemsize <= 2:
            ranges[c] = _histogram_percentiles(image, c, (low, high))
        else:
            channel = np.asarray(image[..., c] if len(shape) == 3 else image, np.float32)
            if not np.isfinite(channel).all():
                raise DataError(f"{name}: image contains NaN or infinite values")
            ranges[c] = np.percentile(channel, (low, high))
        if rows is not None:
            sigma = noise_std(rows[..., c] if len(shape) == 3 else rows)
            ranges[c, 1] = ranges[c, 0] + noise_scale(*ranges[c], sigma)
    return ranges


def normalize_crop(crop: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """A ``(Y, X)`` / ``(Y, X, C)`` crop -> ``(C, Y, X)`` float32, mapped by ``ranges``.

    With the ranges of the whole image (:func:`input_ranges`) every crop
    gets exactly the values :func:`normalize` gives those pixels.
    """
    crop = np.asarray(crop)
    channels = crop[None] if crop.ndim == 2 else np.moveaxis(crop, -1, 0)
    out = channels.astype(np.float32)
    for c, bounds in enumerate(ranges):
        out[c] = _mapped(out[c], bounds)
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
