"""The propagation benchmarks: degraded frames (``--degrade``) and flow difficulty."""

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


def test_flow_difficulty_carries_true_masks_better_than_leaving_them(tmp_path):
    """A fast synthetic video: the flow-carried earlier mask overlaps the later one more
    than the earlier mask left in place."""
    import flow_difficulty

    from instatrack.data.davis import open_sequences
    from instatrack.data.synth_video import VideoSettings, write_davis_videos

    write_davis_videos(tmp_path, videos=1, frames=4, size=(96, 128), seed=3,
                       settings=VideoSettings(speed=0.08, max_objects=1, distractor_rate=0))
    row = flow_difficulty.video_difficulty(open_sequences(tmp_path)[0], radius=7, min_area=50)
    assert row["pairs"] == 3
    assert 0 <= row["still_iou"] < row["carried_iou"] <= 1


def test_draws_are_summarised_by_their_mean_and_standard_error():
    centre, error = propagation_accuracy.draw_summary([0.5, 0.48, 0.52])
    assert centre == pytest.approx(0.5) and error == pytest.approx(0.02 / np.sqrt(3), abs=1e-4)
    assert propagation_accuracy.draw_summary([0.5]) == (0.5, 0.0)


@pytest.mark.parametrize(("extra", "message"), [
    (["--draws", "0"], "--draws must be >= 1"),
    (["--draws", "3", "--infer-set", "finetune_seed=2"], "leave it out of --infer-set"),
])
def test_bad_draws_are_refused(extra, message, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["propagation_accuracy.py", "videos", "--model",
                                      "objects-spn", *extra])
    with pytest.raises(SystemExit):
        propagation_accuracy.main()
    assert message in capsys.readouterr().err
