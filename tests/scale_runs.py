"""Run folders with random weights for the scale tests (tiles, ONNX, Dask).

Tiling, export and distribution must give the same results for any weights, so
these tests need no training: a network is built from a small config, its
output heads are randomised (a fresh spatial-embedding head predicts zero
offsets everywhere) and the run folder is written as ``instatrack train`` would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from instatrack.methods import get_method
from instatrack.runs import Run

SPATIAL = ["width=0.25", "stage1_blocks=1", "dilated_repeats=0", "decoder_blocks=0",
           "dropout=0", "crop=48,48", "coord_scale=64", "max_instances=10000"]
RECURRENT = ["encoder_channels=8,8", "hidden=8", "max_steps=4"]
HOURGLASS = ["levels=3", "filters=8", "clip_len=2", "crop=48,48", "stacks=2",
             "cluster_min_cluster_size=30"]


def random_run(folder: Path, method: str = "spatial-embedding", overrides=(), seed: int = 0
               ) -> Path:
    """A run folder with randomly initialised weights of a small network."""
    method_cls = get_method(method)
    base = {"spatial-embedding": SPATIAL, "recurrent-instance": RECURRENT}.get(method, HOURGLASS)
    config = method_cls.config_cls.build("fast", overrides=[*base, *overrides])
    torch.manual_seed(seed)
    model = method_cls(config).build_model()
    if method == "spatial-embedding":
        with torch.no_grad():
            head = model.embedding_decoder.head
            head.weight.normal_(0.0, 0.05)
    if hasattr(model, "background"):
        model.background.copy_(torch.nn.functional.normalize(
            torch.randn(model.background.shape), dim=0))
    Run.create(folder, method_cls, config).save_weights(model.state_dict())
    return folder


def cells_image(size=(256, 320), seed: int = 0, frames: int = 1) -> np.ndarray:
    """Synthetic nuclei, ``(T, Y, X)`` uint16."""
    from instatrack.data.synth import generate_cells

    return generate_cells(frames=frames, size=size, seed=seed).images
