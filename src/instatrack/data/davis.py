"""DAVIS video object segmentation data and palette PNG annotations.

Layout: ``ROOT/JPEGImages/480p/NAME/00000.jpg`` and
``ROOT/Annotations/480p/NAME/00000.png``. DAVIS 2016 annotations are binary
(0/255, one object: label 1); DAVIS 2017 annotations are palette PNGs whose
indices are object ids (ids are consistent over the video).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from instatrack.data.io import (
    frame_channels,
    image_shape,
    list_images,
    natural_key,
    read_frame,
    read_image,
)
from instatrack.data.types import check_index
from instatrack.errors import DataError

RESOLUTIONS = ("480p", "Full-Resolution")


class DAVISSequence:
    """One DAVIS video ``NAME`` under ``root`` at ``resolution`` (``is_video = True``)."""

    is_video = True

    def __init__(self, root: str | Path, name: str, resolution: str = "480p"):
        self.root = Path(root)
        self.name = name
        self.paths = list_images(self.root / "JPEGImages" / resolution / name)
        self.annotation_dir = self.root / "Annotations" / resolution / name
        self.shape = image_shape(self.paths[0])
        self.channels = frame_channels(self.paths[0])
        self.times = list(range(len(self.paths)))

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"DAVISSequence({str(self.root)!r}, {self.name!r}: {len(self)} frames)"

    def frame_path(self, t: int) -> Path:
        return self.paths[check_index(self, t)]

    def image(self, t: int) -> np.ndarray:
        path = self.frame_path(t)
        image = read_frame(path)
        channels = 1 if image.ndim == 2 else image.shape[-1]
        if image.shape[:2] != self.shape[:2] or channels != self.channels:
            raise DataError(f"{path}: shape {image.shape} differs from {self.paths[0].name} "
                            f"{self.shape}")
        return image

    def labels(self, t: int) -> np.ndarray | None:
        """Object ids ``(Y, X)`` int32, or None when frame ``t`` has no annotation file."""
        path = self.annotation_dir / f"{self.frame_path(t).stem}.png"
        if not path.is_file():
            return None
        labels = read_annotation(path)
        if labels.shape != self.shape[:2]:
            raise DataError(f"{path}: annotation shape {labels.shape} differs from the frame "
                            f"{self.shape[:2]}")
        return labels


def read_annotation(path: str | Path) -> np.ndarray:
    """``(Y, X)`` int32 ids of a DAVIS annotation: 0/255 binary -> 0/1, palette -> indices."""
    labels = read_image(path)
    if labels.ndim != 2 or labels.dtype.kind not in "iub":
        raise DataError(f"{path}: expected a binary or palette annotation, got {labels.dtype} "
                        f"{labels.shape}")
    values = np.unique(labels)
    if values[-1] == 255 and set(values.tolist()) <= {0, 255}:
        return (labels > 0).astype(np.int32)
    return labels.astype(np.int32)


def write_annotation(path: str | Path, labels: np.ndarray) -> Path:
    """Write object ids ``(Y, X)`` (0..255) as a palette PNG with the DAVIS/PASCAL colours."""
    from PIL import Image

    path = Path(path)
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iub":
        raise DataError(f"{path}: annotation must be a 2D integer array, got {labels.dtype} "
                        f"{labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise DataError(f"{path}: palette annotations hold ids 0..255, got "
                        f"{labels.min()}..{labels.max()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8), "P")
    image.putpalette(davis_palette())
    image.save(path)
    return path


def davis_palette() -> list[int]:
    """The 256-colour PASCAL VOC palette DAVIS uses: id bits spread over R, G, B from the top."""
    colours = np.zeros((256, 3), np.uint8)
    for index in range(256):
        value = index
        for shift in range(7, -1, -1):
            for channel in range(3):
                colours[index, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
    return colours.ravel().tolist()


def _resolution(root: Path) -> str | None:
    for res in RESOLUTIONS:
        if (root / "JPEGImages" / res).is_dir():
            return res
    return None


def video_folders(path: Path) -> list[Path]:
    """The frame folders ``JPEGImages/<resolution>/NAME`` of the DAVIS root ``path``."""
    resolution = _resolution(path) if path.is_dir() else None
    if resolution is None:
        return []
    return sorted((p for p in (path / "JPEGImages" / resolution).iterdir() if p.is_dir()),
                  key=natural_key)


def recognises(path: Path) -> bool:
    """Whether ``path`` has ``JPEGImages/<resolution>/`` and ``Annotations/``."""
    return (path / "Annotations").is_dir() and _resolution(path) is not None


def open_sequences(path: str | Path) -> list[DAVISSequence]:
    """One :class:`DAVISSequence` per video folder under ``JPEGImages/<resolution>``."""
    path = Path(path)
    resolution = _resolution(path) if path.is_dir() else None
    if resolution is None:
        raise DataError(f"{path}: not a DAVIS folder (JPEGImages/480p/NAME/ missing)")
    names = sorted((p.name for p in (path / "JPEGImages" / resolution).iterdir() if p.is_dir()),
                   key=natural_key)
    if not names:
        raise DataError(f"{path / 'JPEGImages' / resolution}: no video folders")
    return [DAVISSequence(path, name, resolution) for name in names]
