"""Cell Tracking Challenge measures: SEG (pure numpy) and SEG/TRA/DET via py-ctcmetrics.

``seg_frame``/``seg_score`` implement the CTC SEG definition directly on arrays so a
training loop can validate without writing files. ``evaluate_ctc`` scores a result
folder against a ground-truth folder with py-ctcmetrics (imported lazily: it takes
about two seconds to import), after :func:`validate_ctc_result` has checked the
folder and turned every problem into a one-line :class:`DataError`.

The library's per-frame matching of result to reference objects builds its
overlap table with scikit-learn's ``confusion_matrix``, about a second per
1024 x 1024 frame. :func:`match_frame` computes the same five lists from one
``np.bincount`` table (tests check it equals the library's ``match``); the
measures themselves (AOGM graph operations, SEG, TRA, DET) stay the library's.

CTC SEG: a reference object R is matched to the predicted object S that covers
more than half of R's pixels (at most one can); its score is the Jaccard index
``|R & S| / |R | S|``, 0 when no object matches. SEG is the mean over all
reference objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from instatrack.data.ctc import GT_TRACK_FILE, SEG_RE, TRA_RE, numbered_files, read_mask
from instatrack.errors import ConfigError, DataError
from instatrack.metrics.ctc_files import (
    CTCCheck,
    read_tracks,
    resolve_gt_dir,
    validate_ctc_result,
)
from instatrack.metrics.matching import iou_from_overlap, majority_matches, overlap_matrix

__all__ = [
    "CTCCheck",
    "evaluate_ctc",
    "match_frame",
    "seg_frame",
    "seg_score",
    "validate_ctc_result",
]

CTC_METRICS = ("SEG", "TRA", "DET", "LNK", "CT", "TF", "CCA", "BC(i)")
#: the errors TRA counts (AOGM: the graph corrections that turn the result into the truth):
#: missed objects, false objects, true objects merged into one found object (to be split),
#: links to delete, to add and to relabel (a division or not); counts, not scores
AOGM_COUNTS = ("FN", "FP", "NS", "ED", "EA", "EC")


def seg_frame(gt: np.ndarray, pred: np.ndarray) -> tuple[float, int]:
    """CTC SEG on one frame.

    Args:
        gt: ``(Y, X)`` reference labels; -1 = unannotated (those pixels are
            dropped from both images).
        pred: ``(Y, X)`` predicted labels.

    Returns:
        ``(sum_of_jaccard, n_gt)``: the summed Jaccard index of the reference
        objects (0 for an unmatched one) and how many reference objects there are.
    """
    overlap = overlap_matrix(gt, pred)
    n_gt = len(overlap.gt_ids)
    if n_gt == 0 or len(overlap.pred_ids) == 0:
        return 0.0, n_gt
    match = majority_matches(overlap)
    matched, best = match >= 0, np.maximum(match, 0)
    gt_sizes, pred_sizes = overlap.gt_sizes, overlap.pred_sizes
    best_inter = overlap.intersections[np.arange(n_gt), best]
    union = gt_sizes + pred_sizes[best] - best_inter
    jaccard = np.where(matched, best_inter / np.maximum(union, 1), 0.0)
    return float(jaccard.sum()), n_gt


def seg_score(gts: Iterable[np.ndarray], preds: Iterable[np.ndarray]) -> float:
    """CTC SEG over frames: mean Jaccard over all reference objects of all frames.

    Args:
        gts: reference label images ``(Y, X)`` (or one ``(T, Y, X)`` array).
        preds: predicted label images, as many as ``gts``.

    Returns:
        SEG in [0, 1]; NaN when there is no reference object at all (undefined,
        and a 0 would look like a failed segmentation).
    """
    total, count = 0.0, 0
    gts, preds = list(gts), list(preds)
    if len(gts) != len(preds):
        raise DataError(f"seg_score got {len(gts)} reference frames but {len(preds)} predicted")
    for gt, pred in zip(gts, preds, strict=True):
        frame_sum, frame_count = seg_frame(gt, pred)
        total += frame_sum
        count += frame_count
    return total / count if count else float("nan")


def match_frame(ref_path: str | Path, comp_path: str | Path) -> tuple[list, ...]:
    """Match the objects of a result mask to a reference mask, as py-ctcmetrics does.

    A reference object is matched to the result object covering more than half
    of its pixels. Returns the library's five lists: reference labels, result
    labels, matched reference labels, their matched result labels, their IoU.
    """
    overlap = overlap_matrix(read_mask(ref_path), read_mask(comp_path))
    best = majority_matches(overlap)
    rows = np.flatnonzero(best >= 0)
    cols = best[rows]
    ious = iou_from_overlap(overlap)[rows, cols]
    return (
        overlap.gt_ids.tolist(),
        overlap.pred_ids.tolist(),
        overlap.gt_ids[rows].tolist(),
        overlap.pred_ids[cols].tolist(),
        ious.tolist(),
    )


def _match_masks(ref_masks: list[Path], comp_masks: list[Path], library: bool) -> dict:
    """Frame-wise matches in the library's layout (``labels_ref``, ``mapped_ref``, ...)."""
    if library:
        from ctc_metrics.scripts.evaluate import match_computed_to_reference_masks

        refs, comps = [str(p) for p in ref_masks], [str(p) for p in comp_masks]
        return match_computed_to_reference_masks(refs, comps, threads=1)
    keys = ("labels_ref", "labels_comp", "mapped_ref", "mapped_comp", "ious")
    matches = [match_frame(r, c) for r, c in zip(ref_masks, comp_masks, strict=True)]
    return {key: [m[i] for m in matches] for i, key in enumerate(keys)}


def _gt_tracks_and_masks(gt_dir: Path, need_seg: bool):
    tra_dir = gt_dir / "TRA"
    ref_tracks = read_tracks(tra_dir / GT_TRACK_FILE)
    tra_masks = numbered_files(tra_dir, TRA_RE)
    if not tra_masks:
        raise DataError(f"{tra_dir}: no man_trackTTT.tif files")
    seg_masks = {}
    if need_seg:
        seg_dir = gt_dir / "SEG"
        if not seg_dir.is_dir():
            raise DataError(f"{seg_dir}: missing, needed for the SEG measure")
        seg_masks = numbered_files(seg_dir, SEG_RE)
        if not seg_masks:
            raise DataError(f"{seg_dir}: no man_segTTT.tif files")
        unknown = sorted(set(seg_masks) - set(tra_masks))
        if unknown:
            raise DataError(f"{seg_masks[unknown[0]]}: frame {unknown[0]} has no TRA mask")
    return ref_tracks, tra_masks, seg_masks


def _check_metric_names(metrics: Sequence[str]) -> list[str]:
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in names if m not in CTC_METRICS + AOGM_COUNTS and not _is_bc(m)]
    if unknown or not names:
        raise ConfigError(f"unknown CTC metric(s) {unknown or names}; choose from "
                          f"{CTC_METRICS + AOGM_COUNTS}")
    return names


def _is_bc(name: str) -> bool:
    """``BC(i)``: branching correctness, the F1 of divisions found within ``i`` frames."""
    return name.startswith("BC(") and name.endswith(")") and name[3:-1].isdigit()


def evaluate_ctc(
    gt_dir: str | Path,
    res_dir: str | Path,
    metrics: Sequence[str] = ("SEG", "TRA", "DET"),
    library_matching: bool = False,
) -> dict[str, float]:
    """Score a CTC result folder with py-ctcmetrics.

    Args:
        gt_dir: ``NN_GT`` folder (or the sequence folder ``NN`` next to it).
        res_dir: ``NN_RES`` folder with ``maskTTT.tif`` and ``res_track.txt``.
        metrics: any of ``SEG``, ``TRA``, ``DET`` (and the library's ``LNK``,
            ``CT``, ``TF``, ``CCA``, and ``BC(i)``: F1 of the divisions,
            a division counting as found within ``i`` frames of the truth;
            NaN when the ground truth has no division), and the error counts
            of :data:`AOGM_COUNTS` (what TRA's errors are made of).
        library_matching: match objects with the library's own (slow) code
            instead of :func:`match_frame`; the results are the same.

    Returns:
        ``{name: value}`` for the requested measures. A result with no objects
        at all scores 0 on each (the library itself cannot process it).

    Raises:
        DataError: the result or ground truth is missing, malformed or invalid.
    """
    names = _check_metric_names(metrics)
    gt_dir = resolve_gt_dir(gt_dir)
    ref_tracks, tra_masks, seg_masks = _gt_tracks_and_masks(gt_dir, "SEG" in names)
    check = validate_ctc_result(res_dir, gt_dir)
    if len(check.tracks) == 0:  # nothing found: scores 0, every object and link missed
        missed = {"FN": sum(np.count_nonzero(np.unique(read_mask(path)))
                            for path in tra_masks.values()) if "FN" in names else 0,
                  "EA": sum(int(end - begin) + int(parent > 0)
                            for _, begin, end, parent in np.asarray(ref_tracks).reshape(-1, 4))}
        return {name: float(missed.get(name, 0)) for name in names}
    if not check.valid:
        reason = check.messages[0] if check.messages else "rejected by py-ctcmetrics"
        raise DataError(f"{res_dir}: invalid CTC result: {reason}")

    from ctc_metrics.scripts.evaluate import calculate_metrics

    traj, segm = {}, {}
    if names != ["SEG"]:
        traj = _match_masks(
            list(tra_masks.values()), [check.masks[t] for t in tra_masks], library_matching
        )
    if seg_masks:
        segm = _match_masks(
            list(seg_masks.values()), [check.masks[t] for t in seg_masks], library_matching
        )
    scores = [n for n in names if n not in AOGM_COUNTS]
    counts = [n for n in names if n in AOGM_COUNTS]
    results = calculate_metrics(check.tracks, ref_tracks, traj, segm, scores, True) \
        if scores else {}
    if counts:
        from ctc_metrics.scripts.evaluate import count_acyclic_graph_correction_operations

        results.update(count_acyclic_graph_correction_operations(
            ref_tracks, check.tracks, traj["labels_ref"], traj["labels_comp"],
            traj["mapped_ref"], traj["mapped_comp"]))
    # BC(i) is undefined (None) when the ground truth has no division: NaN
    return {name: float("nan") if results[name] is None else float(results[name])
            for name in names}
