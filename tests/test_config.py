import dataclasses
import json

import pytest

from instatrack.config import TrainConfig, parse_slice
from instatrack.errors import ConfigError


def test_overrides_are_typed():
    cfg = TrainConfig.build(overrides=["crop=64,32", "amp=false", "steps=7", "lr=0.5"])
    assert cfg.crop == (64, 32) and cfg.amp is False and cfg.steps == 7 and cfg.lr == 0.5


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="unknown key.*colour"):
        TrainConfig.build(overrides=["colour=red"])


@pytest.mark.parametrize("item, message", [
    ("steps=many", "steps"), ("steps=0", "steps"), ("crop=4,4", "crop"), ("amp=maybe", "amp"),
    ("optimizer=sgd", "optimizer"), ("train_frames=1-4", "train_frames"), ("steps", "key=value"),
    ("norm_mode=zscore", "norm_mode must be one of percentile, noise"),
])
def test_bad_values_are_named(item, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.build(overrides=[item])


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"steps": 5, "lr": 0.1}))
    cfg = TrainConfig.build(file=path, overrides=["steps=9"])
    assert (cfg.steps, cfg.lr) == (9, 0.1)


def test_bad_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{oops")
    with pytest.raises(ConfigError, match="c.json"):
        TrainConfig.build(file=path)
    with pytest.raises(ConfigError, match="not found"):
        TrainConfig.build(file=tmp_path / "missing.json")


def test_round_trip(tmp_path):
    cfg = TrainConfig.build(overrides=["crop=48,40"])
    cfg.save(tmp_path / "config.json", method="x")
    values = json.loads((tmp_path / "config.json").read_text())
    assert values.pop("method") == "x"
    assert TrainConfig.from_dict(values) == cfg


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().steps = 3


def test_parse_slice():
    assert parse_slice("") is None
    assert parse_slice("2:") == slice(2, None)
    assert parse_slice(":-3") == slice(None, -3)


# -- stages' settings composed into a method's config -----------------------------------------
def test_stage_settings_validate_once_with_a_config_error():
    from instatrack.cluster.seeds import SeedClustering
    from instatrack.methods.spatial_embedding import SpatialEmbeddingConfig

    with pytest.raises(ConfigError, match="seed_threshold"):
        SeedClustering(seed_threshold=1.5)
    with pytest.raises(ConfigError, match="seed_threshold"):  # the same check, flat key
        SpatialEmbeddingConfig.build(overrides=["seed_threshold=1.5"])
    with pytest.raises(ConfigError, match="division_dilation"):
        SpatialEmbeddingConfig.build(overrides=["division_dilation=-3"])


def test_a_config_gives_each_stage_its_settings():
    from instatrack.cluster.seeds import SeedClustering
    from instatrack.losses.spatial_embedding import LossWeights
    from instatrack.methods.spatial_embedding import SpatialEmbeddingConfig
    from instatrack.track.rules import TrackSettings

    cfg = SpatialEmbeddingConfig.build("paper", overrides=["seed_weight=2"])
    assert SeedClustering.of(cfg) == SeedClustering(seed_threshold=0.9, min_instance_area=128)
    assert LossWeights.of(cfg).seed_weight == 2.0
    # one key read by two stages: the clustering and the tracker drop the same objects
    assert TrackSettings.of(cfg).min_instance_area == 128


def test_a_trained_run_changes_only_post_processing():
    from instatrack.methods.spatial_embedding import SpatialEmbeddingConfig

    cfg = SpatialEmbeddingConfig.build("fast")
    changed = cfg.with_post_processing(["seed_threshold=0.9", "link_max_gap=4", "tta=true"])
    assert (changed.seed_threshold, changed.link_max_gap, changed.tta) == (0.9, 4, True)
    assert changed.replace(seed_threshold=0.5, link_max_gap=2, tta=False) == cfg
    for key in ("width=1.0", "sigma_channels=2", "steps=5", "crop=64,64"):
        with pytest.raises(ConfigError, match=f"{key.split('=')[0]}: fixed when the network"):
            cfg.with_post_processing([key])
    with pytest.raises(ConfigError, match="unknown key.*colour"):
        cfg.with_post_processing(["colour=red"])


def test_post_processing_keys_of_each_method():
    from instatrack.methods import REGISTRY, get_method

    keys = {name: set(get_method(name).config_cls.post_processing_keys()) for name in REGISTRY}
    assert {"cluster_min_cluster_size", "cluster_coord_scale"} <= keys["cosine-hourglass"]
    assert {"seed_threshold", "min_instance_score", "tta"} <= keys["spatial-embedding"]
    assert {"crf", "crf_iterations", "mask_threshold"} <= keys["recurrent-instance"]
    assert {"score_threshold", "contest", "finetune_steps"} <= keys["spatial-propagation"]
    assert not keys["cosine-hourglass"] & {"levels", "filters", "neighbour_radius"}
    assert not keys["spatial-embedding"] & {"width", "input_scale", "seed_weight"}


def test_spatial_embedding_mixes_synthetic_clips_and_older_runs_load_without_them(tmp_path):
    """The presets give spatial-embedding its synthetic share; a config saved before the
    key existed (the shipped models' too) loads with 0, the way it was trained."""
    from instatrack.methods import get_method
    from instatrack.runs import Run

    config_cls = get_method("spatial-embedding").config_cls
    assert config_cls.build("fast").synthetic_share == 0.15
    assert get_method("cosine-hourglass").config_cls.build("fast").synthetic_share == 0
    values = config_cls.build("fast").to_dict()
    del values["synthetic_share"]
    (tmp_path / "config.json").write_text(json.dumps({"method": "spatial-embedding", **values}))
    assert Run.open(tmp_path).config.synthetic_share == 0
    assert Run.resolve("nuclei-se").config.synthetic_share == 0
