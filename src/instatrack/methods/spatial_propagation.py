"""Video instance segmentation with a spatial propagation network
(Cheng, Liu, Tsai, Hung, De Mello, Gu, Kautz, Wang, Yang, DAVIS challenge 2017).

Semi-supervised: the masks of the first frame are given. The pipeline is

1. a generic foreground network (trained here) gives an object-vs-background
   mask for every frame;
2. per object, a copy of the network's light head (``finetune="head"``) or of
   the whole network (``finetune="all"``, as in the paper) is fine-tuned on the
   augmented first frame; its score map, kept only inside the foreground, is
   the object's coarse map;
3. a spatial propagation network, with gates predicted from the image and the
   foreground features, refines all coarse maps of a frame at once;
4. the connected-region filter (:mod:`instatrack.cluster.regions`) keeps the
   region matching the object's previous mask (shifted by its motion) and
   large regions; each pixel goes to the object with the highest refined score,
   background when all are below ``score_threshold``.

Additions to the paper, for look-alike objects such as cells (whose score
maps barely differ): a large extra region is kept only near the object
(``region_max_distance``) and when no other object's best region holds it,
and a pixel claimed by several objects goes to the one whose previous mask
is nearest (``contest="distance"``). Before the filter, each object's mask in
the previous frame, carried into this frame by optical flow, is blended into
its refined scores (``flow_prior``, :mod:`instatrack.cluster.flow`): the flow
follows an object whose looks change faster than its head can learn them. The
``paper`` preset turns these off (``region_max_distance=inf``,
``contest="score"``, ``flow_prior=0``). With ``colour_prior`` (off by default), each
object's colours against the background's, learnt on frame 0 and renewed from each
frame's result, are added to its blended scores as evidence
(:mod:`instatrack.cluster.colour`).

Training teaches the foreground net (BCE against ``label > 0``) and the SPN
(refine a degraded ground-truth instance mask back into the mask).

With ``previous_mask`` (MaskTrack, Perazzi et al. 2017) the foreground net
reads one more input channel, the object's mask in the previous frame, and
predicts that object rather than all foreground: in training the channel is
one ground-truth instance jittered into the errors of a previous frame's
prediction (:func:`~instatrack.losses.propagation.jitter_masks`: moved,
scaled, turned, thickened or thinned, partly cut away) and the target is that
instance; at inference each object runs with the mask the method gave it one
frame earlier (frame 1: the first-frame mask), and its head, fine-tuned on
frame 0 with jittered first masks as the channel, reads those features.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from instatrack.cluster.colour import ColourModels, ColourSettings, add_evidence
from instatrack.cluster.crf import CRFParams, crf_refine_near
from instatrack.cluster.flow import backward_flow, blend_carried, carry_masks, grey
from instatrack.cluster.regions import ObjectMemory, RegionSettings, filter_and_assign
from instatrack.config import TrainConfig
from instatrack.data.augment import Augmenter
from instatrack.errors import DataError
from instatrack.losses.propagation import (
    balance_weights,
    binary_cross_entropy,
    degrade_masks,
    jitter_masks,
    masked_mean,
    morph,
    pick_instances,
    weighted_bce_with_logits,
)
from instatrack.methods.base import Method, Window
from instatrack.models.ensemble import Ensemble, members
from instatrack.models.foreground import ForegroundNet, replicate_head
from instatrack.models.spn import SpatialPropagationNetwork
from instatrack.settings import Settings, require

#: (image (1, C, Y, X), features, previous masks) -> per-object logits (1, K, Y, X);
#: features (1, W, Y, X) and previous None, or with ``previous_mask`` per object:
#: features (K, W, Y, X) of the image with each object's previous mask (K, 1, Y, X)
Scorer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class FirstFrameTuning(Settings):
    """Inference of the method: the foreground cut and the per-object fine-tuning on frame 0.

    Both happen on the sequence being tracked, never in training, so a trained
    run may change them. ``finetune``: ``"head"`` (a light head per object on
    frozen features) or ``"all"`` (a copy of the whole network, as the paper);
    ``finetune_pool``: augmented copies of frame 0 the heads train on;
    ``finetune_object_bias``: fraction of the training windows centred on the
    object, the others anywhere in the frame (so the far background is seen too).
    ``finetune_zoom``: the augmented copies are also magnified about a random object
    by a factor drawn log-uniformly from 1 to this (1 = off): an object that comes
    towards the camera grows many times over a video (DAVIS ``motocross-jump``: ~20x),
    and heads that saw it only at its first size lose it (Khoreva et al.'s "lucid data
    dreaming" draws such changes from the first frame alone).
    ``finetune_dream``: the share of augmented copies "dreamt" first (:func:`dreamed`,
    Khoreva et al.'s lucid data dreaming; 0 = off): each object cut out, its hole in
    the background filled from around it, then the object moved, turned and scaled and
    the background shifted on their own, so the heads learn the object by its look
    rather than by where it sits in frame 0.
    ``finetune_seed``: added to the run's ``seed`` for the fine-tuning's random draws
    (the augmented copies, the training windows; 0 = the run's own). The result of a
    video depends on that draw (DAVIS ``motocross-jump``: J&F 0.468-0.519 over ten
    draws, docs/propagation_pretraining.md, session 56): vary it to see by how much.
    ``finetune_draws``: the video is followed this many times, each with the heads
    fitted on the next draw (``finetune_seed``, ``+ 1``, ...), and each pixel of each frame
    takes the label most of them give it (a tie goes to the background; odd numbers
    avoid ties). It costs as many times the time a frame and lowers the result's
    dependence on the draw, a little (DAVIS ``motocross-jump``, every group of draws 0-9:
    single draws 0.468-0.519, mean 0.495; three voted 0.470-0.520, mean 0.500; five
    voted 0.474-0.518, mean 0.503; docs/propagation_pretraining.md, session 57).
    ``previous_dilate`` (with ``previous_mask``): each object's previous mask is
    dilated by this fraction of its equivalent radius before the net reads it. The
    conditioned net tends to keep a part of the mask it is given, and fed its own
    output an approaching object shrinks away frame by frame
    (docs/propagation_pretraining.md); a wider prior leaves it room to grow.
    ``online_steps`` (0 = off): after each frame the per-object heads (or networks)
    train this many steps on the frame's own result (OnAVOS: an object that changes its
    looks or size over a video is learnt again as it goes; :meth:`TunedObjects.adapt`),
    with pixels beyond ``online_margin`` object radii of every found object as
    background. Defaults chosen on held-out synthetic videos with two parent networks
    (docs/propagation_pretraining.md, "Online adaptation"); about twice the time a frame.
    """

    post_processing = True

    fg_threshold: float = 0.5
    finetune: str = "head"
    finetune_steps: int = 50
    finetune_lr: float = 1e-3
    finetune_batch: int = 4
    finetune_pool: int = 8
    finetune_object_bias: float = 0.5
    finetune_zoom: float = 1.0
    finetune_dream: float = 0.0
    finetune_seed: int = 0
    finetune_draws: int = 1
    previous_dilate: float = 0.0
    online_steps: int = 60
    online_margin: float = 0.25

    def check(self) -> None:
        super().check()
        require(0 <= self.previous_dilate <= 2,
                f"previous_dilate must be in [0, 2] (object radii), got {self.previous_dilate}")
        require(self.online_steps >= 0, f"online_steps must be >= 0, got {self.online_steps}")
        require(self.online_margin > 0,
                f"online_margin must be > 0 (object radii), got {self.online_margin}")
        require(self.finetune_zoom >= 1,
                f"finetune_zoom must be >= 1 (1 = off), got {self.finetune_zoom}")
        require(0 <= self.finetune_dream <= 1,
                f"finetune_dream must be in [0, 1], got {self.finetune_dream}")
        require(self.finetune_seed >= 0,
                f"finetune_seed must be >= 0, got {self.finetune_seed}")
        require(self.finetune_draws >= 1,
                f"finetune_draws must be >= 1, got {self.finetune_draws}")
        require(0 <= self.finetune_object_bias <= 1,
                f"finetune_object_bias must be in [0, 1], got {self.finetune_object_bias}")
        require(0 < self.fg_threshold < 1,
                f"fg_threshold must be in (0, 1), got {self.fg_threshold}")
        require(self.finetune in ("head", "all"),
                f"finetune must be 'head' or 'all', got {self.finetune!r}")
        require(self.finetune_steps >= 0,
                f"finetune_steps must be >= 0, got {self.finetune_steps}")
        require(self.finetune_lr > 0, f"finetune_lr must be > 0, got {self.finetune_lr}")
        for name in ("finetune_batch", "finetune_pool"):
            require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class SpatialPropagationConfig(TrainConfig, FirstFrameTuning, RegionSettings, CRFParams,
                               ColourSettings):
    """Foreground net, SPN and training degradations; fine-tuning, filtering and the dense
    CRF in the bases.

    ``crf`` is on here (off in the base): each frame's per-object scores, after the
    carried masks are blended in, go through the dense CRF of
    :mod:`instatrack.cluster.crf` with its default kernels before the region filter, so
    outlines follow the image's colour edges and do not fray frame by frame (session 36:
    held-out synthetic videos 0.852 -> 0.900 zooming, 0.786 -> 0.834 at 480x854, level
    at 240x432; docs/propagation_pretraining.md, "A dense CRF on the carried scores").
    """

    # the propagation's many small steps ran 2x slower under bfloat16 autocast on a CPU
    cpu_amp: ClassVar[bool] = False

    crf: bool = True

    # foreground network
    fg_width: int = 16
    fg_levels: int = 3
    fg_blocks: int = 1
    backbone: str = ""
    # spatial propagation network
    spn_width: int = 16
    spn_depth: int = 3
    spn_weight: float = 1.0
    # degradation of GT masks into coarse maps when training the SPN
    degrade_shift: int = 4
    degrade_radius: int = 3
    degrade_blur: int = 2
    degrade_noise: float = 0.1
    # condition the foreground net on the object's mask in the previous frame (one more
    # input channel, MaskTrack); the net then predicts that object, not all foreground.
    # Off for runs saved before the key existed.
    previous_mask: bool = False
    # jitter of the ground-truth mask into a previous-frame mask (training and the
    # fine-tuning on frame 0): shift and scale (log) in object sizes, turn in degrees,
    # dilation/erosion in pixels, probability of cutting a part away
    previous_shift: float = 0.15
    previous_scale: float = 0.3
    previous_rotation: float = 15.0
    previous_radius: int = 4
    previous_drop: float = 0.3

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "fast": {
            "fg_width": 8, "fg_levels": 3, "fg_blocks": 1, "spn_width": 8, "spn_depth": 2,
            "crop": (64, 64), "batch_size": 4, "steps": 4000, "lr": 1e-3, "lr_final": 1e-4,
            "finetune": "head", "finetune_steps": 1000, "finetune_pool": 4, "finetune_lr": 5e-3,
            "finetune_batch": 8,
            "val_every": 500,
        },
        # The paper fine-tunes a whole ResNet-101 per object; this keeps full
        # fine-tuning and a deeper, wider residual net (not the exact ResNet-101).
        "paper": {
            "fg_width": 64, "fg_levels": 4, "fg_blocks": 2, "spn_width": 32, "spn_depth": 4,
            "crop": (320, 320), "batch_size": 4, "steps": 30000, "lr": 1e-4, "lr_final": 1e-5,
            "finetune": "all", "finetune_steps": 300, "finetune_lr": 1e-5, "finetune_batch": 2,
            "online_steps": 0, "flow_prior": 0.0, "crf": False,
            "region_max_distance": float("inf"), "contest": "score",
        },
    }

    def check(self) -> None:
        super().check()
        for name in ("fg_width", "fg_levels", "fg_blocks", "spn_width", "spn_depth"):
            require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("degrade_shift", "degrade_radius", "degrade_blur"):
            require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("spn_weight", "degrade_noise", "previous_shift", "previous_scale",
                     "previous_rotation", "previous_radius"):
            require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        require(0 <= self.previous_drop <= 1,
                f"previous_drop must be in [0, 1], got {self.previous_drop}")


class PropagationModel(nn.Module):
    """Foreground net + SPN whose guidance sees the image and the foreground features.

    With ``config.previous_mask`` the foreground net reads the image and one more
    channel, an object's previous mask (:meth:`inputs`).
    """

    def __init__(self, in_channels: int, config: SpatialPropagationConfig):
        super().__init__()
        self.previous_mask = config.previous_mask
        self.fg = ForegroundNet(in_channels + int(config.previous_mask), config.fg_width,
                                config.fg_levels, config.fg_blocks)
        self.spn = SpatialPropagationNetwork(in_channels + config.fg_width,
                                             config.spn_width, config.spn_depth)

    def inputs(self, image: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """The foreground net's input: ``image`` ``(B, C, Y, X)``, with ``previous``
        ``(B, 1, Y, X)`` (an object's previous mask; none: empty) appended when the
        net is conditioned on it."""
        if not self.previous_mask:
            return image
        if previous is None:
            previous = torch.zeros_like(image[:, :1])
        return torch.cat([image, previous.to(image.dtype)], 1)

    def forward(self, image: torch.Tensor, previous: torch.Tensor | None = None
                ) -> torch.Tensor:
        """``(B, C, Y, X)`` -> foreground logits ``(B, 1, Y, X)`` (of the object whose
        previous mask is ``previous``, when conditioned on it)."""
        return self.fg(self.inputs(image, previous))

    def refine(self, coarse: torch.Tensor, image: torch.Tensor, features: torch.Tensor
               ) -> torch.Tensor:
        """Coarse probabilities ``(B, K, Y, X)`` -> refined probabilities, same shape.

        The SPN works on ``2 p - 1`` so that background (-1) and object (+1)
        are symmetric and the bound ``|h| <= 1`` keeps the result in ``[0, 1]``.
        """
        refined = self.spn(2 * coarse.float() - 1, torch.cat([image, features], 1).float())
        return (refined + 1) / 2


class SpatialPropagation(Method):
    """Semi-supervised video instance segmentation (first-frame masks required)."""

    name = "spatial-propagation"
    config_cls = SpatialPropagationConfig
    temporal = False
    needs_first_masks = True
    demo_steps = 200
    ensembles = True

    def build_model(self) -> PropagationModel:
        return PropagationModel(self.config.in_channels, self.config)

    def initialise(self, model: PropagationModel) -> None:
        """Start the foreground net from ``backbone`` (a local weights file) when given."""
        if self.config.backbone:
            model.fg.load_backbone(self.config.backbone)

    # -- training ---------------------------------------------------------
    def loss(self, model: PropagationModel, batch: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        image, labels = batch["image"], batch["labels"]
        x = image.flatten(0, 1)
        labels = labels.flatten(0, 1)
        valid = labels >= 0
        target, has_instance = pick_instances(labels)
        if cfg.previous_mask:
            # follow one object from a jittered copy of its mask; none: nothing to follow
            previous = jitter_masks(target[:, None], cfg.previous_shift, cfg.previous_scale,
                                    cfg.previous_rotation, cfg.previous_radius,
                                    cfg.previous_drop)
            fg_target = target
        else:
            previous, fg_target = None, (labels > 0).float()
        features, logits = model.fg.forward_features(model.inputs(x, previous))
        fg_loss = masked_mean(F.binary_cross_entropy_with_logits(
            logits[:, 0].float(), fg_target, reduction="none"), valid)

        coarse = degrade_masks(target[:, None], cfg.degrade_shift, cfg.degrade_radius,
                               cfg.degrade_blur, cfg.degrade_noise)
        # half of the maps are also cut to the predicted foreground, as at inference
        use_fg = torch.rand(len(x), 1, 1, 1, device=x.device) < 0.5
        coarse = torch.where(use_fg, coarse * torch.sigmoid(logits.detach().float()), coarse)
        refined = model.refine(coarse, x, features)[:, 0]
        spn_loss = masked_mean(binary_cross_entropy(refined, target),
                               valid & has_instance[:, None, None])
        total = fg_loss + cfg.spn_weight * spn_loss
        return total, {"fg": float(fg_loss.detach()), "spn": float(spn_loss.detach())}

    # -- inference --------------------------------------------------------
    def predict(self, model: PropagationModel | Ensemble, frames: Iterable[np.ndarray],
                device: torch.device | str = "cpu",
                first_masks: np.ndarray | None = None) -> Iterator[Window]:
        """Propagate ``first_masks`` (``(Y, X)`` labels of frame 0) through ``frames``.

        Yields ``Window(t, labels (1, Y, X) int32, tracked=True)`` per frame, the
        first one being ``first_masks`` itself; objects keep their first-frame ids.
        ``model`` may be an :class:`~instatrack.models.ensemble.Ensemble` of networks:
        each fits its own heads, and their per-object scores are averaged.
        """
        first, ids = check_first_masks(first_masks)
        device = torch.device(device)
        draws = self.config.finetune_draws
        if draws == 1:
            return self._propagate(model, frames, device, first, ids)
        # the runs step through the frames together, so the copies hold one frame at most
        runs = [self._propagate(model, stream, device, first, ids, draw)
                for draw, stream in enumerate(itertools.tee(frames, draws))]
        return (Window(windows[0].start, plurality([w.labels for w in windows], ids),
                       tracked=True)
                for windows in zip(*runs, strict=True))

    def _propagate(self, model: PropagationModel | Ensemble, frames: Iterable[np.ndarray],
                   device: torch.device, first: np.ndarray, ids: np.ndarray, draw: int = 0
                   ) -> Iterator[Window]:
        """One run through ``frames`` with the heads fitted on draw ``finetune_seed +
        draw``."""
        cfg = self.config
        model.eval()
        nets = members(model)
        iterator = iter(frames)
        frame = next(iterator, None)
        if frame is None:
            return
        array = frame_array(frame, first.shape, cfg.in_channels, 0)
        scorers = [self._instance_scorer(net, array, first, ids, device, draw) for net in nets]
        yield Window(0, first.astype(np.int32)[None], tracked=True)
        masks = first[None] == ids[:, None, None]
        memory = ObjectMemory(masks)
        previous = (torch.from_numpy(masks).float()[:, None].to(device)
                    if cfg.previous_mask else None)
        last_grey = grey(array) if cfg.flow_prior else None  # the flow's previous frame
        crf_params = CRFParams.of(cfg) if cfg.crf else None
        colours = ColourModels(array, masks, cfg.colour_bins) if cfg.colour_prior else None
        for t, frame in enumerate(iterator, start=1):
            array = frame_array(frame, first.shape, cfg.in_channels, t)
            image = torch.from_numpy(array).to(device)[None]
            given = widened(previous, cfg.previous_dilate)
            with torch.inference_mode():
                refined = [self._refined_scores(net, scorer, image, given)
                           for net, scorer in zip(nets, scorers, strict=True)]
            # an ensemble's members each fit their own heads; their scores are averaged
            scores = np.mean([member_scores for member_scores, _ in refined], axis=0,
                             dtype=np.float32)
            if cfg.flow_prior:
                now = grey(array)
                carried = carry_masks(memory.latest, backward_flow(
                    now, last_grey, cfg.flow_radius, cfg.flow_scale), cfg.flow_edge)
                blend_carried(scores, carried, memory.latest.any((1, 2)), cfg.flow_prior)
                last_grey = now
            if colours is not None:
                add_evidence(scores, colours.log_ratio(array), cfg.colour_prior)
            if cfg.crf:
                scores = crf_refine_near(image[0], torch.from_numpy(scores), crf_params).numpy()
            labels = filter_and_assign(scores, memory, ids, self.config)
            if colours is not None and cfg.colour_update:
                colours.update(array, labels, ids, cfg.colour_update)
            if cfg.online_steps:
                for scorer, (_, features) in zip(scorers, refined, strict=True):
                    scorer.adapt(image, features, given, labels)
            if previous is not None:
                # an object lost in this frame keeps the last mask it had
                current = object_masks(labels, ids, device)
                found = current.flatten(1).any(1)[:, None, None, None]
                previous = torch.where(found, current, previous)
            yield Window(t, labels[None], tracked=True)

    def _refined_scores(self, model: PropagationModel, scorer: Scorer, image: torch.Tensor,
                        previous: torch.Tensor | None = None
                        ) -> tuple[np.ndarray, torch.Tensor]:
        """Refined per-object probabilities ``(K, Y, X)`` for one frame ``(1, C, Y, X)``,
        and the foreground net's features the heads read;
        ``previous`` ``(K, 1, Y, X)``: the objects' masks in the previous frame, with
        ``previous_mask`` (the net then runs once per object)."""
        if previous is None:
            features, fg_logits = model.fg.forward_features(image)
            foreground = torch.sigmoid(fg_logits) > self.config.fg_threshold
            coarse = torch.sigmoid(scorer(image, features, None)) * foreground
            return model.refine(coarse, image, features)[0].cpu().numpy(), features
        images = image.expand(len(previous), -1, -1, -1)
        features, fg_logits = model.fg.forward_features(model.inputs(images, previous))
        foreground = torch.sigmoid(fg_logits) > self.config.fg_threshold
        coarse = torch.sigmoid(scorer(image, features, previous))[0][:, None] * foreground
        return model.refine(coarse, images, features)[:, 0].cpu().numpy(), features

    def _instance_scorer(self, model: PropagationModel, frame: np.ndarray, first: np.ndarray,
                         ids: np.ndarray, device: torch.device, draw: int = 0) -> Scorer:
        """Per-object models fine-tuned on frame 0 ``(C, Y, X)`` and its labels ``(Y, X)``,
        on draw ``finetune_seed + draw``."""
        cfg = self.config
        if draw:
            cfg = dataclasses.replace(cfg, finetune_seed=cfg.finetune_seed + draw)
        tune = TunedHeads if cfg.finetune == "head" else TunedNetworks
        # the caller may be inside no_grad; fine-tuning needs gradients
        with torch.enable_grad():
            return tune(model.fg, frame, first, ids, cfg, device)


# -- per-object fine-tuning ---------------------------------------------------
class TunedObjects:
    """Per-object models trained on ``crop``-sized windows of augmented copies of frame 0;
    called as a :data:`Scorer`. :class:`TunedHeads` and :class:`TunedNetworks` say what
    the models are, what they read and where frame 0's windows come from
    (:meth:`_frame0_windows`).

    ``models`` maps ``(B, ..., Y, X)`` inputs to ``(B, K, Y, X)`` logits, one channel per
    object. With ``online_steps``, :meth:`adapt` trains the models further on each
    frame's own result.
    """

    def __init__(self, models: nn.Module, ids: np.ndarray, cfg: SpatialPropagationConfig,
                 rng: np.random.Generator, device: torch.device):
        self.cfg, self.ids, self.rng, self.device = cfg, ids, rng, device
        self.models = models
        self.optimiser = torch.optim.Adam(models.parameters(), lr=cfg.finetune_lr)
        self._train(cfg.finetune_steps)

    def _frame0_windows(self, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``count`` training windows of augmented copies of frame 0: inputs, targets
        ``(count, K, h, w)`` and trained pixels ``(count, 1, h, w)``."""
        raise NotImplementedError

    def _inputs(self, image: torch.Tensor, image_features: torch.Tensor,
                previous: torch.Tensor | None) -> torch.Tensor:
        """What the models read for a frame: ``image`` ``(1, C, Y, X)``, the foreground
        net's ``image_features`` and the objects' ``previous`` masks (see :data:`Scorer`)."""
        raise NotImplementedError

    def _windows(self, source: tuple[torch.Tensor, ...], count: int
                 ) -> tuple[torch.Tensor, ...]:
        """``count`` ``crop``-sized windows cut alike from each tensor of ``source``
        (inputs, targets ``(N, K, Y, X)``, trained pixels), placed by the targets
        (:func:`object_windows`)."""
        windows = object_windows(source[1], self.cfg.crop, count, self.rng,
                                 self.cfg.finetune_object_bias)
        return tuple(gather_windows(x, windows) for x in source)

    def _train(self, steps: int, current: tuple[torch.Tensor, ...] | None = None) -> None:
        """``steps`` steps on windows of frame 0 (:meth:`_frame0_windows`); with
        ``current`` (inputs ``(1, ..., Y, X)``, targets ``(1, K, Y, X)`` and trained pixels
        ``(1, K, Y, X)`` of a later frame), half of each batch's windows come from it."""
        cfg = self.cfg
        from_first = cfg.finetune_batch // 2 if current is not None else cfg.finetune_batch
        k = len(self.ids)
        self.models.train()
        for _ in range(steps):
            parts = []
            if current is not None and cfg.finetune_batch > from_first:
                parts.append(self._windows(current, cfg.finetune_batch - from_first))
            if from_first:
                parts.append(self._frame0_windows(from_first))
            parts = [(inputs, targets, valid.expand(-1, k, -1, -1))
                     for inputs, targets, valid in parts]
            inputs, targets, valid = (torch.cat(stack) for stack in zip(*parts, strict=True))
            loss = weighted_bce_with_logits(self.models(inputs), targets, valid,
                                            balance_weights(targets))
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()
        self.models.eval()

    def __call__(self, image: torch.Tensor, image_features: torch.Tensor,
                 previous: torch.Tensor | None) -> torch.Tensor:
        return self.models(self._inputs(image, image_features, previous))

    def adapt(self, image: torch.Tensor, image_features: torch.Tensor,
              previous: torch.Tensor | None, labels: np.ndarray) -> None:
        """Online adaptation (Voigtlaender & Leibe 2017, OnAVOS): ``online_steps`` steps
        on this frame, with its found ``labels`` ``(Y, X)`` as targets: each object's
        mask, eroded by a tenth of its equivalent radius, is the object; pixels farther
        than ``online_margin`` radii from every object are background; the band between
        is not trained on. Half of each batch still comes from frame 0, so the models
        keep what the given masks taught them."""
        cfg = self.cfg
        targets, valid = confident_targets(labels, self.ids, cfg.online_margin)
        if targets is None:
            return
        # a copy: the inputs were made under inference mode, which autograd cannot save
        inputs = self._inputs(image, image_features, previous).clone()
        with torch.enable_grad():
            self._train(cfg.online_steps,
                        (inputs, targets.to(self.device), valid.to(self.device)))


class TunedHeads(TunedObjects):
    """``K`` copies of ``fg.head`` on frozen features of the foreground net.

    ``frame`` ``(C, Y, X)``, ``first`` ``(Y, X)`` labels, ``ids`` ``(K,)``. The
    backbone runs once on a pool of ``finetune_pool`` augmented frames; with
    ``previous_mask`` once per copy and object, with that object's jittered mask as the
    channel, and head ``k`` reads object ``k``'s features. The heads then train on
    windows of this pool (only the windows are copied, never the pool), so a step costs
    the same for any frame size.
    """

    def __init__(self, fg: ForegroundNet, frame: np.ndarray, first: np.ndarray,
                 ids: np.ndarray, cfg: SpatialPropagationConfig, device: torch.device):
        rng = fitting_rng(cfg)
        images, targets, valid = augmented_copies(frame, first, ids, cfg.finetune_pool, rng,
                                                  device, cfg.finetune_zoom, cfg.finetune_dream)
        with torch.no_grad():
            inputs = pool_inputs(images, targets, cfg, rng)
            features = torch.cat([fg.forward_features(chunk)[0]
                                  for chunk in inputs.split(cfg.finetune_batch)])
            if cfg.previous_mask:
                features = features.reshape(len(images), -1, *features.shape[2:])
        self.pool = (features, targets, valid)
        heads = replicate_head(fg.head, len(ids), own_inputs=cfg.previous_mask)
        super().__init__(heads, ids, cfg, rng, device)

    def _frame0_windows(self, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._windows(self.pool, count)

    def _inputs(self, image: torch.Tensor, image_features: torch.Tensor,
                previous: torch.Tensor | None) -> torch.Tensor:
        if previous is not None:  # (K, W, Y, X): object k's features to head k
            return image_features.reshape(1, -1, *image_features.shape[2:])
        return image_features


class TunedNetworks(TunedObjects):
    """One full copy of the foreground net per object (``finetune="all"``, as in the
    paper); with ``previous_mask`` copy ``k`` reads the image and object ``k``'s
    previous mask. Every step augments frame 0 afresh, one copy per window: a whole
    network fitted a pool of 4 copies worse (DAVIS J&F 0.277 against 0.313, one run each,
    docs/propagation_pretraining.md, session 32)."""

    def __init__(self, fg: ForegroundNet, frame: np.ndarray, first: np.ndarray,
                 ids: np.ndarray, cfg: SpatialPropagationConfig, device: torch.device):
        self.frame, self.first = frame, first
        nets = PerObjectNets(fg, len(ids), own_inputs=cfg.previous_mask)
        super().__init__(nets, ids, cfg, fitting_rng(cfg), device)

    def _frame0_windows(self, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        images, targets, valid = self._windows(
            augmented_copies(self.frame, self.first, self.ids, count, self.rng, self.device,
                             cfg.finetune_zoom, cfg.finetune_dream), count)
        inputs = pool_inputs(images, targets, cfg, self.rng)
        if cfg.previous_mask:
            inputs = inputs.reshape(count, -1, *inputs.shape[2:])
        return inputs, targets, valid

    def _inputs(self, image: torch.Tensor, image_features: torch.Tensor,
                previous: torch.Tensor | None) -> torch.Tensor:
        if previous is None:
            return image
        images = image.expand(len(previous), -1, -1, -1)
        return torch.cat([images, previous.to(image.dtype)], 1).reshape(
            1, -1, *image.shape[2:])


class PerObjectNets(nn.Module):
    """``copies`` independent copies of ``net`` evaluated as one, like
    :func:`~instatrack.models.foreground.replicate_head` for a head: every copy reads the
    input ``(B, C, Y, X)``, or with ``own_inputs`` its own group ``k`` of a
    ``(B, copies * C, Y, X)`` input; output ``(B, copies, Y, X)``, channel ``k`` from copy
    ``k``."""

    def __init__(self, net: nn.Module, copies: int, own_inputs: bool = False):
        super().__init__()
        self.nets = nn.ModuleList(copy.deepcopy(net) for _ in range(copies))
        self.own_inputs = own_inputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.chunk(len(self.nets), 1) if self.own_inputs else [x] * len(self.nets)
        return torch.cat([net(part) for net, part in zip(self.nets, parts, strict=True)], 1)


def plurality(labels: list[np.ndarray], ids: np.ndarray) -> np.ndarray:
    """Each pixel's most frequent label among ``labels`` (arrays of one shape holding 0 and
    ``ids``); a tie goes to the background, then to the earlier id."""
    values = np.concatenate([[0], ids]).astype(labels[0].dtype)
    counts = np.stack([sum((lab == value).astype(np.int32) for lab in labels)
                       for value in values])
    return values[counts.argmax(0)]


def fitting_rng(cfg: SpatialPropagationConfig) -> np.random.Generator:
    """The random draws of the per-object fine-tuning on frame 0: the run's ``seed``
    offset by ``finetune_seed``."""
    return np.random.default_rng(cfg.seed + cfg.finetune_seed)


def pool_inputs(images: torch.Tensor, targets: torch.Tensor, cfg: SpatialPropagationConfig,
                rng: np.random.Generator) -> torch.Tensor:
    """The foreground net's inputs for a pool of ``images`` ``(N, C, Y, X)``: the images;
    with ``previous_mask`` every image once per object ``(N * K, C + 1, Y, X)``, with that
    object's mask of ``targets`` ``(N, K, Y, X)`` jittered as the channel."""
    if not cfg.previous_mask:
        return images
    n, k, Y, X = targets.shape
    previous = previous_masks(targets.reshape(n * k, 1, Y, X), cfg, rng)
    return torch.cat([images.repeat_interleave(k, 0), previous], 1)


def confident_targets(labels: np.ndarray, ids: np.ndarray, margin: float
                      ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Targets ``(1, K, Y, X)`` and trained pixels ``(1, K, Y, X)`` from a frame's own
    ``labels`` (:meth:`TunedObjects.adapt`); None, None when no object was found. An
    object missing from ``labels`` (hidden, or lost) trains on no pixel of the frame,
    so its head is not taught that it is gone."""
    from scipy import ndimage as ndi

    masks = labels[None] == ids[:, None, None]
    areas = masks.reshape(len(ids), -1).sum(1)
    if not areas.any():
        return None, None
    cores = np.zeros_like(masks)
    near = np.zeros(labels.shape, bool)
    for k, (mask, area) in enumerate(zip(masks, areas, strict=True)):
        if not area:
            continue
        radius = float(np.sqrt(area / np.pi))
        cores[k] = ndi.distance_transform_edt(mask) > max(1.0, 0.1 * radius)
        near |= ndi.distance_transform_edt(~mask) <= margin * radius
    valid = (cores.any(0) | ~near)[None] & (areas > 0)[:, None, None]
    return torch.from_numpy(cores).float()[None], torch.from_numpy(valid)[None]


def previous_masks(masks: torch.Tensor, cfg: SpatialPropagationConfig,
                   rng: np.random.Generator) -> torch.Tensor:
    """``(N, 1, Y, X)`` masks jittered as the training jitters previous-frame masks,
    drawn from ``rng`` (fine-tuning on frame 0 is deterministic per ``seed`` and
    ``finetune_seed``)."""
    generator = torch.Generator().manual_seed(int(rng.integers(2 ** 31)))
    return jitter_masks(masks, cfg.previous_shift, cfg.previous_scale, cfg.previous_rotation,
                        cfg.previous_radius, cfg.previous_drop, generator=generator)


def widened(masks: torch.Tensor | None, fraction: float) -> torch.Tensor | None:
    """``(K, 1, Y, X)`` masks each dilated by ``fraction`` of its equivalent radius
    (``sqrt(area / pi)``, rounded to pixels); None stays None."""
    if masks is None or fraction <= 0:
        return masks
    radii = (fraction * torch.sqrt(masks.sum((1, 2, 3)) / torch.pi)).round().int().tolist()
    return torch.cat([morph(mask[None], r) for mask, r in zip(masks, radii, strict=True)])


def object_masks(labels: np.ndarray, ids: np.ndarray, device: torch.device) -> torch.Tensor:
    """The masks of objects ``ids`` ``(K,)`` in ``(Y, X)`` labels, ``(K, 1, Y, X)`` float."""
    return torch.from_numpy(labels[None] == ids[:, None, None]).float()[:, None].to(device)


def augmented_copies(frame: np.ndarray, first: np.ndarray, ids: np.ndarray, count: int,
                     rng: np.random.Generator, device: torch.device, zoom: float = 1.0,
                     dream: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``count`` augmented copies of frame 0 and its per-object masks, copy 0 unaugmented.

    With probability ``dream`` a copy is first dreamt (:func:`dreamed`). Then the
    training augmenter (flips, turns, affine and elastic warps, intensity), then, with
    ``zoom`` > 1, magnifies each copy (:func:`magnified`).
    Returns images ``(N, C, Y, X)``, masks ``(N, K, Y, X)`` float and
    ``(N, 1, Y, X)`` bool, False where a warp brought in pixels from outside.
    """
    augment = Augmenter(rng)
    images, labels = [frame], [first]
    for _ in range(count - 1):
        image, label = (dreamed(frame, first, rng) if dream and rng.random() < dream
                        else (frame, first))
        image, label = augment(image[None], label[None])
        image, label = image[0], label[0]
        if zoom > 1:
            image, label = magnified(image, label, float(np.exp(rng.uniform(0, np.log(zoom)))),
                                     rng)
        images.append(image)
        labels.append(label)
    label_stack = torch.from_numpy(np.stack(labels).astype(np.int64)).to(device)
    masks = (label_stack[:, None] == torch.from_numpy(ids).to(device)[None, :, None, None])
    image_stack = torch.from_numpy(np.stack(images).astype(np.float32)).to(device)
    return image_stack, masks.float(), (label_stack >= 0)[:, None]


def magnified(image: np.ndarray, labels: np.ndarray, factor: float, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(C, Y, X)`` image and ``(Y, X)`` labels magnified ``factor`` times about a
    random object pixel (so larger objects are chosen more often; the frame's centre
    when there is none): the window
    of ``1 / factor`` of the frame around it, kept inside the frame, resized back to the
    frame's size (labels by nearest neighbour, -1 stays -1)."""
    from scipy import ndimage as ndi

    from instatrack.data.rescale import resize_labels

    Y, X = labels.shape
    h, w = max(1, round(Y / factor)), max(1, round(X / factor))
    ys, xs = np.nonzero(labels > 0)
    if len(ys):
        pick = int(rng.integers(len(ys)))
        cy, cx = int(ys[pick]), int(xs[pick])
    else:
        cy, cx = Y // 2, X // 2
    y0, x0 = int(np.clip(cy - h // 2, 0, Y - h)), int(np.clip(cx - w // 2, 0, X - w))
    grown = np.stack([ndi.zoom(channel, (Y / h, X / w), order=1, grid_mode=True,
                               mode="grid-mirror", output=np.float32)
                      for channel in image[:, y0:y0 + h, x0:x0 + w]])
    return grown, resize_labels(labels[y0:y0 + h, x0:x0 + w], (Y, X))


def dreamed(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
            shift: float = 0.15, scale: float = 2.0, turn: float = 20.0
            ) -> tuple[np.ndarray, np.ndarray]:
    """Frame 0 redrawn with its objects moved (Khoreva et al. 2017, lucid data dreaming).

    ``image`` ``(C, Y, X)``, ``labels`` ``(Y, X)`` (0 background, -1 unannotated). The
    objects are cut out and their holes (grown by 3 px, so no rim of the object stays
    behind) filled from the nearest background pixel and smoothed; the background is then
    shifted by up to ``shift`` of the frame and scaled by up to ``scale ** 0.25``, like a
    moving camera, and each object pasted back turned by up to ``turn`` degrees, scaled
    log-uniformly within ``1 / scale`` to ``scale`` and moved by up to ``shift`` of the frame,
    with a gain of 0.8-1.25 on its intensities (a change of light). Returns the new image
    (mirrored at the frame's edges where the background moved) and labels (-1 where the
    background came from outside the frame: not trained on).
    """
    from scipy import ndimage as ndi

    Y, X = labels.shape
    objects = labels > 0
    hole = ndi.binary_dilation(objects, iterations=3)
    filled = image.copy()
    if hole.any() and not hole.all():
        _, (iy, ix) = ndi.distance_transform_edt(hole, return_indices=True)
        smooth = np.stack([ndi.gaussian_filter(channel[iy, ix], 4.0) for channel in image])
        filled[:, hole] = smooth[:, hole]
    size = np.array([Y, X], float)

    def moved(source: np.ndarray, order: int, matrix: np.ndarray, offset: np.ndarray,
              cval: float | None) -> np.ndarray:
        """``source`` transformed; outside it ``cval``, or mirrored with ``None``."""
        return ndi.affine_transform(source, matrix, offset, order=order,
                                    mode="constant" if cval is not None else "mirror",
                                    cval=cval or 0.0,
                                    output=np.float32 if order else source.dtype)

    def transform(centre: np.ndarray, angle: float, factor: float, move: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        """``affine_transform``'s matrix and offset: output pixel p reads input
        ``centre + R^-1 (p - centre - move) / factor``."""
        c, s = np.cos(angle), np.sin(angle)
        matrix = np.array([[c, s], [-s, c]]) / factor
        return matrix, centre - matrix @ (centre + move)

    matrix, offset = transform((size - 1) / 2, 0.0, float(scale ** rng.uniform(-0.25, 0.25)),
                               rng.uniform(-shift, shift, 2) * size)
    out = np.stack([moved(channel, 1, matrix, offset, None) for channel in filled])
    background = np.where(labels < 0, -1, 0)
    new_labels = moved(background, 0, matrix, offset, -1).astype(labels.dtype)
    for obj in np.unique(labels[objects]):
        mask = (labels == obj).astype(np.float32)
        centre = np.array(ndi.center_of_mass(mask))
        matrix, offset = transform(centre, np.deg2rad(rng.uniform(-turn, turn)),
                                   float(scale ** rng.uniform(-1, 1)),
                                   rng.uniform(-shift, shift, 2) * size)
        weight = moved(mask, 1, matrix, offset, 0.0)
        pasted = weight > 0.5
        gain = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
        for channel in range(len(image)):  # the object's own pixels only, none of its rim
            out[channel][pasted] = (moved(image[channel] * mask, 1, matrix, offset, 0.0)
                                    [pasted] / weight[pasted] * gain)
        new_labels[pasted] = obj
    return out.astype(np.float32), new_labels


def object_windows(masks: torch.Tensor, size: tuple[int, int], count: int,
                   rng: np.random.Generator, object_bias: float = 1.0
                   ) -> list[tuple[int, slice, slice]]:
    """``count`` windows ``(sample, rows, columns)`` of ``size`` (at most the frame) in
    ``(N, K, Y, X)`` masks of a random sample each. With probability ``object_bias``
    a window is around a random pixel of a random object (jittered by up to a
    quarter window), so that every object's model sees its object; otherwise
    anywhere, so that it also sees the background far from the object.
    """
    n, k, Y, X = masks.shape
    h, w = min(size[0], Y), min(size[1], X)
    windows = []
    for _ in range(count):
        i, obj = int(rng.integers(n)), int(rng.integers(k))
        on_object = rng.random() < object_bias
        pixels = torch.nonzero(masks[i, obj] > 0.5) if on_object else []
        if len(pixels):
            cy, cx = pixels[int(rng.integers(len(pixels)))].tolist()
        else:
            cy, cx = int(rng.integers(Y)), int(rng.integers(X))
        y0 = int(np.clip(cy - h // 2 + rng.integers(-(h // 4), h // 4 + 1), 0, Y - h))
        x0 = int(np.clip(cx - w // 2 + rng.integers(-(w // 4), w // 4 + 1), 0, X - w))
        windows.append((i, slice(y0, y0 + h), slice(x0, x0 + w)))
    return windows


def gather_windows(x: torch.Tensor, windows: list[tuple[int, slice, slice]]) -> torch.Tensor:
    """Stack the ``windows`` of ``(N, C, Y, X)`` into ``(len(windows), C, h, w)``."""
    return torch.stack([x[i, :, rows, cols] for i, rows, cols in windows])


# -- inputs -------------------------------------------------------------------
def check_first_masks(first_masks: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Validate the first-frame labels; returns them as int64 and their ids ``(K,)``."""
    if first_masks is None:
        raise DataError("spatial-propagation needs first_masks: the (Y, X) label image of "
                        "frame 0 naming the objects to follow")
    masks = np.asarray(first_masks)
    if masks.ndim != 2:
        raise DataError(f"first_masks must be a (Y, X) label image, got shape {masks.shape}")
    if not (np.issubdtype(masks.dtype, np.integer) or np.issubdtype(masks.dtype, np.bool_)):
        raise DataError(f"first_masks must hold integer labels, got dtype {masks.dtype}")
    masks = masks.astype(np.int64)
    if masks.min() < 0:
        raise DataError("first_masks has negative labels; use 0 for background, > 0 for objects")
    ids = np.unique(masks)
    ids = ids[ids > 0]
    if len(ids) == 0:
        raise DataError("first_masks has no object (all pixels are 0); nothing to propagate")
    return masks, ids


def frame_array(frame: np.ndarray, shape: tuple[int, int], channels: int, t: int
                ) -> np.ndarray:
    """Frame ``t`` (normalised, ``(C, Y, X)`` or ``(Y, X)``) checked, as ``(C, Y, X)`` float32."""
    array = np.asarray(frame, dtype=np.float32)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] != channels or array.shape[1:] != tuple(shape):
        raise DataError(f"frame {t}: expected shape ({channels}, {shape[0]}, {shape[1]}) "
                        f"like first_masks and the model, got {np.shape(frame)}")
    if not np.isfinite(array).all():
        raise DataError(f"frame {t}: contains NaN or infinite values")
    return np.ascontiguousarray(array)
