"""Each object's previous mask carried into the next frame by dense optical flow,
and blended into its score map (``flow_prior`` of
:class:`~instatrack.cluster.regions.RegionSettings`).

The per-object score maps of mask propagation say what each pixel looks like;
they know nothing of where the object was. When an object changes its looks
faster than its heads can learn it (a rider turning towards the camera), the
maps drop it and may take a look-alike region instead. The flow between two
frames says where each pixel of the previous frame went, whatever it looks like:
the previous mask warped along it is a second, independent guess of where the
object is now, as flow-guided mask propagation in video object segmentation
uses it. :func:`blend_carried` averages the two with a weight: below 0.5 a pixel
needs both, or one of them strongly, to stay in the object; above 0.5 (the
default, 0.55) the flow holds a pixel by itself and a pixel it does not carry
joins only at the carried outline.

The flow is Lucas–Kanade's (iterative, pyramidal;
:func:`skimage.registration.optical_flow_ilk`) on the frames' mean channel: half of
TV-L1's time on an 854×480 frame (1.3 s against 2.5 s, one core).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def grey(frame: np.ndarray) -> np.ndarray:
    """``(Y, X)`` float32 mean over the channels of a ``(C, Y, X)`` frame."""
    return np.asarray(frame, np.float32).mean(0)


def backward_flow(image: np.ndarray, previous: np.ndarray, radius: int = 7,
                  scale: float = 1.0) -> np.ndarray:
    """``(2, Y, X)`` displacement from each pixel of ``image`` ``(Y, X)`` to where it
    was in ``previous`` ``(Y, X)``: ``previous[y + dy, x + dx] ~ image[y, x]``.

    ``radius``: the window in pixels of ``image``; ``scale`` < 1 computes the flow on
    both frames shrunk by that factor (the window with them), then enlarges it back:
    about ``scale**2`` of the time."""
    from skimage.registration import optical_flow_ilk

    if scale >= 1:
        return optical_flow_ilk(image, previous, radius=radius)
    small = [ndi.zoom(np.asarray(a, np.float32), scale, order=1) for a in (image, previous)]
    flow = optical_flow_ilk(*small, radius=max(1, round(radius * scale)))
    factors = np.array(image.shape) / np.array(flow.shape[1:])
    return np.stack([ndi.zoom(f, factors, order=1, grid_mode=True, mode="nearest") * factor
                     for f, factor in zip(flow, factors, strict=True)])


def carry_masks(masks: np.ndarray, flow: np.ndarray, edge: str = "background") -> np.ndarray:
    """``(K, Y, X)`` bool masks of the previous frame warped along ``flow`` ``(2, Y, X)``
    (:func:`backward_flow`) into the current one: ``(K, Y, X)`` float32 in [0, 1].

    ``edge``: what a pixel whose source lies beyond the frame carries:
    ``"background"``; ``"nearest"``, the value at the frame's edge (an object cut by the
    edge goes on beyond it, so the part of it that comes into view is carried too); or
    ``"moving"``, the same only where the pixel's flow agrees with the object's own
    motion (the median flow over its carried pixels, within 1 px plus half its length):
    what the camera brings into view beside the object moves another way and is not
    taken for it (docs/propagation_pretraining.md, "A dense CRF on the carried
    scores")."""
    Y, X = masks.shape[1:]
    yy, xx = np.meshgrid(np.arange(Y, dtype=np.float32), np.arange(X, dtype=np.float32),
                         indexing="ij")
    coords = np.stack([yy + flow[0], xx + flow[1]])
    mode = "nearest" if edge == "nearest" else "constant"
    inside = np.stack([ndi.map_coordinates(m.astype(np.float32), coords, order=1, mode=mode)
                       for m in masks])
    if edge != "moving":
        return inside
    beyond = ((coords < -0.5) | (coords > np.array([Y - 1, X - 1])[:, None, None] + 0.5)).any(0)
    if not beyond.any():
        return inside
    sources, entering = coords[:, beyond], flow[:, beyond]  # only the pixels that entered
    carried = inside.copy()
    for k, body in enumerate(inside > 0.5):
        if not body.any():
            continue
        own = np.median(flow[:, body], axis=1)  # the object's own motion
        agrees = np.hypot(*(entering - own[:, None])) <= 1 + 0.5 * np.hypot(*own)
        edge_values = ndi.map_coordinates(masks[k].astype(np.float32), sources[:, agrees],
                                          order=1, mode="nearest")
        carried[k][tuple(np.argwhere(beyond)[agrees].T)] = edge_values
    return carried


def blend_carried(scores: np.ndarray, carried: np.ndarray, found: np.ndarray,
                  weight: float) -> np.ndarray:
    """``(1 - weight) * scores + weight * carried`` for the objects ``found`` ``(K,)`` bool
    in the previous frame (the others keep their scores: nothing carries a lost object).
    ``scores`` and ``carried`` ``(K, Y, X)``; changes ``scores`` in place and returns it."""
    for k in np.flatnonzero(found):
        scores[k] = (1 - weight) * scores[k] + weight * carried[k]
    return scores
