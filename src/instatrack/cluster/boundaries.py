"""Instance labels -> the same instances with their outlines moved to the image's edges.

Every method's masks come from a network whose output is smoother than the
image: the cosine-hourglass leaves a rim of background around each nucleus and
masks rebuilt from half-size frames are blocky (docs/results.md, session 9).
:func:`refine_boundaries` moves each object's outline, within ``refine_band``
pixels of where the method put it, to the level ``refine_boundaries`` of the way
from the object's local background to its interior:

1. the frame is smoothed (Gaussian, ``refine_sigma`` pixels) and, for several
   channels, averaged over them;
2. per object: its *core* (the mask eroded by the band), its *ring* (unlabelled
   pixels between one and two bands outside the mask) and the threshold
   ``tau = bg + alpha * (fg - bg)`` from their medians ``fg`` and ``bg``, so the
   threshold follows the object's own contrast (a dim object gets a low one);
3. the new mask: pixels within the band of the old mask that are above ``tau``
   and not another object's, the connected pieces that touch the core, holes
   filled. An object without a core or a ring of a few pixels, or whose core is
   not clearly brighter than its ring (by ``MIN_CONTRAST`` times the ring's noise,
   from its median absolute deviation), is left as it was.

Objects are assumed brighter than the background (fluorescence); with
``refine_boundaries = 0`` (the default) labels pass through untouched.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage as ndi

from instatrack.data.normalize import level_and_noise
from instatrack.settings import Settings, require

#: pixels an object's core and ring need before its outline is moved
MIN_PIXELS = 5
#: an object's core must stand this many noise stds (of its smoothed ring) above the ring
MIN_CONTRAST = 2.0


@dataclasses.dataclass(frozen=True)
class BoundarySettings(Settings):
    """Outline refinement of every method's instances (:func:`refine_boundaries`).

    ``refine_boundaries``: where between an object's local background (0) and its
    interior (1) the outline is put; 0 = off. ``refine_band``: pixels the outline
    may move, in and out. ``refine_sigma``: Gaussian smoothing of the frame first.
    """

    post_processing = True
    after_method = True
    calibration = {"refine_boundaries": (0.0, 0.3)}
    # a wider band lets an outline reach a nucleus's dim body when the network kept only
    # its bright foci (left-out SIM+: SEG 0.786 -> 0.804 at 6 px; a model that saw SIM+
    # loses 0.004 there): tried after the grid, on its best combination
    calibration_last = {"refine_band": (6,)}

    refine_boundaries: float = 0.0
    refine_band: int = 3
    refine_sigma: float = 1.0

    def check(self) -> None:
        super().check()
        require(0 <= self.refine_boundaries < 1,
                f"refine_boundaries must be in [0, 1) (0 = off), got {self.refine_boundaries}")
        require(self.refine_band >= 1, f"refine_band must be >= 1, got {self.refine_band}")
        require(self.refine_sigma >= 0, f"refine_sigma must be >= 0, got {self.refine_sigma}")


def refine_boundaries(labels: np.ndarray, image: np.ndarray, settings: BoundarySettings
                      ) -> np.ndarray:
    """``labels`` ``(Y, X)`` int with the outlines moved to ``image``'s edges.

    ``image``: ``(Y, X)`` or ``(C, Y, X)`` of the same size, any scale (brighter =
    object). Returns a new array of ``labels``' dtype; objects keep their ids, none
    is added or removed.
    """
    if settings.refine_boundaries == 0 or not labels.any():
        return labels
    image = frame_plane(image, labels)
    smooth = ndi.gaussian_filter(image, settings.refine_sigma) if settings.refine_sigma else image
    out = labels.copy()
    band = settings.refine_band
    for label, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        window = tuple(slice(max(s.start - 3 * band, 0), min(s.stop + 3 * band, n))
                       for s, n in zip(box, labels.shape, strict=True))
        mask = _refined(labels[window], smooth[window], label, band, settings.refine_boundaries)
        if mask is not None:
            part = out[window]
            part[(part == label) & ~mask] = 0
            part[mask & (part == 0)] = label
    return out


def frame_plane(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``image`` ``(Y, X)`` or ``(C, Y, X)`` as one float32 plane the size of ``labels``
    (channels averaged); ValueError when the sizes differ."""
    image = np.asarray(image, np.float32)
    if image.ndim == labels.ndim + 1:
        image = image.mean(0)
    if image.shape != labels.shape:
        raise ValueError(f"image {image.shape} and labels {labels.shape} differ in size")
    return image


def _refined(labels: np.ndarray, image: np.ndarray, label: int, band: int, alpha: float
             ) -> np.ndarray | None:
    """The new mask of ``label`` in a window around it, or None to keep the old one."""
    mask = labels == label
    core = ndi.binary_erosion(mask, iterations=band)
    grown = ndi.binary_dilation(mask, iterations=band)
    ring = ndi.binary_dilation(grown, iterations=band) & ~grown & (labels == 0)
    if core.sum() < MIN_PIXELS or ring.sum() < MIN_PIXELS:
        return None
    inside = float(np.median(image[core]))
    outside, noise = level_and_noise(image[ring])
    if inside - outside <= MIN_CONTRAST * noise:  # noise >= 0: not brighter is caught too
        return None
    free = grown & ((labels == 0) | mask)
    candidate = (free & (image > outside + alpha * (inside - outside))) | core
    pieces, _ = ndi.label(candidate)
    kept = np.isin(pieces, np.unique(pieces[core]))
    return ndi.binary_fill_holes(kept) & free
