"""Shared by the accuracy scripts: training a run when needed, the ``--tune`` grid."""

from __future__ import annotations

import itertools
from pathlib import Path


def settings_grid(tune: list[str]) -> list[tuple[str, ...]]:
    """Every combination of ``KEY=VALUE`` strings from ``["KEY=V1,V2", ...]``."""
    axes = []
    for item in tune:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise SystemExit(f"--tune {item!r}: expected KEY=V1,V2,...")
        axes.append([f"{key}={v}" for v in values.split(",")])
    return list(itertools.product(*axes))


def ensure_trained(method: str, data: Path, run: Path, preset: str, overrides: list[str],
                   steps: int | None, quiet: bool) -> Path:
    """Train ``run`` unless it is finished; continue it from its checkpoint if it has one.

    A fresh run is built from ``preset`` + ``overrides`` (+ ``steps``); a resumed
    run keeps its saved config, and only ``steps`` may extend it.
    """
    from instatrack.methods import get_method
    from instatrack.train import train_or_resume

    config = get_method(method).config_cls.build(preset, overrides=overrides)
    return train_or_resume(method, data, run, config=config, steps=steps, progress=not quiet)


def write_objects(gt: Path, res: Path, first: int, path: Path) -> dict[str, int]:
    """The per-object table of a CTC result (``instatrack evaluate --objects``) written to
    ``path``, for ground truth renumbered from ``first`` (``subset_ground_truth``): the
    rows carry the sequence's own frame numbers. Returns the count of each verdict."""
    from instatrack.metrics.objects import table_and_counts

    path.parent.mkdir(parents=True, exist_ok=True)
    return table_and_counts(gt, res, path, first)
