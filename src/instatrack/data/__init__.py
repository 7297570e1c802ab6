"""Data layer: readers and writers, synthetic data, normalisation, clip sampling, augmentation.

:func:`open_dataset` recognises a Cell Tracking Challenge dataset or sequence,
a CVPPP ``A1`` folder, a DAVIS folder or a plain ``images/`` + ``masks/``
folder and returns its sequences (see :class:`instatrack.data.types.Sequence`).
:func:`open_images` finds the images to segment or the frames to track in one
folder, in the same layouts, read through the same conversion as training, or
in an OME-Zarr image.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from instatrack.data.io import list_images, read_frame, read_image, write_labels
from instatrack.data.normalize import normalize
from instatrack.data.types import Sequence
from instatrack.errors import DataError

__all__ = ["Sequence", "list_images", "normalize", "open_dataset", "open_datasets", "open_grouped",
           "open_images", "read_frame", "read_image", "write_labels"]


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


def open_datasets(paths: str | Path | Iterable[str | Path]) -> list[Sequence]:
    """The training sequences of one dataset or of several, in the order given.

    Several datasets are trained on together, so their images must have one
    number of channels; :class:`DataError` names the folders when they differ.
    """
    return open_grouped(paths)[0]


def open_grouped(paths: str | Path | Iterable[str | Path]) -> tuple[list[Sequence], list[int]]:
    """``(sequences, groups)``: :func:`open_datasets` and, for each sequence, the index
    of the dataset folder it came from (the training sampler balances datasets by it)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise DataError("no dataset folder given")
    sequences: list[Sequence] = []
    groups: list[int] = []
    channels: dict[int, Path] = {}
    for index, path in enumerate(paths):
        found = open_dataset(path)
        for seq in found:
            channels.setdefault(seq.channels, Path(path))
        sequences += found
        groups += [index] * len(found)
    if len(channels) > 1:
        kinds = ", ".join(f"{path}: {n} channel(s)" for n, path in sorted(channels.items()))
        raise DataError(f"the datasets differ in their number of channels ({kinds}); train "
                        f"on datasets with the same number")
    return sequences, groups


def open_images(path: str | Path, video: bool = False) -> Sequence:
    """The images to segment (``video=False``) or the frames to track in the folder ``path``.

    An OME-Zarr image (:class:`~instatrack.data.omezarr.OmeZarrImage`, read one
    frame at a time; needs the ``[zarr]`` extra) gives its frames. Otherwise it
    recognises the layouts training reads: a CTC sequence folder (``tTTT.tif``;
    a missing frame is refused, other images are ignored with a warning), a
    CVPPP folder (``plantNNN_rgb.png``; the label images are not inputs), a
    folder with ``images/``, a DAVIS root holding one video; any other folder
    gives its images (see :class:`~instatrack.data.folder.ImageFolder`). Every
    image is read by the layout's reader, i.e. as in training. The result has
    ``times``: the frame number of each image (from its name where the layout
    numbers frames, else its position). ``video=True`` also checks that the
    frames share one shape and do not skip a number.
    """
    from instatrack.data import ctc, cvppp, davis, folder, omezarr

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: input folder not found")
    if not path.is_dir():
        raise DataError(f"{path}: expected a folder of images, got a file")
    if omezarr.is_omezarr(path):
        return omezarr.OmeZarrImage(path)
    if ctc.is_sequence_dir(path):
        return ctc.CTCSequence(path)
    if cvppp.holds_images(path):
        return cvppp.CVPPPSequence(path)
    if folder.recognises(path):
        return (folder.ImageFolder(path / "images", video=True) if video
                else folder.FolderSequence(path))
    if davis.recognises(path):
        videos = davis.video_folders(path)
        if len(videos) != 1:
            names = ", ".join(p.name for p in videos[:5]) or "none"
            raise DataError(f"{path}: DAVIS folder with {len(videos)} videos ({names}); give "
                            f"one video's folder JPEGImages/<resolution>/<name>")
        return folder.ImageFolder(videos[0], video=video)
    return folder.ImageFolder(path, video=video)
