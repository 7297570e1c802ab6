"""The config every method's config extends, and how configs are built and saved.

:class:`TrainConfig` composes the settings of the stages that every method
runs (see :mod:`instatrack.settings`): the optimisation of the training loop
(:class:`~instatrack.optim.OptimSettings`), the tracker
(:class:`~instatrack.track.rules.TrackSettings`) and the outline refinement of its
instances (:class:`~instatrack.cluster.boundaries.BoundarySettings`), plus the data and sampling
fields declared here. Each method's config derives from it and from the
settings of its own stages (clustering, loss weights, ...), and adds its
network's fields. A config is built from a preset, an optional JSON file and
``key=value`` overrides; unknown keys and values of the wrong type are rejected
with a :class:`ConfigError` naming them. The config is saved as
``config.json`` next to the weights so that a run folder reloads by itself;
only its post-processing settings may change when it is loaded again
(:meth:`TrainConfig.with_post_processing`).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from instatrack.calibrate import CalibrationSettings
from instatrack.cluster.boundaries import BoundarySettings
from instatrack.cluster.contrast import ContrastSettings
from instatrack.cluster.fragments import FragmentSettings
from instatrack.cluster.grow import GrowSettings
from instatrack.data.augment import AcquisitionSettings
from instatrack.data.normalize import NORM_MODES
from instatrack.errors import ConfigError
from instatrack.optim import OptimSettings
from instatrack.settings import (
    Settings,
    coerce,
    parse_overrides,
    parse_slice,
    read_json,
    require,
)
from instatrack.track.rules import TrackSettings

__all__ = ["ConfigError", "Settings", "TrainConfig", "coerce", "parse_overrides",
           "parse_slice", "read_json", "require"]

C = TypeVar("C", bound="TrainConfig")


@dataclasses.dataclass(frozen=True)
class TrainConfig(OptimSettings, TrackSettings, BoundarySettings, GrowSettings,
                  FragmentSettings, ContrastSettings, AcquisitionSettings, CalibrationSettings):
    """Fields every method shares: the stages in the bases, data and sampling below.

    To give every method a new stage, add its settings class to the bases.
    """

    # data
    in_channels: int = 1
    clip_len: int = 1
    crop: tuple[int, int] = (128, 128)
    # probability that a training crop is centred near an object (else anywhere)
    crop_object_bias: float = 0.9
    # let warped training crops touch the image border (cells cut by it get trained);
    # off, they stay a quarter crop away from it (docs/methods.md: choose on validation)
    crops_reach_border: bool = False
    # how several --data folders share the training clips: 0 = every clip alike (a
    # folder counts by its annotated frames), 1 = every folder alike, between: a folder
    # of n clips weighs n ** (1 - data_balance)
    data_balance: float = 0.0
    # the share of the training clips each --data folder gets, in the order given
    # (normalised to sum 1, e.g. 3,1: three quarters from the first folder); when set,
    # it replaces data_balance. Empty: data_balance decides.
    data_weights: tuple[float, ...] = ()
    # share of the training clips drawn from randomised synthetic nuclei that training
    # makes itself (data/synth_random.py training_sequences; single-channel data only,
    # every frame of them trains, none validates); the --data folders share the rest as
    # data_weights / data_balance say. 0: the data alone
    synthetic_share: float = 0.0
    norm_low: float = 1.0
    norm_high: float = 99.8
    # how raw intensities become network input: "percentile" (each frame's norm_low /
    # norm_high percentiles -> 0 / 1) or "noise" (norm_low percentile -> 0, noise kept
    # at one size so dim frames stay dim; data/normalize.py)
    norm_mode: str = "percentile"
    augment: bool = True
    train_frames: str = ":"
    val_frames: str = ""
    log_every: int = 10
    val_every: int = 250
    ckpt_every: int = 100
    # measured on the training labels when training starts (0 = not measured):
    # (10th percentile, median) of the instance areas in pixels; post-processing may
    # size itself from it (see instatrack.cluster.hdbscan.cluster_sizes)
    instance_area: tuple[float, float] = (0.0, 0.0)
    # factor the training frames are resized by; 0 = chosen when training starts: with
    # an init model (--init) its object size over the data's (fine-tuning where its
    # weights know the objects), else 1. New frames are resized by it at inference
    # unless --object-size says otherwise.
    rescale: float = 0.0
    # diameter in pixels every training sequence is resized to, each by its own factor
    # (0 = not used): datasets of other magnifications then show the network objects of
    # one size. New frames are resized to it too (--object-size auto unless given).
    object_size: float = 0.0

    presets: ClassVar[dict[str, dict[str, Any]]] = {"fast": {}, "paper": {}}

    def check(self) -> None:
        super().check()
        for name in ("in_channels", "clip_len", "log_every", "val_every", "ckpt_every"):
            require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("crop_object_bias", "data_balance"):
            require(0 <= getattr(self, name) <= 1,
                    f"{name} must be in [0, 1], got {getattr(self, name)}")
        require(0 <= self.synthetic_share < 1,
                f"synthetic_share must be in [0, 1), got {self.synthetic_share}")
        require(all(w >= 0 for w in self.data_weights) and
                (not self.data_weights or sum(self.data_weights) > 0),
                f"data_weights must be >= 0 with a positive sum, got {self.data_weights}")
        require(len(self.crop) == 2 and min(self.crop) >= 8,
                f"crop must be two sizes >= 8, got {self.crop}")
        require(0 <= self.norm_low < self.norm_high <= 100,
                f"need 0 <= norm_low < norm_high <= 100, got {self.norm_low}, {self.norm_high}")
        require(self.norm_mode in NORM_MODES,
                f"norm_mode must be one of {', '.join(NORM_MODES)}, got {self.norm_mode!r}")
        require(len(self.instance_area) == 2 and min(self.instance_area) >= 0,
                f"instance_area must be two areas >= 0, got {self.instance_area}")
        for name in ("train_frames", "val_frames"):
            parse_slice(getattr(self, name), name)
        require(self.rescale == 0 or 0.25 <= self.rescale <= 4,
                f"rescale must be 0 (automatic) or in [0.25, 4], got {self.rescale}")
        require(self.object_size == 0 or 4 <= self.object_size <= 1000,
                f"object_size must be 0 (off) or a diameter in [4, 1000] pixels, got "
                f"{self.object_size}")
        require(self.object_size == 0 or self.rescale in (0, 1),
                f"set rescale ({self.rescale}) or object_size ({self.object_size}), not both")

    # -- construction -----------------------------------------------------
    @classmethod
    def build(
        cls: type[C],
        preset: str | None = None,
        file: str | Path | None = None,
        overrides: typing.Sequence[str] = (),
    ) -> C:
        """Preset, then JSON file, then ``key=value`` overrides, each on top of the last."""
        values: dict[str, Any] = {}
        if preset is not None:
            if preset not in cls.presets:
                raise ConfigError(
                    f"unknown preset {preset!r}; choose from {', '.join(cls.presets)}")
            values.update(cls.presets[preset])
        if file is not None:
            values.update(read_json(file))
        values.update(parse_overrides(overrides))
        return cls.from_dict(values, where=str(file) if file else "config")

    def with_post_processing(self: C, overrides: typing.Sequence[str]) -> C:
        """This config with ``key=value`` post-processing settings changed.

        For a trained run at inference: keys of the stages that built or
        trained the network are refused, as their values are in its weights.
        """
        values = parse_overrides(overrides)
        allowed = self.post_processing_keys()
        fixed = sorted(set(values) & set(self.keys()) - set(allowed))
        if fixed:
            raise ConfigError(
                f"{', '.join(fixed)}: fixed when the network was trained; a trained run "
                f"can change only its post-processing: {', '.join(allowed)}")
        return type(self).from_dict({**self.to_dict(), **values})

    def save(self, path: str | Path, **extra: Any) -> None:
        """Write ``config.json``; ``extra`` (e.g. ``method=...``) is stored beside the fields."""
        Path(path).write_text(json.dumps({**extra, **self.to_dict()}, indent=2) + "\n")
