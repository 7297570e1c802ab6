"""A deliberately tiny method used to test the shared training loop on its own."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch
from scipy import ndimage

from instatrack.config import TrainConfig
from instatrack.methods.base import Method, Window


@dataclasses.dataclass(frozen=True)
class ToyConfig(TrainConfig):
    width: int = 4

    presets: ClassVar[dict] = {
        "fast": {"steps": 12, "crop": (32, 32), "lr": 1e-2, "lr_final": 1e-3, "log_every": 2,
                 "ckpt_every": 4, "val_every": 6, "clip_len": 2},
        "paper": {},
    }


class ToyMethod(Method):
    """Foreground by a 2-layer CNN, instances by connected components."""

    name = "toy"
    config_cls = ToyConfig
    temporal = True

    def build_model(self) -> torch.nn.Module:
        c = self.config
        return torch.nn.Sequential(torch.nn.Conv2d(c.in_channels, c.width, 3, padding=1),
                                   torch.nn.ReLU(), torch.nn.Dropout(0.1),
                                   torch.nn.Conv2d(c.width, 1, 1))

    def loss(self, model, batch):
        image, labels = batch["image"], batch["labels"]
        logits = model(image.flatten(0, 1))[:, 0]
        labels = labels.flatten(0, 1)
        known = labels >= 0
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits[known], (labels[known] > 0).float())
        return loss, {"bce": float(loss.detach())}

    def predict(self, model, frames, device="cpu", first_masks=None):
        model.eval()
        with torch.no_grad():
            for t, frame in enumerate(frames):
                prob = torch.sigmoid(model(torch.from_numpy(frame)[None].to(device)))[0, 0]
                labels, _ = ndimage.label(prob.cpu().numpy() > 0.5)
                yield Window(t, labels[None].astype(np.int32))
