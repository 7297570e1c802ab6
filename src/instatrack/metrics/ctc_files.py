"""Checking Cell Tracking Challenge (CTC) result folders before evaluation.

py-ctcmetrics trusts its input: a missing frame becomes an ``AssertionError``,
an 8-bit mask silently wraps around when the library offsets its labels. The
checks here turn each of those into a :class:`~instatrack.errors.DataError`
whose one-line message names the file and the problem, and then ask the
library's own validity check.

File names, the track-file parser and the mask reader are those of
:mod:`instatrack.data.ctc`, the one owner of the format; here the track files
are read with ``strict=True`` (lineage checked), as scoring needs.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from instatrack.data.ctc import (
    MASK_PREFIX,
    MASK_RE,
    RES_TRACK_FILE,
    TRA_RE,
    file_name,
    numbered_files,
    read_mask,
    read_track_table,
)
from instatrack.data.io import image_shape
from instatrack.errors import DataError


@dataclasses.dataclass(frozen=True)
class CTCCheck:
    """Outcome of :func:`validate_ctc_result`.

    ``valid`` is py-ctcmetrics' own verdict (``ctc_metrics.metrics.valid``) on
    the result; ``messages`` are the warnings it gave. ``tracks`` is the parsed
    ``res_track.txt`` ``(N, 4)`` int64 and ``masks`` maps frame -> mask path.
    """

    valid: bool
    messages: tuple[str, ...]
    tracks: np.ndarray
    masks: dict[int, Path]

    @property
    def n_frames(self) -> int:
        return len(self.masks)


def read_tracks(path: str | Path) -> np.ndarray:
    """A CTC track file as an ``(N, 4)`` int64 array of ``L B E P`` rows, lineage checked.

    See :func:`instatrack.data.ctc.read_track_table` (``strict=True``).
    """
    return np.array(read_track_table(path, strict=True), dtype=np.int64).reshape(-1, 4)


def resolve_gt_dir(gt: str | Path) -> Path:
    """Return the ``NN_GT`` folder for ``gt`` given as ``NN_GT`` or as the sequence ``NN``."""
    gt = Path(gt)
    if (gt / "TRA").is_dir():
        return gt
    sibling = gt.parent / f"{gt.name}_GT"
    if gt.name and (sibling / "TRA").is_dir():
        return sibling
    raise DataError(f"{gt}: not a CTC ground-truth folder (no TRA subfolder, no {gt.name}_GT)")


def _read_mask(path: Path) -> np.ndarray:
    mask = read_mask(path)
    # The library adds an offset to the labels in place: 8-bit masks wrap around.
    if not np.issubdtype(mask.dtype, np.integer) or mask.dtype.itemsize < 2:
        raise DataError(f"{path}: dtype {mask.dtype}, CTC masks must be 16-bit integers (uint16)")
    if mask.size and mask.min() < 0:
        raise DataError(f"{path}: negative label {mask.min()}")
    return mask


def _check_frames(res_dir: Path, masks: dict[int, Path], gt_frames: dict[int, Path] | None):
    if not masks:
        raise DataError(f"{res_dir}: no maskTTT.tif files")
    expected = sorted(gt_frames) if gt_frames is not None else list(range(max(masks) + 1))
    for frame in expected:
        if frame not in masks:
            origin = "the GT has" if gt_frames is not None else "the sequence needs"
            width = len(next(iter(masks.values())).stem) - len(MASK_PREFIX)
            name = file_name(MASK_PREFIX, frame, width)
            raise DataError(f"{res_dir}: {name} missing ({origin} frame {frame})")
    extra = sorted(set(masks) - set(expected))
    if extra:
        raise DataError(f"{masks[extra[0]]}: frame {extra[0]} is not in the GT")


def _check_labels(path: Path, frame: int, labels: np.ndarray, known: dict, track_file: Path):
    """``known`` maps track label -> (begin, end) from the track file."""
    for label in labels.tolist():
        if label not in known:
            raise DataError(f"{path}: label {label} is not in {track_file.name}")
        begin, end = known[label]
        if not begin <= frame <= end:
            raise DataError(
                f"{path}: label {label} at frame {frame} is outside its track's frames "
                f"[{begin}, {end}] in {track_file.name}"
            )
    present = set(labels.tolist())
    for label, (begin, end) in known.items():
        if begin <= frame <= end and label not in present:
            raise DataError(
                f"{path}: track {label} ({track_file.name} frames [{begin}, {end}]) "
                f"is missing from this frame"
            )


def _library_verdict(masks: list[Path], tracks: np.ndarray, labels: list[list[int]]):
    if len(tracks) == 0:
        # The library's own check crashes on an empty table; its verdict would be "invalid".
        return False, ("No tracks in result.",)
    from ctc_metrics.metrics import valid

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        verdict = valid([str(p) for p in masks], tracks, labels)
    return bool(verdict), tuple(str(w.message) for w in caught)


def validate_ctc_result(res_dir: str | Path, gt_dir: str | Path | None = None) -> CTCCheck:
    """Check a CTC result folder (``NN_RES``) before it is evaluated.

    Raises :class:`DataError` (one line naming the file) for a missing folder or
    ``res_track.txt``, a malformed track line, a GT frame without ``maskTTT.tif``
    (or a mask for a frame the GT lacks), a non-16-bit mask, a mask whose shape
    differs from the GT's, a label absent from ``res_track.txt`` or outside its
    ``[B, E]``, and a track missing from a frame inside its ``[B, E]``.

    Args:
        res_dir: the ``NN_RES`` folder.
        gt_dir: optional ``NN_GT`` folder (or sequence folder ``NN``) whose TRA
            frames the result must cover exactly.

    Returns:
        :class:`CTCCheck` with py-ctcmetrics' own ``valid`` verdict.
    """
    res_dir = Path(res_dir)
    if not res_dir.is_dir():
        raise DataError(f"{res_dir}: result folder does not exist")
    track_file = res_dir / RES_TRACK_FILE
    if not track_file.is_file():
        raise DataError(f"{track_file}: missing (every CTC result needs {RES_TRACK_FILE})")
    tracks = read_tracks(track_file)
    masks = numbered_files(res_dir, MASK_RE)
    gt_frames = None
    if gt_dir is not None:
        gt_frames = numbered_files(resolve_gt_dir(gt_dir) / "TRA", TRA_RE)
    _check_frames(res_dir, masks, gt_frames)
    known = {int(row[0]): (int(row[1]), int(row[2])) for row in tracks}
    for label, (_, end) in known.items():
        if end > max(masks):
            raise DataError(
                f"{track_file}: track {label} ends at frame {end}, after the last mask "
                f"({masks[max(masks)].name})"
            )
    labels_per_frame = []
    for frame, path in masks.items():
        mask = _read_mask(path)
        if gt_frames is not None and mask.shape != image_shape(gt_frames[frame]):
            raise DataError(
                f"{path}: shape {mask.shape} differs from GT {gt_frames[frame].name} "
                f"{image_shape(gt_frames[frame])}"
            )
        labels = np.unique(mask)
        labels = labels[labels > 0]
        _check_labels(path, frame, labels, known, track_file)
        labels_per_frame.append(labels.tolist())
    verdict, messages = _library_verdict(list(masks.values()), tracks, labels_per_frame)
    return CTCCheck(verdict, messages, tracks, masks)
