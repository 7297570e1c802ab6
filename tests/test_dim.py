"""The dimming of the robustness benchmark and of calibration: contrast divided, the
sensor's noise kept."""

from __future__ import annotations

import numpy as np
import pytest

from instatrack.data.dim import background_stats, dim_frame


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


def test_a_dimmed_sequence_keeps_labels_and_leaves_objects_out_of_the_background(tmp_path):
    from instatrack.data.ctc import CTCSequence
    from instatrack.data.dim import DimmedSequence
    from instatrack.data.synth import write_ctc_synthetic

    seq = CTCSequence(write_ctc_synthetic(tmp_path, frames=3, size=(64, 64), seed=2) / "01")
    dim = DimmedSequence(seq, 4)
    assert len(dim) == 3 and dim.name == seq.name and dim.is_video and dim.gt_dir == seq.gt_dir
    assert np.array_equal(dim.labels(1), seq.labels(1))
    objects = dim.objects(1, seq.shape[:2])
    assert objects.any() and np.array_equal(objects, (seq.labels(1) != 0) | (seq.markers(1) > 0))
    raw, out = seq.image(1).astype(float), dim.image(1).astype(float)
    level, _ = background_stats(seq.image(1), objects)
    assert (out[objects] - level).mean() == pytest.approx((raw[objects] - level).mean() / 4,
                                                         rel=0.1)
    assert np.array_equal(dim.image(1), dim.image(1))  # seeded per frame
    kept = DimmedSequence(seq, 4, keep=True)           # made once, then held
    assert kept.image(1) is kept.image(1) and np.array_equal(kept.image(1), dim.image(1))
    assert DimmedSequence(seq, 1).image(0) is not None
    with pytest.raises(ValueError, match="at least 1"):
        DimmedSequence(seq, 0.5)
