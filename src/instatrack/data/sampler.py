"""Random training clips: consecutive frames, a crop biased towards objects, augmentation.

Frames are normalised once and kept in memory (training datasets are small),
so drawing a clip costs only the crop and the augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import Any

import numpy as np

from instatrack.data.augment import AcquisitionSettings, Augmenter
from instatrack.data.normalize import PERCENTILES, Norm
from instatrack.data.types import Sequence
from instatrack.errors import DataError
from instatrack.labels import weighted_percentile

#: default probability that a crop is centred near an object instead of anywhere
OBJECT_BIAS = 0.9
#: crops are taken this much larger before warping augmentations, then centre-cropped back
WARP_MARGIN = 1.5


class ClipSampler:
    """Draws ``dict(image=(T, C, Y, X) float32, labels=(T, Y, X) int64)`` training clips.

    ``T = clip_len`` consecutive frames of a video (``T = 1`` for still-image
    sequences), only from frame indices inside ``frames`` (a slice applied to
    each sequence), never a clip without any annotated frame; frames without
    annotation inside a clip are all -1. ``crop`` is ``(Y, X)``; smaller images
    are padded (image reflected, labels -1). Instance ids are renumbered
    ``1..K`` per clip, consistently across its frames. Deterministic per
    ``seed``; :meth:`state` / :meth:`set_state` let training resume exactly.
    ``groups`` (the dataset of each sequence) and ``balance`` weigh datasets: 0 draws
    every clip alike (a dataset counts by its clips), 1 every dataset alike;
    ``weights`` (one per dataset index of ``groups``), when given, are the datasets'
    shares of the clips instead. ``share`` ``(dataset, fraction)`` gives one dataset that
    fraction of the clips, the others the rest as above. ``frames`` may be one slice per
    sequence.
    With warp augmentation a crop reaches the image border only when
    ``reach_border`` is set (see :class:`~instatrack.config.TrainConfig`).
    ``acquisition`` sets the intensity augmentation (default: the robust recipe).
    """

    def __init__(self, sequences: Seq[Sequence], clip_len: int = 1,
                 crop: tuple[int, int] = (128, 128), frames: slice | None = None,
                 augment: bool = True, norm: Norm = PERCENTILES, seed: int = 0,
                 object_bias: float = OBJECT_BIAS, reach_border: bool = False,
                 acquisition: AcquisitionSettings | None = None,
                 groups: Seq[int] | None = None, balance: float = 0.0,
                 weights: Seq[float] | None = None,
                 share: tuple[int, float] | None = None):
        if clip_len < 1 or len(crop) != 2 or min(crop) < 1:
            raise ValueError(f"need clip_len >= 1 and a crop of two sizes >= 1, got "
                             f"{clip_len}, {crop}")
        if not 0 <= object_bias <= 1:
            raise ValueError(f"object_bias must be in [0, 1], got {object_bias}")
        self.object_bias = object_bias
        self.reach_border = reach_border
        self.sequences = list(sequences)
        self.clip_len, self.crop, self.norm = clip_len, tuple(int(c) for c in crop), norm
        self.rng = np.random.default_rng(seed)
        self.augmenter = Augmenter(self.rng, acquisition=acquisition, norm=norm) if augment \
            else None
        self._images: dict[tuple[int, int], np.ndarray] = {}
        self._labels: dict[tuple[int, int], np.ndarray | None] = {}
        self._centres: dict[tuple[int, int], np.ndarray] = {}
        self.clips = self._find_clips(frames)
        self._compact_ids()
        if not len(self.clips):
            names = ", ".join(s.name for s in self.sequences) or "no sequences"
            raise DataError(f"{names}: no annotated clip of {clip_len} frame(s) within frames "
                            f"{_slice_text(frames)}")
        self._weighing = (groups, balance, weights)  # of the datasets, without the share
        self.clip_p = _clip_probabilities(self.clips[:, 0], groups, balance, weights, share)

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The random generator's state (a plain dict), for checkpoints."""
        return self.rng.bit_generator.state

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state

    def instance_areas(self, sequences: Seq[int] | None = None) -> tuple[float, float]:
        """(10th percentile, median) area in pixels of the training instances (of the
        ``sequences`` at these indices only, if given); (0, 0) if none.

        When datasets are weighted (``balance``, ``weights``), each frame's own
        (10th percentile, median) counts as often as training draws the frame: the size
        recorded is that of the clips the network saw most (a 15 % share of frames
        crowded with small synthetic nuclei does not set it, however many they hold)."""
        areas = {}  # (sequence, frame) -> the areas of its instances
        chosen = None if sequences is None else set(sequences)
        for key, labels in self._labels.items():
            if chosen is not None and key[0] not in chosen:
                continue
            if labels is not None and (labels > 0).any():
                counts = np.bincount(labels[labels > 0].ravel())
                areas[key] = counts[counts > 0]
        if not areas:
            return (0.0, 0.0)
        frame_weight = self._frame_weights(chosen)
        if frame_weight:
            weights = np.array([frame_weight.get(key, 0.0) for key in areas])
            return tuple(round(weighted_percentile(
                np.array([np.percentile(a, q) for a in areas.values()]), weights, 50), 1)
                for q in (10, 50))
        pooled = np.concatenate(list(areas.values()))
        return (round(float(np.percentile(pooled, 10)), 1), round(float(np.median(pooled)), 1))

    def _frame_weights(self, sequences: set[int] | None = None) -> dict[tuple[int, int], float]:
        """How often each ``(sequence, frame)`` is drawn, when datasets are weighted (among
        the clips of ``sequences`` alone, if given, as if there were no others)."""
        clips, clip_p = self.clips, self.clip_p
        if sequences is not None:
            clips = clips[np.isin(clips[:, 0], sorted(sequences))]
            clip_p = _clip_probabilities(clips[:, 0], *self._weighing)
        if clip_p is None:
            return {}
        weight: dict[tuple[int, int], float] = {}
        for (s, t0, length), p in zip(clips.tolist(), clip_p.tolist(), strict=True):
            for t in range(t0, t0 + length):
                weight[(s, t)] = weight.get((s, t), 0.0) + p / length
        return weight

    # -- clips ---------------------------------------------------------------------------------
    def _find_clips(self, frames: slice | Seq[slice] | None) -> np.ndarray:
        """Rows ``(sequence, first frame, length)`` of every clip with at least one annotation
        (within ``frames``: one slice for all sequences or one each)."""
        rows = []
        for s, seq in enumerate(self.sequences):
            within = frames[s] if isinstance(frames, (list, tuple)) else frames
            allowed = list(range(len(seq)))[within or slice(None)]
            annotated = np.array([self._label(s, t) is not None for t in allowed], bool)
            length = self.clip_len if seq.is_video else 1
            for i in range(len(allowed) - length + 1):
                span = allowed[i:i + length]
                if span[-1] - span[0] == length - 1 and annotated[i:i + length].any():
                    rows.append((s, span[0], length))
        return np.array(rows, np.int64).reshape(-1, 3)

    def _compact_ids(self) -> None:
        """Renumber each sequence's ids to ``1..K`` once, so clips renumber in linear time."""
        for s in range(len(self.sequences)):
            keys = [k for k, v in self._labels.items() if k[0] == s and v is not None]
            if not keys:
                continue
            ids = np.unique(np.concatenate([np.unique(self._labels[k]) for k in keys]))
            positive = ids[ids > 0]
            for key in keys:
                labels = self._labels[key]
                rank = np.searchsorted(positive, labels) + 1
                self._labels[key] = np.where(labels > 0, rank, labels).astype(np.int32)

    def _label(self, s: int, t: int) -> np.ndarray | None:
        key = (s, t)
        if key not in self._labels:
            labels = self.sequences[s].labels(t)
            self._labels[key] = None if labels is None else np.asarray(labels, np.int32)
        return self._labels[key]

    def _image(self, s: int, t: int) -> np.ndarray:
        key = (s, t)
        if key not in self._images:
            seq = self.sequences[s]
            self._images[key] = self.norm(seq.image(t), name=str(seq.frame_path(t)))
        return self._images[key]

    def _object_centres(self, s: int, t: int) -> np.ndarray:
        """Centroids ``(K, 2)`` of the instances of frame ``t`` (empty when unannotated)."""
        key = (s, t)
        if key not in self._centres:
            labels = self._label(s, t)
            centres = np.zeros((0, 2))
            if labels is not None and (labels > 0).any():
                ids, compact = np.unique(np.maximum(labels, 0), return_inverse=True)
                compact = compact.reshape(labels.shape)
                yy, xx = np.indices(labels.shape)
                count = np.bincount(compact.ravel())
                centres = np.stack([np.bincount(compact.ravel(), yy.ravel()) / count,
                                    np.bincount(compact.ravel(), xx.ravel()) / count], 1)
                centres = centres[ids > 0]
            self._centres[key] = centres
        return self._centres[key]

    # -- sampling ------------------------------------------------------------------------------
    def sample(self) -> dict[str, np.ndarray]:
        """One random clip: ``image`` ``(T, C, Y, X)`` float32, ``labels`` ``(T, Y, X)`` int64."""
        s, start, length = self.clips[self._pick()]
        times = range(int(start), int(start + length))
        frames = [self._image(s, t) for t in times]
        shape = frames[0].shape[-2:]
        # Warps need a wider window. With ``reach_border`` the crop is placed inside
        # the image first and widened afterwards (reflected image, labels -1 beyond the
        # border); otherwise the widened window is placed inside the image, which keeps
        # a band of (WARP_MARGIN - 1) / 2 crops along every border out of training.
        size = self.crop
        if self.augmenter is not None and self.augmenter.warps:
            size = tuple(int(np.ceil(c * WARP_MARGIN)) for c in self.crop)
        origin = self._crop_origin(s, times, shape, self.crop if self.reach_border else size)
        if self.reach_border:
            origin = tuple(o - (m - c) // 2 for o, m, c in zip(origin, size, self.crop,
                                                               strict=True))
        # crop frame by frame: stacking whole frames first cost more than the crop
        image = np.stack([_crop(frame, origin, size, "reflect") for frame in frames])
        labels = np.stack([_crop(self._label_or_unknown(s, t, shape), origin, size, -1)
                           for t in times])
        if self.augmenter is not None:
            image, labels = self.augmenter(image, labels)
            image, labels = _centre_crop(image, self.crop), _centre_crop(labels, self.crop)
        return {"image": np.ascontiguousarray(image, np.float32),
                "labels": _renumber(labels)}

    def _pick(self) -> int:
        """Index of a random clip (weighted by dataset when ``balance`` asks for it)."""
        if self.clip_p is None:
            return int(self.rng.integers(len(self.clips)))
        return int(self.rng.choice(len(self.clips), p=self.clip_p))

    def _label_or_unknown(self, s: int, t: int, shape: tuple[int, ...]) -> np.ndarray:
        labels = self._label(s, t)
        if labels is None:
            return np.full(shape, -1, np.int32)
        if labels.shape != tuple(shape):
            raise DataError(f"{self.sequences[s].frame_path(t)}: labels {labels.shape} and "
                            f"image {tuple(shape)} differ in shape")
        return labels

    def _crop_origin(self, s: int, times: range, shape: tuple[int, ...],
                     size: tuple[int, ...]) -> tuple[int, int]:
        """Top-left corner of the crop (may be negative when the image is smaller)."""
        centres = np.concatenate([self._object_centres(s, t) for t in times])
        if len(centres) and self.rng.random() < self.object_bias:
            centre = centres[self.rng.integers(len(centres))]
            jitter = self.rng.uniform(-0.25, 0.25, 2) * np.asarray(size)
            wanted = np.round(centre + jitter - np.asarray(size) / 2).astype(int)
        else:
            wanted = np.array([self.rng.integers(0, max(n - c, 0) + 1)
                               for n, c in zip(shape, size, strict=True)])
        origin = []
        for want, n, c in zip(wanted.tolist(), shape, size, strict=True):
            if n >= c:
                origin.append(int(np.clip(want, 0, n - c)))
            else:  # the image fits inside the crop: place it at random
                origin.append(-int(self.rng.integers(0, c - n + 1)))
        return origin[0], origin[1]


def _clip_probabilities(sequence_of_clip: np.ndarray, groups: Seq[int] | None,
                        balance: float, weights: Seq[float] | None = None,
                        share: tuple[int, float] | None = None) -> np.ndarray | None:
    """Probability of each clip when a dataset of ``n`` clips is drawn with a weight
    ``n ** (1 - balance)``, or ``weights[d]`` for dataset ``d`` when ``weights`` is given
    (``groups[s]``: the dataset of sequence ``s``), then a clip within it uniformly;
    ``share`` ``(d, f)``: dataset ``d`` is drawn with probability ``f`` and the others
    share ``1 - f`` by their weights (``weights`` then need not name ``d``).
    None (every clip alike) at ``balance=0`` without weights or share, or with one dataset."""
    if not 0 <= balance <= 1:
        raise ValueError(f"balance must be in [0, 1], got {balance}")
    if groups is None or (balance == 0 and not weights and share is None):
        return None
    group = np.asarray(groups, np.int64)[sequence_of_clip]
    names, group, counts = np.unique(group, return_inverse=True, return_counts=True)
    if len(names) < 2:
        return None
    shared = np.zeros(len(names), bool) if share is None else names == share[0]
    if weights:
        if max(names[~shared]) >= len(weights):
            raise ValueError(f"{len(weights)} weight(s) for datasets 0..{max(names[~shared])}")
        weight = np.zeros(len(names))
        weight[~shared] = np.asarray(weights, float)[names[~shared]]
        if weight.sum() <= 0:
            raise ValueError(f"the datasets with clips all weigh 0: {list(weights)}")
    else:
        weight = counts.astype(float) ** (1 - balance)
    if shared.any():
        weight[~shared] *= (1 - share[1]) / weight[~shared].sum()
        weight[shared] = share[1]
    p = (weight / weight.sum() / counts)[group]
    return p / p.sum()


def _crop(array: np.ndarray, origin: tuple[int, int], size: tuple[int, ...],
          fill: str | int) -> np.ndarray:
    """Window ``size`` at ``origin`` of the last two axes, padding outside the array."""
    (y, x), (h, w) = origin, size
    ny, nx = array.shape[-2:]
    inner = array[..., max(y, 0):min(y + h, ny), max(x, 0):min(x + w, nx)]
    pads = [(max(-y, 0), max(y + h - ny, 0)), (max(-x, 0), max(x + w - nx, 0))]
    if not any(p for pair in pads for p in pair):
        return inner.copy()
    pads = [(0, 0)] * (array.ndim - 2) + pads
    if fill == "reflect":
        return np.pad(inner, pads, mode="reflect" if min(inner.shape[-2:]) > 1 else "edge")
    return np.pad(inner, pads, mode="constant", constant_values=fill)


def _centre_crop(array: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    ny, nx = array.shape[-2:]
    y, x = (ny - size[0]) // 2, (nx - size[1]) // 2
    return array[..., y:y + size[0], x:x + size[1]]


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Ids ``> 0`` -> ``1..K`` (consistently over the clip); 0 and -1 unchanged; int64."""
    labels = labels.astype(np.int64)
    top = int(labels.max(initial=0))
    if top <= 0:
        return labels
    present = np.zeros(top + 1, bool)
    present[labels[labels > 0]] = True
    rank = np.cumsum(present)
    return np.where(labels > 0, rank[np.maximum(labels, 0)], labels)


def _slice_text(frames: slice | Seq[slice] | None) -> str:
    if isinstance(frames, (list, tuple)):
        return ", ".join(sorted({_slice_text(f) for f in frames}))
    if frames is None:
        return ":"
    return f"{'' if frames.start is None else frames.start}:" \
           f"{'' if frames.stop is None else frames.stop}"
