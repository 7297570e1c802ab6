"""Touching objects with no darker seam between them, merged (``merge_seams``).

A model that learnt round nuclei cuts a cell of another shape into pieces: on MSC's
spread, elongated stem cells (which ``nuclei-ch`` never saw), the calibrated model's
false objects on test frames 36–47 were 28 cell-sized pieces beside the cells they came
from, where the classical pipeline left 8 (docs/results.md, session 25). The pieces of
one cell touch along a line as bright as the cell: no valley between them. Two touching
nuclei usually meet in a valley, darker than both. Measured on touching pairs of found
objects (the seam's mean intensity over the frame's background, divided by that of the
dimmer object's median; scratch script in the session's notes): pieces of one MSC cell
0.86–1.46, and a cell with a piece of the background beside it up to 11; two true
nuclei touching, GOWT1 (``nuclei-se``) 0.78–1.11, SIM+ (``nuclei-ch``) 0.30–1.50 with
most below 1.0 (SIM+'s simulated nuclei sometimes meet without a valley).

:func:`merge_seams`, every method, in :func:`~instatrack.api.finish_frame` after the
growth (which makes pieces touch) and before the faint objects are dropped: two
touching objects that share at least :data:`MIN_SEAM` pixel edges, and along whose
shared border the frame (smoothed by :data:`SEAM_SIGMA` pixels) stands over the
background at least ``merge_seams`` times the dimmer object's median, become one
(chains too; the largest keeps its id). Like the contrast filters the ratio does not
change with gain or dimming. Whether a dataset's touching objects are pieces or pairs
is its own, so calibration tries it (1.2 and 1.5) and ``0`` (the default) is off.
Objects are assumed brighter than the background (fluorescence).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage as ndi

from instatrack.settings import Settings, require

#: Gaussian sigma (pixels) of the smoothing before the seam and the objects are measured
SEAM_SIGMA = 1.0
#: pixel edges two objects must share: a shorter seam is a corner, its mean mostly noise
#: (the pieces of an elongated cell meet across an arm, a short part of their outlines)
MIN_SEAM = 8


@dataclasses.dataclass(frozen=True)
class SeamSettings(Settings):
    """``merge_seams``: two touching objects whose shared border stands over the
    background at least this many times the dimmer one's median are merged (0 = off;
    :func:`merge_seams`)."""

    post_processing = True
    # a stage that acts on the finished objects: tried alone on the best combination
    calibration_last = {"merge_seams": (1.2, 1.5)}

    merge_seams: float = 0.0

    def check(self) -> None:
        super().check()
        require(self.merge_seams >= 0,
                f"merge_seams must be >= 0 (0 = off), got {self.merge_seams}")


def _contacts(labels: np.ndarray, plane: np.ndarray):
    """``(pairs (N, 2), edges (N,), seam sum (N,))`` over 4-neighbour edges between two
    different objects: each pair once (smaller id first), the number of such edges and
    the sum of the mean intensity of each edge's two pixels."""
    keys, values = [], []
    for a, b, va, vb in ((labels[:, :-1], labels[:, 1:], plane[:, :-1], plane[:, 1:]),
                         (labels[:-1], labels[1:], plane[:-1], plane[1:])):
        edge = (a != b) & (a > 0) & (b > 0)
        lo, hi = np.minimum(a[edge], b[edge]), np.maximum(a[edge], b[edge])
        keys.append(np.stack([lo, hi], 1))
        values.append((va[edge] + vb[edge]) / 2)
    keys, values = np.concatenate(keys), np.concatenate(values)
    if not len(keys):
        return np.zeros((0, 2), np.int64), np.zeros(0), np.zeros(0)
    pairs, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return (pairs, np.bincount(inverse, minlength=len(pairs)),
            np.bincount(inverse, values, minlength=len(pairs)))


def merge_seams(labels: np.ndarray, plane: np.ndarray, ratio: float) -> np.ndarray:
    """``labels`` ``(Y, X)`` with touching objects that meet without a darker seam merged
    (see the module); ``plane``: the frame ``(Y, X)``. ``ratio`` 0 returns ``labels``."""
    if ratio <= 0 or labels.max() == 0 or not (labels == 0).any():
        return labels
    smooth = ndi.gaussian_filter(np.asarray(plane, np.float32), SEAM_SIGMA)
    pairs, edges, seam = _contacts(labels, smooth)
    if not len(pairs):
        return labels
    background = float(np.median(smooth[labels == 0]))
    ids = np.unique(labels[labels > 0])
    index = {int(i): k for k, i in enumerate(ids)}
    level = np.asarray(ndi.median(smooth, labels, ids), np.float64).reshape(-1) - background
    area = np.asarray(ndi.sum_labels(np.ones_like(labels), labels, ids)).reshape(-1)
    parent = {int(i): int(i) for i in ids}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for (a, b), n, total in zip(pairs.tolist(), edges, seam, strict=True):
        ka, kb = index[a], index[b]
        dim = min(level[ka], level[kb])
        if dim <= 0 or n < MIN_SEAM:
            continue
        if total / n - background >= ratio * dim:
            ra, rb = root(a), root(b)
            if ra != rb:  # the larger object's id survives
                keep, gone = (ra, rb) if area[index[ra]] >= area[index[rb]] else (rb, ra)
                parent[gone] = keep
    lookup = np.arange(int(labels.max()) + 1, dtype=labels.dtype)
    for i in parent:
        lookup[i] = root(i)
    return lookup[labels]
