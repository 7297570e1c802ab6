"""Instances grown over the foreground a global threshold finds (``grow_foreground``).

A network outlines what looks like its training objects. On data it never saw,
the look of an object's parts can differ: SIM+'s condensing nuclei are bright
foci over a dim body, and a model trained without SIM+ outlines only the foci
(docs/results.md, session 13); a model trained on round nuclei outlines the
round body of a spread stem cell and leaves its long dim arms out (MSC). A
global threshold of the kind the classical pipeline uses (Li's, on the frame
smoothed by ``grow_sigma`` pixels) does find those bodies and arms, but it
cannot tell touching objects apart, and it finds every faint object a dataset
may leave unannotated. :func:`grow_instances` takes the best of each: the
network decides which objects there are and where they part, the threshold how
far each reaches.

1. the frame, smoothed, is thresholded (``grow_foreground``: ``li``, ``otsu`` or
   ``triangle``), never below the background's median plus :data:`NOISE_FLOOR`
   robust noise stds of the unlabelled pixels, so a dim frame's noise is not
   taken for objects; holes are filled;
2. every foreground pixel connected (through foreground) to an instance is
   flooded from the instances in order of brightness (watershed on the smoothed
   frame), so touching instances part along the darkest line between them;
3. instance pixels stay as they were (nothing shrinks), and foreground that
   touches no instance stays background (nothing is added).

With ``grow_trim`` the threshold also decides where each instance ends inside:
before the flooding, an instance's pixels outside the foreground are dropped, so
the halo a network draws around its objects goes; an instance mostly outside the
foreground (under :data:`TRIM_KEEP` of it inside: a nucleus dimmer than the
threshold) is kept whole, so a dim object is never lost to it. Left out SIM+,
it raised SEG 0.830 -> 0.841; on left-out GOWT1 it cost 0.003 (docs/results.md,
session 15): which one a dataset wants, calibration decides.

The trim helps where the contrast is high and hurts where it is low: a network's
outlines shrink as the contrast falls, and on a dim frame the threshold cuts into the
nuclei too. With ``grow_trim_snr`` the trim acts only on the frames whose instances
stand at least that many noise stds over the background (:func:`contrast_to_noise`);
dimmer frames are only grown. On SIM+'s validation frames (docs/results.md, session
19) a robust spatial-embedding net gained nothing from the trim as recorded (contrast
5.6) and lost 0.008 SEG to it at contrast / 4 (1.6) and 0.071 at / 8 (0.7), where the
growth alone gained 0.006 and 0.078; for the shipped ``nuclei-ch`` the trim gained
0.005 as recorded and 0.011 at / 4 but lost 0.032 against the growth alone at / 8 (1.0).

Objects are assumed brighter than the background (fluorescence). Off by
default (``""``); calibration (:mod:`instatrack.calibrate`) tries it last, so a
dataset where it does not help keeps it off.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage as ndi

from instatrack.data.normalize import level_and_noise, noise_std
from instatrack.settings import Settings, require

#: the foreground threshold is at least this many noise stds over the background
NOISE_FLOOR = 3.0
#: the global thresholds on offer (scikit-image's)
THRESHOLDS = ("li", "otsu", "triangle")
#: ``grow_trim`` leaves an instance whole when less than this share of it is foreground
TRIM_KEEP = 0.5


@dataclasses.dataclass(frozen=True)
class GrowSettings(Settings):
    """``grow_foreground``: the global threshold whose foreground the instances are
    grown over ("" = off; :func:`grow_instances`); ``grow_sigma``: Gaussian smoothing
    of the frame first (pixels); ``grow_trim``: also drop the instances' pixels outside
    the foreground first (instances mostly outside it stay whole); ``grow_trim_snr``:
    trim only the frames whose instances stand at least this many noise stds over the
    background, and only grow the dimmer ones (0: trim every frame;
    :func:`contrast_to_noise`)."""

    post_processing = True
    after_method = True
    # Li's threshold: the classical pipeline's (it beat Otsu's and the triangle's on SIM+);
    # trimming is tried after it, with it (a no-op without growth)
    calibration_last = {"grow_foreground": ("li",),
                        "grow_trim": ({"grow_foreground": "li", "grow_trim": True},),
                        # where the trim stopped paying on SIM+'s validation frames for
                        # a spatial-embedding net (between / 2 and / 3) and for nuclei-ch
                        # (between / 4 and / 8): session 19
                        "grow_trim_snr": tuple({"grow_foreground": "li", "grow_trim": True,
                                                "grow_trim_snr": snr} for snr in (2.5, 1.2)),
                        # then the triangle threshold in its place, the trim kept as chosen:
                        # it reaches further into the dim edges and arms of large spread
                        # cells (MSC), where Li's left a cell's marker under half covered;
                        # smoothed wider too, as the classical pipeline chose there
                        "grow_sigma": ({"grow_foreground": "triangle"},
                                       {"grow_foreground": "triangle", "grow_sigma": 4.0})}

    grow_foreground: str = ""
    grow_sigma: float = 2.0
    grow_trim: bool = False
    grow_trim_snr: float = 0.0

    def check(self) -> None:
        super().check()
        require(self.grow_foreground in ("", *THRESHOLDS),
                f"grow_foreground must be one of {', '.join(THRESHOLDS)} or '' (off), got "
                f"{self.grow_foreground!r}")
        require(self.grow_sigma >= 0, f"grow_sigma must be >= 0, got {self.grow_sigma}")
        require(self.grow_trim_snr >= 0,
                f"grow_trim_snr must be >= 0 (0: every frame), got {self.grow_trim_snr}")


def foreground(plane: np.ndarray, labels: np.ndarray, method: str) -> np.ndarray:
    """Boolean ``(Y, X)``: ``plane`` (smoothed) above ``method``'s global threshold and
    the noise floor of the pixels ``labels`` leaves unlabelled, holes filled."""
    from skimage import filters

    threshold = float(getattr(filters, f"threshold_{method}")(plane))
    background = plane[labels == 0]
    if background.size:
        level, noise = level_and_noise(background)
        threshold = max(threshold, level + NOISE_FLOOR * noise)
    return ndi.binary_fill_holes(plane > threshold)


def contrast_to_noise(plane: np.ndarray, labels: np.ndarray) -> float:
    """How far the instances of ``labels`` stand over the background of ``plane`` (both
    ``(Y, X)``, the plane unsmoothed): the median of their pixels minus that of the
    unlabelled ones, over the sensor's noise std (:func:`~instatrack.data.normalize.noise_std`,
    which leaves a background clipped at 0 out). ``inf`` when the frame has no noise."""
    inside, outside = plane[labels > 0], plane[labels == 0]
    if not inside.size or not outside.size:
        return float("inf")
    contrast = float(np.median(inside) - np.median(outside))
    noise = noise_std(plane)
    return contrast / noise if noise > 0 else float("inf")


def grow_instances(labels: np.ndarray, plane: np.ndarray, settings: GrowSettings) -> np.ndarray:
    """``labels`` ``(Y, X)`` with each instance grown over the foreground connected to it.

    ``plane``: the frame ``(Y, X)``, one channel, any scale. Returns a new array of
    ``labels``' dtype (or ``labels`` itself when off or empty); ids are kept, none is
    added or removed; no instance pixel changes unless ``grow_trim`` (and the frame's
    contrast reaches ``grow_trim_snr``).
    """
    if not settings.grow_foreground or not labels.any():
        return labels
    from skimage.segmentation import watershed

    smooth = ndi.gaussian_filter(plane, settings.grow_sigma) if settings.grow_sigma else plane
    fg = foreground(smooth, labels, settings.grow_foreground)
    trim = settings.grow_trim and (not settings.grow_trim_snr or
                                   contrast_to_noise(plane, labels) >= settings.grow_trim_snr)
    markers = trimmed(labels, fg) if trim else labels
    return watershed(-smooth, markers=markers, mask=fg | (markers > 0)
                     ).astype(labels.dtype, copy=False)


def trimmed(labels: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """``labels`` without their pixels outside ``fg``, except the instances of which less
    than :data:`TRIM_KEEP` lies inside it (kept whole)."""
    area = np.bincount(labels.ravel())
    inside = np.bincount(labels[fg], minlength=len(area)) / np.maximum(area, 1)
    whole = inside < TRIM_KEEP
    whole[0] = True
    return np.where(fg | whole[labels], labels, 0).astype(labels.dtype, copy=False)
