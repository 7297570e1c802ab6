"""Training that starts from another model (`--init`) and training on several datasets
(`--data` repeated), with the toy method of tests/toy_method.py."""

from __future__ import annotations

import json

import pytest
import torch

from instatrack import finetune, runs
from instatrack.cli import main
from instatrack.errors import ConfigError, DataError
from instatrack.methods import REGISTRY
from instatrack.train import TrainingInterrupted, resume, train


@pytest.fixture(autouse=True)
def toy_registered(monkeypatch):
    monkeypatch.setitem(REGISTRY, "toy", "toy_method:ToyMethod")


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    from instatrack.data.synth import write_ctc_synthetic

    return write_ctc_synthetic(tmp_path_factory.mktemp("a"), frames=8, size=(48, 48), seed=3)


@pytest.fixture(scope="module")
def more_cells(tmp_path_factory):
    from instatrack.data.synth import write_ctc_synthetic

    return write_ctc_synthetic(tmp_path_factory.mktemp("b"), frames=6, size=(40, 56), seed=4)


@pytest.fixture(scope="module")
def start(cells, tmp_path_factory):
    """A trained toy run to start from (frames 0-5 trained, 6-7 validated)."""
    from toy_method import ToyConfig

    REGISTRY["toy"] = "toy_method:ToyMethod"
    try:
        config = ToyConfig.build("fast", overrides=["steps=6", "val_frames=6:"])
        return train("toy", cells, tmp_path_factory.mktemp("init") / "run", config=config,
                     progress=False)
    finally:
        del REGISTRY["toy"]


def _weights(run, name=runs.LAST):
    return runs.Run.open(run).load_weights(name)


def _same(a, b, atol=0.0):
    return all(torch.allclose(a[k], b[k], rtol=0, atol=atol) for k in a)


def test_init_starts_from_the_init_weights(start, more_cells, tmp_path):
    # a vanishing learning rate keeps the weights where training started
    frozen = ["lr=1e-12", "lr_final=1e-12", "steps=3"]
    config = finetune.init_config(runs.Run.open(start), overrides=frozen)
    tuned = train(None, more_cells, tmp_path / "tuned", config=config, init=start,
                  progress=False)
    scratch = train("toy", more_cells, tmp_path / "scratch", config=config, progress=False)
    init = _weights(start, runs.WEIGHTS)
    assert _same(_weights(tuned), init, atol=1e-9)
    assert not _same(_weights(scratch), init, atol=1e-3)


def test_fine_tuning_trains_records_init_and_resets_the_data_keys(start, more_cells, tmp_path):
    tuned = train(None, more_cells, tmp_path / "tuned", init=start, progress=False,
                  config=finetune.init_config(runs.Run.open(start), overrides=["steps=3"]))
    assert not _same(_weights(tuned), _weights(start, runs.WEIGHTS), atol=1e-6)
    saved = json.loads((tuned / runs.CONFIG).read_text())
    assert saved["init"] == str(start.resolve()) and saved["method"] == "toy"
    assert saved["val_frames"] == "" and saved["steps"] == 3  # the init's split was for its data
    assert runs.Run.open(tuned).init == str(start.resolve())


def test_a_fine_tuned_run_resumes_exactly(start, more_cells, tmp_path):
    config = finetune.init_config(runs.Run.open(start), overrides=["steps=6", "ckpt_every=2"])
    straight = train(None, more_cells, tmp_path / "a", config=config, init=start,
                     progress=False)

    def stop(step, total, row):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(None, more_cells, tmp_path / "b", config=config, init=start, progress=stop)
    assert _same(_weights(resume(tmp_path / "b", progress=False)), _weights(straight))


def test_cli_fine_tunes_and_refuses_network_keys(start, more_cells, tmp_path, capsys):
    argv = ["train", "--init", str(start), "--data", str(more_cells), "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "ok"), "--steps", "2",
                 "--set", "lr=1e-3", "--set", "aug_dim_p=0"]) == 0
    assert runs.Run.open(tmp_path / "ok").config.aug_dim_p == 0
    capsys.readouterr()
    for extra, words in ((["--set", "width=8"], ("width", "fixed by the init")),
                         (["--method", "cosine-hourglass"], ("trained with toy",)),
                         (["--preset", "fast"], ("--preset",))):
        assert main([*argv, "--out", str(tmp_path / "no"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and all(w in err for w in words), err
        assert not (tmp_path / "no").exists()


def test_init_refuses_data_with_other_channels(start, tmp_path):
    from instatrack.data.synth import write_cvppp_synthetic

    rgb = write_cvppp_synthetic(tmp_path / "leaves", n=2, size=(32, 32))
    with pytest.raises(DataError, match="3 channel"):
        train(None, rgb, tmp_path / "run", init=start, progress=False)


def test_several_datasets_train_together_and_resume(cells, more_cells, tmp_path):
    from toy_method import ToyConfig

    config = ToyConfig.build("fast", overrides=["steps=4", "ckpt_every=2"])

    def stop(step, total, row):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train("toy", [cells, more_cells], tmp_path / "run", config=config, progress=stop)
    saved = json.loads((tmp_path / "run" / runs.CONFIG).read_text())
    assert saved["data"] == [str(cells.resolve()), str(more_cells.resolve())]
    resume(tmp_path / "run", progress=False)
    straight = train("toy", [cells, more_cells], tmp_path / "straight", config=config,
                     progress=False)
    assert _same(_weights(tmp_path / "run"), _weights(straight))


def test_cli_data_is_repeatable_and_channels_must_agree(cells, more_cells, tmp_path, capsys):
    from instatrack.data.synth import write_cvppp_synthetic

    assert main(["train", "--method", "spatial-embedding", "--data", str(cells), "--data",
                 str(more_cells), "--out", str(tmp_path / "two"), "--steps", "1", "--quiet",
                 "--set", "width=0.1", "--set", "crop=32,32", "--set", "batch_size=1"]) == 0
    assert len(runs.Run.open(tmp_path / "two").data) == 2
    rgb = write_cvppp_synthetic(tmp_path / "leaves", n=2, size=(32, 32))
    capsys.readouterr()
    assert main(["train", "--data", str(cells), "--data", str(rgb), "--out",
                 str(tmp_path / "mixed")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "channel" in err and "leaves" in err, err
    with pytest.raises(ConfigError):
        finetune.init_config(runs.Run.open(tmp_path / "two"), overrides=["in_channels=3"])


def test_a_model_trained_on_a_weighted_mix_fine_tunes_on_one_folder(cells, more_cells,
                                                                    tmp_path):
    """The init model's folder shares describe its own data: --init with other data must
    not inherit them (nuclei-se, three folders, fine-tuned on one)."""
    from toy_method import ToyConfig

    mixed = train("toy", [cells, more_cells], tmp_path / "mixed", progress=False,
                  config=ToyConfig.build("fast", overrides=["steps=2", "data_weights=3,1"]))
    config = finetune.init_config(runs.Run.open(mixed), overrides=["steps=2"])
    assert config.data_weights == ()
    tuned = train(None, more_cells, tmp_path / "tuned", config=config, init=mixed,
                  progress=False)
    assert runs.Run.open(tuned).config.data_weights == ()
