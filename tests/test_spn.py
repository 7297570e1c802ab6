"""Spatial propagation network, foreground network and the connected-region filter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instatrack.cluster.regions import (
    ObjectMemory,
    assign_pixels,
    best_region,
    centroid,
    filter_regions,
    shift_mask,
)
from instatrack.errors import DataError
from instatrack.models.foreground import ForegroundNet, replicate_head
from instatrack.models.spn import (
    SpatialPropagationNetwork,
    normalize_gates,
    propagate_down,
    spatial_propagation,
)

# -- spatial propagation --------------------------------------------------------------------------


def test_zero_gates_leave_the_map_unchanged():
    x = torch.randn(2, 3, 17, 23)
    out = spatial_propagation(x, torch.zeros(2, 12, 17, 23))
    assert torch.equal(out, x)


def test_normalisation_bounds_the_sum_of_absolute_gates():
    gates = torch.tensor([3.0, 4.0, -1.0]).view(1, 3, 1, 1)
    assert torch.allclose(normalize_gates(gates).flatten(), torch.tensor([3, 4, -1]) / 8)
    small = torch.tensor([0.1, -0.2, 0.3]).view(1, 3, 1, 1)
    assert torch.equal(normalize_gates(small), small)


def test_propagate_down_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).view(1, 1, 2, 3)
    gates = torch.tensor([0.25, 0.5, 0.25]).view(1, 3, 1, 1).expand(1, 3, 2, 3)
    # row 1 keeps none of x (1 - sum|g| = 0) and smooths row 0 with zero padding
    expected = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 2.0]])
    assert torch.allclose(propagate_down(x, gates)[0, 0], expected)


def test_four_directions_merge_by_maximum():
    x = torch.randn(1, 1, 6, 5)
    gates = torch.zeros(1, 12, 6, 5)
    gates[:, 1] = 1.0  # top->bottom copies the pixel straight above: every row becomes row 0
    expected = torch.maximum(x, x[:, :, :1].expand_as(x))
    assert torch.allclose(spatial_propagation(x, gates), expected)


@pytest.mark.parametrize("seed", range(5))
def test_outputs_stay_bounded_for_any_gates(seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 2, 19, 14, generator=gen)
    gates = torch.randn(2, 12, 19, 14, generator=gen) * 10
    out = spatial_propagation(x, gates)
    assert out.abs().max() <= x.abs().max() + 1e-5


def test_odd_sizes_backpropagate_to_gates_and_input():
    x = torch.randn(1, 2, 13, 7, requires_grad=True)
    gates = (torch.randn(1, 12, 13, 7) * 0.5).requires_grad_()
    out = spatial_propagation(x, gates)
    assert out.shape == x.shape
    (out * torch.randn_like(out)).sum().backward()
    for grad in (x.grad, gates.grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_network_starts_as_identity_and_shares_gates_over_maps():
    net = SpatialPropagationNetwork(guide_channels=3, width=4, depth=2)
    coarse = torch.rand(1, 5, 21, 18) * 2 - 1
    guide = torch.randn(1, 3, 21, 18)
    assert torch.equal(net(coarse, guide), coarse)
    gates = net.gates(guide)
    assert gates.shape == (1, 12, 21, 18)


def test_spn_learns_to_refine_a_degraded_mask():
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    target = (((yy - 12) ** 2 + (xx - 11) ** 2) < 36).float()[None, None]
    image = target + 0.05 * torch.randn_like(target)
    blurry = torch.nn.functional.avg_pool2d(target, 7, 1, 3, count_include_pad=False)
    coarse = blurry * 2 - 1
    net = SpatialPropagationNetwork(guide_channels=1, width=8, depth=2)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)

    def error() -> torch.Tensor:
        return ((net(coarse, image) + 1) / 2 - target).abs().mean()

    before = error().item()
    for _ in range(40):
        optimiser.zero_grad()
        error().backward()
        optimiser.step()
    assert error().item() < 0.8 * before


# -- foreground network ---------------------------------------------------------------------------


def test_foreground_net_any_size():
    net = ForegroundNet(in_channels=2, width=4, levels=3)
    x = torch.randn(1, 2, 37, 45)
    features, logits = net.forward_features(x)
    assert features.shape == (1, 4, 37, 45) and logits.shape == (1, 1, 37, 45)
    assert torch.equal(net(x), logits)


def test_load_backbone_round_trip_and_errors(tmp_path):
    net = ForegroundNet(1, width=4, levels=2)
    path = tmp_path / "fg.pt"
    torch.save(net.state_dict(), path)
    other = ForegroundNet(1, width=4, levels=2)
    other.load_backbone(path)
    for a, b in zip(net.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)

    prefixed = tmp_path / "run_weights.pt"
    torch.save({"fg." + k: v for k, v in net.state_dict().items()}
               | {"spn.w": torch.zeros(1)}, prefixed)
    ForegroundNet(1, width=4, levels=2).load_backbone(prefixed)

    with pytest.raises(DataError, match="missing.pt: backbone weights file not found"):
        other.load_backbone(tmp_path / "missing.pt")
    with pytest.raises(DataError, match="fg.pt: backbone weights do not fit"):
        ForegroundNet(1, width=8, levels=2).load_backbone(path)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="corrupt.pt: cannot read"):
        other.load_backbone(corrupt)


def test_replicated_head_copies_start_equal_and_train_independently():
    head = ForegroundNet(1, width=4, levels=1).head
    heads = replicate_head(head, 3)
    features = torch.randn(2, 4, 9, 11)
    out = heads(features)
    assert out.shape == (2, 3, 9, 11)
    for k in range(3):
        assert torch.allclose(out[:, k:k + 1], head(features), atol=1e-6)
    out[:, 1].sum().backward()
    grad = heads[0].weight.grad.view(3, 4, 4, 3, 3)
    assert grad[1].abs().sum() > 0 and grad[0].abs().sum() == 0 and grad[2].abs().sum() == 0


def test_replicated_heads_with_own_inputs_read_their_own_channel_group():
    head = ForegroundNet(1, width=4, levels=1).head
    heads = replicate_head(head, 3, own_inputs=True)
    features = torch.randn(2, 3, 4, 9, 11)  # (B, copies, C_in, Y, X)
    out = heads(features.flatten(1, 2))
    assert out.shape == (2, 3, 9, 11)
    for k in range(3):
        assert torch.allclose(out[:, k:k + 1], head(features[:, k]), atol=1e-5)


# -- connected-region filter ----------------------------------------------------------------------


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def test_spurious_far_region_removed_and_matching_region_kept():
    previous = _disc((60, 60), (15, 15), 5)
    current = _disc((60, 60), (16, 16), 5)
    spurious = np.zeros((60, 60), bool)
    spurious[45:48, 45:48] = True
    kept = filter_regions(current | spurious, previous)
    assert np.array_equal(kept, current)


def test_large_region_kept_as_a_part_of_the_object():
    previous = _disc((60, 60), (15, 15), 5)            # 81 pixels
    current = _disc((60, 60), (16, 16), 5)
    part = np.zeros((60, 60), bool)
    part[14:20, 24:31] = True                         # 42 pixels >= 0.5 * 81, 3 px away
    kept = filter_regions(current | part, previous, min_fraction=0.5, max_distance=1.0)
    assert np.array_equal(kept, current | part)
    # the same region too small for the fraction, or claimed by another object, is dropped
    assert np.array_equal(filter_regions(current | part, previous, min_fraction=0.6), current)
    assert np.array_equal(filter_regions(current | part, previous, claimed=part), current)


def test_large_far_region_needs_the_distance_limit_off():
    previous = _disc((60, 60), (15, 15), 5)
    current = _disc((60, 60), (16, 16), 5)
    far = _disc((60, 60), (48, 48), 6)
    assert np.array_equal(filter_regions(current | far, previous, max_distance=1.0), current)
    assert np.array_equal(filter_regions(current | far, previous), current | far)


def test_best_region_by_iou_or_nearest_when_nothing_overlaps():
    previous = _disc((60, 60), (15, 15), 5)
    small_near = _disc((60, 60), (16, 18), 2)
    big_shifted = _disc((60, 60), (18, 16), 6)
    assert np.array_equal(best_region(small_near | _disc((60, 60), (45, 45), 8), previous),
                          small_near)
    assert np.array_equal(best_region(big_shifted, previous), big_shifted)
    near, far = _disc((60, 60), (15, 28), 3), _disc((60, 60), (50, 50), 3)
    assert np.array_equal(best_region(near | far, previous), near)
    assert np.array_equal(filter_regions(near | far, previous, min_fraction=1.0), near)


def test_filter_without_reference_keeps_everything():
    mask = _disc((20, 20), (5, 5), 3) | _disc((20, 20), (15, 15), 2)
    assert np.array_equal(filter_regions(mask, None), mask)
    assert np.array_equal(filter_regions(mask, np.zeros_like(mask)), mask)
    assert not filter_regions(np.zeros_like(mask), mask).any()


def test_shift_mask_and_centroid():
    mask = np.zeros((5, 6), bool)
    mask[1, 1] = mask[2, 4] = True
    moved = shift_mask(mask, 2, -1)
    assert np.argwhere(moved).tolist() == [[3, 0], [4, 3]]
    assert not shift_mask(mask, 0, 6).any()
    assert centroid(mask) == (1.5, 2.5)
    assert centroid(np.zeros((3, 3), bool)) is None


def test_assign_pixels_by_highest_score():
    scores = np.array([[[0.9, 0.4, 0.6]], [[0.7, 0.3, 0.8]]])
    assert assign_pixels(scores, np.array([3, 7])).tolist() == [[3, 0, 7]]
    assert assign_pixels(scores, np.array([3, 7]), threshold=0.85).tolist() == [[3, 0, 0]]


def test_contested_pixels_go_to_the_nearest_previous_mask():
    # two look-alike objects merged into one blob: object 5 was on the left, 6 on the right
    scores = np.full((2, 1, 6), 0.9)
    scores[1, 0, :2] = 0.95                            # higher but far from object 6's past
    references = np.zeros((2, 1, 6), bool)
    references[0, 0, 0] = references[1, 0, 5] = True
    ids = np.array([5, 6])
    assert assign_pixels(scores, ids).tolist() == [[6, 6, 5, 5, 5, 5]]
    assert assign_pixels(scores, ids, references=references).tolist() == [[5, 5, 5, 6, 6, 6]]
    scores[0, 0, 3:] = 0.2                             # uncontested pixels keep their owner
    assert assign_pixels(scores, ids, references=references).tolist() == [[5, 5, 5, 6, 6, 6]]
    scores[:, 0, 4] = 0.1
    assert assign_pixels(scores, ids, references=references).tolist() == [[5, 5, 5, 6, 0, 6]]


def test_object_memory_predicts_by_last_motion_and_keeps_vanished_objects():
    start = np.zeros((1, 20, 20), bool)
    start[0, 2:5, 2:5] = True
    memory = ObjectMemory(start)
    assert np.array_equal(memory.reference(0, use_motion=True), start[0])
    moved = shift_mask(start[0], 3, 1)[None]
    memory.update(moved)
    assert np.array_equal(memory.reference(0, use_motion=True), shift_mask(moved[0], 3, 1))
    assert np.array_equal(memory.reference(0, use_motion=False), moved[0])
    memory.update(np.zeros_like(moved))                # vanished: last mask, no motion
    assert np.array_equal(memory.reference(0, use_motion=True), moved[0])

