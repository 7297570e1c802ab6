"""Plain folders: ``images/`` + ``masks/`` (or ``labels/``) for training; any image folder.

:class:`FolderSequence`: a mask named like its image, or with a
``_mask``/``_masks``/``_label``/``_labels`` suffix, is that image's instance
labels (0 = background, k > 0 = instance k). Images without a mask are
returned with ``labels = None``.

:class:`ImageFolder`: the images directly in one folder, without labels, for
``segment`` and ``track``. For tracking, when some file names are plain
numbers (``00000.jpg``, as in DAVIS) those files are the frames, numbered by
their names, and the other images are ignored with a warning.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from instatrack.data.io import (
    frame_channels,
    image_shape,
    list_images,
    read_frame,
    read_label_image,
)
from instatrack.data.types import check_index
from instatrack.errors import DataError, DataWarning

MASK_FOLDERS = ("masks", "labels")
MASK_SUFFIXES = ("", "_mask", "_masks", "_label", "_labels")


class FolderSequence:
    """Still images in ``root/images`` with their masks (``is_video = False``)."""

    is_video = False

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.paths = list_images(self.root / "images")
        mask_dir = next((self.root / m for m in MASK_FOLDERS if (self.root / m).is_dir()), None)
        masks = {p.stem: p for p in list_images(mask_dir)} if mask_dir is not None else {}
        self.mask_paths: list[Path | None] = [_match(p.stem, masks) for p in self.paths]
        self.channels = _one_channel_count(self.root / "images", self.paths)
        self.times = list(range(len(self.paths)))
        self.name = self.root.name

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        found = sum(m is not None for m in self.mask_paths)
        return f"FolderSequence({str(self.root)!r}: {len(self)} images, {found} masks)"

    def frame_path(self, t: int) -> Path:
        return self.paths[check_index(self, t)]

    def image(self, t: int) -> np.ndarray:
        return read_frame(self.frame_path(t))

    def labels(self, t: int) -> np.ndarray | None:
        """Instance labels ``(Y, X)`` int32 of image ``t``, or None when it has no mask."""
        path = self.mask_paths[check_index(self, t)]
        if path is None:
            return None
        return read_label_image(path, self.frame_path(t), noun="mask")


def _match(stem: str, masks: dict[str, Path]) -> Path | None:
    return next((masks[stem + s] for s in MASK_SUFFIXES if stem + s in masks), None)


def _one_channel_count(folder: Path, paths: list[Path]) -> int:
    channels = {p: frame_channels(p) for p in paths}
    counts = sorted(set(channels.values()))
    if len(counts) != 1:
        odd = next(p for p in paths if channels[p] != channels[paths[0]])
        raise DataError(f"{odd}: has {channels[odd]} channel(s), {paths[0].name} has "
                        f"{channels[paths[0]]}; the images of {folder} must agree")
    return counts[0]


class ImageFolder:
    """The images directly in ``folder``, without labels, in natural order.

    ``video=True`` (frames to track): when some names are plain numbers
    (``00000.jpg``) those files are the frames, numbered by their names, and
    must not skip a number; the other images are ignored with a warning. The
    frames must share one shape. ``times`` holds each image's frame number
    (from its name, else its position).
    """

    def __init__(self, folder: str | Path, video: bool = False):
        self.folder = Path(folder)
        self.is_video = video
        paths = list_images(self.folder)
        numbered = _numbered_by_name(self.folder, paths) if video else {}
        if numbered:
            from instatrack.data.ctc import check_contiguous

            check_contiguous(self.folder, numbered)
            self.times, self.paths = list(numbered), list(numbered.values())
        else:
            self.times, self.paths = list(range(len(paths))), paths
        if video:
            first = image_shape(self.paths[0])
            for path in self.paths[1:]:
                shape = image_shape(path)
                if shape != first:
                    raise DataError(f"{path}: shape {shape} differs from {self.paths[0].name} "
                                    f"{first}; the frames of a sequence must share one shape")
        self.channels = _one_channel_count(self.folder, self.paths)
        self.name = self.folder.name

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.folder)!r}: {len(self)} images)"

    def frame_path(self, t: int) -> Path:
        return self.paths[check_index(self, t)]

    def image(self, t: int) -> np.ndarray:
        return read_frame(self.frame_path(t))

    def labels(self, t: int) -> None:
        check_index(self, t)
        return None


def _numbered_by_name(folder: Path, paths: list[Path]) -> dict[int, Path]:
    """``{number: file}`` of the files named by a number; warns about the other images."""
    numbered: dict[int, Path] = {}
    for path in paths:
        if path.stem.isdigit():
            number = int(path.stem)
            if number in numbered:
                raise DataError(f"{path}: frame {number} is also in {numbered[number].name}")
            numbered[number] = path
    strays = [p.name for p in paths if not p.stem.isdigit()]
    if numbered and strays:
        listed = ", ".join(strays[:3]) + (f" and {len(strays) - 3} more" if len(strays) > 3 else "")
        warnings.warn(DataWarning(f"{folder}: ignoring {listed} (the frames are named by "
                                  f"their number)"), stacklevel=3)
    return dict(sorted(numbered.items()))


def recognises(path: Path) -> bool:
    """Whether ``path`` has an ``images/`` folder."""
    return (path / "images").is_dir()


def open_sequences(path: str | Path) -> list[FolderSequence]:
    return [FolderSequence(path)]
