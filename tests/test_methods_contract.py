"""One contract every registered method must pass (small configs, CPU, seconds each)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instatrack import runs
from instatrack.methods import REGISTRY, get_method
from instatrack.methods.base import Window

SMALL = ["crop=48,48", "batch_size=1", "steps=6", "log_every=1", "ckpt_every=6",
         "val_every=6", "clip_len=2", "seed=0"]


def _small_config(name):
    return get_method(name).config_cls.build("fast", overrides=SMALL)


def _batch(channels, clip_len, size=(37, 45)):
    gen = torch.Generator().manual_seed(0)
    image = torch.rand((1, clip_len, channels, *size), generator=gen)
    labels = torch.zeros((1, clip_len, *size), dtype=torch.long)
    labels[:, :, 5:15, 6:18] = 1
    labels[:, :, 20:30, 25:40] = 2
    labels[:, :, 0:3, :] = -1
    return {"image": image, "labels": labels}


@pytest.fixture(params=sorted(REGISTRY))
def method(request):
    torch.manual_seed(0)
    name = request.param
    return get_method(name)(_small_config(name))


def test_presets_validate(method):
    for preset in ("fast", "paper"):
        cfg = type(method.config).build(preset)
        assert cfg.steps > 0


def test_loss_backward_on_odd_sizes(method):
    model = method.build_model()
    clip = method.config.clip_len if method.temporal else 1
    loss, parts = method.loss(model.train(), _batch(method.config.in_channels, clip))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(np.isfinite(v) for v in parts.values())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_predict_streams_windows(method):
    model = method.build_model().eval()
    frames = [np.random.default_rng(t).random((1, 37, 45), dtype=np.float32) for t in range(3)]
    first = np.zeros((37, 45), np.int32)
    first[5:15, 6:18] = 1
    windows = list(method.predict(model, iter(frames), "cpu", first_masks=first))
    assert windows and all(isinstance(w, Window) for w in windows)
    covered = set()
    for w in windows:
        assert w.labels.dtype == np.int32 and w.labels.shape[1:] == (37, 45)
        covered.update(range(w.start, w.stop))
    assert covered == {0, 1, 2}


def _outputs(method, model):
    """What the model gives, seeded: the loss parts of a batch and the predicted windows."""
    torch.manual_seed(0)
    loss, parts = method.loss(model, _batch(method.config.in_channels, method.config.clip_len))
    frames = [np.random.default_rng(t).random((1, 37, 45), dtype=np.float32) for t in range(3)]
    first = np.zeros((37, 45), np.int32)
    first[5:15, 6:18] = 1
    torch.manual_seed(0)
    windows = list(method.predict(model, iter(frames), "cpu", first_masks=first))
    return float(loss.detach()), parts, [(w.start, w.labels) for w in windows]


def test_reloaded_model_gives_the_same_outputs(method, tmp_path):
    """Save config + weights as a run folder, load it back: same loss, same instances."""
    model = method.build_model().eval()
    with torch.no_grad():  # move every tensor off its initial value, buffers included
        gen = torch.Generator().manual_seed(1)
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.01 * torch.rand(tensor.shape, generator=gen))
            else:
                tensor.add_(3)
    method.config.save(tmp_path / runs.CONFIG, method=method.name)
    torch.save(model.state_dict(), tmp_path / runs.WEIGHTS)
    again, reloaded = runs.load_model(tmp_path)
    assert type(again) is type(method) and again.config == method.config
    loss, parts, windows = _outputs(method, model)
    loss_again, parts_again, windows_again = _outputs(again, reloaded)
    assert loss_again == loss and parts_again == parts
    assert len(windows_again) == len(windows)
    for (start, labels), (start_again, labels_again) in zip(windows, windows_again, strict=True):
        assert start_again == start and np.array_equal(labels_again, labels)


def test_registry_names_and_settings(method):
    from instatrack.track.rules import TrackSettings

    assert REGISTRY[method.name].endswith(":" + type(method).__name__)
    # the tracker reads its settings from every method's config
    assert isinstance(method.config, TrackSettings)
    post = set(type(method.config).post_processing_keys())
    assert {"link_max_gap", "min_instance_area", "division_dilation"} <= post
    assert not post & {"crop", "steps", "lr", "in_channels", "clip_len", "seed"}


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    from instatrack.data.synth import write_ctc_synthetic

    return write_ctc_synthetic(tmp_path_factory.mktemp("cells"), frames=6, size=(64, 64), seed=5)


def test_trains_and_reloads_through_the_shared_loop(method, cells, tmp_path):
    from instatrack.api import load
    from instatrack.train import train

    run = train(method.name, cells, tmp_path / "run", config=method.config, progress=False)
    rows = runs.LogWriter(run / runs.LOG, resume_step=10**9).rows
    assert len(rows) == 6 and all(np.isfinite(r["loss"]) for r in rows)
    predictor = load(run, device="cpu")
    frames = [np.random.default_rng(t).integers(0, 255, (40, 52)).astype(np.uint8)
              for t in range(3)]
    first = np.zeros((40, 52), np.int32)
    first[10:20, 10:20] = 1
    result = predictor.track(frames, first_masks=first)
    assert result.labels.shape == (3, 40, 52)
