"""Cell Tracking Challenge (CTC) sequences and result files.

Layout: ``DATASET/NN/tTTT.tif`` raw frames, ``DATASET/NN_GT/SEG/man_segTTT.tif``
instance masks (possibly for a few frames only), ``DATASET/NN_GT/TRA/man_trackTTT.tif``
tracking masks with track ids and ``man_track.txt`` rows ``L B E P``.

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
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from instatrack.data.io import image_shape, read_image, write_labels
from instatrack.data.types import check_index
from instatrack.errors import DataError

FRAME_RE = re.compile(r"^t(\d{3,4})\.tiff?$")
SEG_RE = re.compile(r"^man_seg(\d{3,4})\.tiff?$")
TRA_RE = re.compile(r"^man_track(\d{3,4})\.tiff?$")
#: SEG ids that match no marker get ``base + t * FRESH_STRIDE + id``: unique over the sequence
FRESH_STRIDE = 65536
#: foreground IoU of TRA and SEG above which TRA masks count as full segmentations
DENSE_TRA_IOU = 0.9

Row = tuple[int, int, int, int]


class CTCSequence:
    """One CTC sequence folder ``DATASET/NN`` (with ``DATASET/NN_GT`` if present)."""

    is_video = True

    def __init__(self, seq_dir: str | Path):
        self.seq_dir = Path(seq_dir)
        if not self.seq_dir.is_dir():
            raise DataError(f"{self.seq_dir}: sequence folder not found")
        self.times, self.paths = _numbered(self.seq_dir, FRAME_RE)
        if not self.paths:
            raise DataError(f"{self.seq_dir}: no CTC frames named tTTT.tif in this folder")
        self.shape = _common_shape(self.paths)
        if len(self.shape) == 3 and self.shape[-1] > 4:
            raise DataError(f"{self.paths[0]}: 3D stacks {self.shape} are not supported")
        self.channels = 1 if len(self.shape) == 2 else int(self.shape[-1])
        self.name = f"{self.seq_dir.parent.name}/{self.seq_dir.name}"
        gt_dir = self.seq_dir.parent / f"{self.seq_dir.name}_GT"
        self.gt_dir: Path | None = gt_dir if gt_dir.is_dir() else None
        index = {time: i for i, time in enumerate(self.times)}
        self.seg_frames = self._gt_files("SEG", SEG_RE, index)
        self.tra_frames = self._gt_files("TRA", TRA_RE, index)
        track_file = gt_dir / "TRA" / "man_track.txt"
        self.lineage: list[Row] = read_track_table(track_file) if track_file.is_file() else []

    def _gt_files(self, kind: str, pattern: re.Pattern, index: dict[int, int]) -> dict[int, Path]:
        if self.gt_dir is None or not (self.gt_dir / kind).is_dir():
            return {}
        times, paths = _numbered(self.gt_dir / kind, pattern)
        return {index[time]: p for time, p in zip(times, paths, strict=True) if time in index}

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return (f"CTCSequence({str(self.seq_dir)!r}: {len(self)} frames {self.shape}, "
                f"{len(self.seg_frames)} SEG, {len(self.tra_frames)} TRA)")

    def frame_path(self, t: int) -> Path:
        return self.paths[check_index(self, t)]

    def image(self, t: int) -> np.ndarray:
        return read_image(self.frame_path(t))

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
            return self._read_gt(self.tra_frames[t])
        if t not in self.seg_frames:
            return None
        seg = self._read_gt(self.seg_frames[t])
        tra = self._read_gt(self.tra_frames[t]) if t in self.tra_frames else None
        base = max((row[0] for row in self.lineage), default=FRESH_STRIDE - 1) + 1
        return relabel_seg_by_markers(seg, tra, fresh_offset=base + t * FRESH_STRIDE)

    def _read_gt(self, path: Path) -> np.ndarray:
        mask = read_image(path)
        if mask.shape != self.shape[:2]:
            raise DataError(f"{path}: mask shape {mask.shape} differs from the frames' "
                            f"{self.shape[:2]}")
        if mask.dtype.kind not in "iu":
            raise DataError(f"{path}: masks must hold integer labels, got dtype {mask.dtype}")
        return mask.astype(np.int32)


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


def _numbered(folder: Path, pattern: re.Pattern) -> tuple[list[int], list[Path]]:
    found = sorted((int(m.group(1)), p) for p in folder.iterdir()
                   if (m := pattern.match(p.name)))
    return [t for t, _ in found], [p for _, p in found]


def _common_shape(paths: list[Path]) -> tuple[int, ...]:
    first = image_shape(paths[0])
    for path in paths[1:]:
        shape = image_shape(path)
        if shape != first:
            raise DataError(f"{path}: shape {shape} differs from {paths[0].name} {first}")
    return first


# -- result files ------------------------------------------------------------------------------
def write_mask(res_dir: str | Path, t: int, labels: np.ndarray, digits: int = 3) -> Path:
    """Write ``res_dir/maskTTT.tif`` (uint16) for frame ``t``."""
    return write_labels(Path(res_dir) / f"mask{t:0{digits}d}.tif", labels)


def write_track_table(path: str | Path, rows: Iterable[Row]) -> Path:
    """Write ``man_track.txt`` / ``res_track.txt``: one ``L B E P`` line per track."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{int(l)} {int(b)} {int(e)} {int(p)}\n" for l, b, e, p in rows))
    return path


def read_track_table(path: str | Path) -> list[Row]:
    """Rows ``(L, B, E, P)`` of a CTC track file; DataError naming file and line if malformed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: track file not found")
    rows: list[Row] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            label, begin, end, parent = (int(v) for v in line.split())
        except ValueError:
            raise DataError(f"{path}, line {number}: expected four integers 'L B E P', got "
                            f"{line.strip()!r}") from None
        if label <= 0 or begin < 0 or end < begin or parent < 0:
            raise DataError(f"{path}, line {number}: need L > 0, 0 <= B <= E, P >= 0, got "
                            f"{line.strip()!r}")
        rows.append((label, begin, end, parent))
    return rows


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
