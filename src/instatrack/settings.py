"""Typed, validated, frozen settings: the base of every stage's settings.

Each stage of the pipeline owns its settings as a small frozen dataclass next
to its code: :class:`~instatrack.track.rules.TrackSettings` beside the
tracker's rules, :class:`~instatrack.cluster.seeds.SeedClustering` beside the
seed clustering, :class:`~instatrack.optim.OptimSettings` beside the training
loop, and so on. Its field names are the keys users write (``--set
link_max_gap=3``, ``config.json``); its :meth:`Settings.check` validates them,
once, and raises :class:`~instatrack.errors.ConfigError` naming the key.
Values given as strings (``--set``) or JSON lists are converted to the
annotated types first.

A method's config composes the stages it uses by deriving from their settings
classes (see :mod:`instatrack.config`): its fields are the union of theirs, so
every key stays flat, and building it runs every stage's check. A field that
two stages declare is one key that both read (``min_instance_area``: the
clustering and the tracker drop the same small objects). Components take their
stage's settings object; a method config is one, and ``Stage.of(config)``
gives the stage's own view of it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from instatrack.errors import ConfigError

S = TypeVar("S", bound="Settings")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of the frozen settings dataclasses; see the module docstring.

    A subclass declares its fields with defaults, sets :attr:`post_processing`
    when the stage runs only after the network, and extends :meth:`check`
    (calling ``super().check()``, so that a config composed of several stages
    runs every stage's check).
    """

    #: True for a stage that only works on the network's outputs (clustering, linking,
    #: ...): its settings may change when a trained run is loaded. The settings of the
    #: other stages built or trained the network, so they are fixed in its weights.
    post_processing: ClassVar[bool] = False
    #: a post-processing stage's values worth trying on validation frames after training,
    #: ``{key: (value, ...)}`` (:mod:`instatrack.calibrate`)
    calibration: ClassVar[dict[str, tuple]] = {}
    #: values tried after the ``calibration`` grid, each alone on its best combination (so
    #: they add passes, not a factor): a stage that acts last, or a refinement of a value
    #: the grid chose, ``{key: (value, ...)}``
    calibration_last: ClassVar[dict[str, tuple]] = {}
    #: True for a stage that works on the method's labels after the method has given
    #: them (:meth:`instatrack.api.Predictor._windows`), never inside it: calibration
    #: then reuses the method's labels for every value of its keys
    after_method: ClassVar[bool] = False

    def __post_init__(self) -> None:
        hints = _type_hints(type(self))
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, coerce(getattr(self, f.name), hints[f.name], f.name))
        self.check()

    def check(self) -> None:
        """Raise :class:`ConfigError` for values out of range (extend, calling ``super()``)."""

    @classmethod
    def of(cls: type[S], settings: Settings) -> S:
        """This stage's settings taken from ``settings``, e.g. a config that composes it."""
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)})

    @classmethod
    def keys(cls) -> list[str]:
        """The flat keys (field names)."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def post_processing_keys(cls) -> list[str]:
        """The keys that some post-processing stage composed here declares (sorted)."""
        return cls._stage_keys("post_processing")

    @classmethod
    def after_method_keys(cls) -> list[str]:
        """The keys that some stage composed here acting after the method declares
        (:attr:`after_method`; sorted)."""
        return cls._stage_keys("after_method")

    @classmethod
    def _stage_keys(cls, flag: str) -> list[str]:
        """The keys declared by the stages composed here whose class sets ``flag``."""
        keys: set[str] = set()
        for stage in cls.__mro__:
            if vars(stage).get(flag):
                keys.update(vars(stage).get("__annotations__", {}))
        return sorted(keys & set(cls.keys()))

    @classmethod
    def from_dict(cls: type[S], values: dict[str, Any], where: str = "config") -> S:
        """Build from a mapping, rejecting keys that are not fields of ``cls``."""
        known = set(cls.keys())
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(unknown)} for {cls.__name__}; "
                f"known keys: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def replace(self: S, **changes: Any) -> S:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


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
