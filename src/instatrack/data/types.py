"""The read-only protocol every training data source implements."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Sequence(Protocol):
    """Frames of one video, or a collection of still images.

    ``is_video`` is False for still-image collections (CVPPP, plain folders):
    then index ``t`` is image ``t``, images may differ in size and instance ids
    are per image. ``channels`` is the number of channels of :meth:`image`
    (1 for ``(Y, X)``).
    """

    name: str
    is_video: bool
    channels: int

    def __len__(self) -> int: ...

    def image(self, t: int) -> np.ndarray:
        """Raw frame ``t``: ``(Y, X)`` or ``(Y, X, C)`` in its native dtype."""
        ...

    def labels(self, t: int) -> np.ndarray | None:
        """Training labels ``(Y, X)`` int32 of frame ``t``, or None when not annotated.

        0 = background, k > 0 = instance k (ids consistent over time in a
        video), -1 = pixels without annotation (to be ignored, not background).
        """
        ...

    def frame_path(self, t: int) -> Path:
        """File of frame ``t``, for messages and for naming outputs."""
        ...


def markers(seq: Sequence, t: int) -> np.ndarray | None:
    """Frame ``t``'s tracking markers ``(Y, X)`` (one per tracked object, outlined or not),
    or None: the frame has none, or the sequence keeps none (only CTC sequences do)."""
    return seq.markers(t) if hasattr(seq, "markers") else None


def check_index(seq: Sequence, t: int) -> int:
    """``t`` as a non-negative index into ``seq``; IndexError when out of range."""
    n = len(seq)
    if not -n <= t < n:
        raise IndexError(f"{seq.name}: frame {t} out of range 0..{n - 1}")
    return t % n
