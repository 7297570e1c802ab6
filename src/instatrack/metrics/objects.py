"""Which objects a result gets wrong, and how: one row per object (``evaluate --objects``).

SEG, TRA or AP say how much is wrong; a user deciding what to change (a threshold, a
model, more annotation) needs to see which cells and what kind of error. Each
reference object gets a row with its overlap figures and a verdict; so does each found
object that no reference object matches (a false object). Matching is the Cell
Tracking Challenge's: a found object matches a reference object when it covers more
than half of it (at most one can), so the rows add up to the measures' own counts.

Verdicts of a reference object, the first that applies:

``missed``
    no found object covers more than half of it, nor is it cut (CTC: a miss, Jaccard 0);
``cut``
    :data:`PIECE` or more of it lies in each of two or more found objects;
``merged``
    the found object that matches it also matches another reference object (CTC's
    NS: an object to split);
``too large``
    under :data:`FITS` of the found object lies on it (it reaches into the background,
    e.g. over glow beside a cell, or over unannotated objects);
``too small``
    the found object covers under :data:`FITS` of it;
``ok``
    otherwise.

A found object that matches no reference object is ``false``. Where the raw frame is at
hand (a Cell Tracking Challenge sequence folder ``NN`` beside ``NN_GT``), each row also
says how far its object stands over the frame's background (``snr``): the median of the
object's pixels minus the median of the pixels the result leaves unlabelled, in the
frame's pixel noise (its robust standard deviation). It tells a false object lying on
flat background (near 0: MSC 02, session 47) from a cell the annotation left out (as
high as the annotated cells), and a missed cell that is dim from one that is not.
In a Cell Tracking
Challenge folder the outlined frames (``SEG/``) give reference rows, and every frame's
tracking markers (``TRA/``) give the ``missed`` markers and the ``false`` objects that
TRA counts (FN and FP of ``instatrack evaluate``); a marker that is matched adds no row.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from instatrack.errors import DataError
from instatrack.labels import majority_matches, overlap_matrix

__all__ = ["COLUMNS", "FITS", "PIECE", "VERDICTS", "frame_rows", "object_table", "standing",
           "summary", "table_and_counts", "write_table"]

#: a reference object is ``cut`` when two or more found objects each hold this share of it
PIECE = 0.2
#: ``too large`` / ``too small``: under this share of the found object lies on the
#: reference object / of the reference object lies in the found one. On MSC 02's test
#: frames the cells both ``nuclei-ch`` and the classical pipeline outline well hold
#: 0.62-0.89 of their found object, and the outlines that swallow glow or a neighbour
#: 0.13-0.49 (docs/results.md, session 44)
FITS = 0.6
VERDICTS = ("missed", "cut", "merged", "too large", "too small", "ok", "false")
#: the table's columns: ``kind`` is ``outline`` (a reference object), ``marker`` (a
#: missed tracking marker) or ``found`` (a false object); ``covered`` is the share of the
#: reference in the found object, ``inside`` the share of the found object on the
#: reference (for a false object: on any reference, so a piece of a cut cell reads 1 and
#: an object in the background 0); ``others`` the ids of the other objects involved (the
#: pieces of a cut reference, the other references of a merge); ``snr`` the object's
#: standing over the background in noise standard deviations (the reference object's for
#: ``outline`` and ``marker`` rows, the found object's for ``found``; empty without the frame)
COLUMNS = ("frame", "kind", "reference", "found", "area", "iou", "covered", "inside",
           "verdict", "others", "snr")


def frame_rows(reference: np.ndarray, found: np.ndarray, frame: int | str = 0,
               kind: str = "outline", image: np.ndarray | None = None) -> list[dict]:
    """The rows of one frame: a row per reference object of ``reference`` (``kind``
    ``outline``), or with ``kind="marker"`` a row per missed marker only, and a row per
    found object of ``found`` that matches none (``false``). Both ``(Y, X)`` integer
    labels; -1 in ``reference`` marks unannotated pixels (left out). ``image``: the raw
    frame ``(Y, X)`` or ``(C, Y, X)``, for the ``snr`` column (empty without it)."""
    overlap = overlap_matrix(reference, found)
    inter = overlap.intersections
    match = majority_matches(overlap)
    ref_snr, found_snr = standing(image, found, (reference, overlap.gt_ids),
                                  (found, overlap.pred_ids))
    rows = []
    for i, ref_id in enumerate(overlap.gt_ids):
        area = int(overlap.gt_sizes[i])
        shares = inter[i] / max(area, 1) if inter.size else np.zeros(0)
        pieces = np.nonzero(shares >= PIECE)[0]
        j = match[i]
        if j < 0:  # a marker in pieces is a miss to TRA all the same
            verdict = "cut" if len(pieces) >= 2 and kind != "marker" else "missed"
            rows.append(_row(frame, kind, ref_id, None, area, 0.0,
                             float(shares.max(initial=0.0)), None, verdict,
                             overlap.pred_ids[pieces], ref_snr[i]))
            continue
        if kind == "marker":
            continue
        common, size = int(inter[i, j]), int(overlap.pred_sizes[j])
        iou = common / (area + size - common)
        covered, inside = common / area, common / size
        partners = overlap.gt_ids[(match == j) & (np.arange(len(match)) != i)]
        if len(pieces) >= 2:
            verdict, others = "cut", overlap.pred_ids[pieces[pieces != j]]
        elif len(partners):
            verdict, others = "merged", partners
        else:
            verdict = ("too large" if inside < FITS else "too small" if covered < FITS
                       else "ok")
            others = ()
        rows.append(_row(frame, kind, ref_id, overlap.pred_ids[j], area, iou, covered, inside,
                         verdict, others, ref_snr[i]))
    matched = set(match[match >= 0].tolist())
    for j, found_id in enumerate(overlap.pred_ids):
        if j not in matched:
            size = int(overlap.pred_sizes[j])
            on_reference = int(inter[:, j].sum()) if inter.size else 0
            rows.append(_row(frame, "found", None, found_id, size, 0.0, None,
                             on_reference / max(size, 1), "false", (), found_snr[j]))
    return rows


def standing(image: np.ndarray | None, found: np.ndarray,
             *objects: tuple[np.ndarray, np.ndarray]) -> list[list[float | None]]:
    """For each ``(labels, ids)`` of ``objects``, a value per id: the median of its pixels
    in ``image`` minus the median of the pixels ``found`` leaves unlabelled, over the
    frame's pixel noise (:func:`~instatrack.data.normalize.noise_std`), both measured once
    for all; ``None`` each without an image, a background or a noise to measure."""
    from scipy import ndimage as ndi

    from instatrack.cluster.boundaries import frame_plane
    from instatrack.data.normalize import noise_std

    unmeasured = [[None] * len(ids) for _, ids in objects]
    if image is None or not (found == 0).any():
        return unmeasured
    plane = frame_plane(image, found)
    noise = noise_std(plane)
    if noise <= 0:
        return unmeasured
    level = float(np.median(plane[found == 0]))
    return [[float(m - level) / noise
             for m in np.asarray(ndi.median(plane, labels, ids), np.float64).reshape(-1)]
            if len(ids) else [] for labels, ids in objects]


def _row(frame, kind, reference, found, area, iou, covered, inside, verdict, others,
         snr=None) -> dict:
    def share(value):
        return "" if value is None else round(float(value), 4)

    return {"frame": frame, "kind": kind,
            "reference": "" if reference is None else int(reference),
            "found": "" if found is None else int(found), "area": int(area),
            "iou": share(iou), "covered": share(covered), "inside": share(inside),
            "verdict": verdict, "others": " ".join(str(int(o)) for o in others),
            "snr": "" if snr is None else round(float(snr), 2)}


def object_table(gt: str | Path, res: str | Path) -> list[dict]:
    """The rows of a whole result: a Cell Tracking Challenge folder pair (``gt`` a
    ``NN_GT`` or ``NN`` folder, ``res`` with ``maskTTT.tif``) or two folders (or files)
    of label images paired as ``instatrack evaluate`` pairs them. A CTC result may also
    be a GEFF (graph + masks), as for ``evaluate``."""
    from instatrack.metrics.evaluate import (
        ctc_result,
        davis_video,
        is_ctc_ground_truth,
        paired_files,
        read_pair,
    )

    gt, res = davis_video(Path(gt)), Path(res)
    if is_ctc_ground_truth(gt):
        with ctc_result(gt, res) as folder:
            return _ctc_rows(gt, folder)
    if gt.is_file() != res.is_file():
        raise DataError(f"{gt} and {res}: give two folders or two files, not one of each")
    layout = "cvppp" if gt.is_dir() and any(gt.glob("*_label.png")) else "images"
    rows = []
    for gt_path, res_path in paired_files(gt, res, layout):
        reference, found = read_pair(gt_path, res_path)
        rows += frame_rows(reference, found, frame=gt_path.stem)
    return rows


def _ctc_rows(gt: Path, res: Path) -> list[dict]:
    from instatrack.data.ctc import FRAME_RE, MASK_RE, SEG_RE, TRA_RE, numbered_files, read_mask
    from instatrack.data.io import read_frame
    from instatrack.metrics.ctc_files import resolve_gt_dir

    gt = resolve_gt_dir(gt)
    masks = numbered_files(res, MASK_RE)
    if not masks:
        raise DataError(f"{res}: no maskTTT.tif to compare with {gt}")
    outlines = numbered_files(gt / "SEG", SEG_RE) if (gt / "SEG").is_dir() else {}
    markers = numbered_files(gt / "TRA", TRA_RE)
    # the raw frames, for each object's standing over the background (snr), if beside
    raw = gt.parent / gt.name.removesuffix("_GT")
    frames = numbered_files(raw, FRAME_RE) if raw != gt and raw.is_dir() else {}
    rows = []
    for t in sorted(set(outlines) | set(markers)):
        if t not in masks:
            raise DataError(f"{res}: no mask{t:03d}.tif for ground-truth frame {t}")
        found = read_mask(masks[t]).astype(np.int64)
        image = read_frame(frames[t]) if t in frames else None
        if image is not None and image.shape[-2:] != found.shape:
            image = None  # not this result's frames (another size): no snr
        if t in outlines:  # the outlines' rows, without their false objects ...
            rows += [r for r in frame_rows(read_mask(outlines[t]).astype(np.int64), found, t,
                                           image=image) if r["kind"] != "found"]
        if t in markers:  # ... which, with the missed markers, the markers decide (as TRA)
            rows += frame_rows(read_mask(markers[t]).astype(np.int64), found, t, kind="marker",
                               image=image)
    return rows


def summary(rows: Iterable[dict]) -> dict[str, int]:
    """How many rows of each kind and verdict: ``{"outline ok": 40, "found false": 21,
    ...}``, in the order of :data:`VERDICTS`."""
    counts: dict[str, int] = {}
    for row in rows:
        key = f"{row['kind']} {row['verdict']}"
        counts[key] = counts.get(key, 0) + 1
    order = {v: i for i, v in enumerate(VERDICTS)}
    return dict(sorted(counts.items(), key=lambda kv: (kv[0].split()[0],
                                                        order[kv[0].split(" ", 1)[1]])))


def write_table(rows: Iterable[dict], path: str | Path) -> Path:
    """``rows`` as a CSV file with :data:`COLUMNS` (a new file, or replaced)."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise DataError(f"{path}: folder {path.parent} does not exist")
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def table_and_counts(gt: str | Path, res: str | Path, path: str | Path,
                     first: int = 0) -> dict[str, int]:
    """:func:`object_table` of ``gt`` / ``res`` written to ``path``; returns its
    :func:`summary`. ``first``: added to each row's frame number, for ground truth
    renumbered from that frame (a window of a longer sequence)."""
    rows = object_table(gt, res)
    if first:
        rows = [{**row, "frame": row["frame"] + first} for row in rows]
    write_table(rows, path)
    return summary(rows)
