"""napari writers: a Labels layer (+ its Tracks layer, for the lineage) to CTC or GEFF.

The Labels values are the track ids; the Tracks layer's ``graph``
``{child: [parent]}`` gives the divisions. Without a Tracks layer every
track is parentless.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from instatrack.napari.layers import LayerData, graph_from_labels, parents_from_tracks_graph


def _labels_and_parents(layer_data: list[LayerData]) -> tuple[np.ndarray, dict[int, int]]:
    labels = [data for data, _, kind in layer_data if kind == "labels"]
    if len(labels) != 1:
        raise ValueError(f"select one Labels layer to save, got {len(labels)}")
    tracks = [meta for _, meta, kind in layer_data if kind == "tracks"]
    parents = parents_from_tracks_graph(tracks[0].get("graph")) if tracks else {}
    data = np.asarray(labels[0])
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ValueError(f"labels must be (T, Y, X) or (Y, X), got shape {data.shape}")
    return data, parents


def write_ctc(path: str, layer_data: list[LayerData]) -> list[str]:
    """Write ``maskTTT.tif`` + ``res_track.txt`` into the folder ``path``.

    napari's save dialog has asked before replacing ``path``; it is replaced only
    once the new result is complete (:meth:`~instatrack.api.TrackResult.to_ctc`).
    """
    from instatrack.api import TrackResult

    labels, parents = _labels_and_parents(layer_data)
    result = TrackResult(labels, graph_from_labels(labels, parents))
    return [str(result.to_ctc(path, overwrite=True))]


def write_geff(path: str, layer_data: list[LayerData]) -> list[str]:
    """Write a GEFF (``path/tracks``) with the labels as its masks (``path/masks``)."""
    from instatrack.api import TrackResult

    labels, parents = _labels_and_parents(layer_data)
    result = TrackResult(labels, graph_from_labels(labels, parents))
    return [str(result.to_geff(Path(path), overwrite=True))]
