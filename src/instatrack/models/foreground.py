"""Foreground network: a fully convolutional ResNet-style encoder-decoder that
predicts object-vs-background logits.

It plays the part of the generic ResNet-101 segmentation model of Cheng et al.
(2017): residual blocks, a few stride-2 downsamplings and a decoder that
upsamples back with skip connections. Widths are configurable and nothing is
downloaded; :meth:`ForegroundNet.load_backbone` reads a local state-dict.

Normalisation is GroupNorm rather than BatchNorm because training uses batches
of one or two crops and the per-object fine-tuning sees a single frame, where
batch statistics are meaningless.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from instatrack.errors import DataError
from instatrack.models.blocks import crop_to, pad_to_multiple


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups that divide ``channels``."""
    return nn.GroupNorm(math.gcd(channels, 8), channels)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut: ``relu(x' + shortcut(x))``.

    ``(B, in_ch, Y, X)`` -> ``(B, out_ch, Y / stride, X / stride)``.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False), group_norm(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False), group_norm(out_ch),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), group_norm(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def _stage(in_ch: int, out_ch: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [ResidualBlock(in_ch, out_ch, stride)]
    layers += [ResidualBlock(out_ch, out_ch) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ForegroundNet(nn.Module):
    """Encoder-decoder of residual blocks predicting one foreground logit per pixel.

    ``width`` channels at full resolution, doubled (up to ``max_width``) at each
    of the ``levels`` stride-2 stages. Any input size works: the input is padded
    to a multiple of ``2 ** levels`` and the outputs cropped back.

    ``head`` (3x3 conv, ReLU, 1x1 conv) maps the full-resolution features to
    the logit; it is the light part that per-object fine-tuning copies.
    """

    def __init__(self, in_channels: int = 1, width: int = 16, levels: int = 3,
                 blocks: int = 1, max_width: int = 256):
        super().__init__()
        self.levels = levels
        self.width = width
        widths = [min(width * 2 ** i, max_width) for i in range(levels + 1)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), group_norm(width),
            nn.ReLU(inplace=True), _stage(width, width, blocks, 1))
        self.down = nn.ModuleList(
            _stage(widths[i], widths[i + 1], blocks, 2) for i in range(levels))
        self.merge = nn.ModuleList(
            nn.Conv2d(widths[i + 1] + widths[i], widths[i], 1) for i in range(levels))
        self.up = nn.ModuleList(_stage(widths[i], widths[i], blocks, 1) for i in range(levels))
        self.head = nn.Sequential(
            nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(width, 1, 1))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, Y, X)`` -> features ``(B, width, Y, X)`` and logits ``(B, 1, Y, X)``."""
        x, shape = pad_to_multiple(x, 2 ** self.levels)
        skips = [self.stem(x)]
        for stage in self.down:
            skips.append(stage(skips[-1]))
        y = skips.pop()
        for i in reversed(range(self.levels)):
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[2:], mode="bilinear", align_corners=False)
            y = self.up[i](self.merge[i](torch.cat([y, skip], 1)))
        features = crop_to(y, shape)
        return features, self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, Y, X)`` -> foreground logits ``(B, 1, Y, X)``."""
        return self.forward_features(x)[1]

    def load_backbone(self, path: str | Path) -> None:
        """Load weights from a local state-dict file (``torch.save(net.state_dict())``).

        Also accepts a dict holding the state under ``"state_dict"``/``"model"`` and
        keys prefixed by ``"fg."`` (the foreground part of a spatial-propagation
        run's ``weights.pt``). Raises :class:`DataError` naming the file when it is
        missing, unreadable or does not fit this network.
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: backbone weights file not found")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for corrupt files
            raise DataError(f"{path}: cannot read backbone weights ({err})") from None
        state = _unwrap_state(state)
        if state is None:
            raise DataError(f"{path}: backbone weights are not a state-dict")
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()
            detail = " ".join(line.strip() for line in first[:3])[:300]
            raise DataError(f"{path}: backbone weights do not fit ForegroundNet "
                            f"(width={self.width}, levels={self.levels}): {detail}") from None


def _unwrap_state(state: object) -> dict[str, torch.Tensor] | None:
    """The tensor mapping inside a saved object, with a ``fg.`` prefix removed."""
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        return None
    if state and all(k.startswith("fg.") for k in state):
        return {k[3:]: v for k, v in state.items()}
    if any(k.startswith("fg.") for k in state):
        return {k[3:]: v for k, v in state.items() if k.startswith("fg.")}
    return dict(state)


def replicate_head(head: nn.Sequential, copies: int, own_inputs: bool = False
                   ) -> nn.Sequential:
    """``copies`` independent copies of ``head`` evaluated as one network.

    Input: the head's input ``(B, C_in, Y, X)``; output ``(B, copies * C_out, Y, X)``
    where channel group ``k`` is copy ``k``. All copies read the same input, so
    the first convolution is one ordinary convolution with the copies' filters
    stacked; later convolutions are grouped, one group per copy. With
    ``own_inputs`` each copy reads its own input instead: the input is
    ``(B, copies * C_in, Y, X)``, group ``k`` for copy ``k``, and the first
    convolution is grouped too. Every copy
    starts from ``head``'s weights and has its own parameters, so training them
    on a summed loss is the same as training each separately (per-object
    instance models, one forward pass).
    """
    layers: list[nn.Module] = []
    first = True
    for layer in head:
        if isinstance(layer, nn.Conv2d):
            shared = first and not own_inputs
            groups = layer.groups if shared else copies * layer.groups
            in_channels = layer.in_channels if shared else layer.in_channels * copies
            grouped = nn.Conv2d(
                in_channels, layer.out_channels * copies, layer.kernel_size, layer.stride,
                layer.padding, layer.dilation, groups=groups, bias=layer.bias is not None,
            ).to(layer.weight.device)
            with torch.no_grad():
                grouped.weight.copy_(layer.weight.repeat(copies, 1, 1, 1))
                if layer.bias is not None:
                    grouped.bias.copy_(layer.bias.repeat(copies))
            layers.append(grouped)
            first = False
        elif isinstance(layer, (nn.ReLU, nn.LeakyReLU, nn.Identity)):
            layers.append(copy.deepcopy(layer))
        else:
            raise TypeError(f"replicate_head cannot replicate {type(layer).__name__}")
    return nn.Sequential(*layers)
