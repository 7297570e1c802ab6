"""The propagation benchmark's degraded frames (``--degrade``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import propagation_accuracy  # noqa: E402


@pytest.mark.parametrize(("kind", "amount"),
                         [("noise", 0.05), ("blur", 2), ("dim", 4), ("jpeg", 20)])
@pytest.mark.parametrize("shape", [(40, 60, 3), (40, 60)])
def test_a_degraded_frame_keeps_its_shape_and_type_and_repeats(kind, amount, shape):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, shape).astype(np.uint8)
    out = propagation_accuracy.degraded(frame, kind, amount, t=3)
    assert out.shape == frame.shape and out.dtype == frame.dtype
    assert not np.array_equal(out, frame)
    assert np.array_equal(out, propagation_accuracy.degraded(frame, kind, amount, t=3))


def test_dimming_flattens_the_frame_around_its_mean():
    frame = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    out = propagation_accuracy.degraded(frame, "dim", 4, t=0)
    assert out.std() == pytest.approx(frame.std() / 4, rel=1e-4)


@pytest.mark.parametrize("text", ["fog=1", "noise=x", "dim=0.5", "jpeg=200", "jpeg=0.5", "blur=0"])
def test_a_bad_degradation_is_refused_with_its_text(text, capsys):
    with pytest.raises(SystemExit):
        propagation_accuracy.parse_degrade(text, argparse.ArgumentParser())
    assert text in capsys.readouterr().err
