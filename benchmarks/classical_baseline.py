"""A learning-free baseline: smoothing, a global threshold, distance-transform
watershed, and the project's own IoU linker. Used by ``ctc_accuracy.py
--method classical`` to score the same held-out frames as the learned methods.

Its settings can be chosen on the validation frames like the learned methods'
post-processing (``--tune threshold=li,otsu --tune footprint=9,40 ...``), so
that the reference is tuned per dataset the same honest way:

``sigma``
    Gaussian smoothing before thresholding (pixels).
``threshold``
    ``li``, ``otsu`` or ``triangle`` (scikit-image's global thresholds).
``footprint``
    minimum distance between watershed seeds (pixels); larger cuts less.
``min_instance_area`` (default 30 here)
    objects smaller than this are dropped (pixels); the key was ``min_area``.

and every tracker setting, as for the learned methods (e.g. ``link_max_distance``,
``min_track_length``: :class:`~instatrack.track.rules.TrackSettings`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage
from skimage import filters, measure, segmentation
from skimage.feature import peak_local_max

from instatrack.config import ConfigError, parse_overrides, require
from instatrack.data.normalize import normalize
from instatrack.labels import remove_small
from instatrack.methods.base import Window
from instatrack.track.rules import TrackSettings

THRESHOLDS = {"li": filters.threshold_li, "otsu": filters.threshold_otsu,
              "triangle": filters.threshold_triangle}


@dataclasses.dataclass(frozen=True)
class ClassicalSettings(TrackSettings):
    """The segmentation's settings and the tracker's (see the module docstring).

    Li's threshold beat Otsu's and the triangle method on SIM+ frames 45, 55, 64
    (SEG 0.83 against 0.41 and 0.81), hence the default.
    """

    sigma: float = 2.0
    threshold: str = "li"
    footprint: int = 9
    min_instance_area: int = 30

    def check(self) -> None:
        super().check()
        require(self.threshold in THRESHOLDS,
                f"threshold must be one of {', '.join(THRESHOLDS)}, got {self.threshold!r}")


def parse_settings(settings=()) -> ClassicalSettings:
    """``["key=value", ...]`` -> :class:`ClassicalSettings`; exits naming a bad key or value."""
    try:
        return ClassicalSettings.from_dict(parse_overrides(settings), where="classical")
    except ConfigError as err:
        raise SystemExit(f"classical: {err}") from None


def segment_classical(image: np.ndarray, settings: ClassicalSettings) -> np.ndarray:
    """``(Y, X)`` labels of one fluorescence frame."""
    smooth = filters.gaussian(normalize(image).mean(0), settings.sigma)
    mask = ndimage.binary_fill_holes(smooth > THRESHOLDS[settings.threshold](smooth))
    distance = ndimage.distance_transform_edt(mask)
    distance = filters.gaussian(distance, 1.0)
    peaks = peak_local_max(distance, min_distance=settings.footprint, labels=measure.label(mask),
                           exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = segmentation.watershed(-distance, markers, mask=mask)
    return remove_small(labels.astype(np.int32), settings.min_instance_area)


def track_classical(frames, settings=()):
    """``(labels (T, Y, X), graph)`` for a list of raw frames; ``settings`` as for ``--tune``."""
    from instatrack.track.link import Tracker

    params = parse_settings(settings)
    tracker = Tracker(params)
    out = {}
    for t, frame in enumerate(frames):
        for k, labels in tracker.push(Window(t, segment_classical(frame, params)[None])):
            out[k] = labels
    for k, labels in tracker.finish():
        out[k] = labels
    return np.stack([out[k] for k in sorted(out)]), tracker.graph
