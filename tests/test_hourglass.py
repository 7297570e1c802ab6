"""Contract of the (recurrent) stacked hourglass: shapes, streaming, gradients, reload."""

from __future__ import annotations

import pytest
import torch

from instatrack.models.hourglass import Hourglass, StackedHourglass


def _model(**kwargs) -> StackedHourglass:
    torch.manual_seed(0)
    options = dict(in_channels=2, stacks=2, levels=3, filters=6, embedding_dim=4)
    options.update(kwargs)
    return StackedHourglass(**options).double()


@pytest.mark.parametrize("size", [(37, 45), (8, 8), (5, 3), (16, 33)])
def test_any_size_gives_unit_embeddings_per_stack(size):
    model = _model()
    clip = torch.rand(2, 3, 2, *size, dtype=torch.float64)
    outputs = model(clip)
    assert len(outputs) == 2
    for out in outputs:
        assert out.shape == (2, 3, 4, *size)
        assert torch.allclose(out.norm(dim=2), torch.ones(2, 3, *size, dtype=out.dtype))


@pytest.mark.parametrize("recurrent", [True, False])
def test_forward_equals_step_by_step(recurrent):
    model = _model(recurrent=recurrent).eval()
    clip = torch.rand(1, 4, 2, 13, 19, dtype=torch.float64)
    whole = model(clip)
    state = None
    for t in range(4):
        outputs, state = model.step(clip[:, t], state)
        for s in range(2):
            assert torch.allclose(outputs[s], whole[s][:, t], atol=1e-5, rtol=0)


def test_state_carries_information_only_when_recurrent():
    frames = torch.rand(2, 1, 2, 16, 16, dtype=torch.float64)
    for recurrent in (True, False):
        model = _model(recurrent=recurrent).eval()
        _, state_a = model.step(frames[0], None)
        _, state_b = model.step(frames[1], None)
        out_a, _ = model.step(frames[1], state_a)
        out_b, _ = model.step(frames[1], state_b)
        differs = not torch.allclose(out_a[-1], out_b[-1])
        assert differs == recurrent


def test_backward_reaches_every_parameter():
    model = _model()
    clip = torch.rand(1, 2, 2, 11, 14, dtype=torch.float64)
    outputs = model(clip)
    target = torch.randn_like(outputs[0])
    loss = sum((o * target).sum() for o in outputs)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_state_dict_round_trip_includes_background(tmp_path):
    model = _model().eval()
    model.background.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    torch.save(model.state_dict(), tmp_path / "w.pt")
    again = _model().eval()
    torch.manual_seed(1)
    for p in again.parameters():
        torch.nn.init.normal_(p)
    again.load_state_dict(torch.load(tmp_path / "w.pt"))
    clip = torch.rand(1, 2, 2, 9, 10, dtype=torch.float64)
    assert torch.equal(again.background, model.background)
    for a, b in zip(model(clip), again(clip), strict=True):
        assert torch.equal(a, b)


def test_second_stack_sees_image_and_first_embeddings():
    model = _model(stacks=3)
    assert model.hourglasses[0].down[0][0].in_channels == 2
    assert model.hourglasses[1].down[0][0].in_channels == 2 + 4
    assert model.hourglasses[2].down[0][0].in_channels == 2 + 4


def test_bilinear_and_three_dimensional_variants():
    model = _model(upsample="bilinear")
    assert model(torch.rand(1, 2, 2, 10, 7, dtype=torch.float64))[0].shape == (1, 2, 4, 10, 7)
    volume = _model(dims=3, levels=2)
    out = volume(torch.rand(1, 2, 2, 5, 6, 7, dtype=torch.float64))
    assert out[1].shape == (1, 2, 4, 5, 6, 7)


def test_single_hourglass_levels_and_multiple():
    hourglass = Hourglass(1, filters=4, levels=4)
    features, state = hourglass(torch.rand(1, 1, 16, 24))
    assert features.shape == (1, 4, 16, 24)
    assert [s.shape[-1] for s in state] == [24, 12, 6, 3]
    assert StackedHourglass(levels=7).multiple == 64


def test_bad_inputs_are_rejected():
    model = _model()
    with pytest.raises(ValueError, match="clip"):
        model(torch.rand(1, 2, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="frame"):
        model.step(torch.rand(2, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="upsample"):
        StackedHourglass(upsample="cubic")
