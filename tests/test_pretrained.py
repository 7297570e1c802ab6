"""Pretrained models shipped in the package: the registry, `instatrack models`, `--model NAME`,
`load(NAME)`, and that a shipped model is only ever read.

The models here are tiny untrained networks written into a temporary registry
(``instatrack.pretrained.ROOT`` points at it); no weights are committed for tests.
"""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from instatrack import pretrained
from instatrack.cli import main
from instatrack.errors import ConfigError, DataError
from instatrack.runs import Run

TINY = ["width=0.1", "stage1_blocks=1", "dilated_repeats=1", "decoder_blocks=1"]


def _tiny_run(path, area=(40.0, 120.0), width="0.1"):
    """A spatial-embedding run folder with random weights (no training needed here)."""
    from instatrack.methods.spatial_embedding import SpatialEmbedding, SpatialEmbeddingConfig

    config = SpatialEmbeddingConfig.build("fast", overrides=[*TINY, f"width={width}"])
    config = config.replace(instance_area=area)
    run = Run.create(path, SpatialEmbedding, config, data=path.parent / "somewhere")
    run.save_weights(SpatialEmbedding(config).build_model().state_dict())
    return run


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A registry folder holding the model ``tiny-nuclei``, and a synthetic dataset."""
    from instatrack.data.synth import write_ctc_synthetic

    root = tmp_path_factory.mktemp("registry")
    run = _tiny_run(tmp_path_factory.mktemp("runs") / "run")
    pretrained.ROOT, saved = root, pretrained.ROOT
    try:
        model = pretrained.write_model(
            run, root / "tiny-nuclei", purpose="tests", scores={"val SEG": 0.5},
            training_data=["synthetic, seed 0"], terms="none", card="# tiny-nuclei\n")
    finally:
        pretrained.ROOT = saved
    data = write_ctc_synthetic(tmp_path_factory.mktemp("data"), frames=3, size=(40, 48))
    return model, data


@pytest.fixture(autouse=True)
def registry(shipped, monkeypatch):
    monkeypatch.setattr(pretrained, "ROOT", shipped[0].path.parent)
    return shipped[0].path.parent


def _snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_registry_lists_the_dropped_in_folder(shipped, registry):
    model = shipped[0]
    (registry / "notes").mkdir(exist_ok=True)  # a folder without model.json is no model
    assert pretrained.names() == ["tiny-nuclei"]
    assert pretrained.find("tiny-nuclei") == model
    assert model.method == "spatial-embedding" and model.scores == {"val SEG": 0.5}
    assert model.object_size == pytest.approx(2 * np.sqrt(120 / np.pi), abs=0.1)
    assert 0 < model.size_mb < 1
    assert sorted(p.name for p in model.path.iterdir()) == [
        "MODEL_CARD.md", "config.json", "model.json", "weights.pt"]
    config = json.loads((model.path / "config.json").read_text())
    assert config["data"] == ["synthetic, seed 0"]  # no paths of the training machine
    for name in ("nope", "../tiny-nuclei", "notes"):
        assert pretrained.find(name) is None


def test_models_command_prints_a_table(capsys, monkeypatch, tmp_path):
    assert main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["name", "method", "for"]
    assert out[1].split()[:3] == ["tiny-nuclei", "spatial-embedding", "tests"]
    assert "val SEG 0.500" in out[1]
    assert main(["models", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["name"] == "tiny-nuclei" and row["scores"] == {"val SEG": 0.5}
    monkeypatch.setattr(pretrained, "ROOT", tmp_path)
    assert main(["models"]) == 0
    assert "no pretrained models" in capsys.readouterr().out


def test_track_and_segment_by_name(shipped, tmp_path, capsys):
    data = shipped[1]
    assert main(["track", "--model", "tiny-nuclei", "--input", str(data / "01"),
                 "--output", str(tmp_path / "res"), "--quiet"]) == 0
    assert (tmp_path / "res" / "res_track.txt").is_file()
    assert main(["segment", "--model", "tiny-nuclei", "--input", str(data / "01"),
                 "--output", str(tmp_path / "seg"), "--quiet", "--object-size", "20"]) == 0
    assert len(list((tmp_path / "seg").glob("*.tif"))) == 3


def test_load_by_name_and_an_existing_folder_wins(shipped, tmp_path, monkeypatch):
    import instatrack
    from instatrack.runs import load_model

    assert load_model("tiny-nuclei")[0].name == "spatial-embedding"  # e.g. export --model NAME
    predictor = instatrack.load("tiny-nuclei", device="cpu", object_size="auto")
    assert predictor.method.name == "spatial-embedding" and predictor.config.width == 0.1
    assert predictor.segment(np.zeros((32, 40), np.uint16)).shape == (32, 40)
    monkeypatch.chdir(tmp_path)
    _tiny_run(tmp_path / "tiny-nuclei", width="0.2")
    assert instatrack.load("tiny-nuclei", device="cpu").config.width == 0.2


def test_unknown_name_is_a_one_line_error_naming_the_models(tmp_path, capsys):
    code = main(["track", "--model", "nucleii", "--input", str(tmp_path),
                 "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "nucleii" in err and "tiny-nuclei" in err
    with pytest.raises(DataError, match="tiny-nuclei"):
        Run.resolve("nucleii")


def test_a_shipped_model_is_never_written(shipped, tmp_path, capsys):
    model, data = shipped
    before = _snapshot(model.path)
    modes = {p: p.stat().st_mode for p in [model.path, *model.path.iterdir()]}
    for path in modes:  # as in a site-packages the user cannot write to
        path.chmod(stat.S_IREAD | (stat.S_IEXEC if path.is_dir() else 0))
    try:
        run = Run.resolve("tiny-nuclei")
        assert run.read_only and run.reference == "tiny-nuclei"
        with pytest.raises(ConfigError, match="--init tiny-nuclei"):
            run.save_weights({})
        assert main(["track", "--model", "tiny-nuclei", "--input", str(data / "01"),
                     "--output", str(tmp_path / "res"), "--quiet"]) == 0
        capsys.readouterr()
        assert main(["train", "--resume", str(model.path), "--quiet"]) == 2
        assert "--init tiny-nuclei" in capsys.readouterr().err
    finally:
        for path, mode in modes.items():
            os.chmod(path, mode)
    assert _snapshot(model.path) == before


def test_every_installed_model_loads_and_segments(monkeypatch, tmp_path, capsys):
    """The models really shipped in the package (none in a checkout without weights)."""
    import instatrack

    monkeypatch.undo()
    found = pretrained.available()
    if not found:
        pytest.skip("no pretrained models installed")
    for model in found:
        assert (model.path / pretrained.CARD).is_file(), model.name
        # a semi-supervised model fits its heads to frame 0: a few steps are enough here
        predictor = instatrack.load(model.name, device="cpu",
                                    overrides=["finetune_steps=3", "online_steps=1"]
                                    if model.method == "spatial-propagation" else ())
        channels = predictor.config.in_channels
        shape = (64, 64) if channels == 1 else (64, 64, channels)  # grey or RGB(A)
        rng = np.random.default_rng(0)
        image = rng.integers(0, 255, shape).astype(np.uint8)
        if not predictor.method.needs_first_masks:
            assert predictor.segment(image).shape == (64, 64), model.name
            continue
        first = np.zeros((64, 64), np.int32)    # follows the object given in frame 0
        first[20:40, 24:44] = 3
        clip = [image, rng.integers(0, 255, shape).astype(np.uint8)]
        labels = predictor.track(clip, first_masks=first).labels
        assert labels.shape == (2, 64, 64) and set(np.unique(labels)) <= {0, 3}, model.name
        # without the first frame's masks the command says which option gives them
        from PIL import Image

        frames = tmp_path / model.name
        frames.mkdir()
        Image.fromarray(image).save(frames / "00000.png")
        code = main(["track", "--model", model.name, "--input", str(frames),
                     "--output", str(tmp_path / "out"), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "--first-masks" in err, err
        assert not (tmp_path / "out").exists()
