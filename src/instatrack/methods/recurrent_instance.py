"""Recurrent instance segmentation (Romera-Paredes & Torr, ECCV 2016).

An FCN encodes the image once; a two-layer ConvLSTM then emits one object per
step (mask + confidence) while a spatial memory of the masks already emitted
keeps it from repeating itself. Training matches steps to ground-truth
instances with the Hungarian algorithm on soft IoU and confidence
(:mod:`instatrack.losses.hungarian_iou`); inference runs until the confidence
drops below a threshold and optionally sharpens the masks with a dense CRF
(:mod:`instatrack.cluster.crf`).

Curriculum (as in the published code): the number of recurrent steps per
training image is capped, starting at ``curriculum_steps`` and growing
linearly to ``max_steps`` over the first ``curriculum_fraction`` of training;
while the cap is below the number of instances every step is matched, so the
net first learns to find *some* objects and only later when to stop. The
current training step is a buffer of the model (saved with the weights).

The method is per frame (``temporal = False``): ``predict`` yields one
``Window(t, labels[None])`` per frame and the shared tracker links them.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, ClassVar

import numpy as np
import torch

from instatrack.cluster.crf import CRFParams, crf_refine, labels_from_masks
from instatrack.config import TrainConfig
from instatrack.errors import DataWarning
from instatrack.losses.hungarian_iou import HungarianIoULoss
from instatrack.methods.base import PerFrameMethod, unwrap
from instatrack.models.recurrent_instance import RecurrentInstanceNet
from instatrack.settings import Settings, require


@dataclasses.dataclass(frozen=True)
class StoppingRule(Settings):
    """When inference stops emitting instances (``confidence_threshold``) and which
    pixels of a mask probability map belong to it (``mask_threshold``)."""

    post_processing = True

    confidence_threshold: float = 0.5
    mask_threshold: float = 0.5

    def check(self) -> None:
        super().check()
        for name in ("confidence_threshold", "mask_threshold"):
            value = getattr(self, name)
            require(0 < value < 1, f"{name} must be in (0, 1), got {value}")


@dataclasses.dataclass(frozen=True)
class RecurrentInstanceConfig(TrainConfig, StoppingRule, CRFParams):
    """Model, loss and curriculum; post-processing (stopping, CRF) in the bases."""

    # model
    encoder_channels: tuple[int, ...] = (16, 32, 32)
    encoder_convs: int = 2
    encoder_context: int = 0
    hidden: int = 32
    lstm_layers: int = 2
    lstm_kernel: int = 3
    input_scale: float = 1.0
    coords: bool = True
    confidence_bias: float = 3.0
    confidence_grad: float = 1.0
    # loss and curriculum
    loss_lambda: float = 1.0
    ordered_matching: bool = True
    max_steps: int = 20
    extra_steps: int = 2
    curriculum_steps: int = 2
    curriculum_fraction: float = 0.3

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # ~17 min on one CPU core for 128 px synthetic leaves; lambda 0.3, as with 1 the
        # training stalled once the stop targets appeared (docs/methods.md)
        "fast": {
            "crop": (128, 128), "batch_size": 4, "steps": 1000, "lr": 1e-3, "lr_final": 1e-4,
            "encoder_channels": (16, 32, 32), "encoder_context": 2, "hidden": 32,
            "loss_lambda": 0.3, "max_steps": 20, "curriculum_steps": 2,
            "curriculum_fraction": 0.5,
            "log_every": 25, "val_every": 250, "ckpt_every": 250,
        },
        # Published configuration (CVPPP A1 leaves): RGB images of 530 x 500 downsampled
        # five times, four 3x3 conv layers of 30 channels, a 2-layer ConvLSTM of 30
        # channels with 3x3 filters, lambda = 1, one non-object step, at most 40 steps,
        # Adam at a constant 1e-4, one image per step (random flips and rotations), gradients
        # clipped at 5 (element-wise there, by norm here), then a CRF.
        "paper": {
            "in_channels": 3, "crop": (530, 500), "batch_size": 1, "steps": 100000,
            "lr": 1e-4, "lr_final": 1e-4, "grad_clip": 5.0, "augment": True,
            "encoder_channels": (30,), "encoder_convs": 4, "hidden": 30, "lstm_layers": 2,
            "lstm_kernel": 3, "input_scale": 0.2, "coords": False, "confidence_bias": 10.0,
            "loss_lambda": 1.0, "ordered_matching": True, "max_steps": 40, "extra_steps": 1,
            "curriculum_steps": 2, "curriculum_fraction": 0.3, "crf": True,
        },
    }

    def check(self) -> None:
        super().check()
        require(len(self.encoder_channels) >= 1 and min(self.encoder_channels) > 0,
                f"encoder_channels must be one or more sizes > 0, got {self.encoder_channels}")
        for name in ("encoder_convs", "hidden", "lstm_layers", "max_steps", "extra_steps",
                     "curriculum_steps"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        require(self.encoder_context >= 0,
                f"encoder_context must be >= 0, got {self.encoder_context}")
        require(self.lstm_kernel % 2 == 1, f"lstm_kernel must be odd, got {self.lstm_kernel}")
        require(0 < self.input_scale <= 4, f"input_scale must be in (0, 4], got {self.input_scale}")
        require(0 <= self.confidence_grad <= 1,
                f"confidence_grad must be in [0, 1], got {self.confidence_grad}")
        require(self.loss_lambda >= 0, f"loss_lambda must be >= 0, got {self.loss_lambda}")
        require(0 <= self.curriculum_fraction <= 1,
                f"curriculum_fraction must be in [0, 1], got {self.curriculum_fraction}")


class RecurrentInstance(PerFrameMethod):
    """Romera-Paredes & Torr: ConvLSTM emitting one instance per step."""

    name: ClassVar[str] = "recurrent-instance"
    #: an image larger than this many training crops is another scene to the net
    scene_crops: ClassVar[float] = 4
    config_cls: ClassVar[type[TrainConfig]] = RecurrentInstanceConfig
    demo_steps: ClassVar[int] = 300
    config: RecurrentInstanceConfig

    def build_model(self) -> RecurrentInstanceNet:
        c = self.config
        return RecurrentInstanceNet(
            c.in_channels, encoder_channels=c.encoder_channels, encoder_convs=c.encoder_convs,
            hidden=c.hidden, layers=c.lstm_layers, kernel=c.lstm_kernel,
            input_scale=c.input_scale, coords=c.coords, confidence_bias=c.confidence_bias,
            context=c.encoder_context, confidence_grad=c.confidence_grad)

    # -- training -------------------------------------------------------------------------------
    def step_cap(self, train_step: int) -> int:
        """Most recurrent steps per image at training step ``train_step`` (curriculum)."""
        c = self.config
        ramp = c.curriculum_fraction * c.steps
        if ramp <= 0 or train_step >= ramp:
            return c.max_steps
        start = min(c.curriculum_steps, c.max_steps)
        return start + int((c.max_steps - start) * train_step / ramp)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Hungarian matching loss over the ``B * T`` images of ``batch``."""
        images = batch["image"].flatten(0, 1)
        labels = batch["labels"].flatten(0, 1)
        net = unwrap(model)
        cap = self.step_cap(int(net.train_step))
        if net.training:
            with torch.no_grad():
                net.train_step += 1
        counts = [int((torch.unique(lab) > 0).sum()) for lab in labels]
        steps = [min(n + self.config.extra_steps, cap) for n in counts]
        mask_logits, confidence_logits = model(images, max(steps), logits=True)
        criterion = HungarianIoULoss(self.config.loss_lambda, self.config.ordered_matching)
        with torch.autocast(images.device.type, enabled=False):
            loss, parts = criterion(mask_logits.float(), confidence_logits.float(), labels, steps)
        parts["step_cap"] = float(cap)
        return loss, parts

    # -- inference ------------------------------------------------------------------------------
    def segment_frame(self, net: RecurrentInstanceNet, image: torch.Tensor) -> np.ndarray:
        """``(Y, X)`` int32 labels of one ``(1, C, Y, X)`` image: masks, CRF when on, labels.

        Warns (once) when the image is more than :attr:`scene_crops` training crops: the
        net learnt how many objects a crop holds and when to stop, and a whole frame is
        another scene (SIM+ 01: SEG 0.045 on whole frames, 0.447 in tiles of the crop size;
        docs/results.md, session 26)."""
        crop = self.config.crop
        if image.shape[-2] * image.shape[-1] > self.scene_crops * crop[0] * crop[1] \
                and not getattr(self, "_warned_scene", False):
            self._warned_scene = True  # once per model loaded, not per frame or validation
            warnings.warn(f"recurrent-instance learnt on {crop[0]}x{crop[1]} crops and this "
                          f"image is {image.shape[-2]}x{image.shape[-1]}: it finds few of its "
                          f"objects at once; run it in tiles of the crop size (--tile "
                          f"{max(crop)})", DataWarning, stacklevel=2)
        masks = self.segment_masks(net, image)
        if self.config.crf:
            masks = crf_refine(image[0], masks, CRFParams.of(self.config))
        return labels_from_masks(masks.float().cpu().numpy(), self.config.mask_threshold,
                                 self.config.min_instance_area)

    def segment_masks(self, net: RecurrentInstanceNet, image: torch.Tensor) -> torch.Tensor:
        """Mask probabilities ``(K, Y, X)`` of the steps before the first low confidence.

        ``image`` is ``(1, C, Y, X)`` on the model's device; at most ``max_steps`` steps run.
        """
        encoded = net.encode(image)
        state = net.initial_state(encoded)
        masks = []
        for _ in range(self.config.max_steps):
            mask_logits, confidence_logits, state = net.step(encoded, state)
            if torch.sigmoid(confidence_logits[0]) < self.config.confidence_threshold:
                break
            masks.append(torch.sigmoid(mask_logits[0]))
        if not masks:
            return image.new_zeros((0, *image.shape[-2:]))
        return torch.stack(masks)

