"""Starting a run from another model's weights (``instatrack train --init NAME_OR_RUN``).

The new run takes the init model's method, config and weights. Keys that built
the network (its widths, depths, input channels and normalisation) are the init
model's and cannot change; keys that steer training (steps, learning rate,
crops, augmentation, loss weights) and post-processing may be set
(:func:`tunable_keys`). Keys that described the init model's own training data
(which frames trained and validated it, the size of its objects) are reset, so
that they are measured on the new data. The run records the init model in its
``config.json`` (``init``); :func:`instatrack.train.resume` continues it like
any run, from its own checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from instatrack import runs
from instatrack.config import TrainConfig
from instatrack.errors import ConfigError, DataError

#: TrainConfig keys that describe the network's input: an init model fixes them
INPUT_KEYS = ("in_channels", "norm_low", "norm_high", "norm_mode")
#: TrainConfig keys that describe the init model's own training data: reset for the new data
DATA_KEYS = ("train_frames", "val_frames", "instance_area", "rescale",
             # how the init model's own --data folders were mixed: not the new data's
             "data_weights", "data_balance")


def tunable_keys(config_cls: type[TrainConfig]) -> list[str]:
    """Keys a run started from another model (``--init``) may set: sampling, optimisation,
    augmentation and logging (:class:`TrainConfig`'s own stages, less :data:`INPUT_KEYS`),
    the weights of the loss (stages in :mod:`instatrack.losses`) and post-processing.
    The other keys built the network, whose weights are the init model's."""
    keys = set(TrainConfig.keys()) - set(INPUT_KEYS)
    keys.update(config_cls.post_processing_keys())
    for stage in config_cls.__mro__:
        if stage.__module__.startswith("instatrack.losses."):
            keys.update(vars(stage).get("__annotations__", {}))
    return sorted(keys & set(config_cls.keys()))


def network_differences(config: TrainConfig, other: TrainConfig, also: Sequence[str] = ()
                        ) -> list[str]:
    """The keys that built the network or read its input (all but :func:`tunable_keys`),
    and ``also``, on which two configs of one method differ."""
    fixed = set(config.keys()) - set(tunable_keys(type(config))) | set(also)
    return [k for k in config.keys() if k in fixed and getattr(config, k) != getattr(other, k)]


def init_config(start: runs.Run, file: str | Path | None = None,
                overrides: Sequence[str] = ()) -> TrainConfig:
    """The config of a run started from ``start``: its config, :data:`DATA_KEYS` reset
    for the new data, then the values of the JSON ``file`` and ``key=value`` ``overrides``,
    which may only set :func:`tunable_keys`."""
    from instatrack.settings import parse_overrides, read_json

    config_cls = type(start.config)
    values = {**(read_json(file) if file is not None else {}), **parse_overrides(overrides)}
    fixed = sorted(set(values) & set(config_cls.keys()) - set(tunable_keys(config_cls)))
    if fixed:
        raise ConfigError(f"{', '.join(fixed)}: fixed by the init model {start.path.name} (its "
                          f"weights were trained with them); --init can change training and "
                          f"post-processing keys only")
    fresh = {f.name: f.default for f in dataclasses.fields(config_cls) if f.name in DATA_KEYS}
    return config_cls.from_dict({**start.config.to_dict(), **fresh, **values},
                                where=str(file) if file else "config")


def check_fits_init(config: TrainConfig, start: runs.Run) -> None:
    """Raise unless ``config`` (fitted to the data) builds the network of ``start``."""
    if start.members:
        raise ConfigError(f"the init model {start.path.name} is an ensemble of "
                          f"{len(start.weight_files)} networks; start from one of its trainings")
    if config.in_channels != start.config.in_channels:
        raise DataError(f"the training data has {config.in_channels} channel(s), the init "
                        f"model {start.path.name} was trained on {start.config.in_channels}")
    if type(config) is not type(start.config):
        raise ConfigError(f"a {type(config).__name__} cannot start from the init model "
                          f"{start.path.name}, a {start.method} model")
    differ = network_differences(config, start.config)
    if differ:
        raise ConfigError(f"{', '.join(differ)}: differ from the init model {start.path.name}, "
                          f"whose network they built")


def method_of(start: runs.Run, method: str | None = None) -> str:
    """The method of ``start``; ``method``, when given, must be it."""
    if method is not None and method != start.method:
        raise ConfigError(f"the init model {start.path.name} was trained with {start.method}, "
                          f"not {method}")
    return start.method
