"""The contract every method implements, and what its inference yields.

A method wires one model, one loss and one post-processing behind this small
interface; the training loop (:mod:`instatrack.train`), the user facade
(:mod:`instatrack.api`) and the CLI know only this interface.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from instatrack.config import TrainConfig
from instatrack.errors import DataError
from instatrack.settings import Settings

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass(frozen=True)
class FlipAveraging(Settings):
    """Test-time augmentation: with ``tta`` the network also sees the input flipped (left-
    right, up-down, both; spatial-embedding also the transposes of square frames), and
    its outputs, mapped back, are combined before clustering: spatial-embedding averages
    them, cosine-hourglass joins the embeddings. 4-8x the network's inference time.
    Calibration tries it last, on the values chosen without it: it helped the shipped
    ``nuclei-ch`` on some unseen data and not on other (docs/results.md, session 28)."""

    post_processing = True
    calibration_last: ClassVar[dict[str, tuple]] = {"tta": (True,)}

    tta: bool = False


@dataclasses.dataclass(frozen=True)
class InferencePrecision(Settings):
    """``infer_bfloat16``: run the network under bfloat16 autocast at inference where it
    has kernels (a GPU, or a CPU with AVX-512 BF16 or AMX): 1.8x faster on such a CPU
    (docs/benchmarks.md), but the objects it finds are not float32's, and the clustering
    turns small differences of embedding into other objects. Off (the default), inference
    runs in float32 on every machine, whether or not it has the kernels, so results do not
    change with the CPU's instruction set: the shipped ``nuclei-ch`` scored 0.635 in
    bfloat16 against 0.669 in float32 ((SEG+DET)/2, MSC 02 frames 24-29, the same
    calibration on the same machine; docs/results.md, session 49). Training has its own
    switch (``amp``)."""

    post_processing = True

    infer_bfloat16: bool = False


#: the flips of test-time augmentation (:class:`FlipAveraging`), as axes of ``torch.flip``:
#: as it comes, left-right, up-down, both
FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


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

    Subclasses set ``name`` (the CLI's ``--method``, as registered in
    :data:`instatrack.methods.REGISTRY`), ``config_cls``, ``temporal`` (True
    when the network carries state across frames and trains on clips of
    ``clip_len`` frames), ``needs_first_masks`` (semi-supervised: ``predict``
    follows the objects of frame 0), ``demo_steps`` (training steps enough for
    a visible result in ``instatrack demo``), ``scene_crops`` (0, or: a frame larger
    than this many training crops is another scene to the network, and validation and
    calibration run it in tiles of the crop size, :func:`instatrack.tiling.scene_tiled`)
    and ``ensembles`` (``predict`` takes an :class:`~instatrack.models.ensemble.Ensemble`
    of networks and combines their outputs).
    """

    name: ClassVar[str]
    config_cls: ClassVar[type[TrainConfig]]
    temporal: ClassVar[bool] = False
    needs_first_masks: ClassVar[bool] = False
    demo_steps: ClassVar[int] = 400
    scene_crops: ClassVar[float] = 0
    ensembles: ClassVar[bool] = False

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

    # -- helpers every method may use -----------------------------------------------------
    def frame_tensor(self, frame: np.ndarray, t: int, device: torch.device | str
                     ) -> torch.Tensor:
        """Check a normalised ``(C, Y, X)`` frame; return it as ``(1, C, Y, X)`` float32 on
        ``device``. Raises :class:`DataError` naming frame ``t`` for a wrong shape or
        non-finite values."""
        import torch

        frame = np.asarray(frame)
        channels = self.config.in_channels
        if frame.ndim != 3 or frame.shape[0] != channels or min(frame.shape[1:], default=0) < 1:
            raise DataError(f"frame {t}: expected shape ({channels}, Y, X) of a normalised "
                            f"image, got {frame.shape}")
        if not np.isfinite(frame).all():
            raise DataError(f"frame {t}: contains NaN or infinite values")
        return torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32))[None].to(device)


class PerFrameMethod(Method):
    """A method that segments every frame on its own; the shared tracker links the frames.

    Subclasses implement :meth:`segment_frame`; ``predict`` yields one
    ``Window(t, labels[None])`` per frame.
    """

    temporal: ClassVar[bool] = False

    @abc.abstractmethod
    def segment_frame(self, net: torch.nn.Module, image: torch.Tensor) -> np.ndarray:
        """``(Y, X)`` int32 labels of one ``(1, C, Y, X)`` image on the network's device."""

    def predict(self, model: torch.nn.Module, frames: Iterable[np.ndarray],
                device: torch.device | str = "cpu",
                first_masks: np.ndarray | None = None) -> Iterator[Window]:
        """One ``Window(t, labels (1, Y, X) int32)`` per ``(C, Y, X)`` frame."""
        import torch

        net = unwrap(model)
        net.eval()
        for t, frame in enumerate(frames):
            image = self.frame_tensor(frame, t, device)
            with torch.inference_mode():
                labels = self.segment_frame(net, image)
            yield Window(t, labels[None])


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model behind a ``torch.compile`` wrapper (the model itself otherwise)."""
    return getattr(model, "_orig_mod", model)


def uses_amp(config, device: torch.device) -> bool:
    """Whether the network runs under bfloat16 autocast (``config.amp``): on CUDA, or on a
    CPU whose oneDNN has bfloat16 kernels (AVX-512 or AMX) unless the method opts out
    (``cpu_amp``); plain float32 elsewhere. Training steps use it; inference asks
    :class:`InferencePrecision` instead (:func:`with_precision`)."""
    return config.amp and (config.cpu_amp or device.type != "cpu") and bf16_kernels(device)


def bf16_kernels(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 fast: CUDA, or a CPU whose oneDNN has the kernels."""
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())


def with_precision(model: torch.nn.Module, config, device: torch.device,
                   inference: bool = False) -> tuple[torch.nn.Module, bool]:
    """``(model, whether it runs under bfloat16 autocast)``: in training as
    :func:`uses_amp` says, at ``inference`` only where the config asks for it
    (:class:`InferencePrecision`) and the device has the kernels; on a CPU that does, the
    weights go channels-last, the layout oneDNN's bfloat16 convolutions are fastest on."""
    import torch

    amp = (config.infer_bfloat16 and bf16_kernels(device) if inference
           else uses_amp(config, device))
    if amp and device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return model, amp


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU's oneDNN has bfloat16 kernels (asked once per process)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
