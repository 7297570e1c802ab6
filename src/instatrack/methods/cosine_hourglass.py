"""Instance segmentation and tracking with cosine embeddings and recurrent
hourglass networks (Payer, Štern, Neff, Bischof, Urschler, MICCAI 2018).

A recurrent stacked hourglass (:mod:`instatrack.models.hourglass`) maps every
frame to one unit embedding per pixel; ConvGRUs in the skip connections carry
information from frame to frame. The cosine embedding loss
(:mod:`instatrack.losses.cosine`) makes the embeddings of one instance parallel
over the whole training clip and those of neighbouring instances orthogonal, so
an object keeps its direction over time. At inference the last stack's
embeddings of two consecutive frames are clustered jointly (HDBSCAN,
:mod:`instatrack.cluster.hdbscan`), which gives instances already matched across
the pair; the tracker links the overlapping pair windows into tracks.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from torch.nn import functional as F

from instatrack.cluster.hdbscan import ClusterParams, cluster_embeddings
from instatrack.config import TrainConfig, require
from instatrack.losses.cosine import background_direction, cosine_embedding_loss
from instatrack.methods.base import (
    FLIPS,
    FlipAveraging,
    InferencePrecision,
    Method,
    Window,
    with_precision,
)
from instatrack.models.ensemble import members
from instatrack.models.hourglass import StackedHourglass, split_foreground


@dataclasses.dataclass(frozen=True)
class CosineHourglassConfig(TrainConfig, ClusterParams, FlipAveraging, InferencePrecision):
    """Network and loss of the cosine-embedding method; the clustering's keys are
    those of :class:`~instatrack.cluster.hdbscan.ClusterParams`.

    Defaults are the paper's network; ``neighbour_radius`` is ``r_N`` in pixels.
    ``foreground_head`` adds a per-pixel foreground output to the last stack, trained
    with binary cross-entropy (times ``foreground_weight``) beside the cosine loss;
    clustering then takes its foreground from it (``cluster_foreground_prob``)
    instead of from the cosine with the background direction.

    ``tta`` (:class:`~instatrack.methods.base.FlipAveraging`) runs the network on the
    sequence four times, as it comes and flipped left-right, up-down and both (each view
    keeps its own recurrent state), flips the embeddings back and clusters them joined:
    a pixel's four unit vectors are concatenated and scaled by 1/2, so the cosine of two
    pixels is the mean of their four cosines. ``infer_bfloat16``
    (:class:`~instatrack.methods.base.InferencePrecision`) runs the network in bfloat16
    at inference (float32 by default, on every machine).
    """

    clip_len: int = 10
    # network
    stacks: int = 2
    levels: int = 7
    filters: int = 64
    embedding_dim: int = 16
    recurrent: bool = True
    upsample: str = "nearest"
    foreground_head: bool = False
    # loss
    neighbour_radius: float = 51.2
    background_momentum: float = 0.99
    foreground_weight: float = 1.0

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # ~0.65 s of CPU time a step on one core (measured), so 3000 steps take ~20-30 min
        "fast": {
            "crop": (96, 96), "clip_len": 4, "batch_size": 1, "stacks": 2, "levels": 5,
            "filters": 24, "embedding_dim": 16, "neighbour_radius": 32.0,
            "lr": 1e-3, "lr_final": 1e-4, "steps": 3000, "optimizer": "adam",
            "val_every": 500, "cluster_coord_scale": 0.02, "cluster_fast": True,
        },
        # the published set-up: 256 x 256 inputs, clips of 10 frames, r_N = 0.2 * 256
        "paper": {
            "crop": (256, 256), "clip_len": 10, "batch_size": 1, "stacks": 2, "levels": 7,
            "filters": 64, "embedding_dim": 16, "neighbour_radius": 51.2,
            "lr": 1e-4, "lr_final": 1e-5, "steps": 40000, "optimizer": "adam",
            "cluster_coord_scale": 0.01, "cluster_fast": False,
        },
    }

    def check(self) -> None:
        super().check()
        for name in ("stacks", "levels", "filters", "embedding_dim"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        require(self.levels <= 10, f"levels must be <= 10, got {self.levels}")
        require(self.upsample in ("nearest", "bilinear"),
                f"upsample must be 'nearest' or 'bilinear', got {self.upsample!r}")
        require(self.neighbour_radius > 0,
                f"neighbour_radius must be > 0 pixels, got {self.neighbour_radius}")
        require(self.foreground_weight >= 0,
                f"foreground_weight must be >= 0, got {self.foreground_weight}")
        require(0 <= self.background_momentum < 1,
                f"background_momentum must be in [0, 1), got {self.background_momentum}")


class CosineHourglass(Method):
    """Cosine embeddings from a recurrent stacked hourglass, clustered per frame pair."""

    name = "cosine-hourglass"
    config_cls = CosineHourglassConfig
    temporal = True
    ensembles = True

    def build_model(self) -> StackedHourglass:
        c = self.config
        return StackedHourglass(in_channels=c.in_channels, stacks=c.stacks, levels=c.levels,
                                filters=c.filters, embedding_dim=c.embedding_dim,
                                recurrent=c.recurrent, upsample=c.upsample,
                                foreground=c.foreground_head)

    # -- training ---------------------------------------------------------
    def loss(self, model: StackedHourglass, batch: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Cosine embedding loss over all stacks (plus the foreground output's
        cross-entropy); also updates ``model.background``."""
        outputs = model(batch["image"])
        labels = batch["labels"]
        # cosines of nearly parallel unit vectors need more than bfloat16's 8 bits
        with torch.autocast(labels.device.type, enabled=False):
            outputs = [o.float() for o in outputs]
            outputs[-1], logit = split_foreground(outputs[-1], self.config.embedding_dim, 2)
            loss, parts = cosine_embedding_loss(outputs, labels, self.config.neighbour_radius)
            if logit is not None:
                annotated = labels >= 0
                if bool(annotated.any()):
                    foreground = F.binary_cross_entropy_with_logits(
                        logit[annotated], (labels[annotated] > 0).float())
                else:
                    foreground = logit.sum() * 0.0
                loss = loss + self.config.foreground_weight * foreground
                parts["foreground"] = float(foreground.detach())
        if model.training:
            with torch.no_grad():
                update_background(model.background, outputs[-1].detach(), labels,
                                  self.config.background_momentum)
        return loss, parts

    # -- inference --------------------------------------------------------
    def predict(self, model: StackedHourglass, frames: Iterable[np.ndarray],
                device: torch.device | str = "cpu",
                first_masks: np.ndarray | None = None) -> Iterator[Window]:
        """Yield ``Window(t - 1, labels (2, Y, X) int32)`` for every frame pair ``(t-1, t)``.

        The embeddings of both frames are clustered jointly, so the two frames
        of a window share labels. A one-frame sequence yields ``Window(0, (1, Y, X))``.
        ``first_masks`` is ignored (the method is not semi-supervised).
        """
        params, sizes = ClusterParams.of(self.config), self.config.instance_area
        model.eval()
        device = torch.device(device)
        # float32 unless infer_bfloat16 (1.8x faster on a CPU with the kernels, but other
        # objects: docs/results.md, session 49); clustering runs in float32 either way
        model, fast = with_precision(model, self.config, device, inference=True)
        # every member of an ensemble, each seeing every flip, with a recurrent state each
        views = list(itertools.product(members(model), FLIPS if self.config.tta else ((),)))
        backgrounds = [net.background.detach().cpu().numpy().astype(np.float32)
                       for net, _ in views]
        reference = (np.concatenate(backgrounds) / math.sqrt(len(views))
                     if all(np.linalg.norm(b) > 0 for b in backgrounds) else None)
        states: list = [None] * len(views)
        previous: tuple | None = None
        t = -1
        for t, frame in enumerate(frames):
            current, states = _embed(self.frame_tensor(frame, t, device), states, views,
                                     fast, self.config.embedding_dim,
                                     params.cluster_foreground_prob)
            # the frame itself, for the noise test of pieces at the edge (cluster_orphans)
            current = (*current, np.asarray(frame, np.float32).mean(0)
                       if params.cluster_orphans else None)
            if previous is not None:
                labels = _cluster([previous, current], params, reference, sizes)
                yield Window(t - 1, labels)
            previous = current
        if t == 0:
            yield Window(0, _cluster([previous], params, reference, sizes))


def _cluster(frames: list[tuple], params: ClusterParams, reference: np.ndarray | None,
             sizes: tuple[float, float]) -> np.ndarray:
    """Joint labels ``(T, Y, X)`` int32 of frames given as (embeddings, foreground or None,
    frame plane or None)."""
    foreground = None if frames[0][1] is None else np.stack([f[1] for f in frames])
    images = None if frames[0][2] is None else np.stack([f[2] for f in frames])
    labels = cluster_embeddings(np.stack([f[0] for f in frames]), params, reference,
                                foreground=foreground, instance_area=sizes, images=images)
    return np.asarray(labels, dtype=np.int32)



@torch.inference_mode()
def _embed(image: torch.Tensor, states: list, views: list, bfloat16: bool, embedding_dim: int,
           foreground_prob: float):
    """Last stack's ``(embeddings (d * V, Y, X), foreground (Y, X) bool or None)`` (numpy)
    of one frame ``(1, C, Y, X)`` seen in ``V`` views, ``(network, flips)`` pairs (an
    ensemble's members, test-time flips), and the views' new states.

    The views' unit embeddings are flipped back and concatenated, scaled by
    ``1 / sqrt(V)`` so that the result is a unit vector again; foreground logits are
    averaged. Grad mode is switched off here, per frame, rather than around the
    generator in :meth:`CosineHourglass.predict`, whose caller runs between the yields.
    """
    embeddings, logits, new_states = [], [], []
    for (model, flips), state in zip(views, states, strict=True):
        with torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=bfloat16):
            outputs, state = model.step(image.flip(flips) if flips else image, state)
        out = outputs[-1][0].float()
        out = out.flip(flips) if flips else out
        embedding, logit = split_foreground(out, embedding_dim, 0)
        embeddings.append(embedding)
        logits.append(logit)
        new_states.append(state)
    joined = torch.cat(embeddings) / math.sqrt(len(views))
    # sigmoid(logit) > p  <=>  logit > log(p / (1 - p))
    foreground = (None if logits[0] is None else
                  (torch.stack(logits).mean(0) > math.log(foreground_prob / (1 - foreground_prob))
                   ).cpu().numpy())
    return (joined.cpu().numpy(), foreground), new_states


def update_background(background: torch.Tensor, embeddings: torch.Tensor, labels: torch.Tensor,
                      momentum: float) -> None:
    """Exponential moving average (in place) of the background direction ``(d,)``.

    ``embeddings`` ``(B, T, d, Y, X)``, ``labels`` ``(B, T, Y, X)``. The first
    batch with background pixels sets the direction; the result stays a unit vector.
    """
    direction = background_direction(embeddings, labels)
    if direction is None:
        return
    direction = direction.to(background.dtype)
    if float(background.norm()) == 0:
        background.copy_(direction)
        return
    background.copy_(F.normalize(momentum * background + (1 - momentum) * direction, dim=0))
