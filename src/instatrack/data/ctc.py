"""The Cell Tracking Challenge (CTC) format: file names, sequences, track files, results.

This module is the one owner of the format; the metrics and the exporters use
its names, patterns, parser and writers.

Layout: ``DATASET/NN/tTTT.tif`` raw frames, ``DATASET/NN_GT/SEG/man_segTTT.tif``
instance masks (possibly for a few frames only), ``DATASET/NN_GT/TRA/man_trackTTT.tif``
tracking masks with track ids and ``man_track.txt`` rows ``L B E P``; results
``NN_RES/maskTTT.tif`` + ``res_track.txt``. ``TTT`` is the frame number, zero-padded
to one width in a folder: 3 digits, more when the last frame number needs them
(:func:`frame_digits`). Frames are identified by that number, never by their
position in a listing: a sequence with a missing frame is refused (tracking or
training across it would treat frames apart in time as neighbours), and image
files in a sequence folder that are not named ``tTTT.tif`` are ignored with a
:class:`~instatrack.errors.DataWarning`.

Training labels need ids that are consistent over time. When the TRA masks are
full segmentations (simulated datasets: TRA == SEG) they are used directly.
Otherwise TRA masks are markers inside each cell and SEG is sparse; each SEG
instance then takes the track id of the marker it overlaps most, and cells that
have a marker but no SEG outline are marked -1 (unannotated) so that a loss does
not learn them as background.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from instatrack.data.io import (
    IMAGE_SUFFIXES,
    check_2d,
    image_shape,
    read_frame,
    read_image,
    write_labels,
)
from instatrack.data.types import check_index
from instatrack.errors import DataError, DataWarning

FRAME_RE = re.compile(r"^t(\d{3,})\.tiff?$")
SEG_RE = re.compile(r"^man_seg(\d{3,})\.tiff?$")
TRA_RE = re.compile(r"^man_track(\d{3,})\.tiff?$")
MASK_RE = re.compile(r"^mask(\d{3,})\.tiff?$")
#: file name prefixes of raw frames, GT masks and result masks
FRAME_PREFIX, SEG_PREFIX, TRA_PREFIX, MASK_PREFIX = "t", "man_seg", "man_track", "mask"
#: the track files of ground truth and results
GT_TRACK_FILE, RES_TRACK_FILE = "man_track.txt", "res_track.txt"
#: SEG ids that match no marker get ``base + t * FRESH_STRIDE + id``: unique over the sequence
FRESH_STRIDE = 65536
#: foreground IoU of TRA and SEG above which TRA masks count as full segmentations
DENSE_TRA_IOU = 0.9

Row = tuple[int, int, int, int]


# -- names ----------------------------------------------------------------------------------------
def frame_digits(last_frame: int) -> int:
    """Digits of the frame numbers in the names of a sequence whose last frame is ``last_frame``.

    Three (``t000`` .. ``t999``), four from frame 1000 on (``t0000`` ..), and so on.
    """
    if last_frame < 0:
        raise ValueError(f"frame numbers are >= 0, got {last_frame}")
    return max(3, len(str(int(last_frame))))


def file_name(prefix: str, t: int, digits: int) -> str:
    """``{prefix}{t:0{digits}d}.tif``: e.g. ``file_name(MASK_PREFIX, 7, 3) == "mask007.tif"``."""
    if t < 0 or len(str(int(t))) > digits:
        raise ValueError(f"frame {t} does not fit in {digits} digits")
    return f"{prefix}{int(t):0{digits}d}.tif"


def numbered_files(folder: str | Path, pattern: re.Pattern) -> dict[int, Path]:
    """``{frame number: file}`` of the files in ``folder`` whose names match ``pattern``.

    Raises :class:`DataError` naming the files when two of them carry the same
    number or the numbers are not zero-padded to one width (CTC tools sort
    names as text, so ``t999`` would come after ``t1000``).
    """
    folder = Path(folder)
    found: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        match = pattern.match(path.name)
        if not match:
            continue
        number = int(match.group(1))
        if number in found:
            raise DataError(f"{path}: frame {number} is also in {found[number].name}")
        found[number] = path
    widths = {len(pattern.match(p.name).group(1)) for p in found.values()}
    if len(widths) > 1:
        raise DataError(f"{folder}: frame numbers are zero-padded to different widths "
                        f"{sorted(widths)}; use one width for every file")
    return dict(sorted(found.items()))


def missing_frames(numbers: Iterable[int]) -> list[int]:
    """Frame numbers between the first and the last of ``numbers`` that are not in it."""
    present = sorted(set(numbers))
    if not present:
        return []
    return sorted(set(range(present[0], present[-1] + 1)) - set(present))


def check_contiguous(folder: str | Path, files: dict[int, Path]) -> None:
    """DataError naming the files around the first gap when ``files`` (number -> file) skip one."""
    gaps = missing_frames(files)
    if not gaps:
        return
    before = files[max(n for n in files if n < gaps[0])]
    after = files[min(n for n in files if n > gaps[0])]
    more = f" (and {len(gaps) - 1} more)" if len(gaps) > 1 else ""
    raise DataError(f"{folder}: frame {gaps[0]}{more} is missing between {before.name} and "
                    f"{after.name}; a sequence must not skip frames (restore it, or split the "
                    f"sequence into two folders)")


class CTCSequence:
    """One CTC sequence folder ``DATASET/NN`` (with ``DATASET/NN_GT`` if present)."""

    is_video = True

    def __init__(self, seq_dir: str | Path):
        self.seq_dir = Path(seq_dir)
        if not self.seq_dir.is_dir():
            raise DataError(f"{self.seq_dir}: sequence folder not found")
        frames = numbered_files(self.seq_dir, FRAME_RE)
        if not frames:
            raise DataError(f"{self.seq_dir}: no CTC frames named tTTT.tif in this folder")
        check_contiguous(self.seq_dir, frames)
        _warn_strays(self.seq_dir, frames)
        self.times, self.paths = list(frames), list(frames.values())
        self.shape = _common_shape(self.paths)
        check_2d(self.paths[0], self.shape)
        self.channels = 1 if len(self.shape) == 2 else int(self.shape[-1])
        self.name = f"{self.seq_dir.parent.name}/{self.seq_dir.name}"
        gt_dir = self.seq_dir.parent / f"{self.seq_dir.name}_GT"
        self.gt_dir: Path | None = gt_dir if gt_dir.is_dir() else None
        index = {time: i for i, time in enumerate(self.times)}
        self.seg_frames = self._gt_files("SEG", SEG_RE, index)
        self.tra_frames = self._gt_files("TRA", TRA_RE, index)
        track_file = gt_dir / "TRA" / GT_TRACK_FILE
        self.lineage: list[Row] = read_track_table(track_file) if track_file.is_file() else []
        self._spans = {label: (begin, end) for label, begin, end, _ in self.lineage}

    def _gt_files(self, kind: str, pattern: re.Pattern, index: dict[int, int]) -> dict[int, Path]:
        if self.gt_dir is None or not (self.gt_dir / kind).is_dir():
            return {}
        files = numbered_files(self.gt_dir / kind, pattern)
        return {index[time]: p for time, p in files.items() if time in index}

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return (f"CTCSequence({str(self.seq_dir)!r}: {len(self)} frames {self.shape}, "
                f"{len(self.seg_frames)} SEG, {len(self.tra_frames)} TRA)")

    def frame_path(self, t: int) -> Path:
        return self.paths[check_index(self, t)]

    def image(self, t: int) -> np.ndarray:
        """Raw frame ``t`` (index, not frame number) as :func:`~instatrack.data.io.read_frame`."""
        return read_frame(self.frame_path(t))

    @functools.cached_property
    def dense_tra(self) -> bool:
        """True when the TRA masks are full segmentations (then they are the training labels)."""
        if not self.tra_frames:
            return False
        both = sorted(set(self.seg_frames) & set(self.tra_frames))
        if not both:
            return not self.seg_frames
        seg = self._read_gt(self.seg_frames[both[0]]) > 0
        tra = self._read_gt(self.tra_frames[both[0]]) > 0
        union = np.count_nonzero(seg | tra)
        return union > 0 and np.count_nonzero(seg & tra) / union >= DENSE_TRA_IOU

    def labels(self, t: int) -> np.ndarray | None:
        """Training labels ``(Y, X)`` int32 with track ids, -1 where unannotated; None if none."""
        t = check_index(self, t)
        if self.dense_tra and t in self.tra_frames:
            return self._read_tra(t)
        if t not in self.seg_frames:
            return None
        seg = self._read_gt(self.seg_frames[t])
        tra = self._read_tra(t) if t in self.tra_frames else None
        base = max((row[0] for row in self.lineage), default=FRESH_STRIDE - 1) + 1
        return relabel_seg_by_markers(seg, tra, fresh_offset=base + t * FRESH_STRIDE)

    def markers(self, t: int) -> np.ndarray | None:
        """The TRA mask ``(Y, X)`` int32 of index ``t`` (one marker per tracked object,
        annotated or not in SEG), or None when the frame has none."""
        t = check_index(self, t)
        return self._read_tra(t) if t in self.tra_frames else None

    def _read_gt(self, path: Path) -> np.ndarray:
        mask = read_image(path)
        if mask.shape != self.shape[:2]:
            raise DataError(f"{path}: mask shape {mask.shape} differs from the frames' "
                            f"{self.shape[:2]}")
        if mask.dtype.kind not in "iu":
            raise DataError(f"{path}: masks must hold integer labels, got dtype {mask.dtype}")
        return mask.astype(np.int32)

    def _read_tra(self, t: int) -> np.ndarray:
        """TRA mask of index ``t``, checked against ``man_track.txt`` when there is one.

        A track id absent from the track file, or outside its frames there, means
        the GT files do not belong together (e.g. frames of two synthetic runs mixed).
        """
        path = self.tra_frames[t]
        mask = self._read_gt(path)
        if not self._spans:
            return mask
        time = self.times[t]
        for label in np.unique(mask[mask > 0]).tolist():
            span = self._spans.get(label)
            if span is None or not span[0] <= time <= span[1]:
                where = "is not in" if span is None else f"lies outside its frames {list(span)} in"
                raise DataError(f"{path}: track {label} at frame {time} {where} {GT_TRACK_FILE}; "
                                f"the ground-truth files do not belong together")
        return mask


def relabel_seg_by_markers(seg: np.ndarray, tra: np.ndarray | None,
                           fresh_offset: int) -> np.ndarray:
    """Give SEG instances the track ids of their TRA markers; mark unsegmented markers -1.

    ``seg``, ``tra``: ``(Y, X)`` label images. Each SEG instance takes the TRA
    id it overlaps most (a marker claimed by two instances goes to the larger
    overlap); the others get ``fresh_offset + seg id``. Markers left without an
    instance are dilated by half their radius plus 3 pixels and set to -1 where
    no instance lies. Returns ``(Y, X)`` int32.
    """
    seg_ids = np.unique(seg[seg > 0])
    owner: dict[int, tuple[int, int]] = {}  # track id -> (overlap, seg id)
    if tra is not None:
        both = (seg > 0) & (tra > 0)
        pairs, counts = np.unique(np.stack([seg[both], tra[both]]), axis=1, return_counts=True)
        for (sid, tid), count in zip(pairs.T.tolist(), counts.tolist(), strict=True):
            if count > owner.get(tid, (0, 0))[0]:
                owner[tid] = (count, sid)
    # a seg instance may win two markers; keep its largest one
    best: dict[int, tuple[int, int]] = {}
    for tid, (count, sid) in owner.items():
        if count > best.get(sid, (0, 0))[0]:
            best[sid] = (count, tid)
    lookup = np.zeros(int(seg.max()) + 1, np.int32)
    for sid in seg_ids.tolist():
        lookup[sid] = best[sid][1] if sid in best else fresh_offset + sid
    out = lookup[seg]
    if tra is not None:
        used = {tid for _, tid in best.values()}
        for tid in np.unique(tra[tra > 0]).tolist():
            if tid not in used:
                _mark_unannotated(out, tra == tid)
    return out


def _mark_unannotated(out: np.ndarray, marker: np.ndarray) -> None:
    """Set -1 around ``marker`` (dilated generously) wherever ``out`` is background."""
    radius = 0.5 * np.sqrt(np.count_nonzero(marker) / np.pi) + 3.0
    pad = int(np.ceil(radius)) + 1
    ys, xs = np.nonzero(marker)
    window = (slice(max(ys.min() - pad, 0), ys.max() + pad + 1),
              slice(max(xs.min() - pad, 0), xs.max() + pad + 1))
    near = ndi.distance_transform_edt(~marker[window]) <= radius
    region = out[window]
    region[near & (region == 0)] = -1


def _warn_strays(folder: Path, frames: dict[int, Path]) -> None:
    """Warn about image files in a sequence folder that are not frames (e.g. a preview.tif)."""
    known = set(frames.values())
    strays = sorted(p.name for p in folder.iterdir()
                    if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
                    and p not in known)
    if strays:
        listed = ", ".join(strays[:3]) + (f" and {len(strays) - 3} more" if len(strays) > 3 else "")
        warnings.warn(DataWarning(f"{folder}: ignoring {listed} (not a frame named tTTT.tif)"),
                      stacklevel=3)


def _common_shape(paths: list[Path]) -> tuple[int, ...]:
    first = image_shape(paths[0])
    for path in paths[1:]:
        shape = image_shape(path)
        if shape != first:
            raise DataError(f"{path}: shape {shape} differs from {paths[0].name} {first}")
    return first


# -- track files and result masks ----------------------------------------------------------------
def write_mask(res_dir: str | Path, t: int, labels: np.ndarray, digits: int = 3) -> Path:
    """Write ``res_dir/maskTTT.tif`` (uint16) for frame number ``t``."""
    return write_labels(Path(res_dir) / file_name(MASK_PREFIX, t, digits), labels)


def read_mask(path: str | Path) -> np.ndarray:
    """A CTC mask ``(Y, X)`` in its stored dtype; DataError naming the file if unreadable."""
    mask = read_image(path)
    if mask.ndim != 2:
        raise DataError(f"{path}: a CTC mask must be a 2D label image, got shape {mask.shape}")
    return mask


def write_track_table(path: str | Path, rows: Iterable[Row]) -> Path:
    """Write ``man_track.txt`` / ``res_track.txt``: one ``L B E P`` line per track."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{int(l)} {int(b)} {int(e)} {int(p)}\n" for l, b, e, p in rows))
    return path


def read_track_table(path: str | Path, strict: bool = False) -> list[Row]:
    """Rows ``(L, B, E, P)`` of a CTC track file (``man_track.txt`` / ``res_track.txt``).

    The one parser of the format. Blank lines are skipped. Every other line
    must be four integers with ``L > 0``, ``0 <= B <= E`` and ``P >= 0``.
    ``strict`` also checks the lineage, as scoring needs it: labels are
    unique, a parent is a track and ends before its daughter begins.
    Raises :class:`DataError` naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: track file not found")
    rows: list[Row] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            rows.append(_track_row(path, number, line))
    if strict:
        _check_lineage(path, rows)
    return rows


def _track_row(path: Path, number: int, line: str) -> Row:
    where = f"{path}, line {number}"
    try:
        label, begin, end, parent = (int(v) for v in line.split())
    except ValueError:
        raise DataError(f"{where}: expected four integers 'L B E P', got "
                        f"{line.strip()!r}") from None
    if min(label, begin, end, parent) < 0:
        raise DataError(f"{where}: negative value in {line.strip()!r}")
    if label == 0:
        raise DataError(f"{where}: label 0 is the background, not a track: {line.strip()!r}")
    if end < begin:
        raise DataError(f"{where}: end < begin in {line.strip()!r}")
    return label, begin, end, parent


def _check_lineage(path: Path, rows: list[Row]) -> None:
    end_of: dict[int, int] = {}
    for label, _, end, _ in rows:
        if label in end_of:
            raise DataError(f"{path}: track label {label} appears on several lines")
        end_of[label] = end
    for label, begin, _, parent in rows:
        if parent == 0:
            continue
        if parent not in end_of:
            raise DataError(f"{path}: track {label} has parent {parent}, which is not a track")
        if end_of[parent] >= begin:
            raise DataError(f"{path}: track {label} begins at frame {begin} but its parent "
                            f"{parent} ends at frame {end_of[parent]} (must end before)")


def is_sequence_dir(path: Path) -> bool:
    return path.is_dir() and any(FRAME_RE.match(p.name) for p in path.iterdir())


def find_ctc_sequences(path: str | Path) -> list[CTCSequence]:
    """Sequences of a CTC dataset folder (``01``, ``02``, ... with ``_GT``), or one sequence folder.

    In a dataset folder, sequences with a ``_GT`` folder are returned when there
    are any (training), all numbered sequences otherwise (inference).
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: folder not found")
    if is_sequence_dir(path):
        return [CTCSequence(path)]
    found = sorted(p for p in path.iterdir() if p.name.isdigit() and is_sequence_dir(p))
    with_gt = [p for p in found if (path / f"{p.name}_GT").is_dir()]
    if not found:
        raise DataError(f"{path}: no CTC sequence folders (NN/tTTT.tif) found")
    return [CTCSequence(p) for p in (with_gt or found)]


def recognises(path: Path) -> bool:
    """Whether ``path`` is a CTC sequence folder or a dataset folder holding some."""
    if is_sequence_dir(path):
        return True
    return any(p.name.isdigit() and is_sequence_dir(p) for p in path.iterdir())


open_sequences = find_ctc_sequences
