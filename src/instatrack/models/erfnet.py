"""Branched ERFNet (Romera et al. 2017) for spatial embeddings (Neven et al. 2019).

One encoder is shared by two decoders: the first predicts per-pixel offsets
and clustering bandwidths (sigma), the second one seed map per class.

Encoder (strides 1/2, 1/4, 1/8): downsampler -> downsampler -> ``stage1_blocks``
non-bottleneck-1D blocks -> downsampler -> ``dilated_repeats`` times the
dilation cycle 2, 4, 8, 16. Decoder: upsampler -> ``decoder_blocks`` blocks ->
upsampler -> ``decoder_blocks`` blocks -> transposed conv to full resolution.
Channel widths are ERFNet's 16, 64, 128 times ``width``.

Coordinates: pixel ``(i, j)`` sits at ``(y, x) = (i, j) / coord_scale`` in
embedding space, the same for every image size, so a model trained on crops
sees the same geometry on whole frames. ``coord_scale = 1024`` gives one unit
per 1024 px, which is what the published code's coordinate map works out to
(so the ``tanh`` offsets reach up to 1024 px). The embedding is
``coordinates + tanh(offsets)``, in ``(y, x)`` order.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from instatrack.models.blocks import crop_to, pad_to_multiple

#: the encoder downsamples three times
STRIDE = 8
DILATIONS = (2, 4, 8, 16)


class Downsampler(nn.Module):
    """Stride-2 conv (``out - in`` channels) concatenated with a 2x2 max-pool of the input."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        if out_ch <= in_ch:
            raise ValueError(f"a downsampler must widen, got {in_ch} -> {out_ch}")
        self.conv = nn.Conv2d(in_ch, out_ch - in_ch, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_ch, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(torch.cat([self.conv(x), self.pool(x)], 1)))


class NonBottleneck1D(nn.Module):
    """Residual block of two factorised (3x1 then 1x3) conv pairs; the second dilated."""

    def __init__(self, channels: int, dilation: int = 1, dropout: float = 0.0):
        super().__init__()
        d = dilation
        self.conv1_v = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0))
        self.conv1_h = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1))
        self.bn1 = nn.BatchNorm2d(channels, eps=1e-3)
        self.conv2_v = nn.Conv2d(channels, channels, (3, 1), padding=(d, 0), dilation=(d, 1))
        self.conv2_h = nn.Conv2d(channels, channels, (1, 3), padding=(0, d), dilation=(1, d))
        self.bn2 = nn.BatchNorm2d(channels, eps=1e-3)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.conv1_v(x))
        out = torch.relu(self.bn1(self.conv1_h(out)))
        out = torch.relu(self.conv2_v(out))
        out = self.dropout(self.bn2(self.conv2_h(out)))
        return torch.relu(out + x)


class Upsampler(nn.Module):
    """Transposed 3x3 conv with stride 2 (exactly doubles the size), BN, ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1)
        self.bn = nn.BatchNorm2d(out_ch, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


def stage_widths(width: float, in_channels: int) -> tuple[int, int, int]:
    """ERFNet's 16, 64, 128 channels scaled by ``width``; each downsampler must widen."""
    c1 = max(round(16 * width), in_channels + 1, 2)
    c2 = max(round(64 * width), c1 + 1)
    c3 = max(round(128 * width), c2 + 1)
    return c1, c2, c3


class Encoder(nn.Sequential):
    """``(B, C, Y, X)`` -> ``(B, c3, Y/8, X/8)``; Y and X must be multiples of 8."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int], stage1_blocks: int = 5,
                 dilated_repeats: int = 2, dropout: float = 0.3):
        c1, c2, c3 = widths
        # ERFNet drops ten times less in the shallow stage than in the dilated one
        layers: list[nn.Module] = [Downsampler(in_channels, c1), Downsampler(c1, c2)]
        layers += [NonBottleneck1D(c2, 1, dropout / 10) for _ in range(stage1_blocks)]
        layers.append(Downsampler(c2, c3))
        for _ in range(dilated_repeats):
            layers += [NonBottleneck1D(c3, d, dropout) for d in DILATIONS]
        super().__init__(*layers)


class Decoder(nn.Sequential):
    """``(B, c3, Y/8, X/8)`` -> ``(B, out_channels, Y, X)`` (raw, no activation)."""

    def __init__(self, widths: tuple[int, int, int], out_channels: int, blocks: int = 2):
        c1, c2, c3 = widths
        layers: list[nn.Module] = [Upsampler(c3, c2)]
        layers += [NonBottleneck1D(c2) for _ in range(blocks)]
        layers.append(Upsampler(c2, c1))
        layers += [NonBottleneck1D(c1) for _ in range(blocks)]
        layers.append(nn.ConvTranspose2d(c1, out_channels, 2, stride=2))
        super().__init__(*layers)

    @property
    def head(self) -> nn.ConvTranspose2d:
        return self[-1]


def coordinate_grid(height: int, width: int, coord_scale: float,
                    device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(2, Y, X)`` pixel coordinates ``(i, j) / coord_scale`` in ``(y, x)`` order."""
    ys = torch.arange(height, device=device, dtype=dtype) / coord_scale
    xs = torch.arange(width, device=device, dtype=dtype) / coord_scale
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))


class BranchedERFNet(nn.Module):
    """Shared ERFNet encoder, an offset + sigma decoder and a seed decoder.

    ``forward(image (B, C, Y, X))`` returns a dict of
    ``embedding (B, 2, Y, X)`` (coordinates + offsets, ``(y, x)``),
    ``offsets (B, 2, Y, X)`` (after ``tanh``), ``sigma (B, S, Y, X)`` (> 0, in
    embedding units), ``log_sigma (B, S, Y, X)`` and ``seed (B, K, Y, X)`` in
    (0, 1). Any Y, X: the input is padded to a multiple of 8 and cropped back.
    With ``input_scale`` s != 1 the network runs on the image resized by s and
    its raw outputs are resized back (bilinear) before the activations, so every
    output is at the input's resolution: large objects fit the receptive field
    at a fraction of the cost.
    """

    def __init__(self, in_channels: int = 1, sigma_channels: int = 1, n_classes: int = 1,
                 width: float = 1.0, stage1_blocks: int = 5, dilated_repeats: int = 2,
                 decoder_blocks: int = 2, dropout: float = 0.3, coord_scale: float = 1024.0,
                 init_sigma: float = 5.0, input_scale: float = 1.0):
        super().__init__()
        self.input_scale = float(input_scale)
        widths = stage_widths(width, in_channels)
        self.sigma_channels = sigma_channels
        self.coord_scale = coord_scale
        self.encoder = Encoder(in_channels, widths, stage1_blocks, dilated_repeats, dropout)
        self.embedding_decoder = Decoder(widths, 2 + sigma_channels, decoder_blocks)
        self.seed_decoder = Decoder(widths, n_classes, decoder_blocks)
        self._init_heads(init_sigma / coord_scale)

    def _init_heads(self, sigma0: float) -> None:
        # Start from zero offsets and a uniform bandwidth of ``init_sigma`` pixels, so
        # at step 0 every pixel already claims a small disc around itself.
        head = self.embedding_decoder.head
        with torch.no_grad():
            head.weight.zero_()
            head.bias.zero_()
            head.bias[2:].fill_(math.log(sigma0))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        shape = tuple(image.shape[-2:])
        if self.input_scale != 1.0:
            small = [max(1, round(n * self.input_scale)) for n in shape]
            image = F.interpolate(image, size=small, mode="bilinear", align_corners=False)
        padded, inner = pad_to_multiple(image, STRIDE)
        raw, seed = self.decode(padded)
        raw, seed = crop_to(raw, inner), crop_to(seed, inner)
        if self.input_scale != 1.0:
            raw, seed = (F.interpolate(v, size=shape, mode="bilinear", align_corners=False)
                         for v in (raw, seed))
        return self.outputs(torch.tanh(raw[:, :2]), raw[:, 2:], torch.sigmoid(seed))

    def decode(self, padded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw offsets + log-sigma ``(B, 2 + S, Y, X)`` and seed logits ``(B, K, Y, X)``.

        ``padded`` ``(B, C, Y, X)`` has sides that are multiples of ``STRIDE``; this
        is the whole learned network (exported alone to ONNX, :mod:`instatrack.onnx`).
        """
        features = self.encoder(padded)
        return self.embedding_decoder(features), self.seed_decoder(features)

    def outputs(self, offsets: torch.Tensor, log_sigma: torch.Tensor, seed: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        """The output dict of :meth:`forward` from activated offsets, log-sigma and seeds."""
        grid = coordinate_grid(*offsets.shape[-2:], self.coord_scale, offsets.device,
                               offsets.dtype)
        return {"embedding": offsets + grid, "offsets": offsets, "sigma": torch.exp(log_sigma),
                "log_sigma": log_sigma, "seed": seed}
