"""Small pieces cut off an object, merged back into the object they touch.

Clustering embeddings sometimes splits one object into a main part and a small
piece beside it (a rim, a lobe). The piece matches no true object, so it costs a
false detection, and it leaves its object's mask short. Measured on the
cosine-hourglass trained on SIM+ (`runs/ch-sim-big`, test frames 45–64): 79 of its
96 false objects touched a true nucleus; their median area was 128 px, where the
training nuclei's median is 760 px (docs/results.md, session 10).

:func:`merge_fragments`, every method, after the network and before the outlines
are refined and the frames linked: an object smaller than ``merge_fragments``
times the training objects' median area (``instance_area`` in the run's config),
and whose outer ring lies at least :data:`CONTACT` on one other object, takes that
object's label (the one it shares most of its ring with); a chain of pieces
ends up in the big one. An isolated small object is left alone
(``min_instance_area`` is for those), and so is a piece that touches only
background. Two daughters just after a division are each about half the median
area, above the default limit. ``merge_fragments = 0`` (the default) is off.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage as ndi

from instatrack.settings import Settings, require

#: share of a piece's one-pixel outer ring that must lie on the object it merges into
CONTACT = 0.2


@dataclasses.dataclass(frozen=True)
class FragmentSettings(Settings):
    """``merge_fragments``: objects smaller than this fraction of the training objects'
    median area that touch another object are merged into it (0 = off;
    :func:`merge_fragments`)."""

    post_processing = True
    calibration = {"merge_fragments": (0.0, 0.25)}

    merge_fragments: float = 0.0

    def check(self) -> None:
        super().check()
        require(0 <= self.merge_fragments < 1,
                f"merge_fragments must be in [0, 1) (0 = off), got {self.merge_fragments}")


def merge_fragments(labels: np.ndarray, limit: float, contact: float = CONTACT) -> np.ndarray:
    """``labels`` ``(Y, X)`` int with every object of fewer than ``limit`` pixels that
    touches another (``contact`` of its outer ring on it) relabelled as that object.

    Every decision is made on ``labels`` as given; a piece that joins another piece
    ends in the object that one joins (two pieces that choose each other join the
    larger)."""
    if limit <= 0 or not labels.any():
        return labels
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    area = dict(zip(ids.tolist(), areas.tolist(), strict=True))
    boxes = ndi.find_objects(labels)
    target: dict[int, int] = {}
    for label in (i for i in area if area[i] < limit):
        window = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in boxes[label - 1])
        part = labels[window]
        mask = part == label
        ring = ndi.binary_dilation(mask) & ~mask
        around = part[ring]
        around = around[(around > 0) & (around != label)]
        if around.size == 0:
            continue
        others, shared = np.unique(around, return_counts=True)
        if shared.max() >= contact * np.count_nonzero(ring):
            target[label] = int(others[np.argmax(shared)])
    if not target:
        return labels
    lookup = np.arange(int(labels.max()) + 1, dtype=labels.dtype)
    for label in target:
        seen, end = {label}, target[label]
        while end in target and end not in seen:  # follow the chain of pieces
            seen.add(end)
            end = target[end]
        if end in seen:  # a cycle of pieces: the largest of them stays
            end = max(seen, key=lambda i: (area[i], i))
        lookup[label] = end
    out = labels.copy()
    inside = out > 0
    out[inside] = lookup[out[inside]]
    return out


def merged(windows, settings, instance_area: tuple[float, float]):
    """``windows`` (the method's, labels ``(T, Y, X)``) with each frame's fragments merged,
    or ``windows`` itself when ``settings.merge_fragments`` is 0."""
    limit = settings.merge_fragments * instance_area[1]
    if limit <= 0:
        return windows
    return (dataclasses.replace(w, labels=np.stack([merge_fragments(f, limit) for f in w.labels]))
            for w in windows)
