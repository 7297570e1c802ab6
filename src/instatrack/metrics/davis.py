"""DAVIS video object segmentation measures: region similarity J, contour accuracy F.

Definitions follow the DAVIS 2016 benchmark (Perazzi et al., CVPR 2016):

* ``J`` is the IoU of the object's binary masks; 1 when both are empty.
* ``F`` is the F-measure of boundary precision and recall. Each mask's boundary
  is its set of foreground pixels with a background 4-neighbour (outside the
  image counts as background); a boundary pixel of one mask is matched when a
  boundary pixel of the other lies within ``ceil(0.008 * image diagonal)``
  pixels (Euclidean). Both boundaries empty gives F = 1, exactly one empty F = 0.
* Per object, over frames: ``mean``, ``recall`` (fraction of frames > 0.5) and
  ``decay`` (mean over the first quarter of frames minus the last quarter: how
  much quality is lost over time).

The DAVIS semi-supervised protocol leaves out the first frame (it is given as
input) and the last one; :func:`evaluate_davis` does the same by default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from instatrack.errors import DataError
from instatrack.metrics.matching import IGNORE

__all__ = [
    "boundary_map",
    "contour_accuracy",
    "davis_with_per_frame",
    "evaluate_davis",
    "jf_statistics",
    "region_similarity",
]

_FOUR_NEIGHBOURS = ndi.generate_binary_structure(2, 1)


def _binary_pair(gt_mask: np.ndarray, pred_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt_mask, pred_mask = np.asarray(gt_mask), np.asarray(pred_mask)
    if gt_mask.shape != pred_mask.shape or gt_mask.ndim != 2:
        raise DataError(
            f"masks must be 2D and of one shape: gt {gt_mask.shape} vs pred {pred_mask.shape}"
        )
    return gt_mask.astype(bool), pred_mask.astype(bool)


def region_similarity(gt_mask: np.ndarray, pred_mask: np.ndarray) -> float:
    """Region similarity J: IoU of two ``(Y, X)`` binary masks (1 when both are empty)."""
    gt_mask, pred_mask = _binary_pair(gt_mask, pred_mask)
    union = np.count_nonzero(gt_mask | pred_mask)
    if union == 0:
        return 1.0
    return np.count_nonzero(gt_mask & pred_mask) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """``(Y, X)`` bool: foreground pixels of ``mask`` with a background 4-neighbour."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndi.binary_erosion(mask, _FOUR_NEIGHBOURS, border_value=0)


def boundary_tolerance(shape: tuple[int, int], bound_th: float = 0.008) -> float:
    """Matching distance in pixels: ``bound_th`` of the diagonal if < 1, else pixels."""
    if bound_th >= 1:
        return float(bound_th)
    return float(math.ceil(bound_th * math.hypot(*shape)))


def _near(boundary: np.ndarray, radius: float) -> np.ndarray:
    """Pixels within ``radius`` of a pixel of a non-empty boundary map."""
    return ndi.distance_transform_edt(~boundary) <= radius


def contour_accuracy(gt_mask: np.ndarray, pred_mask: np.ndarray, bound_th: float = 0.008) -> float:
    """Contour accuracy F of two ``(Y, X)`` binary masks (see the module docstring).

    Args:
        gt_mask: reference mask.
        pred_mask: predicted mask.
        bound_th: tolerance as a fraction of the image diagonal (< 1) or pixels.
    """
    gt_mask, pred_mask = _binary_pair(gt_mask, pred_mask)
    gt_boundary, pred_boundary = boundary_map(gt_mask), boundary_map(pred_mask)
    n_gt, n_pred = np.count_nonzero(gt_boundary), np.count_nonzero(pred_boundary)
    if n_gt == 0 or n_pred == 0:
        return float(n_gt == 0 and n_pred == 0)
    radius = boundary_tolerance(gt_mask.shape, bound_th)
    precision = np.count_nonzero(pred_boundary & _near(gt_boundary, radius)) / n_pred
    recall = np.count_nonzero(gt_boundary & _near(pred_boundary, radius)) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def jf_statistics(per_frame_values: Sequence[float]) -> dict[str, float]:
    """Mean, recall (fraction > 0.5) and decay of per-frame J or F values.

    Decay is the mean of the first quarter of the frames minus the mean of the
    last quarter (``np.array_split`` into 4 parts; into ``n`` parts when there
    are fewer than 4 frames). NaN values are dropped; with no values all three
    statistics are NaN.
    """
    values = np.asarray(per_frame_values, dtype=float).ravel()
    values = values[~np.isnan(values)]
    if values.size == 0:
        return {"mean": math.nan, "recall": math.nan, "decay": math.nan}
    parts = np.array_split(values, min(4, values.size))
    return {
        "mean": float(values.mean()),
        "recall": float(np.mean(values > 0.5)),
        "decay": float(parts[0].mean() - parts[-1].mean()),
    }


def _object_ids(gt_masks: list[np.ndarray]) -> np.ndarray:
    ids = np.unique(np.concatenate([np.unique(m) for m in gt_masks]))
    return ids[ids > 0]


def _checked(gt_masks: Sequence[np.ndarray], pred_masks: Sequence[np.ndarray]
             ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Both videos as arrays, and the reference's object ids; DataError when the frame
    counts differ or the reference holds no object."""
    gt_masks, pred_masks = [np.asarray(m) for m in gt_masks], [np.asarray(m) for m in pred_masks]
    if len(gt_masks) != len(pred_masks) or not gt_masks:
        raise DataError(f"got {len(gt_masks)} reference frames and {len(pred_masks)} predicted")
    ids = _object_ids(gt_masks)
    if ids.size == 0:
        raise DataError("the reference masks contain no object (all frames are background)")
    return gt_masks, pred_masks, ids


def _per_frame_jf(gt: np.ndarray, pred: np.ndarray, ids, binary: bool, bound_th: float):
    """J and F of every object in one frame, ``(2, n_objects)``."""
    if gt.shape != pred.shape:
        raise DataError(f"frames differ in shape: gt {gt.shape} vs pred {pred.shape}")
    keep = gt != IGNORE
    values = np.empty((2, len(ids)))
    for k, object_id in enumerate(ids):
        gt_mask = (gt == object_id) & keep
        pred_mask = ((pred > 0) if binary else (pred == object_id)) & keep
        values[0, k] = region_similarity(gt_mask, pred_mask)
        values[1, k] = contour_accuracy(gt_mask, pred_mask, bound_th)
    return values


def evaluate_davis(
    gt_masks: Sequence[np.ndarray],
    pred_masks: Sequence[np.ndarray],
    skip_first_last: bool = True,
    binary: bool | None = None,
    bound_th: float = 0.008,
) -> dict[str, float]:
    """J and F of a video, per object and frame, summarised as in DAVIS.

    Args:
        gt_masks: ``T`` reference label images ``(Y, X)``; 0 = background,
            k > 0 = object k (-1 = unannotated, ignored).
        pred_masks: ``T`` predicted label images; object k is label k.
        skip_first_last: leave out the first and last frame (DAVIS protocol)
            when there are at least 3 frames.
        binary: compare foregrounds (``pred > 0``) with the single gt object
            (DAVIS 2016). ``None``: do so when the gt has exactly one object id,
            so a prediction labelled 1 is judged against a mask stored as 255.
        bound_th: boundary tolerance for F (fraction of the diagonal, or pixels).

    Returns:
        ``J_mean``, ``J_recall``, ``J_decay``, ``F_mean``, ``F_recall``,
        ``F_decay`` (per-object statistics averaged over objects), ``J&F`` (mean
        of ``J_mean`` and ``F_mean``) and ``n_objects``.
    """
    gt_masks, pred_masks, ids = _checked(gt_masks, pred_masks)
    if binary is None:
        binary = ids.size == 1
    frames = _scored(len(gt_masks), skip_first_last)
    values = np.stack([_per_frame_jf(g, p, ids, binary, bound_th)
                       for g, p in zip(gt_masks[frames], pred_masks[frames], strict=True)])
    return _summary(values)


def _scored(n_frames: int, skip_first_last: bool = True) -> slice:
    """The frames a video's summary counts: all but the first and last (DAVIS protocol)
    when ``skip_first_last`` and there are at least 3."""
    return slice(1, n_frames - 1) if skip_first_last and n_frames >= 3 else slice(None)


def _summary(values: np.ndarray) -> dict[str, float]:
    """:func:`evaluate_davis`'s dictionary from J and F ``(frames, 2, n_objects)``."""
    n_objects = values.shape[2]
    result = {}
    for index, measure in enumerate(("J", "F")):
        stats = [jf_statistics(values[:, index, k]) for k in range(n_objects)]
        for name in ("mean", "recall", "decay"):
            result[f"{measure}_{name}"] = float(np.mean([s[name] for s in stats]))
    result["J&F"] = (result["J_mean"] + result["F_mean"]) / 2
    result["n_objects"] = float(n_objects)
    return result


def davis_per_frame(gt_masks: Sequence[np.ndarray], pred_masks: Sequence[np.ndarray],
                    binary: bool | None = None, bound_th: float = 0.008
                    ) -> dict[str, list[float]]:
    """``{"J": [...], "F": [...]}``: each frame's J and F averaged over the objects, for
    every frame (the first and last included), to see where a video's masks drift;
    arguments as for :func:`evaluate_davis`."""
    return davis_with_per_frame(gt_masks, pred_masks, binary, bound_th)[1]


def davis_with_per_frame(gt_masks: Sequence[np.ndarray], pred_masks: Sequence[np.ndarray],
                         binary: bool | None = None, bound_th: float = 0.008
                         ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """:func:`evaluate_davis` (first and last frames left out) and
    :func:`davis_per_frame` together, each frame scored once."""
    gt_masks, pred_masks, ids = _checked(gt_masks, pred_masks)
    binary = ids.size == 1 if binary is None else binary
    values = np.stack([_per_frame_jf(g, p, ids, binary, bound_th)
                       for g, p in zip(gt_masks, pred_masks, strict=True)])
    means = values.mean(2)
    return (_summary(values[_scored(len(values))]),
            {"J": means[:, 0].tolist(), "F": means[:, 1].tolist()})
