"""The learning-free reference of the accuracy scripts: settings parsing and a tracked run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from classical_baseline import ClassicalSettings, parse_settings, track_classical  # noqa: E402

from instatrack.data.synth import generate_cells  # noqa: E402
from instatrack.labels import iou_matrix, match_from_iou  # noqa: E402


def test_settings_default_and_typed():
    assert parse_settings() == ClassicalSettings()
    params = parse_settings(["footprint=40", "threshold=otsu", "link_max_distance=300"])
    assert params.footprint == 40 and isinstance(params.footprint, int)
    assert params.threshold == "otsu" and params.link_max_distance == 300.0


@pytest.mark.parametrize(("bad", "named"), [("radius=3", "radius"),
                                             ("threshold=magic", "magic"),
                                             ("division_dilation=-3", "division_dilation")])
def test_bad_setting_is_named(bad, named):
    with pytest.raises(SystemExit, match=named):
        parse_settings([bad])


def test_tracks_clean_synthetic_cells():
    seq = generate_cells(frames=4, size=(96, 96), noise=0.02, seed=3)
    # small nuclei (radius 5-8 px) need seeds closer than the default 9 px
    labels, graph = track_classical(list(seq.images),
                                    ["min_instance_area=20", "sigma=1", "footprint=3"])
    assert labels.shape == seq.labels.shape
    assert graph.number_of_nodes() == sum(len(np.unique(f[f > 0])) for f in labels)
    iou, truth_ids, _ = iou_matrix(seq.labels[0], labels[0])
    rows, _ = match_from_iou(iou, 0.5)
    assert len(rows) >= 0.9 * len(truth_ids)
