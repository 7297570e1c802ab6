"""Typed, validated configuration shared by every method.

Each method declares one frozen dataclass that inherits :class:`TrainConfig`
and adds its model, loss and post-processing fields. A config is built from a
preset, an optional JSON file and ``key=value`` overrides; unknown keys and
values of the wrong type are rejected with a :class:`ConfigError` naming them.
The config is saved as ``config.json`` next to the weights so that a run folder
reloads by itself.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from instatrack.errors import ConfigError

C = TypeVar("C", bound="TrainConfig")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Fields every method shares: data sampling, optimisation, linking.

    Subclasses add their own fields and may extend :meth:`check`.
    """

    # data
    in_channels: int = 1
    clip_len: int = 1
    crop: tuple[int, int] = (128, 128)
    # probability that a training crop is centred near an object (else anywhere):
    # sparse frames need some background crops, or the net fires on faint background
    crop_object_bias: float = 0.9
    # let warped training crops touch the image border (cells cut by it get trained);
    # off, they stay a quarter crop away from it. On helped SIM+ (border slivers), hurt
    # GOWT1 (more false nuclei, 2 runs of 2): choose it on validation frames.
    crops_reach_border: bool = False
    batch_size: int = 2
    norm_low: float = 1.0
    norm_high: float = 99.8
    augment: bool = True
    # acquisition changes in training (data/augment.py, AcquisitionSettings): clips
    # dimmed by up to aug_dim_max at the frame's noise level with probability aug_dim_p,
    # shot noise, background slope, frame-to-frame drift, blur, gamma
    aug_dim_p: float = 0.5
    aug_dim_max: float = 10.0
    aug_shot_noise: float = 1.0
    aug_gradient: float = 0.1
    aug_drift: float = 0.1
    aug_blur_max: float = 1.5
    aug_gamma: float = 0.3
    train_frames: str = ":"
    val_frames: str = ""
    # optimisation
    steps: int = 1000
    lr: float = 1e-4
    lr_final: float = 1e-5
    optimizer: str = "adam"
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    amp: bool = True
    compile: bool = False
    seed: int = 0
    log_every: int = 10
    val_every: int = 250
    ckpt_every: int = 100
    # instances and tracking
    min_instance_area: int = 20
    link_iou_threshold: float = 0.1
    link_max_gap: int = 2
    # continue a track lost in the previous frame with the nearest new object within
    # this many pixels (centroids); 0 = off. For objects that move past their own size.
    link_max_distance: float = 0.0
    # drop tracks shorter than this many frames that have no parent and no children
    # (flickering false objects), except at the first and last frame; 1 = off
    min_track_length: int = 1
    division_search_frames: int = 3
    division_dilation: int = 2
    division_balance: float = 0.25
    division_min_frames: int = 3
    # measured on the training labels when training starts (0 = not measured):
    # (10th percentile, median) of the instance areas in pixels; methods may size
    # their post-processing from it (see ``auto_size``)
    instance_area: tuple[float, float] = (0.0, 0.0)

    presets: ClassVar[dict[str, dict[str, Any]]] = {"fast": {}, "paper": {}}

    def __post_init__(self) -> None:
        self._coerce_types()
        self.check()

    # -- validation -------------------------------------------------------
    def check(self) -> None:
        """Raise :class:`ConfigError` for values out of range. Extend in subclasses."""
        positive = ["in_channels", "clip_len", "batch_size", "steps", "log_every",
                    "val_every", "ckpt_every"]
        for name in positive:
            require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        require(0 <= self.crop_object_bias <= 1,
                f"crop_object_bias must be in [0, 1], got {self.crop_object_bias}")
        require(len(self.crop) == 2 and min(self.crop) >= 8,
                f"crop must be two sizes >= 8, got {self.crop}")
        require(0 <= self.norm_low < self.norm_high <= 100,
                f"need 0 <= norm_low < norm_high <= 100, got {self.norm_low}, {self.norm_high}")
        require(self.lr > 0 and self.lr_final > 0, "lr and lr_final must be > 0")
        require(self.optimizer in ("adam", "nadam", "adamw"),
                f"optimizer must be adam, nadam or adamw, got {self.optimizer!r}")
        require(0 <= self.link_iou_threshold < 1, "link_iou_threshold must be in [0, 1)")
        require(self.link_max_distance >= 0,
                f"link_max_distance must be >= 0 pixels, got {self.link_max_distance}")
        require(self.min_track_length >= 1,
                f"min_track_length must be >= 1 frame, got {self.min_track_length}")
        require(0 <= self.division_balance <= 1, "division_balance must be in [0, 1]")
        require(self.division_min_frames >= 1,
                f"division_min_frames must be >= 1, got {self.division_min_frames}")
        require(len(self.instance_area) == 2 and min(self.instance_area) >= 0,
                f"instance_area must be two areas >= 0, got {self.instance_area}")
        for name in ("train_frames", "val_frames"):
            parse_slice(getattr(self, name), name)
        self.acquisition  # noqa: B018 -- validates the aug_* keys

    @property
    def acquisition(self):
        """The ``aug_*`` keys as the augmentation's settings object."""
        from instatrack.data.augment import AcquisitionSettings

        return AcquisitionSettings(
            dim_p=self.aug_dim_p, dim_max=self.aug_dim_max, shot_noise=self.aug_shot_noise,
            gradient=self.aug_gradient, drift=self.aug_drift, blur_max=self.aug_blur_max,
            gamma=self.aug_gamma, norm=(self.norm_low, self.norm_high))

    def auto_size(self, fraction_of_median: float, fraction_of_small: float,
                  fallback: int) -> int:
        """A size in pixels from the training instance areas, ``fallback`` when unmeasured.

        ``min(fraction_of_median * median, fraction_of_small * p10)``: large
        enough to reject fragments of typical objects, small enough to keep
        the small ones.
        """
        small, median = self.instance_area
        if median <= 0:
            return fallback
        return max(2, round(min(fraction_of_median * median, fraction_of_small * small)))

    def _coerce_types(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, coerce(value, hints[f.name], f.name))

    # -- construction -----------------------------------------------------
    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any], where: str = "config") -> C:
        """Build from a mapping, rejecting keys that are not fields of ``cls``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(unknown)} for {cls.__name__}; "
                f"known keys: {', '.join(sorted(known))}"
            )
        return cls(**values)

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

    def with_overrides(self: C, overrides: typing.Sequence[str]) -> C:
        """This config with ``key=value`` strings applied (e.g. post-processing at inference)."""
        return type(self).from_dict({**self.to_dict(), **parse_overrides(overrides)})

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def save(self, path: str | Path, **extra: Any) -> None:
        """Write ``config.json``; ``extra`` (e.g. ``method=...``) is stored beside the fields."""
        Path(path).write_text(json.dumps({**extra, **self.to_dict()}, indent=2) + "\n")


def parse_overrides(overrides: typing.Sequence[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}`` (values are typed later)."""
    values = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        values[key.strip()] = text.strip()
    return values


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of key: value pairs")
    return data


def parse_slice(text: str, name: str = "slice") -> slice | None:
    """Parse ``"a:b"`` (python slice syntax, ints) into a slice; ``""`` gives None."""
    text = text.strip()
    if not text:
        return None
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ConfigError(f"{name} must look like 'start:stop', got {text!r}")
    try:
        ints = [int(p) if p.strip() else None for p in parts]
    except ValueError:
        raise ConfigError(
            f"{name} must look like 'start:stop' with integers, got {text!r}") from None
    return slice(*ints)


def coerce(value: Any, hint: Any, name: str) -> Any:
    """Convert ``value`` (maybe a string from ``--set``) to the annotated type or fail."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    try:
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            item_type = args[0]
            if len(args) != 2 or args[1] is not Ellipsis:
                if len(items) != len(args):
                    raise ValueError(f"expected {len(args)} values")
            return tuple(coerce(v, item_type, name) for v in items)
        if hint is bool:
            return _to_bool(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("not an integer")
            if isinstance(value, bool):
                raise ValueError("not an integer")
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError("not a number")
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError("not a string")
            return value
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"config key {name}: cannot read {value!r} as {_name(hint)} ({err})") from None
    return value


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError("expected true or false")


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
