"""Spatial propagation network (Liu et al., "Learning affinity via spatial
propagation networks", NIPS 2017) with the three-way connection.

A map ``x`` is scanned line by line; each pixel mixes its own value with the
three neighbours of the previous line (diagonal-left, straight, diagonal-right):

    h_i = (1 - sum_k |g_ik|) x_i + sum_k g_ik h_{i-1,k}

in four directions (top->bottom, bottom->top, left->right, right->left), each
with its own gates, and the four results are merged by an element-wise maximum
as in the paper. A small guidance CNN predicts the ``4 x 3`` gates per pixel
from the image and features.

Stability: gates are rescaled so that ``|g1| + |g2| + |g3| <= 1`` at every
pixel. The paper weights the input by ``1 - sum_k g_k``; we use
``1 - sum_k |g_k|``, which is the same for non-negative gates and, for signed
ones, makes each output a combination whose absolute weights sum to at most
one, so ``max |h| <= max |x|`` by induction (the paper's form is stable but
can overshoot with negative gates).

The loop runs over lines (rows or columns), vectorised over the line, the
batch and the channels; the two scans of one axis share the loop.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: number of gates per direction (three-way connection)
NEIGHBOURS = 3
#: scan directions, in the order of the gate channels
DIRECTIONS = ("top_down", "bottom_up", "left_right", "right_left")


def normalize_gates(gates: torch.Tensor) -> torch.Tensor:
    """Rescale ``(B, 3, ...)`` gates so that ``sum_k |g_k| <= 1`` at every pixel.

    Gates already inside the bound are left unchanged.
    """
    total = gates.abs().sum(1, keepdim=True)
    return gates / total.clamp(min=1.0)


def propagate_down(x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """Scan rows from top to bottom.

    ``x``: ``(B, C, Y, X)``; ``gates``: ``(B, 3, Y, X)`` already normalised,
    shared by the ``C`` channels; channel ``k`` weighs the neighbour at column
    offset ``k - 1`` in the row above. The first row is copied from ``x``;
    neighbours outside the image count as zero. Returns ``(B, C, Y, X)``.
    """
    keep = 1.0 - gates.abs().sum(1, keepdim=True)
    row = x[:, :, 0]
    rows = [row]
    for i in range(1, x.shape[2]):
        g = gates[:, :, i]
        padded = F.pad(row, (1, 1))
        row = (keep[:, :, i] * x[:, :, i] + g[:, 0:1] * padded[..., :-2]
               + g[:, 1:2] * row + g[:, 2:3] * padded[..., 2:])
        rows.append(row)
    return torch.stack(rows, dim=2)


def _scan_both_ways(x: torch.Tensor, down: torch.Tensor, up: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top->bottom with ``down`` gates and bottom->top with ``up`` gates in one loop."""
    batch = x.shape[0]
    flipped = torch.cat([x, x.flip(2)], 0)
    gates = torch.cat([down, up.flip(2)], 0)
    h = propagate_down(flipped, gates)
    return h[:batch], h[batch:].flip(2)


def spatial_propagation(x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """Four-direction propagation of ``x`` ``(B, C, Y, X)`` merged by maximum.

    ``gates``: ``(B, 12, Y, X)``, three per direction in :data:`DIRECTIONS`
    order; they are normalised here. All-zero gates give back ``x`` exactly.
    """
    if gates.shape[1] != 4 * NEIGHBOURS or gates.shape[2:] != x.shape[2:]:
        raise ValueError(f"gates must be (B, 12, {x.shape[2]}, {x.shape[3]}), "
                         f"got {tuple(gates.shape)}")
    g = [normalize_gates(part) for part in gates.split(NEIGHBOURS, 1)]
    down, up = _scan_both_ways(x, g[0], g[1])
    right, left = _scan_both_ways(x.transpose(2, 3), g[2].transpose(2, 3), g[3].transpose(2, 3))
    return torch.stack([down, up, right.transpose(2, 3), left.transpose(2, 3)]).amax(0)


class GuidanceNet(nn.Module):
    """Small CNN: guidance input ``(B, C_in, Y, X)`` -> raw gates ``(B, 12, Y, X)``.

    The last layer starts at zero, so an untrained network propagates nothing
    (identity) and training starts from the coarse map itself.
    """

    def __init__(self, in_channels: int, width: int = 16, depth: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(depth):
            # growing dilation widens the view cheaply at full resolution
            layers += [nn.Conv2d(channels, width, 3, padding=2 ** i, dilation=2 ** i),
                       nn.ReLU(inplace=True)]
            channels = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(channels, 4 * NEIGHBOURS, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, guide: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(guide))


class SpatialPropagationNetwork(nn.Module):
    """Refines coarse score maps with gates learned from a guidance input.

    ``forward(coarse, guide)``: ``coarse`` ``(B, K, Y, X)`` (``K`` maps sharing
    the gates, e.g. one per object, values in ``[-1, 1]``), ``guide``
    ``(B, guide_channels, Y, X)`` -> refined ``(B, K, Y, X)`` with
    ``max |refined| <= max |coarse|``.
    """

    def __init__(self, guide_channels: int, width: int = 16, depth: int = 3):
        super().__init__()
        self.guidance = GuidanceNet(guide_channels, width, depth)

    def gates(self, guide: torch.Tensor) -> torch.Tensor:
        """Raw gates ``(B, 12, Y, X)``; compute once and reuse for many maps."""
        return self.guidance(guide)

    def forward(self, coarse: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        return spatial_propagation(coarse, self.gates(guide))
