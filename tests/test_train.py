"""The shared training loop, exercised with a tiny toy method (tests/toy_method.py)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from instatrack import runs
from instatrack.errors import ConfigError, DataError
from instatrack.methods import REGISTRY
from instatrack.train import TrainingInterrupted, resume, train


@pytest.fixture(autouse=True)
def toy_registered(monkeypatch):
    monkeypatch.setitem(REGISTRY, "toy", "toy_method:ToyMethod")


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    from instatrack.data.synth import write_ctc_synthetic

    return write_ctc_synthetic(tmp_path_factory.mktemp("synth"), frames=10, size=(64, 64), seed=3)


def _config(**changes):
    from toy_method import ToyConfig

    cfg = ToyConfig.build("fast", overrides=["val_frames=7:"])
    return cfg.replace(**changes)


def _stop_after(stop: int):
    """A progress callback that presses Ctrl-C once step ``stop`` is reported."""
    def progress(step, total, row):
        if step == stop:
            raise KeyboardInterrupt

    return progress


def _log_steps(run):
    with (run / runs.LOG).open() as handle:
        return [int(float(r["step"])) for r in csv.DictReader(handle)]


def test_loss_falls_and_run_folder_is_complete(cells, tmp_path):
    run = train("toy", cells, tmp_path / "run", config=_config(steps=30), progress=False)
    rows = runs.LogWriter(run / runs.LOG, resume_step=10**9).rows
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert "val_seg" in rows[-1] and 0 <= rows[-1]["val_seg"] <= 1
    for name in (runs.CONFIG, runs.WEIGHTS, runs.LAST, runs.CHECKPOINT, runs.CURVES):
        assert (run / name).is_file(), name
    method, model = runs.load_model(run)
    assert method.config.in_channels == 1 and not model.training


def test_interrupted_run_resumes_exactly(cells, tmp_path):
    straight = train("toy", cells, tmp_path / "a", config=_config(), progress=False)

    with pytest.raises(TrainingInterrupted, match="stopped after step 6.*--resume"):
        train("toy", cells, tmp_path / "b", config=_config(), progress=_stop_after(6))
    assert _log_steps(tmp_path / "b") == [2, 4, 6]
    resumed = resume(tmp_path / "b", progress=False)
    assert _log_steps(resumed) == [2, 4, 6, 8, 10, 12]
    a = torch.load(straight / runs.LAST)
    b = torch.load(resumed / runs.LAST)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_seeded_runs_are_identical(cells, tmp_path):
    one = train("toy", cells, tmp_path / "1", config=_config(steps=4), progress=False)
    two = train("toy", cells, tmp_path / "2", config=_config(steps=4), progress=False)
    a, b = torch.load(one / runs.LAST), torch.load(two / runs.LAST)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_existing_run_is_not_overwritten(cells, tmp_path):
    train("toy", cells, tmp_path / "run", config=_config(steps=2), progress=False)
    with pytest.raises(ConfigError, match="already holds a run"):
        train("toy", cells, tmp_path / "run", config=_config(steps=2), progress=False)


def test_resume_needs_a_run_folder(tmp_path):
    with pytest.raises(DataError, match="not a run folder"):
        resume(tmp_path / "none", progress=False)


def test_cli_reports_bad_config_in_one_line(cells, tmp_path, capsys):
    from instatrack.cli import main

    code = main(["train", "--method", "cosine-hourglass", "--data", str(cells),
                 "--set", "colour=red", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "colour" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_bfloat16_on_cpu_only_where_it_pays():
    import torch

    from instatrack.methods import get_method
    from instatrack.methods.base import cpu_has_bf16, uses_amp

    cpu = torch.device("cpu")
    cosine = get_method("cosine-hourglass").config_cls.build("fast")
    propagation = get_method("spatial-propagation").config_cls.build("fast")
    assert uses_amp(cosine, cpu) == cpu_has_bf16()
    assert not uses_amp(cosine.replace(amp=False), cpu)
    assert not uses_amp(propagation, cpu)  # slower in bfloat16 on a CPU
    assert uses_amp(propagation, torch.device("cuda"))


def test_inference_is_float32_unless_asked(monkeypatch):
    """Inference does not switch to bfloat16 because the CPU has the kernels: training
    may, inference only with ``infer_bfloat16`` (on MSC 02 the shipped nuclei-ch found
    other objects in bfloat16, docs/results.md, session 49)."""
    import torch

    from instatrack.methods import base, get_method
    from instatrack.methods.base import uses_amp, with_precision

    monkeypatch.setattr(base, "cpu_has_bf16", lambda: True)  # as on an AVX-512 BF16 CPU
    cpu, net = torch.device("cpu"), torch.nn.Conv2d(1, 1, 3)
    config = get_method("cosine-hourglass").config_cls.build("fast")
    assert uses_amp(config, cpu) and with_precision(net, config, cpu)[1]  # training
    assert not with_precision(net, config, cpu, inference=True)[1]
    asked = config.with_post_processing(["infer_bfloat16=true"])  # allowed on a trained run
    assert with_precision(net, asked, cpu, inference=True)[1]
    monkeypatch.setattr(base, "cpu_has_bf16", lambda: False)
    assert not with_precision(net, asked, cpu, inference=True)[1]  # no kernels: float32


@pytest.fixture
def few_synthetic(monkeypatch):
    """Two small synthetic movies instead of the 24 of 320 x 320 training mixes in."""
    from instatrack.data import synth_random

    monkeypatch.setattr(synth_random, "TRAINING_SEQUENCES", 2)
    monkeypatch.setattr(synth_random, "TRAINING_SIZE", (48, 48))


def test_synthetic_share_mixes_synthetic_clips_in_and_resumes_exactly(cells, tmp_path,
                                                                      few_synthetic):
    from instatrack.train import _fit_to_data, get_method

    config = _config(synthetic_share=0.5, steps=8)
    fitted, sampler = _fit_to_data(get_method("toy"), config, [_open(cells)], [0])
    synthetic = [s for s, seq in enumerate(sampler.sequences) if seq.name.startswith("synthetic")]
    assert len(synthetic) == 2 and len(sampler.sequences) == 3
    drawn = np.array([sampler.clips[sampler._pick()][0] for _ in range(2000)])
    assert abs(np.isin(drawn, synthetic).mean() - 0.5) < 0.05
    # the size recorded is the data's, not the synthetic nuclei's
    _, alone = _fit_to_data(get_method("toy"), _config(), [_open(cells)], [0])
    assert fitted.instance_area == alone.instance_areas()
    straight = train("toy", cells, tmp_path / "a", config=config, progress=False)

    with pytest.raises(TrainingInterrupted):
        train("toy", cells, tmp_path / "b", config=config, progress=_stop_after(4))
    resumed = resume(tmp_path / "b", progress=False)
    a, b = torch.load(straight / runs.LAST), torch.load(resumed / runs.LAST)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert runs.Run.open(resumed).config.synthetic_share == 0.5


def test_synthetic_share_leaves_colour_data_alone(tmp_path, few_synthetic):
    from instatrack.data import open_grouped
    from instatrack.data.synth import write_cvppp_synthetic
    from instatrack.train import _fit_to_data, get_method

    sequences, groups = open_grouped(write_cvppp_synthetic(tmp_path / "leaves", n=3))
    config = _config(synthetic_share=0.5)
    _, sampler = _fit_to_data(get_method("toy"), config, sequences, groups)
    assert sampler.sequences == sequences and sampler.clip_p is None


def _open(folder):
    from instatrack.data import open_dataset

    return open_dataset(folder)[0]


def test_weight_average_is_kept_and_resumes_exactly(cells, tmp_path):
    """``ema``: the run keeps the moving average of its weights, not the last step's, and
    an interrupted run resumes it bit for bit."""
    straight = train("toy", cells, tmp_path / "a", config=_config(ema=0.9), progress=False)
    plain = train("toy", cells, tmp_path / "p", config=_config(), progress=False)
    kept, last = torch.load(straight / runs.LAST), torch.load(plain / runs.LAST)
    assert any(not torch.equal(kept[k], last[k]) for k in kept)  # the same steps, averaged

    with pytest.raises(TrainingInterrupted):
        train("toy", cells, tmp_path / "b", config=_config(ema=0.9), progress=_stop_after(6))
    resumed = torch.load(resume(tmp_path / "b", progress=False) / runs.LAST)
    for key in kept:
        torch.testing.assert_close(kept[key], resumed[key], rtol=0, atol=0)


def test_weight_average_decay_outside_its_range_is_refused():
    with pytest.raises(ConfigError, match="ema must be in"):
        _config(ema=1.0)
