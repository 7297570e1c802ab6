"""Readers on the real datasets under ../shared/data (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_dataset
from instatrack.data import open_dataset
from instatrack.data.sampler import ClipSampler

pytestmark = pytest.mark.realdata


def test_sim_plus_dense_tra_track_ids():
    (seq,) = open_dataset(shared_dataset("Fluo-N2DH-SIM+"))
    assert len(seq) == 65 and seq.dense_tra and seq.channels == 1
    assert seq.image(0).shape == (690, 628)
    labels = seq.labels(10)
    rows = {r[0]: r for r in seq.lineage}
    assert len(rows) == 95
    for label in np.unique(labels[labels > 0]).tolist():
        assert rows[label][1] <= 10 <= rows[label][2]


@pytest.mark.parametrize("name, frames, annotated", [("Fluo-N2DH-GOWT1", 92, 30),
                                                     ("Fluo-C2DL-MSC", 48, 33)])
def test_marker_datasets_relabel_seg_with_track_ids(name, frames, annotated):
    (seq,) = open_dataset(shared_dataset(name))
    assert len(seq) == frames and not seq.dense_tra
    assert len(seq.seg_frames) == annotated
    t = min(seq.seg_frames)
    labels = seq.labels(t)
    track_ids = {r[0] for r in seq.lineage}
    ids = set(np.unique(labels[labels > 0]).tolist())
    assert ids & track_ids, "SEG instances take the ids of their TRA markers"
    assert min(seq.tra_frames) == 0 and seq.labels(max(set(range(frames)) - set(
        seq.seg_frames))) is None


def test_gowt1_unannotated_nuclei_are_ignored():
    (seq,) = open_dataset(shared_dataset("Fluo-N2DH-GOWT1"))
    labels = seq.labels(2)  # man_seg002 outlines 2 of about 23 nuclei
    assert len(np.unique(labels[labels > 0])) == 2
    assert (labels == -1).mean() > 0.05


def test_cvppp_and_davis():
    (plants,) = open_dataset(shared_dataset("CVPPP2017_LSC_A1"))
    assert len(plants) == 66 and plants.image(0).shape == (530, 500, 3)
    assert plants.labels(0).max() >= 11
    (video,) = open_dataset(shared_dataset("DAVIS2016_sample"))
    assert len(video) == 40 and video.image(0).shape == (480, 854, 3)
    assert set(np.unique(video.labels(0)).tolist()) == {0, 1}


def test_sampler_on_real_sequences():
    sequences = open_dataset(shared_dataset("Fluo-C2DL-MSC"))
    sampler = ClipSampler(sequences, clip_len=2, crop=(64, 64), frames=slice(0, 6), seed=0)
    clip = sampler.sample()
    assert clip["image"].shape == (2, 1, 64, 64) and clip["labels"].shape == (2, 64, 64)
