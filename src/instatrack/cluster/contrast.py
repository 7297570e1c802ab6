"""Objects barely brighter than the frame's background (``min_contrast``), or lying in
it (``min_foreground``), dropped.

Datasets differ in which faint objects they count. GOWT1 annotates the nuclei in
focus and leaves the faint, out-of-focus ones out; a network that learnt from
SIM+ and synthetic nuclei that faint ones count finds them, and each costs a
false detection. Measured on the shipped ``nuclei-se`` (GOWT1 01, frames 36–91,
docs/results.md, session 13): 612 false objects, all of the tracking score's
loss (TRA 0.952 against the classical pipeline's 0.975). They stood a median
1.7 grey levels above the frame's background, the matched nuclei 31.6 (10.1 at
their 10th percentile).

:func:`drop_faint`, every method, last (after the outlines are refined, before
the frames are linked): an object whose mean intensity over the frame's
background (the median of the unlabelled pixels) is below ``min_contrast``
times the median of that over the frame's objects is removed. The ratio does
not change when a frame is dimmed or its gain changes, so one value holds across
acquisition; which value a dataset wants is its convention, so calibration
(:mod:`instatrack.calibrate`) chooses it on annotated frames and ``0`` (the
default) is off. Objects are assumed brighter than the background
(fluorescence); a frame whose objects are not (median contrast ≤ 0) is left as
it is. Tiled inference filters each tile against the tile's own objects.

:func:`drop_background` (``min_foreground``, also last, after :func:`drop_faint`)
judges each object by the frame alone, not by the other objects: an object with
less than that share of its pixels above the frame's triangle threshold (the
frame smoothed by :data:`FOREGROUND_SIGMA` pixels; the threshold sits just above
the background's peak of the histogram) is removed. A reference taken from the
other objects moves with them: the median over objects sinks where faint false
objects are many (MSC), and a median over object pixels, tried in session 23,
rose with GOWT1's large bright nuclei and dropped its dim annotated ones when a
value chosen on SIM+ was carried there (docs/results.md). The frame's own
threshold does neither.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage as ndi

from instatrack.cluster.boundaries import frame_plane
from instatrack.settings import Settings, require

#: Gaussian sigma (pixels) of the smoothing before the frame's foreground threshold
FOREGROUND_SIGMA = 2.0


@dataclasses.dataclass(frozen=True)
class ContrastSettings(Settings):
    """``min_contrast``: objects fainter over the background than this share of the
    frame's median object are dropped (0 = off; :func:`drop_faint`).
    ``min_foreground``: objects with less than this share of their pixels above the
    frame's foreground threshold are dropped (0 = off; :func:`drop_background`)."""

    post_processing = True
    after_method = True
    # tried one at a time on the best combination of the other stages' values (the
    # filter acts last, so it need not multiply their grid)
    calibration_last = {"min_contrast": (0.1, 0.2), "min_foreground": (0.25, 0.5)}

    min_contrast: float = 0.0
    min_foreground: float = 0.0

    def check(self) -> None:
        super().check()
        require(0 <= self.min_contrast < 1,
                f"min_contrast must be in [0, 1) (0 = off), got {self.min_contrast}")
        require(0 <= self.min_foreground <= 1,
                f"min_foreground must be in [0, 1] (0 = off), got {self.min_foreground}")


def object_contrasts(labels: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, contrast)``: each object's mean intensity in ``image`` minus the median of
    the unlabelled pixels. ``image``: ``(Y, X)`` or ``(C, Y, X)`` (channels averaged)."""
    image = frame_plane(image, labels)
    ids = np.unique(labels[labels > 0])
    background = labels == 0
    level = float(np.median(image[background])) if background.any() else 0.0
    means = np.asarray(ndi.mean(image, labels, ids), np.float64).reshape(-1)
    return ids, means - level


def drop_faint(labels: np.ndarray, image: np.ndarray, share: float) -> np.ndarray:
    """``labels`` ``(Y, X)`` without the objects whose contrast (:func:`object_contrasts`)
    is below ``share`` times the median contrast of the frame's objects."""
    if share <= 0 or not labels.any():
        return labels
    ids, contrast = object_contrasts(labels, image)
    typical = float(np.median(contrast))
    if typical <= 0:
        return labels
    return _without(labels, ids[contrast < share * typical])


def _without(labels: np.ndarray, dropped: np.ndarray) -> np.ndarray:
    """``labels`` with the objects ``dropped`` set to 0 (the input itself when none)."""
    if dropped.size == 0:
        return labels
    out = labels.copy()
    out[np.isin(out, dropped)] = 0
    return out


def drop_background(labels: np.ndarray, image: np.ndarray, share: float) -> np.ndarray:
    """``labels`` ``(Y, X)`` without the objects that have less than ``share`` of their
    pixels above the triangle threshold of ``image`` smoothed by :data:`FOREGROUND_SIGMA`
    (``(Y, X)`` or ``(C, Y, X)``, channels averaged). A flat frame is left as it is."""
    if share <= 0 or not labels.any():
        return labels
    shares = foreground_shares(labels, image)
    if shares is None:
        return labels
    ids, inside = shares
    return _without(labels, ids[inside < share])


def foreground_shares(labels: np.ndarray, image: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(ids, share)``: the share of each object's pixels above the triangle threshold
    of ``image`` smoothed by :data:`FOREGROUND_SIGMA` (``(Y, X)`` or ``(C, Y, X)``,
    channels averaged), what :func:`drop_background` judges by; None for a flat frame."""
    from skimage.filters import threshold_triangle

    plane = ndi.gaussian_filter(frame_plane(image, labels), FOREGROUND_SIGMA)
    if float(np.ptp(plane)) <= 0:
        return None
    above = plane > threshold_triangle(plane)
    ids = np.unique(labels[labels > 0])
    return ids, np.asarray(ndi.mean(above, labels, ids), np.float64).reshape(-1)
