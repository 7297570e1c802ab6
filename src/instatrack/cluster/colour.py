"""Each object's colours against the background's, learnt on the first frame and
added to its score map as evidence (``colour_prior`` of :class:`ColourSettings`).

The per-object heads of mask propagation read a small network's features, and
on a real clip those may not tell an object from a textured background (DAVIS
``motocross-jump``: from frame 30 they score the trees as high as the rider, so the
flow-carried mask alone decides and drifts onto them). The colours of frame 0's
object and of the rest of the frame are a second, independent guess, as colour
models (GrabCut's, video cut-out's) give it: per object, a histogram of the
object's pixels and one of the others' over a ``colour_bins``-per-channel grid
(edges at frame 0's 0.5th and 99.5th percentile of each channel), smoothed by a
bin, give each pixel the log-ratio ``log p(colour | object) - log p(colour |
background)``, clipped to ``[-CLIP, CLIP]``. :func:`add_evidence` adds
``colour_prior`` times it to the score's log-odds (naive Bayes: two independent
guesses), so a pixel the scores are unsure of follows its colour, and a colour
seen equally often on both sides changes nothing. ``colour_update`` (0 = off)
renews that share of each histogram from every frame's result, for objects
whose looks change; the first frame's histograms then fade.

Off by default. With ``colour_prior=0.5, colour_update=0.2`` the held-out synthetic
videos gain (hard 0.688 -> 0.792, changing looks 0.660 -> 0.758 J&F), but on the real
DAVIS clip the renewal learns whatever the mask has wrongly taken in, and the mean over
seven draws of the heads' fitting falls (0.490 -> 0.447, from 0.235 to 0.575 a draw;
docs/propagation_pretraining.md, "Colour evidence", session 58).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage as ndi
from scipy.special import expit, logit

from instatrack.errors import DataError
from instatrack.settings import Settings, require

CLIP = 3.0  # largest log-ratio a colour may add, in log-odds units (a factor of e^3)
MAX_CELLS = 2 ** 20  # most cells a histogram may have (bins ** channels)


@dataclasses.dataclass(frozen=True)
class ColourSettings(Settings):
    """The colour evidence of :mod:`instatrack.cluster.colour` (``colour_prior`` 0 = off)."""

    post_processing = True

    colour_prior: float = 0.0
    colour_bins: int = 16
    colour_update: float = 0.0

    def check(self) -> None:
        super().check()
        require(self.colour_prior >= 0, f"colour_prior must be >= 0, got {self.colour_prior}")
        require(2 <= self.colour_bins <= 64,
                f"colour_bins must be in [2, 64], got {self.colour_bins}")
        require(0 <= self.colour_update <= 1,
                f"colour_update must be in [0, 1], got {self.colour_update}")


class ColourModels:
    """Per-object colour histograms against the background's, from one frame
    ``(C, Y, X)`` and its object masks ``(K, Y, X)`` bool."""

    def __init__(self, frame: np.ndarray, masks: np.ndarray, bins: int) -> None:
        if bins ** len(frame) > MAX_CELLS:
            raise DataError(f"colour_prior: {bins} colour_bins on each of {len(frame)} "
                            f"channels make {bins ** len(frame):.3g} histogram cells (at "
                            f"most {MAX_CELLS}); set fewer colour_bins")
        flat = frame.reshape(len(frame), -1)
        self.low = np.percentile(flat, 0.5, axis=1)
        self.span = np.maximum(np.percentile(flat, 99.5, axis=1) - self.low, 1e-6)
        self.bins = bins
        self.shape = (bins,) * len(frame)
        codes = self.codes(frame)
        self.objects = np.stack([self._histogram(codes[m]) for m in masks])
        self.backgrounds = np.stack([self._histogram(codes[~m]) for m in masks])

    def codes(self, frame: np.ndarray) -> np.ndarray:
        """``(Y, X)`` index of each pixel's bin in the flattened grid."""
        scaled = (frame - self.low[:, None, None]) / self.span[:, None, None] * self.bins
        cells = np.clip(scaled.astype(np.int64), 0, self.bins - 1)
        return np.ravel_multi_index(tuple(cells), self.shape)

    def _histogram(self, codes: np.ndarray) -> np.ndarray:
        """Smoothed, normalised histogram of ``codes``; a flat one when there are none."""
        counts = np.bincount(codes, minlength=int(np.prod(self.shape))).astype(np.float64)
        counts = ndi.gaussian_filter(counts.reshape(self.shape), 1.0, mode="nearest").ravel()
        counts += 1e-3 * max(counts.sum(), 1.0) / counts.size  # no colour is impossible
        return counts / counts.sum()

    def log_ratio(self, frame: np.ndarray) -> np.ndarray:
        """``(K, Y, X)`` float32 clipped log-ratio of object to background for each pixel."""
        codes = self.codes(frame)
        ratio = np.log(self.objects[:, codes]) - np.log(self.backgrounds[:, codes])
        return np.clip(ratio, -CLIP, CLIP).astype(np.float32)

    def update(self, frame: np.ndarray, labels: np.ndarray, ids: np.ndarray,
               rate: float) -> None:
        """Renew a share ``rate`` of each found object's histograms from ``labels``
        ``(Y, X)`` of ``frame``; an object not found keeps its own."""
        codes = self.codes(frame)
        for k, object_id in enumerate(ids):
            inside = labels == object_id
            if not inside.any():
                continue
            self.objects[k] = (1 - rate) * self.objects[k] + rate * self._histogram(codes[inside])
            self.backgrounds[k] = ((1 - rate) * self.backgrounds[k]
                                   + rate * self._histogram(codes[~inside]))


def add_evidence(scores: np.ndarray, log_ratio: np.ndarray, weight: float) -> np.ndarray:
    """``sigmoid(logit(scores) + weight * log_ratio)`` for ``(K, Y, X)`` probabilities;
    changes ``scores`` in place and returns it."""
    scores[:] = expit(logit(np.clip(scores, 1e-4, 1 - 1e-4)) + weight * log_ratio)
    return scores
