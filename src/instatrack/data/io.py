"""Reading images and writing label images, with errors that name the file.

TIFF goes through tifffile, PNG/JPEG through Pillow. Palette ("P" mode) PNGs
are returned as their raw indices, never converted to colours, because label
images are stored that way (CVPPP, DAVIS 2017).

:func:`read_frame` is the one conversion from an image file to what a network
sees (alpha of PNG/JPEG dropped, 3D stacks refused): training readers and
``segment``/``track`` all go through it, so a model meets at inference the
channels it was trained on.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from instatrack.errors import DataError

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (*TIFF_SUFFIXES, ".png", ".jpg", ".jpeg")
#: most channels a 2D image may have; a larger last axis is taken for a 3D stack
MAX_CHANNELS = 4


def read_image(path: str | Path) -> np.ndarray:
    """Read one image as ``(Y, X)`` or ``(Y, X, C)`` (any shape) in its native dtype.

    Leading singleton axes (e.g. a one-page TIFF stored as ``(1, Y, X)``) are
    dropped. Raises :class:`DataError` naming the file when it is missing,
    unreadable (a truncated or corrupt TIFF is said to be one), empty or holds
    NaN or infinite values.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    tiff = path.suffix.lower() in TIFF_SUFFIXES
    try:
        image = _read_tiff(path) if tiff else _read_pillow(path)
    except Exception as err:  # decoders raise many kinds of errors for corrupt files
        raise _unreadable(path, err) from None
    while image.ndim > 2 and image.shape[0] == 1:
        image = image[0]
    if image.size == 0:
        if tiff:  # tifffile returns an empty array when the pages it points to are cut off
            raise DataError(f"{path}: cannot read image: truncated or corrupt TIFF (no pixel "
                            f"data, shape {image.shape})")
        raise DataError(f"{path}: image is empty (shape {image.shape})")
    if image.dtype.kind in "fc" and not np.isfinite(image).all():
        problem = "NaN" if np.isnan(image).any() else "infinite"
        raise DataError(f"{path}: image contains {problem} values")
    return image


def read_frame(path: str | Path) -> np.ndarray:
    """An image as network input reads it: ``(Y, X)`` or ``(Y, X, C)``, ``C <= 4``.

    The alpha channel of a PNG/JPEG (RGBA, LA) is transparency, not signal, and
    is dropped; TIFF channels are kept. A 3D stack is refused (see
    :func:`check_2d`). Every reader of training data and ``segment``/``track``
    use this one function.
    """
    path = Path(path)
    image = read_image(path)
    check_2d(path, image.shape)
    if _has_alpha(path, image.shape):
        image = image[..., :-1]
        if image.shape[-1] == 1:
            image = image[..., 0]
    return image


def frame_channels(path: str | Path) -> int:
    """Channels :func:`read_frame` returns for ``path``, from the header (pixels not decoded)."""
    path = Path(path)
    shape = image_shape(path)
    check_2d(path, shape)
    channels = 1 if len(shape) == 2 else int(shape[-1])
    return channels - 1 if _has_alpha(path, shape) else channels


def check_2d(path: str | Path, shape: tuple[int, ...]) -> None:
    """DataError naming ``path`` unless ``shape`` is a 2D image ``(Y, X)`` / ``(Y, X, C<=4)``."""
    if len(shape) == 2 or (len(shape) == 3 and shape[-1] <= MAX_CHANNELS):
        return
    raise DataError(f"{path}: 3D stacks are not supported (shape {tuple(shape)}); instatrack "
                    f"reads 2D images (Y, X) or (Y, X, C) with C <= {MAX_CHANNELS}")


def _has_alpha(path: Path, shape: tuple[int, ...]) -> bool:
    return (path.suffix.lower() not in TIFF_SUFFIXES and len(shape) == 3
            and shape[-1] in (2, 4))


def _unreadable(path: Path, err: Exception) -> DataError:
    what = "truncated or corrupt TIFF" if path.suffix.lower() in TIFF_SUFFIXES else "corrupt"
    detail = str(err).splitlines()[0] if str(err) else ""
    return DataError(f"{path}: cannot read image: {what} file ({type(err).__name__}: "
                     f"{detail})")


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's log: it reports a cut-off file on stderr, we raise a DataError."""
    log = logging.getLogger("tifffile")
    previous = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = previous


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    with _quiet_tifffile():
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

            with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
                shape = tuple(tif.series[0].shape) if tif.series else (0,)
        else:
            from PIL import Image

            with Image.open(path) as im:
                bands = len(im.getbands())
                shape = (im.height, im.width) + ((bands,) if bands > 1 else ())
    except Exception as err:  # decoders raise many kinds of errors for corrupt files
        raise _unreadable(path, err) from None
    if 0 in shape:
        raise DataError(f"{path}: cannot read image: truncated or corrupt TIFF (no pixel "
                        f"data, shape {shape})")
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
