"""The dimming of the robustness benchmark and of calibration: contrast divided, the
sensor's noise kept."""

from __future__ import annotations

import numpy as np
import pytest

from instatrack.data.dim import DimmedSequence, background_stats, dim_frame


def test_dim_frame_divides_contrast_and_keeps_the_noise():
    rng = np.random.default_rng(0)
    objects = np.zeros((200, 200), bool)
    objects[60:120, 60:120] = True
    clean = 1000 + 800 * objects + rng.normal(0, 50, objects.shape)
    image = np.round(clean).astype(np.uint16)
    assert background_stats(image, objects) == pytest.approx((1000, 50), rel=0.03)
    for factor in (2, 4, 8):
        dim = dim_frame(image, objects, factor, np.random.default_rng(1))
        assert dim.dtype == np.uint16
        level, noise = background_stats(dim, objects)
        assert level == pytest.approx(1000, abs=2) and noise == pytest.approx(50, rel=0.05)
        contrast = dim[objects].mean() - level
        assert contrast == pytest.approx(800 / factor, rel=0.05)
