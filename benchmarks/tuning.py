"""Shared by the accuracy scripts: the grid of ``--tune KEY=V1,V2,...`` settings."""

from __future__ import annotations

import itertools


def settings_grid(tune: list[str]) -> list[tuple[str, ...]]:
    """Every combination of ``KEY=VALUE`` strings from ``["KEY=V1,V2", ...]``."""
    axes = []
    for item in tune:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise SystemExit(f"--tune {item!r}: expected KEY=V1,V2,...")
        axes.append([f"{key}={v}" for v in values.split(",")])
    return list(itertools.product(*axes))
