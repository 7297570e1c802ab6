"""Branched ERFNet: shapes on any size, output ranges, initial state, round trip."""

from __future__ import annotations

import pytest
import torch

from instatrack.models.erfnet import (
    BranchedERFNet,
    Downsampler,
    NonBottleneck1D,
    coordinate_grid,
    stage_widths,
)


def small_net(**kwargs) -> BranchedERFNet:
    torch.manual_seed(0)
    options = dict(width=0.25, stage1_blocks=1, dilated_repeats=1, decoder_blocks=1)
    return BranchedERFNet(**{**options, **kwargs})


@pytest.mark.parametrize("size", [(37, 45), (8, 8), (5, 13), (64, 33)])
@pytest.mark.parametrize("input_scale", [1.0, 0.5])
def test_any_size_gives_full_resolution_outputs(size, input_scale):
    net = small_net(in_channels=3, sigma_channels=2, n_classes=2, input_scale=input_scale).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, *size))
    assert out["embedding"].shape == (2, 2, *size)
    assert out["offsets"].shape == (2, 2, *size)
    assert out["sigma"].shape == out["log_sigma"].shape == (2, 2, *size)
    assert out["seed"].shape == (2, 2, *size)
    assert ((out["seed"] > 0) & (out["seed"] < 1)).all()
    assert (out["sigma"] > 0).all() and (out["offsets"].abs() <= 1).all()


@pytest.mark.parametrize("input_scale", [1.0, 0.5])
def test_embedding_is_coordinates_plus_offsets(input_scale):
    net = small_net(coord_scale=100.0, input_scale=input_scale).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 1, 11, 20))
    grid = out["embedding"][0] - out["offsets"][0]
    assert torch.allclose(grid, coordinate_grid(11, 20, 100.0), atol=1e-6)
    assert float(grid[0, 10, 3]) == pytest.approx(0.10)  # y of row 10
    assert float(grid[1, 10, 3]) == pytest.approx(0.03)  # x of column 3


def test_starts_at_zero_offsets_and_the_initial_bandwidth():
    net = small_net(coord_scale=1024.0, init_sigma=5.0).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 1, 24, 24))
    assert out["offsets"].abs().max() == 0
    assert torch.allclose(out["sigma"], torch.full_like(out["sigma"], 5.0 / 1024))


def test_backward_reaches_every_branch():
    net = small_net().train()
    out = net(torch.rand(2, 1, 29, 31))
    (out["embedding"].sum() + out["sigma"].sum() + out["seed"].sum()).backward()
    for part in (net.encoder, net.embedding_decoder, net.seed_decoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def test_state_dict_round_trip(tmp_path):
    net = small_net(sigma_channels=2).eval()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    again = small_net(sigma_channels=2)
    again.load_state_dict(torch.load(tmp_path / "w.pt"))
    again.eval()
    x = torch.rand(1, 1, 19, 23)
    with torch.no_grad():
        a, b = net(x), again(x)
    for key in a:
        assert torch.equal(a[key], b[key])


def test_widths_and_blocks():
    assert stage_widths(1.0, 3) == (16, 64, 128)
    assert stage_widths(0.25, 3) == (4, 16, 32)
    assert stage_widths(0.05, 3)[0] == 4  # a downsampler must widen its input
    with pytest.raises(ValueError):
        Downsampler(8, 8)
    block = NonBottleneck1D(6, dilation=4).eval()
    x = torch.rand(1, 6, 17, 9)
    assert block(x).shape == x.shape and (block(x) >= 0).all()
    full = BranchedERFNet(in_channels=3)
    assert 1.5e6 < sum(p.numel() for p in full.parameters()) < 3e6
