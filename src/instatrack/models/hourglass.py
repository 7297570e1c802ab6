"""Recurrent stacked hourglass network (Payer et al., MICCAI 2018).

One hourglass has ``levels`` resolution levels. Going down, every level applies
a 3x3 convolution + ReLU and then halves the resolution by max pooling; every
level also feeds a parallel "skip" path, which in the recurrent variant is a
:class:`~instatrack.models.blocks.ConvGRUCell` whose state is carried from frame
to frame (zero at the first frame). Going up, the coarser result is upsampled
by two, ADDED to the skip output of the finer level and passed through another
3x3 convolution + ReLU. A 1x1 convolution maps the ``filters`` channels to the
embedding dimension and the embeddings are L2-normalised over channels.

Stacking: the first hourglass sees the image, every further one sees the image
concatenated with the (normalised) embeddings of the previous one, so it can
refine them. Each stack's embeddings are returned, because the loss supervises
all of them.

With ``foreground=True`` the last stack's 1x1 convolution has one more output
channel, a per-pixel foreground logit, returned after the normalised embedding
channels (not normalised itself). Clustering then takes its foreground from this
output instead of from the cosine with the background direction, which leaves a
rim of boundary pixels in every mask (docs/results.md, session 9).

The network is causal in time, so a clip can be processed either at once
(:meth:`StackedHourglass.forward`) or one frame at a time at constant memory
(:meth:`StackedHourglass.step`); both give the same result.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from instatrack.models.blocks import (
    ConvGRUCell,
    ConvReLU,
    conv_nd,
    crop_to,
    max_pool_nd,
    pad_to_multiple,
)

#: Per stack, per level: the ConvGRU state ``(B, filters, *S_level)``, or None before frame 0.
State = list[list[torch.Tensor | None]]

_UPSAMPLE_MODES = {"nearest": {2: "nearest", 3: "nearest"},
                   "bilinear": {2: "bilinear", 3: "trilinear"}}


class Hourglass(nn.Module):
    """One (optionally recurrent) hourglass.

    Input ``(B, in_ch, *S)`` with every spatial size a multiple of
    ``2 ** (levels - 1)``; output ``(B, filters, *S)`` features.
    """

    def __init__(self, in_ch: int, filters: int = 64, levels: int = 7, recurrent: bool = True,
                 dims: int = 2, upsample: str = "nearest"):
        super().__init__()
        if upsample not in _UPSAMPLE_MODES:
            raise ValueError(
                f"upsample must be one of {', '.join(_UPSAMPLE_MODES)}, got {upsample!r}")
        self.levels = levels
        self.recurrent = recurrent
        self.upsample_mode = _UPSAMPLE_MODES[upsample][dims]
        self.down = nn.ModuleList(
            ConvReLU(dims, in_ch if level == 0 else filters, filters) for level in range(levels))
        if recurrent:
            self.skip = nn.ModuleList(
                ConvGRUCell(filters, filters, dims=dims) for _ in range(levels))
        else:
            self.skip = nn.ModuleList(ConvReLU(dims, filters, filters) for _ in range(levels))
        self.up = nn.ModuleList(ConvReLU(dims, filters, filters) for _ in range(levels - 1))
        self.pool = max_pool_nd(dims, 2)

    def forward(self, x: torch.Tensor, state: list[torch.Tensor | None] | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """One frame ``(B, in_ch, *S)`` -> features ``(B, filters, *S)`` and new per-level state.

        ``state`` is the list of ConvGRU states of the previous frame (None at frame 0);
        the non-recurrent variant ignores it and returns a list of None.
        """
        state = state if state is not None else [None] * self.levels
        skips: list[torch.Tensor] = []
        new_state: list[torch.Tensor | None] = []
        for level in range(self.levels):
            x = self.down[level](x)
            if self.recurrent:
                skip = self.skip[level](x, state[level])
                new_state.append(skip)
            else:
                skip = self.skip[level](x)
                new_state.append(None)
            skips.append(skip)
            if level < self.levels - 1:
                x = self.pool(x)
        y = skips[-1]
        for level in range(self.levels - 2, -1, -1):
            y = F.interpolate(y, scale_factor=2.0, mode=self.upsample_mode)
            y = self.up[level](y + skips[level])
        return y, new_state


class StackedHourglass(nn.Module):
    """``stacks`` hourglasses producing L2-normalised embeddings per pixel.

    ``forward(clip (B, T, C, *S)) -> [ (B, T, d, *S) ] * stacks``;
    ``step(frame (B, C, *S), state) -> ([ (B, d, *S) ] * stacks, state)``.
    Any spatial size is accepted: the input is padded (replicate) to a
    multiple of ``2 ** (levels - 1)`` and the outputs cropped back.

    The buffer ``background`` ``(d,)`` holds the running direction of the
    background embedding seen in training (all zeros until the first update);
    clustering uses it to tell foreground from background.

    ``foreground``: the last stack's output has ``d + 1`` channels, the last one a
    foreground logit (see :func:`split_foreground`).
    """

    def __init__(self, in_channels: int = 1, stacks: int = 2, levels: int = 7, filters: int = 64,
                 embedding_dim: int = 16, recurrent: bool = True, dims: int = 2,
                 upsample: str = "nearest", foreground: bool = False):
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims}")
        if min(in_channels, stacks, levels, filters, embedding_dim) < 1:
            raise ValueError("in_channels, stacks, levels, filters and embedding_dim must be >= 1")
        self.dims = dims
        self.stacks = stacks
        self.levels = levels
        self.recurrent = recurrent
        self.multiple = 2 ** (levels - 1)
        self.hourglasses = nn.ModuleList(
            Hourglass(in_channels + (embedding_dim if s > 0 else 0), filters, levels, recurrent,
                      dims, upsample)
            for s in range(stacks))
        self.foreground = foreground
        self.heads = nn.ModuleList(
            conv_nd(dims, filters, embedding_dim + (foreground and s == stacks - 1), 1)
            for s in range(stacks))
        self.register_buffer("background", torch.zeros(embedding_dim))
        self._init_weights()

    def _init_weights(self) -> None:
        # He initialisation keeps the activations of the deep ReLU paths at a usable scale;
        # the GRU gates keep PyTorch's default (their inputs are squashed anyway).
        for module in self.modules():
            if isinstance(module, ConvReLU):
                for conv in module:
                    if isinstance(conv, (nn.Conv2d, nn.Conv3d)):
                        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                        nn.init.zeros_(conv.bias)

    def step(self, frame: torch.Tensor, state: State | None = None
             ) -> tuple[list[torch.Tensor], State]:
        """Process one frame ``(B, C, *S)`` given the state of the previous frame.

        Returns the embeddings of every stack, each ``(B, d, *S)`` L2-normalised over
        ``d``, and the new state (pass None at the first frame of a sequence).
        """
        if frame.dim() != self.dims + 2:
            raise ValueError(f"expected a frame (B, C, {'Z, ' if self.dims == 3 else ''}Y, X), "
                             f"got shape {tuple(frame.shape)}")
        image, shape = pad_to_multiple(frame, self.multiple)
        outputs, new_state = self.step_padded(image, state)
        return [crop_to(embedding, shape) for embedding in outputs], new_state

    def step_padded(self, image: torch.Tensor, state: State | None = None
                    ) -> tuple[list[torch.Tensor], State]:
        """:meth:`step` of a frame whose sides are multiples of ``self.multiple``.

        The embeddings keep the padded size. This is the whole learned network of
        a step (exported alone to ONNX, with the state as explicit inputs and
        outputs, :mod:`instatrack.onnx`).
        """
        state = state if state is not None else [None] * self.stacks
        outputs: list[torch.Tensor] = []
        new_state: State = []
        x = image
        for stack in range(self.stacks):
            features, stack_state = self.hourglasses[stack](x, state[stack])
            raw = self.heads[stack](features)
            if self.foreground and stack == self.stacks - 1:
                embedding = F.normalize(raw[:, :-1], dim=1, eps=1e-8)
                outputs.append(torch.cat([embedding, raw[:, -1:]], 1))
            else:
                embedding = F.normalize(raw, dim=1, eps=1e-8)
                outputs.append(embedding)
            new_state.append(stack_state)
            x = torch.cat([image, embedding], 1)
        return outputs, new_state

    def forward(self, clip: torch.Tensor, state: State | None = None) -> list[torch.Tensor]:
        """A clip ``(B, T, C, *S)`` -> embeddings of every stack, each ``(B, T, d, *S)``.

        Frames are processed in order with the state carried over (starting from
        ``state``, zero by default), exactly as repeated :meth:`step` calls.
        """
        if clip.dim() != self.dims + 3:
            raise ValueError(f"expected a clip (B, T, C, {'Z, ' if self.dims == 3 else ''}Y, X), "
                             f"got shape {tuple(clip.shape)}")
        per_frame: list[list[torch.Tensor]] = []
        for t in range(clip.shape[1]):
            outputs, state = self.step(clip[:, t], state)
            per_frame.append(outputs)
        return [torch.stack([frame[s] for frame in per_frame], 1) for s in range(self.stacks)]



def split_foreground(output: torch.Tensor, embedding_dim: int, axis: int
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A stack's output -> its embeddings and its foreground logit (None without one).

    ``axis`` is the channel axis of ``output`` (e.g. 2 for ``(B, T, C, *S)``); it has
    ``embedding_dim`` channels, or one more when the last is a foreground logit,
    which is returned with that axis removed.
    """
    if output.shape[axis] == embedding_dim:
        return output, None
    return output.narrow(axis, 0, embedding_dim), output.select(axis, embedding_dim)
