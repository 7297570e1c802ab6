"""The contract every method implements, and what its inference yields.

A method wires one model, one loss and one post-processing behind this small
interface; the training loop (:mod:`instatrack.train`), the user facade
(:mod:`instatrack.api`) and the CLI know only this interface.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from instatrack.config import TrainConfig

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass
class Window:
    """Instances found in ``W`` consecutive frames starting at frame ``start``.

    ``labels`` is ``(W, Y, X)`` int32, 0 = background. Labels are consistent
    inside a window (the same object has the same label in each of its frames).
    Consecutive windows may overlap (the cosine method clusters frame pairs,
    ``W = 2``, stepping by one) or follow each other (``W = 1``). When
    ``tracked`` is true the labels already carry identities across windows
    (e.g. semi-supervised propagation) and the linker keeps them.
    """

    start: int
    labels: np.ndarray
    tracked: bool = False

    @property
    def stop(self) -> int:
        return self.start + len(self.labels)


class Method(abc.ABC):
    """One paper's method: model factory, training loss and inference.

    Subclasses set ``name`` (the CLI's ``--method``), ``config_cls`` and
    ``temporal`` (True when the network carries state across frames and
    trains on clips of ``clip_len`` frames).
    """

    name: ClassVar[str]
    config_cls: ClassVar[type[TrainConfig]]
    temporal: ClassVar[bool] = False

    def __init__(self, config: TrainConfig):
        if not isinstance(config, self.config_cls):
            raise TypeError(f"{self.name} needs a {self.config_cls.__name__}")
        self.config = config

    @abc.abstractmethod
    def build_model(self) -> torch.nn.Module:
        """A fresh, randomly initialised network for ``self.config``."""

    def initialise(self, model: torch.nn.Module) -> None:
        """Prepare a fresh model before training starts (e.g. load pretrained weights).

        Called by the training loop only, never when a trained run is loaded
        (its weights file already holds everything). The default does nothing.
        """
        return None

    @abc.abstractmethod
    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss of one batch.

        ``batch["image"]``: ``(B, T, C, Y, X)`` float32, normalised.
        ``batch["labels"]``: ``(B, T, Y, X)`` int64; 0 = background, > 0 = an
        instance whose id is consistent across the clip, -1 = not annotated
        (ignored by the loss). Returns the scalar loss and named parts for logging.
        """

    @abc.abstractmethod
    def predict(self, model: torch.nn.Module, frames: Iterable[np.ndarray],
                device: torch.device | str = "cpu",
                first_masks: np.ndarray | None = None) -> Iterator[Window]:
        """Stream ``Window`` objects for a sequence of frames.

        ``frames`` yields normalised ``(C, Y, X)`` float32 arrays, one per
        frame, in order; memory must not grow with the number of frames.
        ``first_masks`` (``(Y, X)`` labels of frame 0) is used by
        semi-supervised methods and ignored by the others.
        """

    def config_summary(self) -> str:
        return f"{self.name}: {self.config}"
