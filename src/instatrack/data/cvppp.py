"""CVPPP leaf segmentation data (``A1``: ``plantNNN_rgb.png`` + ``plantNNN_label.png``).

Images are RGBA with a constant alpha, returned as RGB (through
:func:`~instatrack.data.io.read_frame`, as ``segment`` reads them too). Label images are
palette PNGs whose raw indices are the leaf ids; they are read as indices,
never converted to colours.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from instatrack.data.io import natural_key, read_frame, read_label_image
from instatrack.data.types import check_index
from instatrack.errors import DataError

RGB_RE = re.compile(r"^(.+)_rgb\.png$")


class CVPPPSequence:
    """All plants of one CVPPP folder (e.g. ``A1``) as still images (``is_video = False``)."""

    is_video = False
    channels = 3

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"{self.folder}: CVPPP folder not found")
        self.paths = sorted((p for p in self.folder.iterdir() if RGB_RE.match(p.name)),
                            key=natural_key)
        if not self.paths:
            raise DataError(f"{self.folder}: no CVPPP images named plantNNN_rgb.png")
        self.name = f"{self.folder.parent.name}/{self.folder.name}"
        self.times = list(range(len(self.paths)))

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"CVPPPSequence({str(self.folder)!r}: {len(self)} images)"

    def frame_path(self, t: int) -> Path:
        return self.paths[check_index(self, t)]

    def label_path(self, t: int) -> Path:
        stem = RGB_RE.match(self.frame_path(t).name).group(1)
        return self.folder / f"{stem}_label.png"

    def image(self, t: int) -> np.ndarray:
        """``(Y, X, 3)`` RGB (alpha dropped; grey images repeated to 3 channels)."""
        path = self.frame_path(t)
        image = read_frame(path)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        if image.shape[-1] != 3:
            raise DataError(f"{path}: expected an RGB or RGBA image, got shape {image.shape}")
        return image

    def labels(self, t: int) -> np.ndarray | None:
        """Leaf ids ``(Y, X)`` int32 (palette indices), or None when the label file is absent."""
        path = self.label_path(t)
        if not path.is_file():
            return None
        return read_label_image(path, self.frame_path(t), kinds="iu",
                                expected="a palette label image (colour-converted labels "
                                         "cannot be used)")


def _cvppp_folders(path: Path) -> list[Path]:
    if any(RGB_RE.match(p.name) for p in path.iterdir()):
        return [path]
    return sorted((p for p in path.iterdir()
                   if p.is_dir() and any(RGB_RE.match(q.name) for q in p.iterdir())),
                  key=natural_key)


def holds_images(path: Path) -> bool:
    """Whether ``path`` itself holds ``*_rgb.png`` files."""
    return path.is_dir() and any(RGB_RE.match(p.name) for p in path.iterdir())


def recognises(path: Path) -> bool:
    """Whether ``path`` holds ``*_rgb.png`` files or has sub-folders (``A1``, ...) that do."""
    return bool(_cvppp_folders(path))


def open_sequences(path: str | Path) -> list[CVPPPSequence]:
    """One :class:`CVPPPSequence` for ``A1`` itself, or one per such sub-folder of ``path``."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: folder not found")
    folders = _cvppp_folders(path)
    if not folders:
        raise DataError(f"{path}: no CVPPP images (plantNNN_rgb.png) here or in its sub-folders")
    return [CVPPPSequence(f) for f in folders]
