"""Frames made dim: the contrast over the background divided, the sensor's noise kept.

A model trained on bright frames meets dimmer ones on the user's next sequence
(a weaker stain, a shorter exposure). :func:`dim_frame` makes such a frame from a
recorded one, as ``docs/robustness.md`` defines it::

    B + (I - B) / K + N(0, s^2 (1 - 1/K^2))

with ``B`` the background level and ``s`` its noise (:func:`background_stats`,
measured away from the annotated objects): every contrast over the background
shrinks by ``K`` while the background noise keeps its recorded std. The
robustness benchmark scores test frames dimmed so, and calibration may score
validation frames so (``calibrate_dim``), to choose thresholds that also hold
on dimmer data.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from instatrack.data.normalize import level_and_noise
from instatrack.data.types import markers

#: pixels around annotated objects left out of the background estimate
BACKGROUND_MARGIN = 10


def background_stats(image: np.ndarray, objects: np.ndarray) -> tuple[float, float]:
    """Background level (median) and sensor noise (MAD std) of a raw frame.

    Both are measured over the pixels farther than :data:`BACKGROUND_MARGIN` from
    any annotated object (``objects``, ``(Y, X)`` bool); over the whole frame when
    fewer than 100 pixels are left.
    """
    near = ndi.binary_dilation(objects, iterations=BACKGROUND_MARGIN)
    values = np.asarray(image, np.float64)[~near]
    if values.size < 100:
        values = np.asarray(image, np.float64).ravel()
    return level_and_noise(values)


def dim_frame(image: np.ndarray, objects: np.ndarray, factor: float,
              rng: np.random.Generator) -> np.ndarray:
    """``image`` with its contrast over the background divided by ``factor`` (see the
    module docstring), rounded and clipped to an integer dtype; ``factor`` 1 returns it."""
    if factor == 1:
        return image
    level, noise = background_stats(image, objects)
    raw = np.asarray(image, np.float64)
    out = level + (raw - level) / factor
    if factor > 1 and noise > 0:
        out = out + rng.normal(0.0, noise * np.sqrt(1.0 - factor ** -2), raw.shape)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        return np.clip(np.round(out), info.min, info.max).astype(image.dtype)
    return out.astype(image.dtype)


class DimmedSequence:
    """``seq`` (any :class:`~instatrack.data.types.Sequence`) with every frame dimmed by
    ``factor`` (:func:`dim_frame`, seeded by ``seed`` and the frame); labels and every
    other attribute are ``seq``'s. The objects kept out of the background estimate are
    the frame's labels and, where the sequence has them, its tracking markers. ``keep``:
    hold every dimmed frame once made (calibration reads its few frames once per
    combination it tries)."""

    def __init__(self, seq, factor: float, seed: int = 0, keep: bool = False):
        if factor < 1:
            raise ValueError(f"a contrast divisor is at least 1, got {factor}")
        self.seq, self.factor, self.seed = seq, float(factor), seed
        self._kept: dict[int, np.ndarray] | None = {} if keep else None

    def __getattr__(self, name: str):
        return getattr(self.seq, name)

    def __len__(self) -> int:
        return len(self.seq)

    def labels(self, t: int):
        return self.seq.labels(t)

    def image(self, t: int) -> np.ndarray:
        if self._kept is not None and t in self._kept:
            return self._kept[t]
        frame = self.seq.image(t)
        if self.factor != 1:
            frame = dim_frame(frame, self.objects(t, frame.shape[:2]), self.factor,
                              np.random.default_rng([self.seed, t]))
        if self._kept is not None:
            self._kept[t] = frame
        return frame

    def objects(self, t: int, shape: tuple[int, ...]) -> np.ndarray:
        """``(Y, X)`` bool: every annotated object of frame ``t``."""
        objects = np.zeros(shape, bool)
        labels = self.seq.labels(t)
        if labels is not None:
            objects |= labels != 0
        marked = markers(self.seq, t)
        if marked is not None:
            objects |= marked > 0
        return objects
