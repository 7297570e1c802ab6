"""The cosine embedding loss against hand-computed values and a slow reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from instatrack.losses.cosine import (
    background_direction,
    clip_targets,
    compact_index,
    cosine_embedding_loss,
    neighbour_masks,
)


def _emb(vectors, shape):
    """Per-pixel 2-vectors ``(T, Y, X, d)`` -> embeddings ``(1, T, d, Y, X)`` (one stack, B = 1)."""
    array = np.asarray(vectors, dtype=np.float64).reshape(*shape, -1)
    return torch.tensor(np.moveaxis(array, -1, 1)[None], requires_grad=True)


def _loss(emb, labels, radius):
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)[None]
    return cosine_embedding_loss([emb], labels, radius)


# one frame, one row: instance 1 = pixels 0, 1; instance 2 = pixels 2, 3
ROW_LABELS = [[[1, 1, 2, 2]]]
ROW_VECTORS = [(1, 0), (0, 1), (1, 0), (1, 0)]


def test_two_instances_neighbour_inside_radius_only():
    # ē1 = (1, 1)/√2, term1 = 1 - 1/√2; ē2 = (1, 0), term1 = 0.
    # r_N = 1: N(1) = {pixel 2} (cos² = 1/2), N(2) = {pixel 1} (cos² = 0); pixel 3 is at 2 > 1.
    loss, parts = _loss(_emb(ROW_VECTORS, (1, 1, 4)), ROW_LABELS, radius=1.0)
    expected = ((1 - 1 / math.sqrt(2) + 0.5) + (0 + 0)) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-9)
    assert parts["pull"] == pytest.approx((1 - 1 / math.sqrt(2)) / 2, abs=1e-9)
    assert parts["push"] == pytest.approx(0.25, abs=1e-9)


def test_larger_radius_takes_in_farther_pixels():
    # r_N = 2: N(1) = {2, 3}, both (1, 0): cos² = 1/2 each; N(2) = {0, 1}: cos² = 1 and 0.
    loss, _ = _loss(_emb(ROW_VECTORS, (1, 1, 4)), ROW_LABELS, radius=2.0)
    expected = ((1 - 1 / math.sqrt(2) + 0.5) + (0 + 0.5)) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-9)


def test_background_is_an_instance_and_unlabelled_pixels_are_ignored():
    # row: bg, 1, -1, 2 ; background (0, 1), instance 1 (1, 0), instance 2 (1, 1)/√2
    labels = [[[0, 1, -1, 2]]]
    vectors = [(0, 1), (1, 0), (5, -3), (1, 1)]
    emb = _emb(vectors, (1, 1, 4))
    # r_N = 1.5: N(bg) = {1}; N(1) = {bg} (pixel 2 is -1, ignored); N(2) = {} (pixel 1 is at 2).
    # terms 1 are 0 (one pixel each); terms 2: bg: cos²((0,1),(1,0)) = 0, 1: 0, 2: none -> 0.
    loss, _ = _loss(emb, labels, radius=1.5)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    # r_N = 2: N(2) = {1}: cos² = 1/2; N(1) = {bg, 2}: (0 + 1/2) / 2; N(bg) = {1}: 0
    loss2, _ = _loss(emb, labels, radius=2.0)
    assert loss2.item() == pytest.approx((0 + 0.25 + 0.5) / 3, abs=1e-9)


def test_change_at_unlabelled_pixel_does_not_change_loss_nor_get_gradient():
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 3, (2, 6, 7))
    vectors = rng.normal(size=(2, 6, 7, 3))
    emb = _emb(vectors, (2, 6, 7))
    loss, _ = _loss(emb, labels, radius=2.5)
    loss.backward()
    ignored = torch.as_tensor(labels == -1)
    grad = emb.grad[0].movedim(1, -1)
    assert ignored.any() and torch.all(grad[ignored] == 0)
    changed = vectors.copy()
    changed[labels == -1] = rng.normal(size=changed[labels == -1].shape) * 10
    changed_loss, _ = _loss(_emb(changed, (2, 6, 7)), labels, radius=2.5)
    assert changed_loss.item() == pytest.approx(loss.item(), abs=1e-12)


def test_mean_embedding_is_taken_over_all_frames_of_the_clip():
    # instance 1 points along (1, 0) in frame 0 and (0, 1) in frame 1: one mean (1, 1)/√2
    labels = [[[1]], [[1]]]
    emb = _emb([(1, 0), (0, 1)], (2, 1, 1))
    loss, _ = _loss(emb, labels, radius=1.0)
    assert loss.item() == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-9)


def test_neighbours_are_taken_per_frame():
    # instances 1 and 2 touch in frame 0 only; in frame 1 they are 3 pixels apart
    labels = [[[1, 2, 0, 0]], [[1, 0, 0, 2]]]
    vectors = [(1, 0), (1, 0), (0, 1), (0, 1), (1, 0), (0, 1), (0, 1), (1, 0)]
    emb = _emb(vectors, (2, 1, 4))
    # r_N = 1. Means: ē1 = ē2 = (1, 0), ē0 = (0, 1); all terms 1 are 0.
    # frame 0: N(1) = {2}: cos² 1; N(2) = {1, bg@2}: 1, 0; N(bg) = {2}: cos²((0,1),(1,0)) = 0
    # frame 1: N(1) = {bg@1}: 0; N(2) = {bg@2}: 0; N(bg) = {1, 2}: 0, 0
    # term2: 1 -> (1 + 0)/2, 2 -> (1 + 0 + 0)/3, bg -> 0
    loss, _ = _loss(emb, labels, radius=1.0)
    assert loss.item() == pytest.approx((0.5 + 1 / 3 + 0) / 3, abs=1e-9)


def test_neighbour_masks_use_euclidean_distance_to_the_mask():
    index = np.full((5, 5), 1)
    index[2, 2] = 0
    index[0, 0] = -1
    present, masks = neighbour_masks(index, radius=1.5)
    assert list(present) == [0, 1]
    yy, xx = np.mgrid[:5, :5]
    distance = np.hypot(yy - 2, xx - 2)
    expected = (distance > 0) & (distance <= 1.5)
    np.testing.assert_array_equal(masks[0], expected)  # the 8-neighbourhood, not (0,0)
    assert masks[1].sum() == 1 and masks[1][2, 2]  # instance 1 sees the single pixel of 0
    present2, masks2 = neighbour_masks(index, radius=2.0)
    np.testing.assert_array_equal(masks2[0], (distance > 0) & (distance <= 2.0))


def test_compact_index_maps_ids_and_keeps_ignored():
    index, count = compact_index(np.array([[7, 0, -1], [7, 3, 3]]))
    assert count == 3
    np.testing.assert_array_equal(index, [[2, 0, -1], [2, 1, 1]])


def _reference_loss(vectors: np.ndarray, labels: np.ndarray, radius: float) -> float:
    """Straight loops over instances, frames and pixel pairs (tiny inputs only)."""
    frames, height, width, _ = vectors.shape
    unit = vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
    coords = np.stack(np.mgrid[:height, :width], -1).reshape(-1, 2)
    total = []
    for i in np.unique(labels[labels >= 0]):
        mean = unit[labels == i].sum(0)
        mean /= np.linalg.norm(mean)
        term1 = np.mean(1 - unit[labels == i] @ mean)
        pushes = []
        for t in range(frames):
            own = coords[(labels[t] == i).ravel()]
            if len(own) == 0:
                continue
            for y, x in coords:
                other = labels[t, y, x]
                if other == i or other < 0:
                    continue
                if np.min(np.hypot(*(own - (y, x)).T)) <= radius:
                    pushes.append((unit[t, y, x] @ mean) ** 2)
        total.append(term1 + (np.mean(pushes) if pushes else 0.0))
    return float(np.mean(total))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_slow_reference_on_random_maps(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(-1, 4, (3, 6, 5))
    labels[labels == 3] = 11  # non-compact ids
    vectors = rng.normal(size=(3, 6, 5, 4))
    loss, _ = _loss(_emb(vectors, (3, 6, 5)), labels, radius=2.2)
    assert loss.item() == pytest.approx(_reference_loss(vectors, labels, 2.2), abs=1e-9)


def test_batch_and_stacks_average_and_empty_clip_is_skipped():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, (2, 2, 5, 6))
    labels[1] = -1  # second clip has no annotation at all: it does not count
    outputs = [torch.randn(2, 2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
               for _ in range(2)]
    loss, parts = cosine_embedding_loss(outputs, torch.as_tensor(labels), 1.5)
    single = [cosine_embedding_loss([o[:1]], torch.as_tensor(labels[:1]), 1.5)[0] for o in outputs]
    assert loss.item() == pytest.approx(float(sum(single).detach()) / 2, abs=1e-9)
    assert set(parts) == {"pull", "push", "stack0", "stack1"}
    nothing, _ = cosine_embedding_loss(outputs, torch.full((2, 2, 5, 6), -1), 1.5)
    nothing.backward()
    assert nothing.item() == 0.0 and outputs[0].grad is not None


def test_perfect_embeddings_have_zero_loss():
    # three squares with mutually orthogonal directions: nothing to pull, nothing to push
    labels = np.zeros((2, 8, 8), np.int64)
    labels[:, 1:4, 1:4] = 1
    labels[:, 4:7, 4:7] = 2
    basis = np.eye(3)
    vectors = basis[labels]
    loss, _ = _loss(_emb(vectors, (2, 8, 8)), labels, radius=3.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)


def test_targets_shapes():
    labels = torch.tensor([[[0, 1], [2, -1]], [[0, 0], [2, 2]]])
    targets = clip_targets(labels, 1.0, "cpu")
    assert targets.count == 3 and targets.index.shape == (2, 4)
    assert targets.index[0, 3] == 3  # ignored pixels point at the dummy row K
    present, masks = targets.neighbours[1]
    assert list(present) == [0, 2] and masks.shape == (2, 4)


def test_background_direction():
    emb = torch.zeros(1, 1, 2, 1, 3)
    emb[0, 0, 0] = torch.tensor([[1.0, 0.0, 9.0]])
    emb[0, 0, 1] = torch.tensor([[0.0, 1.0, 9.0]])
    labels = torch.tensor([[[[0, 0, 1]]]])
    direction = background_direction(emb, labels)
    assert torch.allclose(direction, torch.tensor([1.0, 1.0]) / math.sqrt(2))
    assert background_direction(emb, torch.ones_like(labels)) is None
