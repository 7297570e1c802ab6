"""Spatial embeddings with learned clustering bandwidth (Neven et al., CVPR 2019).

A branched ERFNet (:mod:`instatrack.models.erfnet`) predicts for every pixel
an offset to its instance centre, a clustering bandwidth sigma and a seed score;
the loss (:mod:`instatrack.losses.spatial_embedding`) maximises, with the
Lovász hinge, the IoU of the Gaussian mask each instance's mean bandwidth
draws around its centre, and teaches the seed map to predict that mask value.
Inference clusters greedily around the best seeds (:mod:`instatrack.cluster.seeds`).

The method is per frame (``temporal = False``): ``predict`` yields one
``Window(t, labels[None])`` per frame and the shared tracker links them.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, ClassVar

import numpy as np
import torch

from instatrack.cluster.seeds import SeedClustering, cluster_seeds
from instatrack.config import TrainConfig
from instatrack.losses.spatial_embedding import LossWeights, SpatialEmbeddingLoss
from instatrack.methods.base import FLIPS, FlipAveraging, PerFrameMethod
from instatrack.models.ensemble import members
from instatrack.models.erfnet import BranchedERFNet
from instatrack.settings import require


@dataclasses.dataclass(frozen=True)
class SpatialEmbeddingConfig(TrainConfig, LossWeights, SeedClustering, FlipAveraging):
    """The network's fields; loss weights, clustering and flips come from the bases."""

    # model: ERFNet widths 16, 64, 128 times ``width``
    width: float = 1.0
    stage1_blocks: int = 5
    dilated_repeats: int = 2
    decoder_blocks: int = 2
    dropout: float = 0.3
    sigma_channels: int = 1
    coord_scale: float = 1024.0
    init_sigma: float = 5.0
    # the network runs on the image resized by this factor (outputs are resized back):
    # 0.5 lets crops hold whole large cells (MSC) at a quarter of the cost
    input_scale: float = 1.0

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # Narrow network (widths 8, 32, 64, 316k parameters), fewer blocks; about
        # 0.3 s per step of 4 crops of 128 x 128 on one busy CPU core, so 6000 steps
        # take ~30 min (synthetic cells reach SEG ~0.8 after 1200 steps).
        "fast": {
            "width": 0.5, "stage1_blocks": 3, "dilated_repeats": 1, "decoder_blocks": 1,
            "dropout": 0.1, "crop": (128, 128), "batch_size": 4, "steps": 6000,
            "lr": 1e-3, "lr_final": 5e-5, "val_every": 500, "ckpt_every": 250,
            # dim objects beside bright ones (docs/robustness.md, session 9): in two seeds
            # GOWT1 TRA 0.967 -> 0.981 / 0.985 and SIM+ -> GOWT1 SEG 0.815 -> 0.886 / 0.873;
            # SIM+ at contrast / 8 moved 0.666 -> 0.754 / 0.569 (not established); the
            # cosine-hourglass lost SEG with it on GOWT1, so only this method's presets
            "aug_object_dim_p": 0.5,
            # 15 % of the clips randomised synthetic nuclei (docs/robustness.md, session 21):
            # trained on GOWT1, SIM+ SEG 0.81 / 0.78 / 0.79 (GOWT1 alone, same code and seeds:
            # 0.67 / 0.70 / 0.60); on SIM+, GOWT1 0.84 / 0.76 / 0.78 (alone 0.86-0.90), clean
            # SIM+ as before
            "synthetic_share": 0.15,
        },
        # Published training (Cityscapes cars): full-width ERFNet, 512 x 512 crops
        # around objects, batch 16, Adam at 5e-4 with a poly schedule to zero over
        # 200 epochs of 3000 crops (37,500 steps); loss weights 1 / 10 / 1 and
        # foreground weight 10. The shared loop decays exponentially, so lr_final is
        # set 100x below lr. Two sigma channels (elliptical margin) and the learned
        # centre are the paper's best variants; its released config used one sigma
        # channel and the mean coordinate as centre.
        "paper": {
            "width": 1.0, "stage1_blocks": 5, "dilated_repeats": 2, "decoder_blocks": 2,
            "dropout": 0.3, "sigma_channels": 2, "learned_center": True,
            "crop": (512, 512), "batch_size": 16, "steps": 37500, "lr": 5e-4,
            "lr_final": 5e-6, "optimizer": "adam", "instance_weight": 1.0,
            "variance_weight": 10.0, "seed_weight": 1.0, "foreground_weight": 10.0,
            "seed_threshold": 0.9, "min_instance_area": 128, "aug_object_dim_p": 0.5,
            "synthetic_share": 0.15,
        },
    }

    def check(self) -> None:
        super().check()
        require(0.05 <= self.width <= 4, f"width must be in [0.05, 4], got {self.width}")
        for name in ("stage1_blocks", "dilated_repeats", "decoder_blocks"):
            require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        require(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")
        require(self.sigma_channels in (1, 2),
                f"sigma_channels must be 1 or 2, got {self.sigma_channels}")
        require(self.coord_scale > 0, f"coord_scale must be > 0, got {self.coord_scale}")
        require(self.init_sigma > 0, f"init_sigma must be > 0 pixels, got {self.init_sigma}")
        require(0.1 <= self.input_scale <= 1,
                f"input_scale must be in [0.1, 1], got {self.input_scale}")


class SpatialEmbedding(PerFrameMethod):
    """Neven et al. 2019: offsets + learned bandwidth + seeds, clustered per frame."""

    name = "spatial-embedding"
    config_cls = SpatialEmbeddingConfig
    ensembles = True

    def __init__(self, config: SpatialEmbeddingConfig):
        super().__init__(config)
        self.criterion = SpatialEmbeddingLoss(LossWeights.of(config), config.coord_scale)
        self.clustering = SeedClustering.of(config)

    def build_model(self) -> BranchedERFNet:
        c = self.config
        return BranchedERFNet(
            in_channels=c.in_channels, sigma_channels=c.sigma_channels, n_classes=1,
            width=c.width, stage1_blocks=c.stage1_blocks, dilated_repeats=c.dilated_repeats,
            decoder_blocks=c.decoder_blocks, dropout=c.dropout, coord_scale=c.coord_scale,
            init_sigma=c.init_sigma, input_scale=c.input_scale)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """``batch["image"] (B, T, C, Y, X)``, ``batch["labels"] (B, T, Y, X)``; T folds into B."""
        image = batch["image"]
        outputs = model(image.reshape(-1, *image.shape[2:]))
        # offsets and sigmas in float32 whatever the network ran in (bfloat16 autocast)
        with torch.autocast(image.device.type, enabled=False):
            return self.criterion({k: v.float() for k, v in outputs.items()}, batch["labels"])

    def segment_frame(self, net: BranchedERFNet, image: torch.Tensor) -> np.ndarray:
        """``(Y, X)`` int32 labels of one ``(1, C, Y, X)`` image on the model's device."""
        out = flip_averaged(net, image, self.config.tta)
        return cluster_seeds(out["embedding"][0].float(), out["sigma"][0].float(),
                             out["seed"][0, 0].float(), self.clustering)



def flip_averaged(net: torch.nn.Module, image: torch.Tensor, flips: bool = True
                  ) -> dict[str, torch.Tensor]:
    """The network's ``embedding``, ``sigma`` and ``seed`` averaged over flips of ``image``
    and over the members of an ensemble (:mod:`instatrack.models.ensemble`).

    With ``flips``, every flip (and, for square images, transpose) of the ``(1, C, Y, X)``
    input is run; each output is mapped back: flipped back, offsets along a
    flipped axis negated, offset and sigma channels of a transpose swapped.
    Offsets, log-sigma and seeds are averaged, then the embedding is the
    coordinate grid plus the mean offset.
    """
    nets = members(net)
    if len(nets) == 1 and not flips:
        return nets[0](image)
    transposes = (False, True) if flips and image.shape[-1] == image.shape[-2] else (False,)
    offsets = log_sigma = seed = 0.0
    count = 0
    for member, transpose, flip in itertools.product(nets, transposes,
                                                    FLIPS if flips else ((),)):
        x = image.transpose(-1, -2) if transpose else image
        out = member(x.flip(flip) if flip else x)
        o, ls, sd = out["offsets"], out["log_sigma"], out["seed"]
        if flip:
            o, ls, sd = o.flip(flip), ls.flip(flip), sd.flip(flip)
            sign = torch.ones(2, 1, 1, dtype=o.dtype, device=o.device)
            for axis in flip:
                sign[axis] = -1.0  # -2 -> y channel 0, -1 -> x channel 1
            o = o * sign
        if transpose:
            o, ls, sd = (v.transpose(-1, -2) for v in (o, ls, sd))
            o, ls = o.flip(1), ls.flip(1)  # (x, y) channels -> (y, x)
        offsets, log_sigma, seed = offsets + o, log_sigma + ls, seed + sd
        count += 1
    return nets[0].outputs(offsets / count, log_sigma / count, seed / count)
