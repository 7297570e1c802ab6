"""Synthetic CTC datasets of several sequences, each with its own randomly drawn look.

A model trained on one synthetic look learns that look. For pretrained models
(``docs/models.md``) every sequence draws its appearance and its cells broadly
from :data:`RANGES`: nucleus size, shape irregularity and elongation, texture,
density, contrast and noise, blur, background level and gradient, motion.
``instatrack synth --randomise --sequences N`` writes N such sequences
``01`` .. ``NN`` into one CTC dataset folder, with ``synth.json`` recording what
each one drew. Everything depends only on the seed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from instatrack.data.synth import MovieSequence, SynthSequence, generate_cells, write_ctc_sequence
from instatrack.data.synth_appearance import Appearance
from instatrack.data.types import Sequence
from instatrack.errors import ConfigError

#: name -> (low, high, "lin" | "log"): each sequence draws every value from its range,
#: uniformly (``log``: uniformly in the logarithm). Intensities are relative to a bright
#: nucleus (about 1); sizes are in pixels.
RANGES: dict[str, tuple[float, float, str]] = {
    # cells (arguments of generate_cells)
    "radius": (4.0, 32.0, "log"),          # mean nucleus radius: diameters of 8-64 px
    "radius_spread": (1.1, 1.6, "lin"),    # largest / smallest radius within a sequence
    "coverage": (0.08, 0.4, "lin"),        # fraction of the field covered -> density
    "noise": (0.02, 0.3, "log"),           # shot and read noise (generate_cells' noise)
    "speed": (0.3, 3.0, "log"),            # pixels per frame of the random walk
    "division_rate": (0.0, 0.06, "lin"),   # per cell and frame
    # appearance (fields of Appearance)
    "aspect_max": (1.05, 2.2, "lin"),
    "irregularity": (0.0, 0.18, "lin"),
    "bright_min": (0.2, 0.95, "lin"),
    "dome": (0.0, 0.6, "lin"),
    "texture": (0.0, 0.25, "lin"),
    "texture_scale": (0.15, 0.8, "log"),
    "contrast": (0.12, 1.0, "log"),
    "background": (0.0, 0.6, "lin"),
    "gradient": (0.0, 0.2, "lin"),
    "blob": (0.0, 0.3, "lin"),
    "blur": (0.4, 3.0, "lin"),
}
#: drawn after each sequence's movie seed, so adding them changed no earlier draw: spread
#: cells with arms and lobes (Appearance.arms ...). By default none; ``--range
#: arms=1,4`` draws them (benchmarks/train_shipped.py SPREAD_CELLS, docs/models.md)
LATER_RANGES: dict[str, tuple[float, float, str]] = {
    "arms": (0.0, 0.0, "lin"),
    "arm_length": (0.5, 2.5, "lin"),
    "arm_width": (0.15, 0.6, "log"),
    # unannotated clutter (Appearance.ghosts, .specks); none by default
    "ghosts": (0.0, 0.0, "lin"),
    "specks": (0.0, 0.0, "lin"),
    # the brightest ghost's light (Appearance.ghost_light); drawn last (session 47)
    "ghost_light": (0.4, 0.4, "lin"),
}
#: the file in the dataset folder recording each sequence's seed and drawn values
RECORD = "synth.json"
#: the randomised set training mixes in (:func:`training_sequences`): how many movies,
#: drawn with which seed, of which frame size (at least; a larger crop takes its size)
TRAINING_SEQUENCES, TRAINING_SEED, TRAINING_SIZE = 24, 16, (320, 320)


def draw(seed: int, index: int,
         ranges: dict[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """The values sequence ``index`` of a dataset with ``seed`` draws from :data:`RANGES`
    and :data:`LATER_RANGES` (``ranges`` replaces some of their ``(low, high)``; the other
    values stay as drawn without it), plus ``seed``: the seed of its movie."""
    ranges = ranges or {}
    unknown = sorted(set(ranges) - set(RANGES) - set(LATER_RANGES))
    if unknown:
        raise ConfigError(f"unknown synthetic range(s) {', '.join(unknown)}; known: "
                          f"{', '.join([*RANGES, *LATER_RANGES])}")
    rng = np.random.default_rng([seed, index])
    drawn: dict[str, Any] = {}
    _draw_into(drawn, rng, RANGES, ranges)
    drawn["seed"] = int(rng.integers(2**31))
    _draw_into(drawn, rng, LATER_RANGES, ranges)
    return drawn


def _draw_into(drawn: dict[str, Any], rng: np.random.Generator,
               table: dict[str, tuple[float, float, str]],
               ranges: dict[str, tuple[float, float]]) -> None:
    for name, (low, high, scale) in table.items():
        if name in ranges:
            low, high = ranges[name]
            if not (low <= high and (low > 0 or scale == "lin")):
                raise ConfigError(f"synthetic range {name}: need low <= high (and low > 0 "
                                  f"for a logarithmic one), got {low}, {high}")
        value = (np.exp(rng.uniform(np.log(low), np.log(high))) if scale == "log"
                 else rng.uniform(low, high))
        drawn[name] = round(float(value), 4)


def parse_ranges(items) -> dict[str, tuple[float, float]]:
    """``NAME=LOW,HIGH`` texts (``instatrack synth --range``) -> ``{NAME: (LOW, HIGH)}``
    for :func:`draw`; :class:`ConfigError` naming a malformed one."""
    ranges = {}
    for item in items:
        name, sep, values = item.partition("=")
        parts = values.split(",")
        try:
            low, high = (float(v) for v in parts) if sep and len(parts) == 2 else (None, None)
        except ValueError:
            low = None
        if low is None:
            raise ConfigError(f"--range expects NAME=LOW,HIGH, got {item!r}")
        ranges[name.strip()] = (low, high)
    return ranges


def cells_arguments(drawn: dict[str, Any]) -> dict[str, Any]:
    """:func:`~instatrack.data.synth.generate_cells` keyword arguments of drawn values."""
    low = drawn["radius"] / np.sqrt(drawn["radius_spread"])
    high = drawn["radius"] * np.sqrt(drawn["radius_spread"])
    density = drawn["coverage"] * 1e4 / (np.pi * drawn["radius"] ** 2)
    look = {f.name: drawn[f.name] for f in dataclasses.fields(Appearance)}
    return {"radius": (round(float(low), 3), round(float(high), 3)),
            "density": round(float(density), 4), "noise": drawn["noise"],
            "speed": drawn["speed"], "division_rate": drawn["division_rate"],
            "min_area": max(12, round(0.1 * np.pi * low ** 2)),
            "appearance": Appearance(**look)}


def generate_sequences(sequences: int = 1, frames: int = 20,
                       size: tuple[int, int] = (128, 128), seed: int = 0,
                       randomise: bool = False,
                       ranges: dict[str, tuple[float, float]] | None = None,
                       **knobs: Any) -> Iterator[tuple[str, SynthSequence, dict[str, Any]]]:
    """``(name, movie, record)`` of each sequence ``01`` .. ``NN`` that
    :func:`write_ctc_sequences` writes (the same arguments), in memory."""
    if not 1 <= sequences <= 99:
        raise ConfigError(f"sequences must be in 1..99 (CTC names 01..99), got {sequences}")
    if ranges and not randomise:
        raise ConfigError("ranges apply to randomised sequences only")
    for index in range(sequences):
        name = f"{index + 1:02d}"
        if randomise:
            drawn = draw(seed, index, ranges)
            arguments = {**cells_arguments(drawn), **knobs}
            movie_seed = drawn["seed"]
        else:
            arguments, movie_seed = dict(knobs), seed + index
        yield (name, generate_cells(frames, size, movie_seed, **arguments),
               {"sequence": name, "seed": movie_seed, **_jsonable(arguments)})


def write_ctc_sequences(out_dir: str | Path, sequences: int = 1, frames: int = 20,
                        size: tuple[int, int] = (128, 128), seed: int = 0,
                        randomise: bool = False,
                        ranges: dict[str, tuple[float, float]] | None = None,
                        **knobs: Any) -> Path:
    """Write ``sequences`` synthetic sequences ``01`` .. ``NN`` into the CTC dataset ``out_dir``.

    With ``randomise`` each sequence draws its cells and appearance (:func:`draw`);
    ``knobs`` (``density``, ``noise``, ``division_rate``, ``dim_phases``, ...) fix
    a value for every sequence, overriding the draw; ``ranges`` narrows or moves
    what is drawn (``{"radius": (12, 32)}``). Without it the sequences
    share ``knobs`` and differ by seed (``seed``, ``seed + 1``, ...).
    ``synth.json`` records each sequence's seed and arguments. Returns ``out_dir``.
    """
    out = Path(out_dir)
    record = []
    for name, movie, drawn in generate_sequences(sequences, frames, size, seed, randomise,
                                                 ranges, **knobs):
        write_ctc_sequence(out, movie, name)
        record.append(drawn)
    settings = {"frames": frames, "size": list(size), "seed": seed, "randomise": randomise,
                **({"ranges": {k: list(v) for k, v in ranges.items()}} if ranges else {})}
    (out / RECORD).write_text(json.dumps({**settings, "sequences": record}, indent=1) + "\n")
    return out


def training_sequences(frames: int = 4, size: tuple[int, int] = TRAINING_SIZE) -> list[Sequence]:
    """The randomised sequences that training mixes into its data (``synthetic_share``,
    :class:`~instatrack.config.TrainConfig`), in memory: :data:`TRAINING_SEQUENCES`
    movies of ``frames`` frames drawn with :data:`TRAINING_SEED`, as
    ``instatrack synth DIR --randomise --sequences 24 --frames 4 --size 320 320 --seed 16``
    writes them (the set measured in docs/robustness.md, session 21). Made once per
    process (about 8 s); their arrays are read-only."""
    return list(_training_sequences(TRAINING_SEQUENCES, frames, tuple(size)))


@functools.lru_cache(maxsize=2)
def _training_sequences(count: int, frames: int, size: tuple[int, int]) -> tuple[Sequence, ...]:
    made = []
    for name, movie, _ in generate_sequences(count, frames, size, TRAINING_SEED, randomise=True):
        movie.images.flags.writeable = movie.labels.flags.writeable = False
        made.append(MovieSequence(f"synthetic {name}", movie))
    return tuple(made)


def _jsonable(arguments: dict[str, Any]) -> dict[str, Any]:
    return {k: v.to_dict() if isinstance(v, Appearance) else v for k, v in arguments.items()}
