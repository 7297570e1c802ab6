"""The recipe script of the shipped models, on a tiny recipe: data mix, training, install."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import train_shipped  # noqa: E402

from instatrack import pretrained  # noqa: E402


def _tiny(name):
    recipe = train_shipped.RECIPES[name]
    return dataclasses.replace(
        recipe, synthetic=(train_shipped.Synthetic(sequences=2, frames=4, size=(48, 48), seed=0),),
        overrides=(*recipe.overrides, "width=0.1", "stage1_blocks=1", "crop=32,32",
                   "batch_size=1", "steps=2", "log_every=1", "val_every=2"))


def test_a_recipe_trains_on_the_real_data_that_is_there(tmp_path, capsys):
    recipe = _tiny("nuclei-se")
    run = train_shipped.train_recipe("nuclei-se", recipe, tmp_path / "run", tmp_path / "work",
                                     tmp_path / "no-data", quiet=True)
    err = capsys.readouterr().err
    assert "skipping Fluo-N2DH-SIM+ 01" in err and "skipping Fluo-N2DH-GOWT1 01" in err
    assert Path(pretrained_run_data(run)).name == recipe.synthetic[0].folder_name
    # running the recipe again finds the run finished and the synthetic data made
    assert train_shipped.train_recipe("nuclei-se", recipe, run, tmp_path / "work",
                                      tmp_path / "no-data", quiet=True) == run


def pretrained_run_data(run):
    from instatrack.runs import Run

    return Run.open(run).data


def test_a_trained_recipe_installs_as_a_shipped_model(tmp_path, monkeypatch):
    import instatrack

    recipe = _tiny("nuclei-se-synthetic")
    measured = dataclasses.replace(recipe, overrides=(*recipe.overrides, "calibrate=false"))
    run = train_shipped.train_recipe("nuclei-se-synthetic", measured, tmp_path / "run",
                                     tmp_path / "work", tmp_path / "no-data", quiet=True)
    model = train_shipped.install("nuclei-se-synthetic", recipe, run, tmp_path / "dest",
                                  {"SIM+ 01 t45-64 SEG": 0.5}, ["seed_threshold=0.8"])
    monkeypatch.setattr(pretrained, "ROOT", tmp_path / "dest")
    assert pretrained.names() == ["nuclei-se-synthetic"]
    assert set(model.scores) == {"validation SEG", "SIM+ 01 t45-64 SEG"}
    assert model.training_data == (f"synthetic: {recipe.synthetic[0].command}",)
    assert "Cell Tracking" not in model.terms
    card = (model.path / pretrained.CARD).read_text()
    for text in ("## Training data", "train_shipped.py nuclei-se-synthetic --install",
                 "| 0.500 |", "seed_threshold=0.8", "## Intended use"):
        assert text in card
    config = instatrack.load("nuclei-se-synthetic", device="cpu").config
    assert config.seed_threshold == 0.8
    # a run that skipped its calibration ships a model whose fine-tunes calibrate
    assert config.calibrate is True


def test_a_recipe_of_real_data_only_carries_that_datas_terms(tmp_path):
    from instatrack.data.synth import write_cvppp_synthetic

    # a stand-in for the CVPPP folder: four synthetic plants where the recipe looks
    write_cvppp_synthetic(tmp_path / "data" / "CVPPP2017_LSC_A1", n=4, size=(48, 48), seed=0)
    recipe = _tiny("leaves-se")
    recipe = dataclasses.replace(recipe, synthetic=(),
                                 overrides=(*recipe.overrides, "train_frames=:3",
                                            "val_frames=3:4"))
    run = train_shipped.train_recipe("leaves-se", recipe, tmp_path / "run", tmp_path / "work",
                                     tmp_path / "data", quiet=True)
    model = train_shipped.install("leaves-se", recipe, run, tmp_path / "dest", {}, [])
    assert model.training_data == ("CVPPP2017_LSC_A1 A1",)
    assert model.terms == train_shipped.CVPPP_TERMS
    assert "NO commercial use" in (model.path / pretrained.CARD).read_text()


def test_a_video_recipe_makes_synthetic_videos_and_installs(tmp_path, monkeypatch):
    import instatrack

    recipe = dataclasses.replace(
        train_shipped.RECIPES["objects-spn"],
        synthetic=(train_shipped.Synthetic(sequences=2, frames=4, size=(48, 64), seed=0,
                                           randomise=False, kind="video"),),
        overrides=("train_frames=:3", "val_frames=3:4", "fg_width=4", "fg_levels=2",
                   "spn_width=4", "spn_depth=1", "crop=32,32", "batch_size=1", "steps=2",
                   "log_every=1", "val_every=2", "finetune_steps=1"))
    run = train_shipped.train_recipe("objects-spn", recipe, tmp_path / "run", tmp_path / "work",
                                     tmp_path / "no-data", quiet=True)
    folder = Path(pretrained_run_data(run))
    assert folder.name.startswith("synthetic-video-") and (folder / "JPEGImages").is_dir()
    model = train_shipped.install("objects-spn", recipe, run, tmp_path / "dest", {}, [])
    assert model.training_data == (f"synthetic: {recipe.synthetic[0].command}",)
    assert "--kind video" in model.training_data[0]
    monkeypatch.setattr(pretrained, "ROOT", tmp_path / "dest")
    assert instatrack.load("objects-spn", device="cpu").config.in_channels == 3


def test_leave_out_names_a_dataset_of_the_recipe(capsys):
    with pytest.raises(SystemExit):
        train_shipped.main(["nuclei-se", "--leave-out", "Fluo-C2DL-MSC"])
    assert "not in the nuclei-se recipe" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_shipped.main(["nuclei-se", "--leave-out", "Fluo-N2DH-GOWT1", "--install", "x"])


def test_a_synthetic_share_weighs_the_folders_that_are_there(tmp_path):
    recipe = dataclasses.replace(train_shipped.RECIPES["nuclei-se"], synthetic_share=0.2)
    assert len(recipe.synthetic) == 1
    synthetic = tmp_path / "work" / "synthetic"
    real = [tmp_path / "SIM" / "01", tmp_path / "GOWT1" / "01"]
    assert train_shipped.share_weights(recipe, [*real, synthetic]) == \
        ["data_weights=0.4,0.4,0.2"]
    assert train_shipped.share_weights(recipe, [real[0], synthetic]) == \
        ["data_weights=0.8,0.2"]  # a real dataset not found: the other takes its share
    # only one kind of folder found, or no share: every clip alike
    assert train_shipped.share_weights(recipe, [synthetic]) == []
    unshared = dataclasses.replace(recipe, synthetic_share=None)
    assert train_shipped.share_weights(unshared, [*real, synthetic]) == []


def test_a_recipe_fine_tunes_from_a_run_with_the_recipes_frame_split(tmp_path):
    """``--init``: the recipe's data and split (a measurement run), the init's weights."""
    from instatrack.runs import Run

    recipe = _tiny("nuclei-se-synthetic")
    parent = train_shipped.train_recipe("nuclei-se-synthetic", recipe, tmp_path / "parent",
                                        tmp_path / "work", tmp_path / "no-data", quiet=True)
    child = train_shipped.train_recipe("nuclei-se-synthetic", recipe, tmp_path / "child",
                                       tmp_path / "work", tmp_path / "no-data", quiet=True,
                                       init=str(parent))
    run = Run.open(child)
    assert run.init and Path(run.init).name == "parent"
    assert run.config.train_frames == Run.open(parent).config.train_frames
    with pytest.raises(SystemExit):
        train_shipped.main(["nuclei-ch", "--init", "nuclei-ch", "--install", "x"])


def test_the_tracker_recipe_draws_faint_ghosts_in_every_randomised_look():
    """``nuclei-ch`` (session 48): the MSC-like spread cells in its mix, and every
    randomised look's out-of-focus ghosts at most 0.1 of a cell's light; the card's
    commands say so."""
    recipe = train_shipped.RECIPES["nuclei-ch"]
    randomised = [s for s in recipe.synthetic if s.randomise]
    assert len(randomised) == 2 and all(train_shipped.DIM_GHOSTS in s.ranges for s in randomised)
    assert any("arms=1,4" in s.ranges for s in randomised)
    assert all("--range ghost_light=0.1,0.1" in s.command for s in randomised)
    assert "seed=1" in recipe.overrides
