"""Building blocks shared by the models: convolutions of any dimension and
convolutional recurrent cells (ConvGRU, ConvLSTM).

``dims`` selects 2D (``(B, C, Y, X)``) or 3D (``(B, C, Z, Y, X)``) tensors.
Recurrent cells take ``state=None`` at the first frame (zero state).
"""

from __future__ import annotations

import torch
from torch import nn

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}


def conv_nd(dims: int, in_ch: int, out_ch: int, kernel: int = 3, **kwargs) -> nn.Module:
    """``Conv{dims}d`` with 'same' padding for odd kernels."""
    if dims not in _CONV:
        raise ValueError(f"dims must be 2 or 3, got {dims}")
    return _CONV[dims](in_ch, out_ch, kernel, padding=kwargs.pop("padding", kernel // 2), **kwargs)


def max_pool_nd(dims: int, kernel: int = 2) -> nn.Module:
    return _POOL[dims](kernel)


class ConvReLU(nn.Sequential):
    """``n`` times (conv 3x3 -> ReLU)."""

    def __init__(self, dims: int, in_ch: int, out_ch: int, n: int = 1):
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [conv_nd(dims, in_ch if i == 0 else out_ch, out_ch), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class ConvGRUCell(nn.Module):
    """Convolutional GRU: ``h' = (1 - z) * h + z * tanh(W x + U (r * h))``.

    Input ``(B, in_ch, *S)``, state and output ``(B, hidden, *S)``.
    """

    def __init__(self, in_ch: int, hidden: int, kernel: int = 3, dims: int = 2):
        super().__init__()
        self.hidden = hidden
        self.gates = conv_nd(dims, in_ch + hidden, 2 * hidden, kernel)
        self.candidate = conv_nd(dims, in_ch + hidden, hidden, kernel)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        if state is None:
            state = x.new_zeros((x.shape[0], self.hidden, *x.shape[2:]))
        reset, update = torch.sigmoid(self.gates(torch.cat([x, state], 1))).chunk(2, 1)
        candidate = torch.tanh(self.candidate(torch.cat([x, reset * state], 1)))
        return (1 - update) * state + update * candidate


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM. State is the pair ``(h, c)``, each ``(B, hidden, *S)``."""

    def __init__(self, in_ch: int, hidden: int, kernel: int = 3, dims: int = 2):
        super().__init__()
        self.hidden = hidden
        self.gates = conv_nd(dims, in_ch + hidden, 4 * hidden, kernel)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            zeros = x.new_zeros((x.shape[0], self.hidden, *x.shape[2:]))
            state = (zeros, zeros)
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], 1)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Zero-pad the spatial dims (all after the first two) at the end up to ``multiple``.

    Returns the padded tensor and the original spatial shape, for :func:`crop_to`.
    """
    shape = tuple(x.shape[2:])
    pad: list[int] = []
    for size in reversed(shape):
        pad += [0, (-size) % multiple]
    if any(pad):
        x = nn.functional.pad(x, pad, mode="replicate")
    return x, shape


def crop_to(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`."""
    index = (slice(None), slice(None)) + tuple(slice(0, s) for s in shape)
    return x[index]
