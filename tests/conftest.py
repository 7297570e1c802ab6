"""Shared fixtures. Real data is read from ../shared/data (or $INSTATRACK_DATA)
and tests that need it are skipped when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("INSTATRACK_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real datasets; skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


def shared_dataset(name: str) -> Path:
    """Path of one dataset folder under the shared data root, or skip."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"dataset {name} not found under {SHARED_DATA}")
    return path


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep torch to the machine's cores so parallel CI workers do not oversubscribe."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(min(previous, 2))
    yield
    torch.set_num_threads(previous)
