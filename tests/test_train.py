"""The shared training loop, exercised with a tiny toy method (tests/toy_method.py)."""

from __future__ import annotations

import csv

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

    def interrupt(step, total, row):
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="stopped after step 6.*--resume"):
        train("toy", cells, tmp_path / "b", config=_config(), progress=interrupt)
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
