"""Post-processing chosen on validation frames after training (instatrack.calibrate)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from instatrack import runs
from instatrack.calibrate import (
    CALIBRATION_FILE,
    candidates,
    detection_errors,
    frame_scores,
    frame_stats,
    last_candidates,
)
from instatrack.errors import ConfigError
from instatrack.methods import REGISTRY, get_method
from instatrack.train import train


def _frame():
    gt = np.zeros((40, 60), np.int32)
    gt[2:12, 2:12] = 1
    gt[2:12, 20:30] = 2
    gt[20:30, 2:12] = 3
    gt[20:30, 20:30] = 4
    gt[30:36, 50:56] = -1  # a marked nucleus nobody outlined
    return gt


def test_detection_errors_count_misses_false_objects_and_merges():
    gt = _frame()
    found = np.zeros_like(gt)
    found[2:12, 2:30] = 1          # covers objects 1 and 2: one merge
    found[20:30, 2:8] = 2          # 60 % of object 3: a match
    found[21:24, 20:23] = 3        # 9 % of object 4: object 4 missed, this one false
    found[0:2, 40:50] = 4          # background: false
    found[31:35, 51:55] = 5        # on the unannotated nucleus: not counted
    assert detection_errors(gt, found) == (4, 1, 2, 1)
    assert detection_errors(gt, np.where(gt > 0, gt, 0)) == (4, 0, 0, 0)


def test_frame_scores_of_a_perfect_and_of_a_noisy_result():
    gt = _frame()
    perfect = frame_scores([(gt, np.where(gt > 0, gt, 0))])
    assert perfect == {"seg": 1.0, "det": 1.0, "score": 1.0, "frames": [(4.0, 4, 4, 0.0, 0)]}
    noisy = np.where(gt > 0, gt, 0)
    noisy[38:40, ::4] = np.arange(10, 25)  # 15 specks on the background
    scores = frame_scores([(gt, noisy)])
    assert scores["seg"] == 1.0 and scores["det"] == pytest.approx(1 - 15 / 40)
    # a frame with markers alone counts in detection, not in SEG
    markers = np.where(gt > 0, gt, 0)
    both = frame_scores([(gt, np.where(gt > 0, gt, 0)), (markers, noisy, False)])
    assert both["seg"] == 1.0 and both["det"] == pytest.approx(1 - 15 / 80)
    assert both["frames"][1] == (0.0, 0, 4, 15.0, 0)


def test_noise_is_the_frame_to_frame_spread_of_a_difference():
    from instatrack.calibrate import noise, pooled

    def row(errors):  # four frames of 10 objects, perfect outlines, these errors
        return {"frames": {"1": [[10.0, 10, 10, e] for e in errors]}}

    steady, jumpy, base = row([10, 10, 10, 10]), row([0, 0, 0, 40]), row([20, 20, 20, 20])
    assert pooled(steady["frames"]["1"])["score"] == pooled(jumpy["frames"]["1"])["score"]
    assert noise(steady, base) == pytest.approx(0.0)  # the same gain on every frame
    assert noise(jumpy, base) > 0.01  # all of it on one frame
    assert noise(row([10]), row([20])) == 0.0 and noise({}, base) == 0.0


def test_validation_frames_with_markers_alone_count_in_detection(tmp_path):
    """A CTC sequence whose frames all have markers but only some outlines: calibration
    scores the frames with markers alone too (training validation keeps to outlines)."""
    from instatrack.calibrate import _annotated, frames_scored, validation_frames
    from instatrack.config import TrainConfig
    from instatrack.data.ctc import CTCSequence
    from instatrack.data.synth import write_ctc_synthetic

    root = write_ctc_synthetic(tmp_path / "synth", frames=6, size=(48, 48), seed=1)
    seq_dir = next(p for p in root.iterdir() if p.is_dir() and not p.name.endswith("_GT"))
    seg = root / f"{seq_dir.name}_GT" / "SEG"
    for path in sorted(seg.glob("*.tif"))[1:4]:  # outlines of frames 1-3 go
        path.unlink()
    seq = CTCSequence(seq_dir)
    seq.dense_tra = False  # markers, as in real CTC data, not the synthetic full masks
    config = TrainConfig().replace(val_frames="0:6")
    assert validation_frames(config, [seq]) == [(seq, [0, 4, 5])]
    assert validation_frames(config, [seq], markers=True) == [(seq, [0, 1, 2, 3, 4, 5])]
    assert frames_scored({"frames": 6, "outlined": 3}) == "6 frame(s), 3 of them outlined"
    assert frames_scored({"frames": 6, "outlined": 6}) == frames_scored({"frames": 6})
    gt, outlined = _annotated(seq, 2)
    assert not outlined and gt.max() > 0 and _annotated(seq, 0)[1]


def test_a_window_with_more_annotated_frames_than_are_used_says_so(tmp_path, monkeypatch):
    """Calibration uses at most MAX_FRAMES frames; a wider window warns instead of quietly
    dropping the rest, and a window that fits does not."""
    import warnings

    from instatrack import calibrate as module
    from instatrack.config import TrainConfig
    from instatrack.data.ctc import CTCSequence
    from instatrack.data.synth import write_ctc_synthetic
    from instatrack.errors import DataWarning

    root = write_ctc_synthetic(tmp_path / "synth", frames=6, size=(48, 48), seed=1)
    seq = CTCSequence(next(p for p in root.iterdir() if p.is_dir() and not p.name.endswith("_GT")))
    monkeypatch.setattr(module, "MAX_FRAMES", 4)
    with pytest.warns(DataWarning, match="more than 4 annotated frames"):
        chosen = module.validation_frames(TrainConfig().replace(val_frames="0:6"), [seq])
    assert chosen == [(seq, [0, 1, 2, 3])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert module.validation_frames(TrainConfig().replace(val_frames="2:6"), [seq]) == [
            (seq, [2, 3, 4, 5])]


def test_candidates_try_the_configs_own_values_first():
    config = get_method("spatial-embedding").config_cls.build("fast").replace(seed_threshold=0.7)
    options = candidates(config)
    assert options[0] == {"refine_boundaries": 0.0, "merge_fragments": 0.0, "seed_threshold": 0.7}
    assert len(options) == 16 and len({tuple(o.items()) for o in options}) == 16
    # the band, the growth, the growth with the trim and the filter are tried alone after
    # the grid, in the order the stages act; a config's own value is not tried again, and
    # a stage that is on is also tried off (its default)
    last = last_candidates(config.replace(min_contrast=0.1))
    assert last == {"refine_band": [6], "grow_foreground": ["li"],
                    "grow_trim": [{"grow_foreground": "li", "grow_trim": True}],
                    "grow_trim_snr": [{"grow_foreground": "li", "grow_trim": True,
                                       "grow_trim_snr": snr} for snr in (2.5, 1.2)],
                    "grow_sigma": [{"grow_foreground": "triangle"},
                                   {"grow_foreground": "triangle", "grow_sigma": 4.0}],
                    "split_pairs": [0.85, 0.9, 0.95], "merge_halves": [0.9],
                    "merge_coreless": [0.1, 0.3, 0.5, 0.7],
                    "min_area_share": [0.05, 0.1], "min_contrast": [0.2, 0.0],
                    "min_foreground": [0.25, 0.5], "tta": [True]}
    # test-time flips come last, on the values chosen without them
    assert list(last) == ["refine_band", "grow_foreground", "grow_trim", "grow_trim_snr",
                          "grow_sigma", "split_pairs", "merge_halves", "merge_coreless",
                          "min_area_share", "min_contrast", "min_foreground", "tta"]


def test_the_frame_edge_slivers_are_on_by_default_and_offered_both_ways():
    """The cosine-hourglass keeps slivers at the frame's edge unless calibration sees them
    cost; a run trained when they were off by default is offered them on."""
    config = get_method("cosine-hourglass").config_cls.build("fast")
    assert config.cluster_orphans
    assert last_candidates(config, ["cluster_orphans"]) == {"cluster_orphans": [False]}
    assert last_candidates(config.replace(cluster_orphans=False), ["cluster_orphans"]) == {
        "cluster_orphans": [True]}


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(REGISTRY, "toy", "toy_method:ToyMethod")


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    from instatrack.data.synth import write_ctc_synthetic

    return write_ctc_synthetic(tmp_path_factory.mktemp("synth"), frames=10, size=(64, 64), seed=3)


def test_training_writes_the_chosen_settings_into_the_run(toy, cells, tmp_path):
    from toy_method import ToyConfig

    config = ToyConfig.build("fast", overrides=["val_frames=7:", "steps=12"])
    run = train("toy", cells, tmp_path / "run", config=config, progress=False)
    record = json.loads((run / CALIBRATION_FILE).read_text())
    # the grid of 4, then the band's, the growth's, the trim's and the two gated trims'
    # (with the growth), the triangle threshold's two (on the trim chosen), the pairs', the
    # halves', the coreless pieces', the size floor's, min_contrast's and min_foreground's
    # values alone on the best so far
    assert record["frames"] == 3 and len(record["tried"]) == 25
    assert record["tried"][4]["settings"]["refine_band"] == 6
    assert record["tried"][5]["settings"]["grow_foreground"] == "li"
    assert record["tried"][6]["settings"]["grow_trim"] is True  # with the growth
    assert record["tried"][6]["settings"]["grow_foreground"] == "li"
    assert [row["settings"]["grow_trim_snr"] for row in record["tried"][7:9]] == [2.5, 1.2]
    assert record["tried"][8]["settings"]["grow_trim"] is True
    assert [(row["settings"]["grow_foreground"], row["settings"]["grow_sigma"])
            for row in record["tried"][9:11]] == [("triangle", 2.0), ("triangle", 4.0)]
    assert [row["settings"]["split_pairs"] for row in record["tried"][11:14]] == [0.85, 0.9,
                                                                                  0.95]
    assert record["tried"][14]["settings"]["merge_halves"] == 0.9
    assert [row["settings"]["merge_coreless"] for row in record["tried"][15:19]] == [0.1, 0.3,
                                                                         0.5, 0.7]
    assert [row["settings"]["min_area_share"] for row in record["tried"][19:21]] == [0.05, 0.1]
    assert [row["settings"]["min_contrast"] for row in record["tried"][21:23]] == [0.1, 0.2]
    assert [row["settings"]["min_foreground"] for row in record["tried"][23:]] == [0.25, 0.5]
    assert "min_contrast" in record["chosen"]
    assert record["before"]["settings"] == {"refine_boundaries": 0.0, "merge_fragments": 0.0}
    assert record["after"]["score"] >= record["before"]["score"]
    saved = runs.Run.open(run).config
    assert saved.refine_boundaries == record["chosen"]["refine_boundaries"]

    off = train("toy", cells, tmp_path / "off", config=config.replace(calibrate=False),
                progress=False)
    assert not (off / CALIBRATION_FILE).exists()


def test_cli_calibrates_a_copy_of_a_shipped_model(cells, tmp_path, capsys):
    from instatrack.cli import main

    out = tmp_path / "mine"
    assert main(["calibrate", "--model", "nuclei-se", "--data", str(cells), "--frames", "0:2",
                 "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert said.startswith("chose ") and "on 2 frame(s)" in said
    record = json.loads((out / CALIBRATION_FILE).read_text())
    config = runs.Run.open(out).config
    assert config.seed_threshold == record["chosen"]["seed_threshold"]
    assert config.val_frames == "0:2"
    # a shipped model is never changed in place; an existing run is not overwritten
    assert main(["calibrate", "--model", "nuclei-se", "--data", str(cells)]) == 2
    assert main(["calibrate", "--model", "nuclei-se", "--data", str(cells),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "give --out" in err and "already holds a run" in err


def test_tracking_calibration_scores_the_links_too(cells, tmp_path, capsys):
    """With calibrate_measure=tra a tracked window of a CTC video is scored by (SEG +
    TRA) / 2: each frame's sums hold its true links (none into the first frame)."""
    from instatrack.cli import main

    out = tmp_path / "tra"
    assert main(["calibrate", "--model", "nuclei-se", "--data", str(cells), "--frames", "0:3",
                 "--out", str(out), "--set", "calibrate_measure=tra", "--quiet"]) == 0
    assert "(SEG+TRA)/2" in capsys.readouterr().out
    record = json.loads((out / CALIBRATION_FILE).read_text())
    assert record["measure"] == "TRA"
    links = [frame[4] for frame in record["after"]["frames"]["1"]]
    assert links[0] == 0 and all(n > 0 for n in links[1:])
    with pytest.raises(ConfigError, match="calibrate_measure"):
        runs.Run.open(out).config.replace(calibrate_measure="seg").check()


def test_an_estimated_object_size_is_estimated_once(cells, tmp_path, monkeypatch):
    """The size is the data's: every value tried runs at the size estimated once with the
    model's own values (the estimate segments each frame at several sizes)."""
    from instatrack.api import Predictor
    from instatrack.calibrate import calibrate, copy_to_calibrate

    estimates, scale = [], Predictor.input_scale

    def counted(self, *frames):
        estimates.append(self.requested_size)
        return scale(self, *frames)

    monkeypatch.setattr(Predictor, "input_scale", counted)
    run = copy_to_calibrate(runs.Run.resolve("nuclei-se"), tmp_path / "mine", "0:2", cells)
    record = calibrate(run, object_size="auto")
    assert estimates.count("auto") == 1 and len(estimates) > len(record["tried"])
    # the record says at which size the frames ran, and so does the summary printed
    from instatrack.calibrate import describe

    (row,) = record["sizes"]
    assert isinstance(row["object_size"], float) and row["object_size"] > 0
    assert row["data"].endswith(".tif")
    assert describe(record).endswith(f"; objects {row['object_size']:.0f} px")
    del record["sizes"]  # a record written before sizes were recorded
    assert "objects" not in describe(record)


@pytest.mark.parametrize("method, tiny", [
    ("cosine-hourglass", ["stacks=1", "levels=2", "filters=4", "embedding_dim=4",
                          "crop=32,32", "clip_len=2"]),
    ("recurrent-instance", ["crop=32,32"]),
])
def test_every_kind_of_method_calibrates(cells, tmp_path, method, tiny):
    config = get_method(method).config_cls.build("fast", overrides=[
        *tiny, "steps=2", "log_every=1", "val_every=2", "train_frames=:7", "val_frames=7:9"])
    run = train(method, cells, tmp_path / "run", config=config, progress=False)
    record = json.loads((run / CALIBRATION_FILE).read_text())
    extra = sum(len(values) for values in last_candidates(config).values())
    assert record["frames"] == 2 and len(record["tried"]) == len(candidates(config)) + extra


def test_resuming_a_finished_calibrated_run_does_not_calibrate_again(toy, cells, tmp_path,
                                                                    monkeypatch):
    from instatrack import calibrate as module
    from instatrack.train import resume
    from toy_method import ToyConfig

    config = ToyConfig.build("fast", overrides=["val_frames=7:", "steps=6"])
    run = train("toy", cells, tmp_path / "run", config=config, progress=False)
    calls = []
    monkeypatch.setattr(module, "calibrate", lambda *a, **k: calls.append(a))
    resume(run, progress=False)            # nothing left to train
    assert calls == []
    resume(run, steps=8, progress=False)   # two more steps: new weights, chosen again
    assert len(calls) == 1


def test_a_value_tried_after_the_grid_must_gain_more_than_noise(toy, cells, tmp_path,
                                                                monkeypatch):
    from instatrack import calibrate as module
    from toy_method import ToyConfig

    config = ToyConfig.build("fast", overrides=["val_frames=7:", "steps=2", "calibrate=false"])
    run = runs.Run.open(train("toy", cells, tmp_path / "run", config=config, progress=False))
    # scores as a function of the settings tried: the wider band "gains" less than
    # LAST_MIN_GAIN, the filter at 0.1 more
    assert module.LAST_MIN_GAIN > 0.0005
    def scores(pairs):
        tried = next(iter(pairs))
        score = 0.5 + 0.0005 * (tried.refine_band == 6) \
            + 0.01 * (tried.min_contrast == 0.1)
        return {"seg": score, "det": score, "score": score}

    monkeypatch.setattr(module, "_labelled", lambda predictor, seq, frames:
                        iter([predictor.method.config]))
    monkeypatch.setattr(module, "frame_scores", scores)
    record = module.calibrate(run)
    assert record["chosen"]["refine_band"] == 3 and record["chosen"]["min_contrast"] == 0.1


def test_the_best_of_a_keys_values_wins_not_the_first_to_gain(toy, cells, tmp_path,
                                                               monkeypatch):
    """min_contrast 0.1 gains beyond LAST_MIN_GAIN, 0.2 gains more: 0.2 is chosen even
    though it beats 0.1 by less than LAST_MIN_GAIN (the order values are listed in must
    not decide)."""
    from instatrack import calibrate as module
    from toy_method import ToyConfig

    config = ToyConfig.build("fast", overrides=["val_frames=7:", "steps=2", "calibrate=false"])
    run = runs.Run.open(train("toy", cells, tmp_path / "run", config=config, progress=False))
    gain = {0.0: 0.0, 0.1: 0.01, 0.2: 0.0105}

    def scores(pairs):
        score = 0.5 + gain[next(iter(pairs)).min_contrast]
        return {"seg": score, "det": score, "score": score}

    monkeypatch.setattr(module, "_labelled", lambda predictor, seq, frames:
                        iter([predictor.method.config]))
    monkeypatch.setattr(module, "frame_scores", scores)
    assert module.calibrate(run)["chosen"]["min_contrast"] == 0.2


def test_a_stage_a_model_has_on_can_be_turned_off_and_nothing_is_scored_twice(
        toy, cells, tmp_path, monkeypatch):
    """A model with the pair split and the trimmed growth on (as ``nuclei-ch`` is
    shipped): the split is also tried off (its default) and chosen where that scores;
    the growth and trim values it already has are not scored again."""
    from instatrack import calibrate as module
    from toy_method import ToyConfig

    config = ToyConfig.build("fast", overrides=[
        "val_frames=7:", "steps=2", "calibrate=false", "split_pairs=0.9",
        "grow_foreground=li", "grow_trim=true"])
    run = runs.Run.open(train("toy", cells, tmp_path / "run", config=config, progress=False))

    def scores(pairs):
        score = 0.5 + 0.01 * (next(iter(pairs)).split_pairs == 0)
        return {"seg": score, "det": score, "score": score}

    monkeypatch.setattr(module, "_labelled", lambda predictor, seq, frames:
                        iter([predictor.method.config]))
    monkeypatch.setattr(module, "frame_scores", scores)
    bar = []
    record = module.calibrate(run, progress=lambda done, total: bar.append((done, total)))
    assert record["chosen"]["split_pairs"] == 0.0
    settings = [json.dumps(row["settings"], sort_keys=True) for row in record["tried"]]
    assert len(settings) == len(set(settings))
    assert bar[-1][0] == bar[-1][1]  # the bar ends full


def test_a_gain_within_the_frame_to_frame_noise_changes_nothing(toy, cells, tmp_path,
                                                                  monkeypatch):
    """The grid's best wins over the run's own values only beyond the noise of the
    difference: a gain made on one frame of three keeps the own values, the same gain
    spread over every frame is chosen."""
    from instatrack import calibrate as module
    from toy_method import ToyConfig

    config = ToyConfig.build("fast", overrides=["val_frames=7:", "steps=2", "calibrate=false",
                                                "calibrate_dim=1"])
    run = runs.Run.open(train("toy", cells, tmp_path / "run", config=config, progress=False))
    refined = {"errors": [0.0, 0.0, 24.0]}  # per frame; the own values make 10 on each

    def scores(pairs):
        tried = next(iter(pairs))
        errors = refined["errors"] if tried.refine_boundaries > 0 else [10.0] * 3
        frames = [(10.0, 10, 10, e) for e in errors]
        return {**module.pooled(frames), "frames": frames}

    monkeypatch.setattr(module, "_labelled", lambda predictor, seq, frames:
                        iter([predictor.method.config]))
    monkeypatch.setattr(module, "frame_scores", scores)
    record = module.calibrate(run)
    gainer = next(row for row in record["tried"] if row["settings"]["refine_boundaries"] > 0)
    assert gainer["score"] > record["tried"][0]["score"]  # best of the grid, within noise
    assert record["chosen"]["refine_boundaries"] == 0
    run.save_config(config)
    refined["errors"] = [8.0, 8.0, 8.0]  # the same gain, on every frame
    assert module.calibrate(run)["chosen"]["refine_boundaries"] > 0


def test_dimmed_frames_count_in_the_choice(toy, cells, tmp_path, monkeypatch):
    """With ``calibrate_dim`` every combination is scored on the frames as recorded and
    dimmed, and the mean decides among those about as good as the best on the recorded
    frames: a value that wins only a little on the recorded contrast and loses when dim
    gives way; one that wins clearly on the recorded frames stays."""
    from instatrack import calibrate as module
    from instatrack.data import open_datasets
    from instatrack.data.dim import DimmedSequence
    from toy_method import ToyConfig

    config = ToyConfig.build("fast", overrides=["val_frames=7:", "steps=2", "calibrate=false"])
    run = runs.Run.open(train("toy", cells, tmp_path / "run", config=config, progress=False))
    seen, gain = [], {"recorded": 0.004}

    def labelled(predictor, seq, frames):
        seen.append(seq.factor if isinstance(seq, DimmedSequence) else 1.0)
        return iter([(predictor.method.config, seen[-1])])

    def scores(pairs):  # the outline refinement gains on recorded frames, loses when dim
        config, factor = next(iter(pairs))
        score = 0.5 + (gain["recorded"] if factor == 1 else -0.03) * (config.refine_boundaries > 0)
        return {"seg": score, "det": score, "score": score}

    monkeypatch.setattr(module, "_labelled", labelled)
    monkeypatch.setattr(module, "frame_scores", scores)
    assert run.config.calibrate_dim == (1, 4)  # the default
    run.save_config(run.config.replace(calibrate_dim=(1,)))
    assert module.calibrate(run)["chosen"]["refine_boundaries"] > 0
    run.save_config(run.config.replace(calibrate_dim=(1, 4)))
    seen.clear()
    record = module.calibrate(run)
    assert record["chosen"]["refine_boundaries"] == 0 and record["dim"] == [1, 4]
    assert set(seen) == {1.0, 4.0} and len(seen) == 2 * len(record["tried"])
    refined = next(row for row in record["tried"] if row["settings"]["refine_boundaries"] > 0)
    assert refined["dim"]["1"]["score"] == 0.504 and refined["dim"]["4"]["score"] == 0.47
    assert refined["score"] == pytest.approx(0.487)
    # a clear gain on the recorded frames is not traded for the dimmed ones
    gain["recorded"] = 2 * module.CLEAN_TOLERANCE
    assert module.calibrate(run)["chosen"]["refine_boundaries"] > 0
    # colour frames are scored as recorded: the dimming models a fluorescence sensor
    colour = module.validation_frames(run.config, open_datasets(run.data))
    for seq, _ in colour:
        monkeypatch.setattr(seq, "channels", 3, raising=False)
    monkeypatch.setattr(module, "validation_frames", lambda config, sequences, markers: colour)
    seen.clear()
    assert module.calibrate(run)["dim"] == [1] and set(seen) == {1.0}


def test_cli_calibrate_takes_post_processing_settings(cells, tmp_path, capsys):
    from instatrack.cli import main

    out = tmp_path / "mine"
    assert main(["calibrate", "--model", "nuclei-se", "--data", str(cells), "--frames", "0:1",
                 "--set", "calibrate_dim=1,8", "--out", str(out)]) == 0
    record = json.loads((out / CALIBRATION_FILE).read_text())
    assert record["dim"] == [1, 8] and set(record["tried"][0]["dim"]) == {"1", "8"}
    assert runs.Run.open(out).config.calibrate_dim == (1, 8)
    for bad, said in ((["--set", "calibrate_dim=0.5"], "calibrate_dim must list contrast divisors"),
                      (["--set", "crop=8,8"], "fixed when the network was trained"),
                      (["--object-size", "big"], "--object-size must be a diameter")):
        assert main(["calibrate", "--model", "nuclei-se", "--data", str(cells),
                     *bad, "--out", str(tmp_path / "bad")]) == 2
        assert said in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_stopped_calibration_goes_on_where_it_stopped(toy, cells, tmp_path, monkeypatch):
    """Each combination's score is kept in ``calibration.partial.json`` as it comes: a
    calibration that stops scores only the rest when it runs again on the same run, and
    chooses what one that never stopped chooses; other weights start it afresh."""
    from instatrack import calibrate as module
    from toy_method import ToyConfig

    config = ToyConfig.build("fast", overrides=["val_frames=7:", "steps=2", "calibrate=false"])
    run = runs.Run.open(train("toy", cells, tmp_path / "run", config=config, progress=False))
    scored = []

    def labelled(predictor, seq, frames):
        scored.append(predictor.method.config)
        return iter([predictor.method.config])

    def scores(pairs):
        tried = next(iter(pairs))
        score = 0.5 + 0.01 * (tried.refine_boundaries > 0) + 0.02 * (tried.min_contrast == 0.2)
        return {"seg": score, "det": score, "score": score}

    monkeypatch.setattr(module, "_labelled", labelled)
    monkeypatch.setattr(module, "frame_scores", scores)
    whole = module.calibrate(run)
    rows, passes = len(whole["tried"]), len(scored)  # a pass per contrast level and row
    levels = passes // rows
    assert not run.file(module.PARTIAL_FILE).exists()
    run.save_config(config)

    def stop(done, total):
        if done == 3:
            raise KeyboardInterrupt

    scored.clear()
    with pytest.raises(KeyboardInterrupt):
        module.calibrate(run, progress=stop)
    assert len(json.loads(run.file(module.PARTIAL_FILE).read_text())["rows"]) == 3
    scored.clear()
    seen = []
    again = module.calibrate(run, progress=lambda done, total: seen.append(done))
    assert len(scored) == passes - 3 * levels and seen[:2] == [0, 1] and seen[-1] == rows
    assert again["chosen"] == whole["chosen"] and again["tried"] == whole["tried"]
    assert not run.file(module.PARTIAL_FILE).exists()
    # the scores of other weights are not reused
    run.save_config(config)
    scored.clear()
    with pytest.raises(KeyboardInterrupt):
        module.calibrate(run, progress=stop)
    state = run.load_weights()
    run.save_weights({k: v + 1 for k, v in state.items()})
    scored.clear()
    module.calibrate(run)
    assert len(scored) == passes


def test_the_methods_labels_are_reused_for_the_stages_after_it(toy, cells, tmp_path,
                                                                 monkeypatch):
    """Every value of a stage that acts on the method's labels after it (outlines,
    growth, fragments, contrast) reuses the labels the method gave once per frame set;
    the choice is the one that computing them again makes."""
    from instatrack import calibrate as module
    from toy_method import ToyConfig, ToyMethod

    config = ToyConfig.build("fast", overrides=["val_frames=7:", "steps=2", "calibrate=false"])
    run = runs.Run.open(train("toy", cells, tmp_path / "run", config=config, progress=False))
    calls = []
    predict = ToyMethod.predict

    def counted(self, *args, **kwargs):
        calls.append(self.config)
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(ToyMethod, "predict", counted)
    reused = module.calibrate(run)
    keys = {module.method_key(c) for c in calls}
    assert len(keys) == 1 and len(calls) < len(reused["tried"])
    run.save_config(config)
    monkeypatch.setattr(module, "method_key", lambda config: module._canonical(config.to_dict()))
    calls.clear()
    again = module.calibrate(run)
    assert len(calls) > len(reused["tried"])
    assert again["chosen"] == reused["chosen"] and again["tried"] == reused["tried"]
    # with no room to keep labels, only the last method's are kept: the same choice
    monkeypatch.undo()
    monkeypatch.setattr(module, "KEPT_BYTES", 0)
    run.save_config(config)
    assert module.calibrate(run)["tried"] == reused["tried"]


def test_cli_names_the_stopped_calibration_it_would_go_on_with(cells, tmp_path, capsys):
    from instatrack.calibrate import PARTIAL_FILE
    from instatrack.cli import main

    out = tmp_path / "cal"
    assert main(["calibrate", "--model", "nuclei-se", "--data", str(cells), "--frames", "0:1",
                 "--out", str(out), "--quiet"]) == 0
    (out / PARTIAL_FILE).write_text("{}")
    capsys.readouterr()
    assert main(["calibrate", "--model", "nuclei-se", "--data", str(cells), "--frames", "0:1",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "go on with the calibration that stopped there with --model" in err


def test_cli_calibrate_only_chooses_the_keys_named(cells, tmp_path, capsys):
    """``--only KEY`` tries that key's values on the model's own settings (a pass per
    value, not the grid) and keeps every other value; an unknown key is refused before
    anything is written."""
    from instatrack.cli import main

    out = tmp_path / "mine"
    assert main(["calibrate", "--model", "nuclei-se", "--data", str(cells), "--frames", "0:1",
                 "--set", "calibrate_dim=1", "--only", "min_contrast", "--only", "seed_threshold",
                 "--out", str(out)]) == 0
    record = json.loads((out / CALIBRATION_FILE).read_text())
    shipped = runs.Run.resolve("nuclei-se").config
    assert record["only"] == ["min_contrast", "seed_threshold"]
    seeds = {row["settings"]["seed_threshold"] for row in record["tried"]}
    assert seeds == {combo["seed_threshold"] for combo in candidates(shipped)}
    others = {k: v for k, v in record["tried"][0]["settings"].items()
              if k not in ("min_contrast", "seed_threshold")}
    assert all(getattr(shipped, k) == v for k, v in others.items())
    assert len(record["tried"]) == len(seeds) + len(last_candidates(shipped, ["min_contrast"])
                                                    ["min_contrast"])
    assert main(["calibrate", "--model", "nuclei-se", "--data", str(cells), "--only", "crop",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "does not choose crop" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def _disk(shape, y, x, r=5):
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    return (yy - y) ** 2 + (xx - x) ** 2 <= r * r


def _tracked_window():
    """Four frames of markers (track 1 throughout; 2 divides into 3 and 4 after frame
    1) and a result with each kind of error: track 1 goes on at frame 2 as a daughter of
    itself (a link of the wrong kind), daughter 4 is given to track 1 (a link to delete,
    one to add), a false object over frames 1-2, daughter 4 missed at frame 3 (a link to
    add)."""
    shape = (48, 64)
    places = {1: (10, 10), 2: (30, 40), 3: (24, 34), 4: (38, 48)}
    truth = {0: (1, 2), 1: (1, 2), 2: (1, 3, 4), 3: (1, 3, 4)}
    found = {0: {1: 1, 2: 2}, 1: {1: 1, 2: 2, 9: None}, 2: {5: 1, 6: 3, 7: 4, 9: None},
             3: {5: 1, 6: 3}}
    markers, labels = [], []
    for t in range(4):
        m = np.zeros(shape, np.int32)
        for label in truth[t]:
            m[_disk(shape, *places[label])] = label
        lab = np.zeros(shape, np.int32)
        for label, true in found[t].items():
            lab[_disk(shape, *(places[true] if true else (40, 10)), r=6)] = label
        markers.append(m)
        labels.append(lab)
    lineage = [(1, 0, 3, 0), (2, 0, 1, 0), (3, 2, 3, 2), (4, 2, 3, 2)]
    return markers, labels, {5: 1, 6: 2, 7: 1}, lineage


def test_link_errors_give_the_ctcs_tra(tmp_path):
    from instatrack.calibrate import link_errors, pooled
    from instatrack.data.ctc import write_mask, write_track_table
    from instatrack.metrics.ctc import evaluate_ctc
    from instatrack.napari.layers import graph_from_labels
    from instatrack.track.export import write_ctc_result

    markers, labels, parents, lineage = _tracked_window()
    graph = graph_from_labels(labels, parents)
    links = link_errors(markers, labels, graph, lineage)
    # true links into frames 1-3: 2, 3 (track 1's and 2's to both daughters), 3; errors:
    # at frame 2 a kind (1), a link to delete (1) and one to add (1.5), at frame 3 one to
    # add (1.5); the false object's link goes with it
    assert links == [(0, 0.0), (2, 0.0), (3, 3.5), (3, 1.5)]
    stats = [frame_stats(labels[t] * 0, labels[t], False, markers[t], links[t])
             for t in range(4)]
    gt = tmp_path / "01_GT"
    for t, m in enumerate(markers):
        write_mask(gt / "TRA", t, m).rename(gt / "TRA" / f"man_track{t:03d}.tif")
    write_track_table(gt / "TRA" / "man_track.txt", lineage)
    res = write_ctc_result(tmp_path / "01_RES", enumerate(labels), graph, last_frame=3)
    assert pooled(stats)["det"] == pytest.approx(evaluate_ctc(gt, res, ["TRA"])["TRA"])
