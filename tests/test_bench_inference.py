"""The inference speed benchmark: its test frames and its table, on a tiny frame."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_inference  # noqa: E402


@pytest.mark.parametrize(("channels", "shape"), [(1, (100, 100)), (3, (700, 700, 3))])
def test_frames_have_the_models_channels(channels, shape):
    frame = bench_inference.test_frame(channels, shape[0])
    assert frame.shape == shape and frame.std() > 0


def test_each_row_is_timed_against_the_classical_pipeline_on_the_same_frames():
    calls = []

    def fake(frame):
        calls.append(frame.shape)
        return np.zeros(frame.shape[:2], np.int32)

    rows = bench_inference.time_segmenters({"a": (1, fake), "b": (3, fake)}, [64], repeats=2)
    assert [(r["model"], r["size"], r["objects"]) for r in rows] == [("a", 64, 0), ("b", 64, 0)]
    assert calls == [(64, 64), (64, 64, 3)] * 3  # one untimed round, then two


def test_speed_table_of_a_shipped_model():
    rows = bench_inference.speed_table(["nuclei-se-synthetic"], [64], repeats=1, device="cpu")
    assert [r["model"] for r in rows] == ["nuclei-se-synthetic", "classical (1 ch)"]
    assert rows[1]["ratio"] == 1.0 and rows[0]["seconds"] > 0


def test_a_semi_supervised_model_is_timed_following_its_first_masks(monkeypatch):
    given = []

    class Follower:
        class method:                       # noqa: N801 (the predictor's attribute)
            needs_first_masks = True

        def stream(self, frames, first_masks=None, progress=None):
            given.append(first_masks)
            for t, _ in enumerate(frames):
                yield t, None
                progress(t + 1)

    monkeypatch.setattr(bench_inference.instatrack, "load", lambda *a, **k: Follower())
    rows = bench_inference.speed_table(["follower"], [48], repeats=1)
    assert [(r["model"], r["size"], r["channels"]) for r in rows] == [("follower", 48, 3)]
    assert rows[0]["first"] >= 0 and rows[0]["ratio"] > 0 and rows[0]["objects"] >= 1
    assert given[0].shape == (48, 48) and given[0].max() >= 1     # frame 0's objects given


def test_time_flow_prints_a_row_per_size_and_scale(capsys):
    bench_inference.time_flow([48], [1.0, 0.5], repeats=1)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 48x48")]
    assert [row.split(" | ")[1] for row in rows] == ["1", "0.5"]
    assert rows[0].endswith("| 1.0 |")


def test_time_crf_prints_a_row_per_size(capsys):
    bench_inference.time_crf([48, 64], repeats=1)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[2:]] == ["| 48x48", "| 64x64"]
