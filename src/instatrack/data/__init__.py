"""Data layer: readers and writers, synthetic data, normalisation, clip sampling, augmentation.

:func:`open_dataset` recognises a Cell Tracking Challenge dataset or sequence,
a CVPPP ``A1`` folder, a DAVIS folder or a plain ``images/`` + ``masks/``
folder and returns its sequences (see :class:`instatrack.data.types.Sequence`).
"""

from __future__ import annotations

from pathlib import Path

from instatrack.data.io import list_images, read_image, write_labels
from instatrack.data.normalize import normalize
from instatrack.data.types import Sequence
from instatrack.errors import DataError

__all__ = ["Sequence", "list_images", "normalize", "open_dataset", "read_image", "write_labels"]


def open_dataset(path: str | Path) -> list[Sequence]:
    """The training sequences of the dataset at ``path``, whatever its layout.

    Tries, in order: CTC (dataset folder with ``NN``/``NN_GT`` or one ``NN``
    folder), CVPPP (``A1`` or its parent), DAVIS (``JPEGImages`` +
    ``Annotations``), plain folder (``images/`` + ``masks/`` or ``labels/``).
    Raises :class:`DataError` naming ``path`` when none fits.
    """
    from instatrack.data import ctc, cvppp, davis, folder

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: dataset folder not found")
    if not path.is_dir():
        raise DataError(f"{path}: expected a dataset folder, got a file")
    for module in (ctc, cvppp, davis, folder):
        if module.recognises(path):
            return module.open_sequences(path)
    raise DataError(
        f"{path}: not a recognised dataset (expected a CTC dataset with NN/tTTT.tif, a CVPPP "
        f"A1 folder, a DAVIS folder with JPEGImages/ and Annotations/, or images/ + masks/)")
