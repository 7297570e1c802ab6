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

:func:`drop_edgeless` (``min_edge``, last of the three) judges an object by its outline:
the median gradient magnitude on a band along it, over the median of the same over
the background away from every object (the background's own noise and texture). A
cell in focus has an edge; a cell out of focus, which a dataset such as MSC leaves
unannotated, is a faint glow whose outline the noise drowns. The gradient is taken at
:data:`EDGE_SIGMA` pixels *of the network's scale* (the frames resized so objects look
the training size), so the measure sees an object as the model saw it; a ratio of
two gradients of one frame, so gain, offset and dimming (noise scaled with the signal)
do not change it. Measured on validation frames MSC 02 18-35 (two seeds of
``nuclei-ch``'s recipe, objects matched to the tracking markers; docs/results.md,
session 52): the false objects left after calibration stood a median 1.8-2.2 over the
background, 12 of 16 and 9 of 12 below 2.5, and of the 99 matched cells one below 2.5
(2.2), the next 2.9; on ``nuclei-ch``'s own validation frames of SIM+ and GOWT1 no
matched nucleus was below 4.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage as ndi

from instatrack.cluster.boundaries import frame_plane
from instatrack.settings import Settings, require

#: Gaussian sigma (pixels) of the smoothing before the frame's foreground threshold
FOREGROUND_SIGMA = 2.0
#: Gaussian sigma of the gradient :func:`edge_strengths` reads, in pixels of the
#: network's scale (the frame's pixels divided by the factor it was resized by)
EDGE_SIGMA = 1.0
#: background pixels fewer than this are too few to tell the noise: nothing dropped
MIN_BACKGROUND = 100


@dataclasses.dataclass(frozen=True)
class ContrastSettings(Settings):
    """``min_contrast``: objects fainter over the background than this share of the
    frame's median object are dropped (0 = off; :func:`drop_faint`).
    ``min_foreground``: objects with less than this share of their pixels above the
    frame's foreground threshold are dropped (0 = off; :func:`drop_background`).
    ``min_edge``: objects whose outline stands out less than this many times over the
    background's own gradient are dropped (0 = off; :func:`drop_edgeless`)."""

    post_processing = True
    after_method = True
    # tried one at a time on the best combination of the other stages' values (the
    # filter acts last, so it need not multiply their grid)
    calibration_last = {"min_contrast": (0.1, 0.2), "min_foreground": (0.25, 0.5),
                        "min_edge": (2.0, 2.5, 3.0)}

    min_contrast: float = 0.0
    min_foreground: float = 0.0
    min_edge: float = 0.0

    def check(self) -> None:
        super().check()
        require(0 <= self.min_contrast < 1,
                f"min_contrast must be in [0, 1) (0 = off), got {self.min_contrast}")
        require(0 <= self.min_foreground <= 1,
                f"min_foreground must be in [0, 1] (0 = off), got {self.min_foreground}")
        require(self.min_edge >= 0, f"min_edge must be >= 0 (0 = off), got {self.min_edge}")


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
    from skimage.filters import threshold_triangle

    if share <= 0 or not labels.any():
        return labels
    plane = ndi.gaussian_filter(frame_plane(image, labels), FOREGROUND_SIGMA)
    if float(np.ptp(plane)) <= 0:
        return labels
    above = plane > threshold_triangle(plane)
    ids = np.unique(labels[labels > 0])
    inside = np.asarray(ndi.mean(above, labels, ids), np.float64).reshape(-1)
    return _without(labels, ids[inside < share])


def edge_strengths(labels: np.ndarray, image: np.ndarray, scale: float = 1.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, strength)``: each object's outline over the background, the median
    gradient magnitude (Gaussian, sigma :data:`EDGE_SIGMA` ``/ scale`` pixels) on the band
    within sigma of its outline, inside and out, over the median of the same over the
    unlabelled pixels farther than three sigmas and the band from every object.
    ``image``: ``(Y, X)`` or ``(C, Y, X)`` (channels averaged); ``scale``: the factor the
    frame was resized by for the network. ``strength`` is empty when fewer than
    :data:`MIN_BACKGROUND` background pixels lie that far (nothing to compare with) or
    the background is flat."""
    plane = frame_plane(image, labels)
    ids = np.unique(labels[labels > 0])
    sigma = EDGE_SIGMA / scale
    band = max(1, round(sigma))
    away = ndi.distance_transform_edt(labels == 0) > 3 * sigma + band
    if ids.size == 0 or np.count_nonzero(away) < MIN_BACKGROUND:
        return ids[:0], np.zeros(0)
    gradient = ndi.gaussian_gradient_magnitude(plane, sigma)
    level = float(np.median(gradient[away]))
    if level <= 0:
        return ids[:0], np.zeros(0)
    strength = np.empty(ids.size)
    boxes = ndi.find_objects(labels)
    for k, label in enumerate(ids):
        ys, xs = boxes[label - 1]
        box = (slice(max(0, ys.start - band - 1), ys.stop + band + 1),
               slice(max(0, xs.start - band - 1), xs.stop + band + 1))
        # the box reaches past the object except at the frame's edge, which is no
        # outline: the mask goes on past it (padded by its own edge values)
        pad = band + 1
        mask = np.pad(labels[box] == label, pad, mode="edge")
        ring = ndi.binary_dilation(mask, iterations=band) & \
            ~ndi.binary_erosion(mask, iterations=band)
        values = gradient[box][ring[pad:-pad, pad:-pad]]
        strength[k] = np.median(values) / level if values.size else np.inf
    return ids, strength


def drop_edgeless(labels: np.ndarray, image: np.ndarray, least: float,
                  scale: float = 1.0) -> np.ndarray:
    """``labels`` ``(Y, X)`` without the objects whose outline stands less than ``least``
    over the background (:func:`edge_strengths` of ``image`` at ``scale``); the labels
    unchanged when ``least`` is 0 or the frame has too little background to compare."""
    if least <= 0 or not labels.any():
        return labels
    ids, strength = edge_strengths(labels, image, scale)
    return _without(labels, ids[strength < least])
