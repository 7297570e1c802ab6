"""The size-estimate benchmark: every pass sized and timed, on a toy model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import size_estimate  # noqa: E402

from instatrack.api import AUTO_SIZE_FACTORS, Predictor  # noqa: E402
from test_rescale import SizeSelectiveMethod, _disks  # noqa: E402


@pytest.mark.parametrize(("radius", "magnified"), [(11.3, False), (6.0, True)])
def test_every_pass_is_sized_and_timed(radius, magnified):
    """Disks of the training size are found at x1; half as wide, only magnified."""
    predictor = Predictor(SizeSelectiveMethod(), None, "cpu", object_size="auto")
    row = size_estimate.passes(predictor, predictor.prepare(_disks(radius)))
    assert all(f"s@{f:.3g}" in row and f"size@{f:.3g}" in row for f in AUTO_SIZE_FACTORS)
    assert row["magnified_largest"] is magnified
    assert row["estimate"] == pytest.approx(2 * radius, rel=0.2)
