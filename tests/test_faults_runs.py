"""Faults around run folders: Ctrl-C, failed runs, booby-trapped or corrupt files.

Each test checks what the user sees (exit status 2 for a user error, 130 for
Ctrl-C; one line naming the file), that nothing already written is lost, and,
for interruptions, that resuming gives bit-identical weights.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from instatrack import cli, runs
from instatrack.errors import InstatrackError
from instatrack.methods import REGISTRY
from instatrack.train import TrainingInterrupted, resume, train
from toy_method import ToyConfig, ToyMethod

pytestmark = pytest.mark.faults

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
TOY_LOSS = ToyMethod.loss


@pytest.fixture(autouse=True)
def toy_registered(monkeypatch):
    monkeypatch.setitem(REGISTRY, "toy", "toy_method:ToyMethod")
    monkeypatch.setattr(cli, "METHODS", (*cli.METHODS, "toy"))


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    from instatrack.data.synth import write_ctc_synthetic

    return write_ctc_synthetic(tmp_path_factory.mktemp("synth"), frames=10, size=(64, 64), seed=3)


@pytest.fixture(scope="module")
def finished_run(cells, tmp_path_factory):
    """A small finished toy run, copied by each test that damages it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(REGISTRY, "toy", "toy_method:ToyMethod")
        return train("toy", cells, tmp_path_factory.mktemp("runs") / "run",
                     config=_config(steps=4), progress=False)


def _config(**changes):
    return ToyConfig.build("fast", overrides=["val_frames=7:"]).replace(**changes)


def _copy_run(run: Path, to: Path) -> Path:
    to.mkdir()
    for name in (runs.CONFIG, runs.WEIGHTS, runs.LAST, runs.CHECKPOINT, runs.LOG):
        (to / name).write_bytes((run / name).read_bytes())
    return to


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def _log_steps(run: Path) -> list[int]:
    with (run / runs.LOG).open() as handle:
        return [int(float(r["step"])) for r in csv.DictReader(handle)]


def _one_line_error(capsys, argv: list[str], code: int = 2) -> str:
    assert cli.main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture(autouse=True)
def _ctrl_c_as_in_a_terminal():
    """Ctrl-C reaches Python's default handler, as in a terminal, even when pytest runs as
    a background job: those start with SIGINT ignored, and training then leaves it so."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _sigint_in_loss(monkeypatch, at_call: int, times: int = 1) -> None:
    """Send SIGINT to this process from inside the loss of the ``at_call``-th step,
    i.e. in the middle of a step, as a real Ctrl-C mostly lands."""
    calls = {"n": 0}

    def loss_with_ctrl_c(self, model, batch):
        calls["n"] += 1
        if calls["n"] == at_call:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return TOY_LOSS(self, model, batch)

    monkeypatch.setattr(ToyMethod, "loss", loss_with_ctrl_c)


# -- Ctrl-C -------------------------------------------------------------------------------------
def test_ctrl_c_mid_step_then_resume_is_bit_identical(cells, tmp_path, monkeypatch):
    straight = train("toy", cells, tmp_path / "a", config=_config(), progress=False)
    _sigint_in_loss(monkeypatch, at_call=7)
    with pytest.raises(TrainingInterrupted, match=r"after step 7.*--resume .*b`"):
        train("toy", cells, tmp_path / "b", config=_config(), progress=False)
    monkeypatch.setattr(ToyMethod, "loss", TOY_LOSS)
    assert runs.Run.open(tmp_path / "b").load_checkpoint()["step"] == 7
    resumed = resume(tmp_path / "b", progress=False)
    _assert_same_weights(straight / runs.LAST, resumed / runs.LAST)
    _assert_same_weights(straight / runs.WEIGHTS, resumed / runs.WEIGHTS)
    assert _log_steps(resumed) == _log_steps(straight) == [2, 4, 6, 8, 10, 12]


def test_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(cells, tmp_path,
                                                                   monkeypatch):
    straight = train("toy", cells, tmp_path / "a", config=_config(), progress=False)
    _sigint_in_loss(monkeypatch, at_call=7, times=2)
    with pytest.raises(TrainingInterrupted, match="at once after step 6; the checkpoint of step 4"):
        train("toy", cells, tmp_path / "b", config=_config(), progress=False)
    monkeypatch.setattr(ToyMethod, "loss", TOY_LOSS)
    resumed = resume(tmp_path / "b", progress=False)
    _assert_same_weights(straight / runs.LAST, resumed / runs.LAST)


def test_ctrl_c_before_the_first_checkpoint_leaves_a_rerunnable_folder(cells, tmp_path,
                                                                       monkeypatch, capsys):
    _sigint_in_loss(monkeypatch, at_call=2, times=2)
    out = tmp_path / "run"
    args = ["train", "--method", "toy", "--data", str(cells), "--out", str(out), "--quiet",
            "--steps", "4"]
    err = _one_line_error(capsys, args, code=130)
    assert "before its first checkpoint" in err and str(out) in err
    monkeypatch.setattr(ToyMethod, "loss", TOY_LOSS)
    assert cli.main(args) == 0


#: runs the CLI on one thread with the toy method registered and each step slowed
#: down, so that a SIGINT sent from outside lands while training
DRIVER = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (see above)
sys.path.insert(0, {tests!r})
import torch
import toy_method
from instatrack import cli
from instatrack.methods import REGISTRY
torch.set_num_threads(1)
REGISTRY["toy"] = "toy_method:ToyMethod"
cli.METHODS = (*cli.METHODS, "toy")
loss = toy_method.ToyMethod.loss
def slow_loss(self, model, batch):
    time.sleep(0.05)
    return loss(self, model, batch)
toy_method.ToyMethod.loss = slow_loss
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture
def one_thread():
    """Same thread count as the driver: CPU reductions may split differently otherwise."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_cli_sigint_exits_130_and_resume_is_bit_identical(cells, tmp_path, capsys, one_thread):
    args = ["train", "--method", "toy", "--data", str(cells), "--quiet", "--steps", "40",
            "--set", "val_frames=7:", "--set", "ckpt_every=8"]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER.format(tests=str(TESTS)), *args,
                             "--out", str(tmp_path / "b")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not ((tmp_path / "b" / runs.LOG).is_file() and _log_steps(tmp_path / "b")
               and _log_steps(tmp_path / "b")[-1] >= 4):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=300) == 130
    err = proc.stderr.read().strip()
    assert len(err.splitlines()) == 1 and "interrupted" in err, err
    assert f"--resume {tmp_path / 'b'}" in err
    stopped_at = runs.Run.open(tmp_path / "b").load_checkpoint()["step"]
    assert 4 <= stopped_at < 40

    assert cli.main(["train", "--resume", str(tmp_path / "b"), "--quiet"]) == 0
    assert cli.main([*args, "--out", str(tmp_path / "a")]) == 0
    _assert_same_weights(tmp_path / "a" / runs.LAST, tmp_path / "b" / runs.LAST)
    assert _log_steps(tmp_path / "b") == _log_steps(tmp_path / "a")


# -- failed runs --------------------------------------------------------------------------------
def _nan_loss_from(monkeypatch, step: int) -> None:
    calls = {"n": 0}

    def failing(self, model, batch):
        calls["n"] += 1
        value, parts = TOY_LOSS(self, model, batch)
        return (value * float("nan") if calls["n"] >= step else value), parts

    monkeypatch.setattr(ToyMethod, "loss", failing)


def test_failed_run_before_first_checkpoint_does_not_block_a_rerun(cells, tmp_path,
                                                                   monkeypatch, capsys):
    out = tmp_path / "run"
    args = ["train", "--method", "toy", "--data", str(cells), "--out", str(out), "--quiet",
            "--steps", "6"]
    _nan_loss_from(monkeypatch, step=3)
    assert "loss became nan" in _one_line_error(capsys, args)
    err = _one_line_error(capsys, ["train", "--resume", str(out), "--quiet"])
    assert str(out) in err and "before its first checkpoint" in err
    monkeypatch.setattr(ToyMethod, "loss", TOY_LOSS)
    assert cli.main(args) == 0
    assert _log_steps(out) == [2, 4, 6]


def test_a_started_run_is_never_replaced(finished_run, tmp_path, capsys):
    run = _copy_run(finished_run, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    err = _one_line_error(capsys, ["train", "--method", "toy", "--data", str(run), "--out",
                                   str(run), "--quiet"])
    assert f"{run} already holds a run" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_weights_are_never_written_before_the_first_checkpoint(cells, tmp_path, monkeypatch):
    _nan_loss_from(monkeypatch, step=3)
    out = tmp_path / "run"
    config = _config(val_every=2, ckpt_every=100)
    with pytest.raises(InstatrackError, match="loss became nan"):
        train("toy", cells, out, config=config, progress=False)
    assert (out / runs.WEIGHTS).is_file()
    assert runs.Run.open(out).load_checkpoint()["step"] == 2


# -- files that are not what they claim ---------------------------------------------------------
class _Payload:
    """Unpickling this creates ``marker``: proof that loading ran code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", [runs.WEIGHTS, runs.CHECKPOINT])
def test_booby_trapped_run_files_run_nothing(finished_run, tmp_path, capsys, name):
    run = _copy_run(finished_run, tmp_path / "run")
    marker = tmp_path / "pwned"
    state = _weights(run / runs.WEIGHTS)
    torch.save({**state, "extra": _Payload(marker)}, run / name)
    trap = (run / name).read_bytes()
    if name == runs.WEIGHTS:
        argv = ["segment", "--model", str(run), "--input", str(tmp_path), "--output",
                str(tmp_path / "out"), "--quiet"]
    else:
        argv = ["train", "--resume", str(run), "--quiet"]
    err = _one_line_error(capsys, argv)
    assert str(run / name) in err and "refused to load" in err
    assert not marker.exists() and (run / name).read_bytes() == trap
    torch.load(run / name, weights_only=False)  # the trap is real: unsafe loading springs it
    assert marker.exists()


def test_bare_tensor_as_weights_is_one_line(finished_run, tmp_path, capsys):
    run = _copy_run(finished_run, tmp_path / "run")
    torch.save(torch.zeros(3), run / runs.WEIGHTS)
    err = _one_line_error(capsys, ["segment", "--model", str(run), "--input", str(tmp_path),
                                   "--output", str(tmp_path / "out"), "--quiet"])
    assert str(run / runs.WEIGHTS) in err and "Tensor" in err


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"method": 3}', '{"method": "nope"}',
                                  '{"method": "toy", "steps": "many"}'])
def test_corrupt_config_json_is_one_line(finished_run, tmp_path, capsys, text):
    run = _copy_run(finished_run, tmp_path / "run")
    (run / runs.CONFIG).write_text(text)
    for argv in (["segment", "--model", str(run), "--input", str(tmp_path), "--output",
                  str(tmp_path / "out"), "--quiet"],
                 ["train", "--resume", str(run), "--quiet"]):
        assert str(run / runs.CONFIG) in _one_line_error(capsys, argv)
    assert (run / runs.CONFIG).read_text() == text
