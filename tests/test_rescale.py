"""Object size: resize factors, label resampling, and the predictor's resize round trip."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from instatrack.api import Predictor
from instatrack.config import TrainConfig
from instatrack.data.rescale import (
    diameter,
    estimate_diameter,
    parse_object_size,
    resize_image,
    resize_labels,
    scale_for,
)
from instatrack.errors import ConfigError, DataError
from instatrack.methods.base import Window


def test_scale_for_keeps_close_sizes_and_limits_far_ones():
    assert scale_for(30, 32) == 1.0
    assert scale_for(64, 32) == pytest.approx(0.5)
    assert scale_for(1000, 32) == pytest.approx(0.25)
    with pytest.raises(ConfigError):
        scale_for(0, 32)


def test_estimate_diameter_of_disks():
    yy, xx = np.mgrid[:100, :100]
    labels = np.zeros((100, 100), np.int32)
    for i, (y, x) in enumerate([(25, 25), (25, 75), (75, 50)], 1):
        labels[(yy - y) ** 2 + (xx - x) ** 2 <= 10 ** 2] = i
    assert estimate_diameter(labels) == pytest.approx(20, rel=0.05)
    assert estimate_diameter(np.zeros((5, 5), np.int32)) is None
    assert diameter(np.pi * 25) == pytest.approx(10)


def test_resize_round_trip_keeps_labels():
    labels = np.zeros((1, 60, 80), np.int32)
    labels[0, 10:30, 20:50] = 3
    small = resize_labels(labels, (30, 40))
    assert small.shape == (1, 30, 40) and set(np.unique(small)) == {0, 3}
    back = resize_labels(small, (60, 80))
    assert np.mean(back == labels) > 0.99
    assert resize_image(np.ones((2, 60, 80), np.float32), 0.5).shape == (2, 30, 40)


def test_parse_object_size():
    assert parse_object_size(None) is None and parse_object_size("auto") == "auto"
    assert parse_object_size("12.5") == 12.5
    for bad in ("-3", "big"):
        with pytest.raises(ConfigError, match="--object-size"):
            parse_object_size(bad)


class SizeSelectiveMethod:
    """Finds bright blobs, but only those near the size it was 'trained' on (area 300-500)."""

    def __init__(self):
        self.config = TrainConfig(instance_area=(300.0, 400.0), norm_low=0.0, norm_high=100.0)
        self.seen = []

    def predict(self, model, frames, device="cpu", first_masks=None):
        for t, frame in enumerate(frames):
            self.seen.append(frame.shape)
            labels, n = ndimage.label(frame[0] > 0.5)
            areas = np.bincount(labels.ravel())
            keep = (areas > 100) & (areas < 800)
            keep[0] = False
            labels = np.where(keep[labels], labels, 0).astype(np.int32)
            yield Window(t, labels[None])


def _disks(radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:256, :256]
    image = np.zeros((256, 256), np.float32)
    for y, x in [(64, 64), (64, 190), (190, 128)]:
        image[(yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2] = 1.0
    return image


def test_predictor_resizes_large_objects_and_returns_full_size_labels():
    image = _disks(22.6)  # area ~1600, four times the training area
    plain = Predictor(SizeSelectiveMethod(), None, "cpu")
    assert plain.segment(image).max() == 0  # too large for the 'model'
    for size in (45.0, "auto"):
        method = SizeSelectiveMethod()
        predictor = Predictor(method, None, "cpu", object_size=size)
        assert predictor.scale is None  # nothing run yet
        labels = predictor.segment(image)
        assert labels.shape == image.shape and len(np.unique(labels)) - 1 == 3
        assert method.seen[-1] == (1, 128, 128)
        assert predictor.scale == pytest.approx(0.5, rel=0.1)  # what the size came to


def test_auto_keeps_the_size_when_objects_already_match():
    method = SizeSelectiveMethod()
    predictor = Predictor(method, None, "cpu", object_size="auto")
    result = predictor.track([_disks(11.3)] * 3)
    assert result.labels.shape == (3, 256, 256) and method.seen[-1] == (1, 256, 256)


def test_auto_magnifies_only_when_nothing_of_the_training_size_was_found():
    """The pass at twice the size (four times the pixels) runs for objects smaller than
    the model knows, and is skipped once objects of its size were found."""
    for radius, magnified in ((11.3, False), (6.0, True)):
        method = SizeSelectiveMethod()
        predictor = Predictor(method, None, "cpu", object_size="auto")
        factor = predictor.input_scale(predictor.prepare(_disks(radius)))
        assert ((1, 512, 512) in method.seen) == magnified
        assert factor == pytest.approx(11.3 / radius, rel=0.2)


def test_object_size_needs_a_recorded_training_size():
    method = SizeSelectiveMethod()
    method.config = method.config.replace(instance_area=(0.0, 0.0))
    with pytest.raises(DataError, match="object-size"):
        Predictor(method, None, "cpu", object_size=20.0).segment(_disks(10))


def test_rescaled_sequence_resizes_frames_and_labels(tmp_path):
    from instatrack.data import open_datasets
    from instatrack.data.rescale import data_object_size, rescaled
    from instatrack.data.synth import write_ctc_synthetic

    seq = open_datasets(write_ctc_synthetic(tmp_path / "d", frames=2, size=(40, 48)))[0]
    big = rescaled([seq], 2.0)[0]
    assert big.image(0).shape == (80, 96) and big.labels(1).shape == (80, 96)
    assert big.name == seq.name and big.is_video and len(big) == 2
    assert data_object_size([big]) == pytest.approx(2 * data_object_size([seq]), rel=0.1)
    assert rescaled([seq], 1.0)[0] is seq


def test_fine_tuning_trains_at_the_init_models_object_size(tmp_path, tiny_cosine_run):
    """--init rescales the data to the init model's objects and inference repeats it."""
    import instatrack
    from instatrack.data.synth import write_ctc_synthetic
    from instatrack.finetune import init_config
    from instatrack.runs import Run
    from instatrack.train import resume, train

    init = Run.open(tiny_cosine_run / "run")
    small = write_ctc_synthetic(tmp_path / "small", frames=4, size=(48, 56), seed=1,
                                radius=(2.5, 3.5))
    config = init_config(init, overrides=["steps=2"])
    run = Run.open(train(None, small, tmp_path / "ft", init=init, progress=False, config=config))
    assert run.config.rescale > 1.3
    assert run.config.instance_area[1] == pytest.approx(init.config.instance_area[1], rel=0.5)
    assert instatrack.load(run.path).input_scale(np.zeros((1, 48, 56))) == run.config.rescale
    resume(run.path, steps=3, progress=False)  # the saved factor, not a new measurement
    assert Run.open(run.path).config.rescale == run.config.rescale


def test_object_size_trains_every_sequence_at_one_size_and_inference_follows(tmp_path):
    """object_size resizes each training sequence by its own factor; the run then
    estimates the size of new frames by default."""
    import instatrack
    from instatrack.data import open_datasets
    from instatrack.data.rescale import data_object_size, to_object_size
    from instatrack.data.synth import write_ctc_synthetic
    from instatrack.methods import get_method
    from instatrack.runs import Run
    from instatrack.train import resume, train

    small = write_ctc_synthetic(tmp_path / "small", frames=3, size=(48, 56), seed=1,
                                radius=(2.5, 3.5))
    large = write_ctc_synthetic(tmp_path / "large", frames=3, size=(96, 112), seed=2,
                                radius=(5.0, 7.0))
    sequences = open_datasets([small, large])
    resized = to_object_size(sequences, 9.0)
    sizes = [data_object_size([seq]) for seq in resized]
    assert sizes == pytest.approx([9.0, 9.0], rel=0.25)
    assert to_object_size(resized, 9.0)[0] is resized[0]  # already there: left alone

    config = get_method("cosine-hourglass").config_cls.build(
        "fast", overrides=["steps=2", "crop=32,32", "levels=2", "filters=4", "clip_len=2",
                           "object_size=9", "val_every=100"])
    run = Run.open(train("cosine-hourglass", [small, large], tmp_path / "run", config=config,
                         progress=False))
    assert run.config.rescale == 1.0
    assert instatrack.load(run.path).trained_size == pytest.approx(9.0, rel=0.3)
    resume(run.path, steps=3, progress=False)
    with pytest.raises(ConfigError, match="not both"):
        config.replace(rescale=0.5).check()


class FragmentingMethod(SizeSelectiveMethod):
    """Like a real model on objects far larger than it knows: cuts them into pieces of
    about its own size (20 x 20 px) instead of missing them."""

    def predict(self, model, frames, device="cpu", first_masks=None):
        for t, frame in enumerate(frames):
            self.seen.append(frame.shape)
            blobs, _ = ndimage.label(frame[0] > 0.5)
            yy, xx = np.mgrid[:frame.shape[1], :frame.shape[2]]
            pieces = blobs * 10000 + (yy // 20) * 100 + xx // 20
            areas = np.bincount(blobs.ravel())
            labels = np.where(areas[blobs] >= 800, pieces, blobs * 10000) * (blobs > 0)
            _, labels = np.unique(labels, return_inverse=True)
            yield Window(t, labels.reshape(blobs.shape).astype(np.int32)[None])


def test_auto_is_not_fooled_by_pieces_of_the_trained_size():
    """At its own scale the model finds pieces of its training size in large objects;
    the estimate takes the largest size found and refines it."""
    method = FragmentingMethod()
    image = _disks(45.0)  # diameter 90 px, training diameter ~22.6 px
    predictor = Predictor(method, None, "cpu", object_size="auto")
    factor = predictor.input_scale(predictor.prepare(image))
    assert factor == pytest.approx(22.6 / 90, rel=0.25)


def test_auto_takes_the_median_over_the_first_frames():
    """One odd first frame does not set the factor of the whole sequence."""
    method = FragmentingMethod()
    predictor = Predictor(method, None, "cpu", object_size="auto")
    odd, usual = (predictor.prepare(_disks(r)) for r in (11.3, 45.0))
    assert predictor.input_scale(odd) == 1.0
    assert predictor.input_scale(odd, usual, usual) == pytest.approx(22.6 / 90, rel=0.25)


def test_auto_warns_when_its_estimate_reaches_the_limit():
    """Objects four times the training diameter: resized by the most it resizes (1/4),
    and the user is told to state the size if that estimate is wrong."""
    from instatrack.data.rescale import LIMIT
    from instatrack.errors import DataWarning

    predictor = Predictor(SizeSelectiveMethod(), None, "cpu", object_size="auto")
    with pytest.warns(DataWarning, match="--object-size PIXELS"):
        factor = predictor.input_scale(predictor.prepare(_disks(50.0)))
    assert factor == pytest.approx(1 / LIMIT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert predictor.input_scale(predictor.prepare(_disks(22.6))) < 1  # in range: silent
