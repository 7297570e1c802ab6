"""Mask post-processing and the mean-field dense CRF on small hand-made scenes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instatrack.cluster.crf import (
    CRFParams,
    crf_refine,
    labels_from_masks,
    mean_field,
    pairwise_weights,
    shift,
    unary_scores,
    window_offsets,
)


def _scene(size: int = 40) -> tuple[torch.Tensor, np.ndarray]:
    """RGB image ``(3, Y, X)`` of two coloured squares on a grey background, and its labels."""
    labels = np.zeros((size, size), np.int32)
    labels[5:18, 6:20] = 1
    labels[22:36, 18:34] = 2
    colours = np.array([[0.4, 0.4, 0.4], [0.1, 0.8, 0.2], [0.8, 0.2, 0.1]])
    image = colours[labels].transpose(2, 0, 1)
    return torch.tensor(image, dtype=torch.float32), labels


def _confident_masks(labels: np.ndarray, inside: float = 0.95, outside: float = 0.05
                     ) -> torch.Tensor:
    ids = [1, 2]
    return torch.tensor(np.stack([np.where(labels == i, inside, outside) for i in ids]),
                        dtype=torch.float32)


def test_shift_moves_content_and_fills_zeros():
    x = torch.arange(9.0).reshape(1, 3, 3)
    assert shift(x, 1, 0).tolist() == [[[3, 4, 5], [6, 7, 8], [0, 0, 0]]]
    assert shift(x, 0, -1).tolist() == [[[0, 0, 1], [0, 3, 4], [0, 6, 7]]]
    assert shift(x, 5, 0).abs().sum() == 0


def test_window_has_every_offset_but_the_centre():
    offsets = window_offsets(radius=2, dilation=3)
    assert len(offsets) == 24 and (0, 0) not in offsets
    assert max(abs(d) for o in offsets for d in o) == 6


def test_unary_scores_agree_with_thresholding():
    masks = torch.tensor([[[0.7, 0.2]], [[0.4, 0.1]]])
    q = torch.softmax(unary_scores(masks), 0)
    assert q.argmax(0).tolist() == [[1, 0]]  # 0.7 > 0.5 wins, 0.2 and 0.1 are background
    assert q[1, 0, 0].item() == pytest.approx((0.7 / 0.3) / (1 + 0.7 / 0.3 + 0.4 / 0.6), rel=1e-4)


def test_weights_vanish_across_colour_edges_and_outside():
    image, _ = _scene()
    params = CRFParams(crf_radius=1, crf_dilation=1, crf_w_smooth=0.0)
    weights = pairwise_weights(image, params)
    right = window_offsets(1, 1).index((0, 1))
    expected = params.crf_w_app * np.exp(-1 / 128)
    assert weights[right, 10, 10].item() == pytest.approx(expected, rel=1e-5)
    # the next pixel is grey background: colour distance^2 = 0.3^2 + 0.4^2 + 0.2^2
    across = params.crf_w_app * np.exp(-1 / 128 - 0.29 / (2 * 0.15 ** 2))
    assert weights[right, 10, 19].item() == pytest.approx(across, rel=1e-4)
    assert across < 0.01 * weights[right, 10, 10].item()
    assert weights[right, 10, 39].item() == 0.0   # outside the image


def test_perfect_segmentation_is_kept():
    image, labels = _scene()
    refined = crf_refine(image, _confident_masks(labels))
    assert np.array_equal(labels_from_masks(refined.numpy()), labels)


def test_speckle_is_removed():
    image, labels = _scene()
    masks = _confident_masks(labels)
    speckle = [(30, 5), (2, 30), (12, 30), (38, 38)]  # isolated pixels on uniform background
    for y, x in speckle:
        masks[0, y, x] = 0.75
    noisy = labels_from_masks(masks.numpy())
    assert all(noisy[y, x] == 1 for y, x in speckle)
    refined = labels_from_masks(crf_refine(image, masks).numpy())
    assert all(refined[y, x] == 0 for y, x in speckle)
    assert np.array_equal(refined, labels)


def test_boundary_moves_to_the_colour_edge():
    image, labels = _scene()
    masks = _confident_masks(labels)
    masks[0, 5:18, 20:22] = 0.6  # mask spills two pixels past the right edge of square 1
    before = labels_from_masks(masks.numpy())
    after = labels_from_masks(crf_refine(image, masks).numpy())
    assert (before != labels).sum() == 26
    assert (after != labels).sum() < 5


def test_mean_field_without_pairwise_is_the_softmax_of_the_unary():
    scores = torch.randn(3, 6, 7)
    params = CRFParams(crf_radius=1, crf_w_app=0.0, crf_w_smooth=0.0)
    q = mean_field(scores, pairwise_weights(torch.rand(1, 6, 7), params), params)
    assert torch.allclose(q, torch.softmax(scores, 0), atol=1e-6)


def test_no_masks_gives_background():
    image, _ = _scene(12)
    empty = torch.zeros((0, 12, 12))
    assert crf_refine(image, empty).shape == (0, 12, 12)
    assert not labels_from_masks(empty.numpy()).any()


def test_labels_from_masks_overlaps_small_pieces_and_numbering():
    masks = np.zeros((3, 8, 8), np.float32)
    masks[0, 0:4, 0:4] = 0.9
    masks[1, 2:6, 2:6] = 0.8          # overlaps mask 0 on [2:4, 2:4]; mask 0 is more probable
    masks[1, 7, 7] = 0.9               # a one-pixel piece of mask 1
    masks[2, 0, 7] = 0.6               # mask 2 is only a one-pixel piece: dropped entirely
    labels = labels_from_masks(masks, threshold=0.5, min_area=3)
    assert labels.dtype == np.int32
    assert (labels == 1).sum() == 16 and (labels[2:4, 2:4] == 1).all()
    assert (labels == 2).sum() == 12 and labels[7, 7] == 0
    assert labels.max() == 2


def test_crf_near_the_objects_labels_as_the_whole_frame():
    from scipy import ndimage as ndi

    from instatrack.cluster.crf import crf_refine_near

    rng = np.random.default_rng(0)
    image = torch.from_numpy(ndi.gaussian_filter(rng.random((3, 120, 200)), (0, 3, 3)) * 3).float()
    masks = torch.zeros(2, 120, 200)
    masks[0, 20:60, 30:75], masks[1, 50:90, 100:130] = 0.8, 0.7
    masks = torch.from_numpy(ndi.gaussian_filter(masks.numpy(), (0, 4, 4))).float()
    masks += 0.01 * torch.from_numpy(rng.random((2, 120, 200))).float()
    whole, near = crf_refine(image, masks), crf_refine_near(image, masks)
    assert torch.equal(whole > 0.5, near > 0.5)
    assert torch.equal(crf_refine_near(image, masks * 0.01), masks * 0.01)  # nothing near
