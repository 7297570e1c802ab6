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


@pytest.fixture(scope="session")
def tiny_cosine_run(tmp_path_factory) -> Path:
    """A folder holding ``data`` (a synthetic CTC sequence, 4 frames of 48 x 56) and ``run``
    (a tiny cosine-hourglass trained two steps on it), for tests of what reads a run."""
    from instatrack.cli import main
    from instatrack.data.synth import write_ctc_synthetic

    root = tmp_path_factory.mktemp("tiny_cosine_run")
    write_ctc_synthetic(root / "data", frames=4, size=(48, 56), seed=0)
    assert main(["train", "--data", str(root / "data"), "--out", str(root / "run"),
                 "--set", "crop=48,48", "--set", "levels=3", "--set", "filters=8",
                 "--set", "clip_len=2", "--steps", "2", "--quiet"]) == 0
    return root


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
