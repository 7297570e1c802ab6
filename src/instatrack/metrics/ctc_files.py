"""Reading and checking Cell Tracking Challenge (CTC) folders before evaluation.

py-ctcmetrics trusts its input: a missing frame becomes an ``AssertionError``,
a blank line in ``res_track.txt`` a numpy shape error, an 8-bit mask silently
wraps around when the library offsets its labels. The checks here turn each of
those into a :class:`~instatrack.errors.DataError` whose one-line message names
the file and the problem, and then ask the library's own validity check.

Layout (``TTT`` = zero-padded frame number)::

    NN_GT/TRA/man_trackTTT.tif + man_track.txt     NN_GT/SEG/man_segTTT.tif
    NN_RES/maskTTT.tif + res_track.txt

A track file has one line ``L B E P`` per track: label, first frame, last frame,
parent label (0 = none).
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path

import numpy as np
import tifffile

from instatrack.errors import DataError

MASK_PATTERN = re.compile(r"^mask(\d+)\.tif$")
TRA_PATTERN = re.compile(r"^man_track(\d+)\.tif$")
SEG_PATTERN = re.compile(r"^man_seg(\d+)\.tif$")


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


def read_track_file(path: str | Path) -> np.ndarray:
    """Parse a CTC track file into an ``(N, 4)`` int64 array of ``L B E P`` rows.

    Raises :class:`DataError` for a missing file, a line that is not four
    non-negative integers, ``E < B``, label 0, a repeated label, an unknown
    parent or a parent that does not end before its daughter begins.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: track file not found")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            raise DataError(f"{path}: line {number} is empty")
        try:
            values = [int(v) for v in fields]
        except ValueError:
            raise DataError(f"{path}: line {number} {line.strip()!r} is not integers") from None
        if len(values) != 4 or min(values) < 0:
            raise DataError(
                f"{path}: line {number} {line.strip()!r} is not 'L B E P' (4 integers >= 0)"
            )
        if values[0] == 0 or values[2] < values[1]:
            raise DataError(f"{path}: line {number} {line.strip()!r} has label 0 or end < begin")
        rows.append(values)
    tracks = np.array(rows, dtype=np.int64).reshape(-1, 4)
    _check_lineage(path, tracks)
    return tracks


def _check_lineage(path: Path, tracks: np.ndarray) -> None:
    labels, counts = np.unique(tracks[:, 0], return_counts=True)
    if np.any(counts > 1):
        raise DataError(f"{path}: track label {labels[counts > 1][0]} appears on several lines")
    end_of = {int(label): int(end) for label, _, end, _ in tracks}
    for label, begin, _, parent in tracks:
        if parent == 0:
            continue
        if parent not in end_of:
            raise DataError(f"{path}: track {label} has parent {parent}, which is not a track")
        if end_of[parent] >= begin:
            raise DataError(
                f"{path}: track {label} begins at frame {begin} but its parent {parent} "
                f"ends at frame {end_of[parent]} (must end before)"
            )


def list_frames(folder: Path, pattern: re.Pattern) -> dict[int, Path]:
    """Map frame number -> file for the files in ``folder`` matching ``pattern``.

    The library sorts file names as text, so names must sort like their numbers
    (zero-padded to one width); otherwise frames would be paired wrongly.
    """
    frames = {}
    for path in folder.iterdir():
        found = pattern.match(path.name)
        if found:
            frame = int(found.group(1))
            if frame in frames:
                raise DataError(f"{path}: frame {frame} also in {frames[frame].name}")
            frames[frame] = path
    by_name = sorted(frames.values(), key=lambda p: p.name)
    if by_name != [frames[t] for t in sorted(frames)]:
        raise DataError(f"{folder}: frame file names are not zero-padded to one width")
    return dict(sorted(frames.items()))


def resolve_gt_dir(gt: str | Path) -> Path:
    """Return the ``NN_GT`` folder for ``gt`` given as ``NN_GT`` or as the sequence ``NN``."""
    gt = Path(gt)
    if (gt / "TRA").is_dir():
        return gt
    sibling = gt.parent / f"{gt.name}_GT"
    if gt.name and (sibling / "TRA").is_dir():
        return sibling
    raise DataError(f"{gt}: not a CTC ground-truth folder (no TRA subfolder, no {gt.name}_GT)")


def _mask_shape(path: Path) -> tuple[int, ...]:
    try:
        with tifffile.TiffFile(path) as tif:
            return tuple(tif.series[0].shape)
    except (OSError, ValueError, tifffile.TiffFileError) as error:
        raise DataError(f"{path}: cannot read TIFF ({error})") from None


def _read_mask(path: Path) -> np.ndarray:
    try:
        mask = tifffile.imread(path)
    except (OSError, ValueError, tifffile.TiffFileError) as error:
        raise DataError(f"{path}: cannot read TIFF ({error})") from None
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
            width = len(next(iter(masks.values())).stem) - 4
            name = f"mask{frame:0{width}d}.tif"
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
    track_file = res_dir / "res_track.txt"
    if not track_file.is_file():
        raise DataError(f"{track_file}: missing (every CTC result needs res_track.txt)")
    tracks = read_track_file(track_file)
    masks = list_frames(res_dir, MASK_PATTERN)
    gt_frames = None
    if gt_dir is not None:
        gt_frames = list_frames(resolve_gt_dir(gt_dir) / "TRA", TRA_PATTERN)
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
        if gt_frames is not None and mask.shape != _mask_shape(gt_frames[frame]):
            raise DataError(
                f"{path}: shape {mask.shape} differs from GT {gt_frames[frame].name} "
                f"{_mask_shape(gt_frames[frame])}"
            )
        labels = np.unique(mask)
        labels = labels[labels > 0]
        _check_labels(path, frame, labels, known, track_file)
        labels_per_frame.append(labels.tolist())
    verdict, messages = _library_verdict(list(masks.values()), tracks, labels_per_frame)
    return CTCCheck(verdict, messages, tracks, masks)
