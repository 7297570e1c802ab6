"""Previous masks carried by optical flow into the next frame (``flow_prior``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from instatrack.cluster.flow import backward_flow, blend_carried, carry_masks


def textured_pair(shift: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured square on a smooth textured background, and the next frame with
    the square moved by ``shift``: (previous image, image, previous mask)."""
    rng = np.random.default_rng(0)
    background = ndi.gaussian_filter(rng.normal(size=(80, 96)), 6).astype(np.float32)
    texture = ndi.gaussian_filter(rng.normal(size=(24, 24)), 1.5).astype(np.float32)
    mask = np.zeros((80, 96), bool)
    mask[20:44, 30:54] = True
    previous = background.copy()
    previous[mask] = 1 + 3 * texture.ravel()
    image = background.copy()
    moved = np.roll(mask, shift, axis=(0, 1))
    image[moved] = 1 + 3 * texture.ravel()
    return previous, image, mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("shift", [(3, 4), (-5, 2)])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_a_moved_square_is_carried_to_where_it_went(shift, scale):
    previous, image, mask = textured_pair(shift)
    flow = backward_flow(image, previous, scale=scale)
    assert flow.shape == (2, 80, 96)
    carried = carry_masks(mask[None], flow)
    assert carried.shape == (1, 80, 96) and carried.dtype == np.float32
    assert 0 <= carried.min() and carried.max() <= 1
    moved = np.roll(mask, shift, axis=(0, 1))
    assert iou(carried[0] > 0.5, moved) > 0.8 > iou(mask, moved)


def test_blending_leaves_objects_lost_in_the_previous_frame_alone():
    scores = np.full((2, 4, 4), 0.2, np.float32)
    carried = np.ones((2, 4, 4), np.float32)
    out = blend_carried(scores, carried, np.array([True, False]), 0.5)
    assert out is scores
    assert np.allclose(out[0], 0.6) and np.allclose(out[1], 0.2)


@pytest.mark.parametrize("edge", ["background", "nearest", "moving"])
def test_an_object_cut_by_the_frame_edge(edge):
    """Moving down into view: the part that enters is carried, except with "background"."""
    mask = np.zeros((1, 20, 20), bool)
    mask[0, :6, 5:15] = True  # cut by the top edge
    flow = np.zeros((2, 20, 20), np.float32)
    flow[0] = -3  # every pixel came from 3 rows up
    carried = carry_masks(mask, flow, edge) > 0.5
    assert carried[0, 3:9, 5:15].all() and not carried[0, 9:].any()
    assert carried[0, :3, 5:15].all() == (edge != "background")
    assert carried[0, :3, 5:15].any() == (edge != "background")


def test_what_enters_moving_unlike_the_object_is_not_carried_with_moving():
    """A camera pans past an object cut by the edge: what comes into view beside it moves
    another way, and only "nearest" takes it for the object."""
    mask = np.zeros((1, 20, 20), bool)
    mask[0, :6, 5:15] = True
    flow = np.zeros((2, 20, 20), np.float32)
    flow[0, :3] = -6  # the top rows show what came in from beyond, moving faster
    nearest, moving = (carry_masks(mask, flow, edge)[0, :3, 5:15] > 0.5
                       for edge in ("nearest", "moving"))
    assert nearest.all() and not moving.any()
