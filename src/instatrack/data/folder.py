"""Plain folders of still images: ``images/`` + ``masks/`` (or ``labels/``) matched by stem.

A mask named like its image, or with a ``_mask``/``_masks``/``_label``/``_labels``
suffix, is that image's instance labels (0 = background, k > 0 = instance k).
Images without a mask are returned with ``labels = None``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from instatrack.data.io import image_shape, list_images, read_image, read_label_image
from instatrack.data.types import check_index
from instatrack.errors import DataError

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
        channels = {_channels(image_shape(p)) for p in self.paths}
        if len(channels) != 1:
            raise DataError(f"{self.root / 'images'}: images have different channel counts "
                            f"{sorted(channels)}")
        self.channels = channels.pop()
        self.name = self.root.name

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        found = sum(m is not None for m in self.mask_paths)
        return f"FolderSequence({str(self.root)!r}: {len(self)} images, {found} masks)"

    def frame_path(self, t: int) -> Path:
        return self.paths[check_index(self, t)]

    def image(self, t: int) -> np.ndarray:
        return read_image(self.frame_path(t))

    def labels(self, t: int) -> np.ndarray | None:
        """Instance labels ``(Y, X)`` int32 of image ``t``, or None when it has no mask."""
        path = self.mask_paths[check_index(self, t)]
        if path is None:
            return None
        return read_label_image(path, self.frame_path(t), noun="mask")


def _match(stem: str, masks: dict[str, Path]) -> Path | None:
    return next((masks[stem + s] for s in MASK_SUFFIXES if stem + s in masks), None)


def _channels(shape: tuple[int, ...]) -> int:
    return 1 if len(shape) == 2 else int(shape[-1])


def recognises(path: Path) -> bool:
    """Whether ``path`` has an ``images/`` folder."""
    return (path / "images").is_dir()


def open_sequences(path: str | Path) -> list[FolderSequence]:
    return [FolderSequence(path)]
