"""Recurrent instance segmentation network (Romera-Paredes & Torr, ECCV 2016).

A small fully convolutional encoder computes features once per image; a stack
of ConvLSTM layers is then run for ``N`` steps on those fixed features and
emits one instance per step: a mask (1x1 conv on the top hidden state,
upsampled bilinearly to the input size) and a confidence that the step found
an object (global pooling of the top hidden state -> linear).

The ConvLSTM also sees a *spatial memory*: the running maximum of the masks
already emitted (at the feature resolution), so that it can tell which pixels
are explained and does not emit the same object twice.

Shapes: ``image (B, C, Y, X)``; masks ``(B, N, Y, X)``; confidences ``(B, N)``.
Any ``Y, X`` works: the input is padded internally to the multiple the
encoder needs and the masks are cropped back.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from instatrack.models.blocks import ConvLSTMCell, crop_to, pad_to_multiple


@dataclasses.dataclass
class StepState:
    """What the recurrence carries from one step to the next.

    ``lstm``: one ``(h, c)`` pair per layer, each ``(B, hidden, y, x)``;
    ``memory``: ``(B, 1, y, x)`` running max of the emitted masks (probabilities).
    """

    lstm: list[tuple[torch.Tensor, torch.Tensor] | None]
    memory: torch.Tensor


@dataclasses.dataclass
class Encoded:
    """Features of one batch of images and the geometry needed to undo padding.

    ``features``: ``(B, F, y, x)`` at ``1 / 2**(levels-1)`` of the (scaled, padded) input.
    """

    features: torch.Tensor
    scaled_shape: tuple[int, int]
    input_shape: tuple[int, int]


class Encoder(nn.Module):
    """A small FCN: ``len(channels)`` levels of ``convs`` (conv 3x3 -> GroupNorm -> ReLU)
    with max-pooling between levels, then ``context`` coarser levels whose output is
    upsampled and added back, so that each feature vector sees a whole object.

    ``(B, C, Y, X) -> (B, channels[-1], Y / 2**(L-1), X / 2**(L-1))``; the input
    must be a multiple of ``multiple`` (= ``2**(L-1+context)``); ``stride`` is ``2**(L-1)``.

    The normalisation keeps the features at unit scale whatever the contrast of
    the (percentile-normalised) input; without it the mask signal reaching the
    recurrence is too weak to learn from on low-contrast images.
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...], convs: int,
                 context: int = 0, confidence_grad: float = 1.0):
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for level, width in enumerate(channels):
            if level > 0:
                layers.append(nn.MaxPool2d(2))
            layers.append(_conv_block(previous, width, convs))
            previous = width
        self.body = nn.Sequential(*layers)
        self.context = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), _conv_block(previous, previous, convs))
            for _ in range(context))
        self.stride = 2 ** (len(channels) - 1)
        self.multiple = self.stride * 2 ** context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x)
        coarse = [x]
        for level in self.context:
            coarse.append(level(coarse[-1]))
        for c in coarse[1:]:
            x = x + F.interpolate(c, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x


def _conv_block(in_ch: int, out_ch: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        conv = nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, padding=1)
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        layers += [conv, nn.GroupNorm(_groups(out_ch), out_ch), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _groups(channels: int, most: int = 8) -> int:
    """The largest group count <= ``most`` that divides ``channels``."""
    return max(g for g in range(1, most + 1) if channels % g == 0)


class RecurrentInstanceNet(nn.Module):
    """FCN encoder + stacked ConvLSTM emitting one instance mask and confidence per step.

    ``input_scale`` rescales the image before the encoder (the paper ran on leaf
    images downsampled five times); ``coords`` appends normalised ``(y, x)``
    coordinate maps to the ConvLSTM input so that the recurrence can order
    objects spatially; ``context`` adds that many coarser encoder levels whose
    features are upsampled and added back (a wider view of each object for the
    same recurrence cost); ``confidence_bias`` initialises the confidence logit
    so that early confidences are high (sigmoid(bias)); ``confidence_grad`` is
    the fraction of the confidence loss gradient passed back into the
    recurrence (1 = all, 0 = the confidence head learns on fixed features).

    The model keeps a ``train_step`` counter buffer; the method's loss
    increments it, so curricula survive checkpoints and resumption.
    """

    def __init__(self, in_channels: int, encoder_channels: tuple[int, ...] = (16, 32),
                 encoder_convs: int = 2, hidden: int = 32, layers: int = 2, kernel: int = 3,
                 input_scale: float = 1.0, coords: bool = True, confidence_bias: float = 3.0,
                 context: int = 0, confidence_grad: float = 1.0):
        super().__init__()
        self.encoder = Encoder(in_channels, tuple(encoder_channels), encoder_convs, context)
        self.input_scale = float(input_scale)
        self.coords = coords
        self.confidence_grad = float(confidence_grad)
        step_in = encoder_channels[-1] + 1 + (2 if coords else 0)
        self.cells = nn.ModuleList(
            ConvLSTMCell(step_in if i == 0 else hidden, hidden, kernel) for i in range(layers))
        self.mask_head = nn.Conv2d(hidden, 1, 1)
        self.confidence_head = nn.Linear(2 * hidden, 1)
        nn.init.constant_(self.confidence_head.bias, confidence_bias)
        nn.init.normal_(self.confidence_head.weight, std=0.01)
        self.register_buffer("train_step", torch.zeros((), dtype=torch.long))

    # -- stages ---------------------------------------------------------------------------------
    def encode(self, image: torch.Tensor) -> Encoded:
        """``(B, C, Y, X)`` -> :class:`Encoded` features (computed once per image)."""
        input_shape = (image.shape[-2], image.shape[-1])
        if self.input_scale != 1.0:
            size = [max(1, round(s * self.input_scale)) for s in input_shape]
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        padded, scaled_shape = pad_to_multiple(image, self.encoder.multiple)
        features = self.encoder(padded)
        if self.coords:
            features = torch.cat([features, _coordinate_maps(features)], 1)
        return Encoded(features, tuple(scaled_shape), input_shape)

    def initial_state(self, encoded: Encoded) -> StepState:
        f = encoded.features
        memory = f.new_zeros((f.shape[0], 1, f.shape[2], f.shape[3]))
        return StepState([None] * len(self.cells), memory)

    def step(self, encoded: Encoded, state: StepState
             ) -> tuple[torch.Tensor, torch.Tensor, StepState]:
        """One recurrence step.

        Returns the mask logits ``(B, Y, X)`` at the input size, the confidence
        logits ``(B,)`` and the next state.
        """
        x = torch.cat([encoded.features, state.memory], 1)
        lstm = []
        for cell, previous in zip(self.cells, state.lstm, strict=True):
            h, c = cell(x, previous)
            lstm.append((h, c))
            x = h
        coarse = self.mask_head(x)
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], 1)
        if self.confidence_grad != 1.0:
            # same value, but only this fraction of the confidence gradient enters the recurrence
            pooled = self.confidence_grad * pooled + (1 - self.confidence_grad) * pooled.detach()
        confidence = self.confidence_head(pooled)[:, 0]
        memory = torch.maximum(state.memory, torch.sigmoid(coarse))
        return self._to_input_size(coarse, encoded)[:, 0], confidence, StepState(lstm, memory)

    def _to_input_size(self, coarse: torch.Tensor, encoded: Encoded) -> torch.Tensor:
        """``(B, 1, y, x)`` logits at feature resolution -> ``(B, 1, Y, X)`` at the input."""
        stride = self.encoder.stride
        if stride > 1:
            coarse = F.interpolate(coarse, scale_factor=stride, mode="bilinear",
                                   align_corners=False)
        coarse = crop_to(coarse, encoded.scaled_shape)
        if tuple(coarse.shape[-2:]) != encoded.input_shape:
            coarse = F.interpolate(coarse, size=encoded.input_shape, mode="bilinear",
                                   align_corners=False)
        return coarse

    # -- whole sequence -------------------------------------------------------------------------
    def forward_logits(self, image: torch.Tensor, steps: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits ``(B, N, Y, X)`` and confidence logits ``(B, N)`` for ``N = steps``."""
        encoded = self.encode(image)
        state = self.initial_state(encoded)
        masks, confidences = [], []
        for _ in range(steps):
            mask, confidence, state = self.step(encoded, state)
            masks.append(mask)
            confidences.append(confidence)
        return torch.stack(masks, 1), torch.stack(confidences, 1)

    def forward(self, image: torch.Tensor, steps: int, logits: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask probabilities ``(B, N, Y, X)`` and confidences ``(B, N)`` in ``[0, 1]``.

        With ``logits=True`` the pre-sigmoid values are returned instead (for
        numerically stable losses).
        """
        masks, confidences = self.forward_logits(image, steps)
        if logits:
            return masks, confidences
        return torch.sigmoid(masks), torch.sigmoid(confidences)


def _coordinate_maps(features: torch.Tensor) -> torch.Tensor:
    """``(B, 2, y, x)`` maps of the row and column position, each in ``[-1, 1]``."""
    b, _, y, x = features.shape
    rows = torch.linspace(-1.0, 1.0, y, device=features.device, dtype=features.dtype)
    cols = torch.linspace(-1.0, 1.0, x, device=features.device, dtype=features.dtype)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"))
    return grid.expand(b, 2, y, x)
