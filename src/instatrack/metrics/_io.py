"""Label images for evaluation, read through :mod:`instatrack.data.io`.

The data layer reads any image; here we insist on what a label image must be
(2D, integer ids) and accept colour-coded label PNGs, which some CVPPP result
sets use, by numbering their colours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from instatrack.errors import DataError

LABEL_SUFFIXES = (".tif", ".tiff", ".png")


def list_label_files(folder: Path) -> list[Path]:
    """Label image files (TIFF/PNG) directly in ``folder``, in natural order.

    Raises :class:`DataError` when the folder is missing or holds none.
    """
    from instatrack.data.io import list_images

    return list_images(folder, LABEL_SUFFIXES)


def _colours_to_labels(rgb: np.ndarray) -> np.ndarray:
    """Colour-coded ``(Y, X, C)`` labels -> ``(Y, X)`` ids; black is background."""
    colours, index = np.unique(rgb.reshape(-1, rgb.shape[-1]), axis=0, return_inverse=True)
    index = index.reshape(rgb.shape[:2])
    # Colours sort lexicographically, so black, when present, is already id 0.
    return index if not colours[0].any() else index + 1


def read_label_image(path: str | Path) -> np.ndarray:
    """Read one label image as ``(Y, X)`` int32 (0 = background).

    Palette PNGs keep their indices (CVPPP, DAVIS 2017); a colour-coded RGB(A)
    PNG is numbered by colour (black = background).
    """
    from instatrack.data.io import read_image

    array = read_image(path)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        if array.shape[-1] == 4 and np.all(array[..., 3] == array[0, 0, 3]):
            array = array[..., :3]
        array = _colours_to_labels(array)
    if array.ndim != 2:
        raise DataError(f"{path}: label image has shape {array.shape}, expected (Y, X)")
    if array.dtype.kind not in "iub":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise DataError(f"{path}: label image has non-integer values ({array.dtype})")
    if array.size and array.max() > np.iinfo(np.int32).max:
        raise DataError(f"{path}: label {array.max()} does not fit int32")
    return array.astype(np.int32)
