"""napari reader: CTC sequence or result folders, GEFF, OME-Zarr.

``get_reader(path)`` returns a function that makes the layers, or None when
``path`` is none of these, so that napari asks the next reader.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from instatrack.napari.layers import LayerData, graph_from_labels, tracks_layer

ReaderFn = Callable[[str | list[str]], list[LayerData]]


def get_reader(path: str | list[str]) -> ReaderFn | None:
    """The reader for ``path`` (napari passes a path or a list of them)."""
    from instatrack.data.ctc import MASK_PREFIX, RES_TRACK_FILE, is_sequence_dir
    from instatrack.data.geff import is_geff
    from instatrack.data.omezarr import is_omezarr

    path = Path(path[0] if isinstance(path, list) else path)
    if not path.is_dir():
        return None
    if is_omezarr(path):
        return read_omezarr
    if is_geff(path):
        return read_geff_layers
    if is_sequence_dir(path):
        return read_ctc_sequence
    if (path / RES_TRACK_FILE).is_file() and any(path.glob(f"{MASK_PREFIX}*.tif")):
        return read_ctc_result
    return None


def _path(path: str | list[str]) -> Path:
    return Path(path[0] if isinstance(path, list) else path)


def lazy_stack(paths: list[Path]):
    """A dask array ``(T, ...)`` that reads frame ``t`` from ``paths[t]`` when napari shows it."""
    import dask
    import dask.array as da

    from instatrack.data.io import read_image

    first = read_image(paths[0])
    frames = [da.from_delayed(dask.delayed(read_image)(p), first.shape, first.dtype)
              for p in paths]
    return da.stack(frames)


def read_ctc_sequence(path: str | list[str]) -> list[LayerData]:
    """A CTC sequence ``NN``: the frames, and ``NN_GT``'s TRA masks and lineage if present."""
    from instatrack.data.ctc import CTCSequence

    seq = CTCSequence(_path(path))
    layers: list[LayerData] = [(lazy_stack(seq.paths), {"name": seq.name}, "image")]
    if seq.tra_frames:
        masks = _masks(seq.tra_frames, len(seq), seq.shape[:2])
        layers.append((masks, {"name": f"{seq.name} GT"}, "labels"))
        parents = {label: parent for label, _, _, parent in seq.lineage if parent}
        tracks = tracks_layer(graph_from_labels(masks, parents), f"{seq.name} GT tracks")
        layers += [tracks] if tracks else []
    return layers


def _masks(files: dict[int, Path], n_frames: int, shape: tuple[int, int]) -> np.ndarray:
    from instatrack.data.io import read_image

    masks = np.zeros((n_frames, *shape), np.int32)
    for t, file in files.items():
        masks[t] = read_image(file)
    return masks


def read_ctc_result(path: str | list[str]) -> list[LayerData]:
    """A CTC result folder: ``maskTTT.tif`` as Labels, ``res_track.txt`` as the Tracks' lineage.

    Frame ``t`` of the Labels is ``maskTTT.tif`` with that number (empty where there is none).
    """
    from instatrack.data.ctc import (
        MASK_RE,
        RES_TRACK_FILE,
        numbered_files,
        read_mask,
        read_track_table,
    )

    path = _path(path)
    files = numbered_files(path, MASK_RE)
    shape = read_mask(files[min(files)]).shape
    masks = _masks(files, max(files) + 1, shape)
    parents = {label: parent for label, _, _, parent in read_track_table(path / RES_TRACK_FILE)
               if parent}
    layers: list[LayerData] = [(masks, {"name": path.name}, "labels")]
    tracks = tracks_layer(graph_from_labels(masks, parents), f"{path.name} tracks")
    return layers + ([tracks] if tracks else [])


def read_geff_layers(path: str | list[str]) -> list[LayerData]:
    """A GEFF: its masks (relabelled to track ids) as Labels, its graph as Tracks."""
    from instatrack.data.geff import read_geff

    path = _path(path)
    tracks = read_geff(path)
    name = path.stem
    layers: list[LayerData] = []
    if tracks.masks is not None:
        masks = np.stack([tracks.track_masks(t) for t in range(tracks.masks.shape[0])])
        layers.append((masks, {"name": name}, "labels"))
    track_layer = tracks_layer(tracks.graph, f"{name} tracks")
    return layers + ([track_layer] if track_layer else [])


def read_omezarr(path: str | list[str]) -> list[LayerData]:
    """An OME-Zarr image (full resolution, read lazily) and each of its labels images."""
    import dask.array as da

    from instatrack.data.omezarr import OmeZarrImage, ome_attrs

    path = _path(path)
    image = OmeZarrImage(path)
    scale = [s for a, s in zip(image.axes, image.scale, strict=True) if a != "c"]
    meta = {"name": path.stem, "scale": scale}
    if "c" in image.axes:
        meta["channel_axis"] = image.axes.index("c")
    layers: list[LayerData] = [(da.from_zarr(image.array), meta, "image")]
    for name in ome_attrs(path / "labels").get("labels", []):
        labels = OmeZarrImage(path / "labels" / name)
        data = da.from_zarr(labels.array)
        if "c" in labels.axes:
            data = data.squeeze(axis=labels.axes.index("c"))
        layers.append((data, {"name": name, "scale": scale}, "labels"))
    return layers
