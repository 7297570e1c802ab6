"""Ensembles: trainings of one recipe run together (``instatrack ensemble``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from instatrack import pretrained
from instatrack.cli import main
from instatrack.errors import ConfigError, DataError
from instatrack.methods.cosine_hourglass import CosineHourglass, CosineHourglassConfig
from instatrack.methods.recurrent_instance import RecurrentInstance
from instatrack.methods.spatial_embedding import SpatialEmbedding, flip_averaged
from instatrack.models.ensemble import Ensemble, members
from instatrack.runs import Run
from test_cosine_method import SMALL
from test_spatial_embedding import tiny_config


def _cosine(*overrides: str) -> CosineHourglass:
    return CosineHourglass(CosineHourglassConfig.build("fast", overrides=[*SMALL, *overrides]))


def _run(path, method, seed=0) -> Run:
    torch.manual_seed(seed)
    run = Run.create(path, type(method), method.config, data="somewhere")
    run.save_weights(method.build_model().state_dict())
    return run


def test_members_of_a_plain_network_is_the_network():
    net = torch.nn.Linear(2, 2)
    assert members(net) == [net]
    assert members(Ensemble([net, net])) == [net, net]


def test_cosine_ensemble_joins_the_members_embeddings(monkeypatch):
    import instatrack.methods.cosine_hourglass as cosine

    calls = []

    def fake(embeddings, params, background=None, foreground=None, instance_area=(0.0, 0.0),
             images=None):
        calls.append((embeddings, background))
        return (embeddings[:, 0] > 0).astype(np.int64)

    monkeypatch.setattr(cosine, "cluster_embeddings", fake)
    method = _cosine("amp=false")
    nets = []
    for seed, direction in ((0, [0.0, 1, 0, 0]), (1, [1.0, 0, 0, 0])):
        torch.manual_seed(seed)
        nets.append(method.build_model().eval())
        nets[-1].background.copy_(torch.tensor(direction))
    frames = [np.random.default_rng(t).random((1, 21, 30), dtype=np.float32) for t in range(3)]
    windows = list(method.predict(Ensemble(nets), frames, "cpu"))
    assert [w.start for w in windows] == [0, 1]
    embeddings, background = calls[-1]
    np.testing.assert_allclose(background, np.array([0, 1, 0, 0, 1, 0, 0, 0]) / np.sqrt(2))
    clip = torch.from_numpy(np.stack(frames))[None]
    with torch.no_grad():  # each member runs the clip with its own recurrent state
        joined = torch.cat([net(clip)[-1][0] for net in nets], dim=1) / np.sqrt(2)
    np.testing.assert_allclose(embeddings, joined[1:3].numpy(), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_spatial_embedding_ensemble_averages_the_members_outputs():
    config = tiny_config()
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        nets.append(SpatialEmbedding(config).build_model().eval())
        torch.nn.init.normal_(nets[-1].embedding_decoder.head.weight, std=0.1)
    image = torch.rand(1, 1, 24, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outs = [net(image) for net in nets]
        mean = flip_averaged(Ensemble(nets), image, flips=False)
        both = flip_averaged(Ensemble(nets), image)
        each = [flip_averaged(net, image) for net in nets]
    for key in ("offsets", "log_sigma", "seed"):
        torch.testing.assert_close(mean[key], (outs[0][key] + outs[1][key]) / 2)
        torch.testing.assert_close(both[key], (each[0][key] + each[1][key]) / 2)
    assert flip_averaged(nets[0], image, flips=False)["seed"].equal(outs[0]["seed"])


def test_ensemble_folder_loads_and_tracks_like_its_members(tiny_cosine_run, tmp_path, capsys):
    from instatrack import load
    from instatrack.data import open_dataset

    run, data = tiny_cosine_run / "run", tiny_cosine_run / "data"
    out = tmp_path / "twice"
    assert main(["ensemble", str(run), str(run), "--out", str(out)]) == 0
    assert "2 networks of cosine-hourglass" in capsys.readouterr().out
    saved = json.loads((out / "config.json").read_text())
    assert saved["members"] == ["weights-1.pt"] and (out / "weights-1.pt").is_file()
    ensemble = Run.open(out)
    assert ensemble.weight_files == ["weights.pt", "weights-1.pt"]
    _, net = ensemble.load_model()
    assert isinstance(net, Ensemble) and len(net) == 2
    # two copies of one network: the same cosines, so the same objects and tracks
    (seq,) = open_dataset(data)
    frames = [seq.image(t) for t in range(len(seq))]
    single, double = load(str(run)).track(frames), load(str(out)).track(frames)
    for a, b in zip(single.labels, double.labels, strict=True):
        np.testing.assert_array_equal(a, b)


def test_ensemble_refuses_what_cannot_run_together(tiny_cosine_run, tmp_path):
    run = Run.open(tiny_cosine_run / "run")
    wider = _run(tmp_path / "wider", _cosine("filters=8"))
    with pytest.raises(ConfigError, match="two or more"):
        Run.create_ensemble(tmp_path / "one", [run])
    with pytest.raises(ConfigError, match="filters"):
        Run.create_ensemble(tmp_path / "mixed", [_run(tmp_path / "a", _cosine()), wider])
    recurrent = RecurrentInstance(RecurrentInstance.config_cls.build("fast"))
    with pytest.raises(ConfigError, match="does not combine"):
        Run.create_ensemble(tmp_path / "ri", [_run(tmp_path / "r1", recurrent),
                                              _run(tmp_path / "r2", recurrent)])
    se = SpatialEmbedding(tiny_config())
    with pytest.raises(ConfigError, match="spatial-embedding model"):
        Run.create_ensemble(tmp_path / "two-methods", [run, _run(tmp_path / "se", se)])
    ensemble = Run.create_ensemble(tmp_path / "ens", [run, run])
    with pytest.raises(ConfigError, match="ensemble already"):
        Run.create_ensemble(tmp_path / "nested", [ensemble, run])
    assert not any((tmp_path / name).exists() for name in ("mixed", "two-methods", "nested"))


def test_an_ensemble_is_calibrated_installed_but_not_fine_tuned_or_exported(
        tiny_cosine_run, tmp_path, monkeypatch):
    from instatrack.calibrate import copy_to_calibrate
    from instatrack.finetune import check_fits_init
    from instatrack.onnx import export_onnx

    a, b = _run(tmp_path / "a", _cosine(), seed=0), _run(tmp_path / "b", _cosine(), seed=1)
    ensemble = Run.create_ensemble(tmp_path / "ens", [a, b])
    assert ensemble.data == "somewhere" and str(a.path.resolve()) in ensemble.init
    copy = copy_to_calibrate(ensemble, tmp_path / "cal", "0:2", "somewhere")
    assert Run.open(copy.path).members == ("weights-1.pt",)
    for name in ("weights.pt", "weights-1.pt"):
        assert (copy.path / name).read_bytes() == (ensemble.path / name).read_bytes()
    assert (ensemble.path / "weights-1.pt").read_bytes() != (ensemble.path / "weights.pt"
                                                            ).read_bytes()
    monkeypatch.setattr(pretrained, "ROOT", tmp_path / "registry")
    model = pretrained.write_model(ensemble, tmp_path / "registry" / "tiny-ens", purpose="t",
                                   scores={}, training_data=["x"], terms="none", card="# t\n")
    assert (model.path / "weights-1.pt").is_file()
    assert Run.open(model.path).members == ("weights-1.pt",)
    with pytest.raises(ConfigError, match="ensemble of 2 networks"):
        check_fits_init(ensemble.config, ensemble)
    with pytest.raises(ConfigError, match="ensemble"):
        export_onnx(ensemble.path, tmp_path / "x.onnx")
    with pytest.raises(DataError, match="last.pt"):
        ensemble.load_model(weights="last.pt")


def test_a_config_listing_odd_members_is_refused(tmp_path):
    run = _run(tmp_path / "run", _cosine())
    values = json.loads((run.path / "config.json").read_text())
    (run.path / "config.json").write_text(json.dumps({**values, "members": ["../evil.pt"]}))
    with pytest.raises(DataError, match="members"):
        Run.open(run.path)
