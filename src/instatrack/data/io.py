"""Reading images and writing label images, with errors that name the file.

TIFF goes through tifffile, PNG/JPEG through Pillow. Palette ("P" mode) PNGs
are returned as their raw indices, never converted to colours, because label
images are stored that way (CVPPP, DAVIS 2017).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from instatrack.errors import DataError

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (*TIFF_SUFFIXES, ".png", ".jpg", ".jpeg")


def read_image(path: str | Path) -> np.ndarray:
    """Read one 2D image as ``(Y, X)`` or ``(Y, X, C)`` in its native dtype.

    Leading singleton axes (e.g. a one-page TIFF stored as ``(1, Y, X)``) are
    dropped. Raises :class:`DataError` naming the file when it is missing,
    unreadable, empty or holds NaN values.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        image = _read_tiff(path) if path.suffix.lower() in TIFF_SUFFIXES else _read_pillow(path)
    except DataError:
        raise
    except Exception as err:  # decoders raise many kinds of errors for corrupt files
        raise DataError(f"{path}: cannot read image ({type(err).__name__}: {err})") from None
    while image.ndim > 2 and image.shape[0] == 1:
        image = image[0]
    if image.size == 0:
        raise DataError(f"{path}: image is empty (shape {image.shape})")
    if image.dtype.kind == "f" and np.isnan(image).any():
        raise DataError(f"{path}: image contains NaN values")
    return image


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    return np.asarray(tifffile.imread(path))


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return np.asarray(im)


def image_shape(path: str | Path) -> tuple[int, ...]:
    """Shape of an image without decoding its pixels (TIFF/PNG headers); DataError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tuple(tif.series[0].shape)
        else:
            from PIL import Image

            with Image.open(path) as im:
                bands = len(im.getbands())
                shape = (im.height, im.width) + ((bands,) if bands > 1 else ())
    except Exception as err:  # decoders raise many kinds of errors for corrupt files
        raise DataError(f"{path}: cannot read image ({type(err).__name__}: {err})") from None
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    return shape


def read_label_image(path: Path, image_path: Path, kinds: str = "iub",
                     expected: str = "a 2D integer label image", noun: str = "label"
                     ) -> np.ndarray:
    """Labels ``(Y, X)`` int32 from ``path``, checked against the shape of ``image_path``.

    ``kinds``: accepted numpy dtype kinds; ``expected`` and ``noun`` word the errors.
    """
    labels = read_image(path)
    if labels.ndim != 2 or labels.dtype.kind not in kinds:
        raise DataError(f"{path}: expected {expected}, got {labels.dtype} {labels.shape}")
    shape = image_shape(image_path)[:2]
    if labels.shape != shape:
        raise DataError(f"{path}: {noun} shape {labels.shape} differs from the image {shape}")
    return labels.astype(np.int32)


def write_labels(path: str | Path, labels: np.ndarray) -> Path:
    """Write a label image ``(Y, X)`` (or ``(Z, Y, X)``) as compressed uint16 TIFF."""
    import tifffile

    path = Path(path)
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub":
        raise DataError(f"{path}: labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.uint16).max):
        raise DataError(f"{path}: labels must lie in 0..65535 to be stored as uint16, got "
                        f"{labels.min()}..{labels.max()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, labels.astype(np.uint16), compression="zlib")
    return path


def natural_key(path: str | Path) -> list:
    """Sort key that orders ``t2`` before ``t10``."""
    parts = re.split(r"(\d+)", Path(path).name)
    return [int(p) if p.isdigit() else p.lower() for p in parts]


def list_images(directory: str | Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files directly in ``directory``, in natural order; DataError when there are none."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: folder not found")
    files = [p for p in directory.iterdir()
             if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")]
    if not files:
        raise DataError(f"{directory}: no images ({', '.join(suffixes)}) in this folder")
    return sorted(files, key=natural_key)
