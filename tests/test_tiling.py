"""Tiled inference: the grid, the stitching rules and tiled == untiled for any weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import instatrack
from instatrack.data.normalize import input_ranges, normalize, normalize_crop
from instatrack.errors import ConfigError
from instatrack.tiling import (
    Tile,
    TiledPredictor,
    instance_agreement,
    receptive_radius,
    stitch,
    tile_grid,
)
from scale_runs import cells_image, random_run


@pytest.mark.parametrize("shape, tile, overlap, align", [
    ((100, 100), 40, 10, 8), ((37, 203), 64, 16, 16), ((64, 64), 64, 8, 8), ((9, 300), 32, 0, 1)])
def test_cores_partition_the_frame_and_keep_half_the_overlap_inside(shape, tile, overlap, align):
    tiles = tile_grid(shape, tile, overlap, align)
    owner = np.zeros(shape, int)
    for t in tiles:
        y0, y1, x0, x1 = t.outer
        cy0, cy1, cx0, cx1 = t.core
        owner[cy0:cy1, cx0:cx1] += 1
        assert y0 % align == 0 and x0 % align == 0
        assert y1 - y0 < tile + align and x1 - x0 < tile + align
        assert y0 <= cy0 < cy1 <= y1 and x0 <= cx0 < cx1 <= x1
        # an object centred in the core reaches overlap // 2 without leaving the tile
        for inner, margin in ((y0 > 0, cy0 - y0), (y1 < shape[0], y1 - cy1),
                              (x0 > 0, cx0 - x0), (x1 < shape[1], x1 - cx1)):
            assert not inner or margin >= overlap // 2
    assert (owner == 1).all()


def test_grid_rejects_an_overlap_that_leaves_no_stride():
    with pytest.raises(ConfigError, match="tile"):
        tile_grid((100, 100), 32, 30, 8)


def disks(shape=(120, 150), n=40, radius=5, seed=0) -> np.ndarray:
    """Non-overlapping disks ``(Y, X)`` labelled 1..n."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    k = 0
    while k < n:
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
        if not labels[disk].any():
            k += 1
            labels[disk] = k
    return labels


def test_stitching_perfect_tiles_keeps_every_instance_whole_and_once():
    truth = disks()
    canvas = np.zeros((1, *truth.shape), np.int32)
    next_id = 1
    for tile in tile_grid(truth.shape, 48, 16, 8):
        crop = truth[tile.window]
        # each tile sees its own crop, cut objects included, with its own label values
        local = np.unique(crop, return_inverse=True)[1].reshape(crop.shape).astype(np.int32)
        next_id, cut = stitch(canvas, local[None], tile, next_id)
        assert cut == 0
    agreement = instance_agreement(truth, canvas[0])
    assert agreement["identical"] == agreement["reference"] == agreement["labels"] == 40


def test_a_duplicate_from_a_disagreeing_tile_is_dropped():
    canvas = np.zeros((1, 20, 40), np.int32)
    canvas[0, 5:10, 17:23] = 7  # pasted by an earlier tile
    tile = Tile(outer=(0, 20, 10, 40), core=(0, 20, 18, 40))
    local = np.zeros((1, 20, 30), np.int32)
    local[0, 5:10, 8:15] = 1  # the same object, a little wider; centroid in this core
    local[0, 14:18, 20:24] = 2  # a new object
    next_id, _ = stitch(canvas, local, tile, 8)
    assert next_id == 9
    assert (canvas == 7).sum() == 30 and (canvas == 8).sum() == 16


def test_instances_reaching_an_inner_tile_edge_are_counted_as_cut():
    canvas = np.zeros((1, 20, 40), np.int32)
    tile = Tile(outer=(0, 20, 0, 24), core=(0, 20, 0, 20))
    local = np.zeros((1, 20, 24), np.int32)
    local[0, 2:6, 15:24] = 1
    assert stitch(canvas, local, tile, 1) == (2, 1)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_tile_normalisation_equals_whole_image_normalisation(dtype):
    rng = np.random.default_rng(1)
    image = (rng.gamma(2.0, 300.0, (61, 47, 2)) % 250).astype(dtype)
    ranges = input_ranges(image)
    for c in range(2):
        assert np.array_equal(ranges[c], np.percentile(image[..., c].astype(np.float32),
                                                       (1.0, 99.8)))
    whole = normalize(image)
    assert np.array_equal(normalize_crop(image[10:30, 5:40], ranges), whole[:, 10:30, 5:40])


def test_receptive_radius_of_known_convolutions():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1),
                              torch.nn.Conv2d(2, 1, 3, padding=2, dilation=2))
    assert receptive_radius(net, 1, 1, limit=64) == 3


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return instatrack.load(random_run(tmp_path_factory.mktemp("run")), device="cpu")


def test_tiled_segmentation_equals_the_untiled_one_for_random_weights(predictor):
    image = cells_image((256, 320), seed=2)[0]
    whole = predictor.segment(image)
    tiled = TiledPredictor(predictor, tile=160)
    assert tiled.overlap == tiled.exact_overlap and 160 - tiled.overlap >= tiled.align
    agreement = instance_agreement(whole, tiled.segment(image))
    assert agreement["reference"] > 100
    assert agreement["identical"] == agreement["reference"] == agreement["labels"]


def test_tiles_are_refined_one_by_one_when_the_config_asks(tmp_path):
    from instatrack.cluster.boundaries import refine_boundaries

    run = random_run(tmp_path / "run")
    plain = TiledPredictor(instatrack.load(run, device="cpu"), tile=160)
    refined = TiledPredictor(instatrack.load(run, device="cpu", overrides=[
        "refine_boundaries=0.3", "refine_band=2"]), tile=160)
    crop = normalize(cells_image((96, 128), seed=5)[0])
    before = plain.predict_tile(crop)
    assert before.max() > 0
    expected = refine_boundaries(before[0], crop, refined.config)
    assert np.array_equal(refined.predict_tile(crop)[0], expected)
    assert not np.array_equal(expected, before[0])
    assert refined.segment(cells_image((256, 320), seed=2)[0]).max() > 100


def test_tiled_tracking_keeps_ids_consistent_over_time(predictor):
    frames = cells_image((160, 200), seed=4, frames=3)
    whole = predictor.track(frames)
    tiled = TiledPredictor(predictor, tile=120).track(frames)
    assert tiled.graph.number_of_nodes() == whole.graph.number_of_nodes()
    assert tiled.graph.number_of_edges() == whole.graph.number_of_edges()
    # one consistent renaming of track ids maps the tiled result onto the untiled one
    pairs = np.unique(np.stack([tiled.labels.ravel(), whole.labels.ravel()]), axis=1)
    assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def test_a_small_overlap_warns(predictor):
    with pytest.warns(UserWarning, match="reach"):
        TiledPredictor(predictor, tile=160, overlap=16)


def test_methods_that_cannot_be_tiled_say_why(tmp_path):
    run = random_run(tmp_path / "hg", "cosine-hourglass")
    with pytest.raises(ConfigError, match="cosine-hourglass"):
        TiledPredictor(instatrack.load(run, device="cpu"), tile=64)


def test_recurrent_instance_runs_in_tiles_of_its_crop_and_warns_on_a_whole_frame(tmp_path):
    from instatrack.errors import DataWarning

    run = random_run(tmp_path / "ris", "recurrent-instance", overrides=["crop=64,64"])
    predictor = instatrack.load(run, device="cpu")
    image = cells_image((160, 200), seed=3)[0]
    with pytest.warns(DataWarning, match="--tile 64"):
        predictor.segment(image)
    tiled = TiledPredictor(predictor, tile=64)
    assert tiled.exact_overlap is None and tiled.overlap == 16  # a third, on the stride
    labels = tiled.segment(image)  # each tile is the size of a training crop
    assert labels.shape == image.shape


def test_validation_and_calibration_see_large_frames_in_tiles_where_the_method_needs_it(
        tmp_path):
    """recurrent-instance learnt scenes of its crop: a frame of more than ``scene_crops``
    crops is scored in tiles of the crop (as ``--tile CROP`` runs it); a small frame, or
    a method without the limit, is scored whole."""
    from instatrack.tiling import scene_tiled

    run = random_run(tmp_path / "ris", "recurrent-instance", overrides=["crop=64,64"])
    predictor = instatrack.load(run, device="cpu")
    tiled = scene_tiled(predictor, (160, 200))
    assert isinstance(tiled, TiledPredictor) and tiled.tile == 64
    assert not tiled.warn_cut  # no warning per frame scored (instances cut by tiles)
    assert scene_tiled(predictor, (100, 120)) is predictor  # under 4 crops
    assert scene_tiled(tiled, (160, 200)) is tiled
    se = instatrack.load(random_run(tmp_path / "se", "spatial-embedding"), device="cpu")
    assert scene_tiled(se, (1000, 1000)) is se


def test_training_validation_of_recurrent_instance_scores_large_frames_in_tiles(tmp_path):
    import warnings

    from instatrack.data.synth import MovieSequence, generate_cells
    from instatrack.errors import DataWarning
    from instatrack.runs import Run
    from instatrack.train import _Validator

    run = Run.open(random_run(tmp_path / "ris", "recurrent-instance",
                                              overrides=["crop=64,64", "val_frames=1:3"]))
    seq = MovieSequence("cells", generate_cells(3, (160, 200), seed=2))
    method = run.method_cls(run.config)
    model = method.build_model().eval()
    validate = _Validator(method, [seq], run.config, torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # whole frames would warn
        assert 0 <= validate(model)["val_seg"] <= 1
