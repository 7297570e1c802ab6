"""Previous masks carried by optical flow into the next frame (``flow_prior``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from instatrack.cluster.flow import (
    backward_flow,
    blend_carried,
    carry_masks,
    drop_background_motion,
)


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


def _object_with_trail(scene_motion: float, object_motion: float, scene_noise: float = 0.0):
    """A 64x64 frame: an object (rows 20-40, columns 20-40) carried with a trail of
    background (rows 20-40, columns 40-50) that moves with the scene."""
    rng = np.random.default_rng(1)
    flow = np.zeros((2, 64, 64), np.float32)
    flow[1] = scene_motion + scene_noise * rng.normal(size=(64, 64))
    flow[1, 20:40, 20:40] = object_motion
    carried = np.zeros((1, 64, 64), np.float32)
    carried[0, 20:40, 20:50] = 1
    return carried, flow


def test_a_trail_that_moves_with_the_scene_is_not_carried():
    carried, flow = _object_with_trail(scene_motion=-12, object_motion=10)
    out = drop_background_motion(carried.copy(), flow, 8, 0.5)
    assert out[0, 20:40, 20:40].all() and not out[0, 20:40, 40:50].any()


@pytest.mark.parametrize("case", ["slow", "incoherent scene"])
def test_the_trail_stays_where_the_motions_cannot_be_told_apart(case):
    """Below ``min_separation``, or where the scene does not move as one (no camera
    motion to tell), nothing changes."""
    if case == "slow":
        carried, flow = _object_with_trail(scene_motion=-3, object_motion=3)
    else:
        carried, flow = _object_with_trail(scene_motion=-12, object_motion=10, scene_noise=20)
    out = drop_background_motion(carried.copy(), flow, 8, 0.5)
    assert np.array_equal(out, carried)
