"""Settings of the optimisation that the training loop (:mod:`instatrack.train`) runs.

Kept apart from the loop itself so that configs can be built and checked
without importing torch.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from instatrack.settings import Settings, require

OPTIMIZERS = ("adam", "nadam", "adamw")


@dataclasses.dataclass(frozen=True)
class OptimSettings(Settings):
    """Steps, batch, optimiser and learning-rate schedule, precision, random seed.

    The learning rate decays exponentially from ``lr`` at the first step to
    ``lr_final`` at the last; ``grad_clip`` > 0 clips the gradient norm; ``amp``
    trains under bfloat16 autocast on CUDA and on CPUs with bfloat16 kernels (AVX-512,
    AMX), float32 elsewhere; ``compile`` (``torch.compile``) applies on CUDA only.
    ``ema`` > 0 keeps an exponential moving average of the weights with that decay per
    step (Polyak averaging; the decay ramps up as ``(1 + step) / (10 + step)`` until it
    reaches ``ema``, so the average does not start biased towards the first weights):
    validation scores it and ``weights.pt`` / ``last.pt`` hold it; 0 (the default)
    trains as before.
    """

    steps: int = 1000
    batch_size: int = 2
    lr: float = 1e-4
    lr_final: float = 1e-5
    optimizer: str = "adam"
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    amp: bool = True
    compile: bool = False
    seed: int = 0
    ema: float = 0.0
    #: whether ``amp`` also applies on a CPU: a method whose steps run slower in bfloat16
    #: there sets it False (docs/benchmarks.md, training throughput)
    cpu_amp: ClassVar[bool] = True

    def check(self) -> None:
        super().check()
        for name in ("steps", "batch_size"):
            require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        require(self.lr > 0 and self.lr_final > 0, "lr and lr_final must be > 0")
        require(0 <= self.ema < 1, f"ema must be in [0, 1) (0 = off), got {self.ema}")
        require(self.optimizer in OPTIMIZERS,
                f"optimizer must be adam, nadam or adamw, got {self.optimizer!r}")
