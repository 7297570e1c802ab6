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
