"""napari sample data: a synthetic fluorescence time-lapse with its exact ground truth."""

from __future__ import annotations

from instatrack.napari.layers import LayerData, graph_from_labels, tracks_layer


def synthetic_cells(frames: int = 24, size: tuple[int, int] = (128, 128),
                    seed: int = 0) -> list[LayerData]:
    """Image ``(T, Y, X)`` uint16, ground-truth Labels (track ids) and Tracks with lineage."""
    from instatrack.data.synth import generate_cells

    seq = generate_cells(frames=frames, size=size, seed=seed)
    parents = {label: parent for label, _, _, parent in seq.lineage if parent}
    layers: list[LayerData] = [
        (seq.images, {"name": "synthetic cells"}, "image"),
        (seq.labels, {"name": "ground truth", "visible": False}, "labels"),
    ]
    tracks = tracks_layer(graph_from_labels(seq.labels, parents), "ground truth tracks",
                          visible=False)
    return layers + ([tracks] if tracks else [])
