"""Whole post-processing chain on a synthetic movie with oracle embeddings.

Ground truth -> a random unit vector per track id (orthogonal to a fixed
background vector; drawn anew for every frame pair, as a network owes no
consistency between pairs) + noise -> HDBSCAN over frame pairs -> Tracker -> CTC folder
-> SEG/TRA/DET with py-ctcmetrics. With oracle embeddings nothing but the
clustering and linking can fail, so the scores must be (nearly) perfect and
every division must be found.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from instatrack.cluster.hdbscan import ClusterParams, cluster_embeddings, params_for
from instatrack.data.ctc import write_track_table
from instatrack.data.synth import generate_cells
from instatrack.methods.base import Window
from instatrack.metrics.ctc import evaluate_ctc
from instatrack.track.export import graph_to_ctc_table, write_ctc_result
from instatrack.track.link import Tracker
from instatrack.track.rules import TrackSettings


def oracle_embeddings(labels: np.ndarray, dim: int = 8, noise: float = 0.1, seed: int = 0):
    """``(T, Y, X)`` labels -> ``(T, d, Y, X)`` unit embeddings and the background ``(d,)``."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(int(labels.max()) + 1, dim))
    vectors[:, 0] = 0.0
    vectors[0] = np.eye(dim)[0]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    emb = vectors[labels] + noise * rng.normal(size=(*labels.shape, dim))
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    return np.moveaxis(emb, -1, 1).astype(np.float32), vectors[0]


def write_gt(gt_dir, labels: np.ndarray, lineage) -> None:
    for sub in ("SEG", "TRA"):
        (gt_dir / sub).mkdir(parents=True)
    for t, frame in enumerate(labels):
        tifffile.imwrite(gt_dir / "SEG" / f"man_seg{t:03d}.tif", frame.astype(np.uint16))
        tifffile.imwrite(gt_dir / "TRA" / f"man_track{t:03d}.tif", frame.astype(np.uint16))
    write_track_table(gt_dir / "TRA" / "man_track.txt", lineage)


def divisions_found(gt: np.ndarray, lineage, res: np.ndarray, rows) -> list[bool]:
    """For each GT daughter of a division with two visible daughters: does its RES track
    start there with the mother's RES track as parent?

    (The generator also writes one-daughter links when a sister is born outside
    the field of view; those are indistinguishable from a moving cell.)
    """
    parent_of = {label: parent for label, _, _, parent in rows}
    begin_of = {label: begin for label, begin, _, _ in rows}
    span = {label: (begin, end) for label, begin, end, _ in lineage}
    n_children = np.bincount([parent for *_, parent in lineage], minlength=len(lineage) + 2)
    found = []
    for label, begin, _, parent in lineage:
        if not parent or n_children[parent] < 2:
            continue
        mother_end = span[parent][1]
        mother = np.bincount(res[mother_end][gt[mother_end] == parent]).argmax()
        daughter = np.bincount(res[begin][gt[begin] == label]).argmax()
        found.append(bool(daughter) and begin_of[daughter] == begin
                     and parent_of[daughter] == mother)
    return found


def run_oracle_chain(labels: np.ndarray, params: ClusterParams, tracker: Tracker, seed: int = 0):
    """Cluster oracle embeddings of ``labels`` pair by pair and track; ``{t: labels}``."""
    final = {}
    for t in range(len(labels) - 1):
        emb, background = oracle_embeddings(labels[t:t + 2], dim=16, noise=0.15, seed=seed + t)
        final.update(tracker.push(Window(t, cluster_embeddings(emb, params, background))))
    final.update(tracker.finish())
    return final


@pytest.mark.parametrize("seed", [0, 3])
def test_oracle_clustering_and_linking_is_perfect(tmp_path, seed):
    seq = generate_cells(frames=12, size=(96, 96), seed=seed, division_rate=0.06)
    assert any(parent for *_, parent in seq.lineage)  # the movie has divisions
    params = ClusterParams(cluster_min_cluster_size=10, cluster_min_samples=5,
                           min_instance_area=5)
    tracker = Tracker(TrackSettings(min_instance_area=5))
    final = run_oracle_chain(seq.labels, params, tracker, seed=seed)
    assert sorted(final) == list(range(12))

    res_dir = write_ctc_result(tmp_path / "01_RES", sorted(final.items()), tracker.graph)
    write_gt(tmp_path / "01_GT", seq.labels, seq.lineage)
    scores = evaluate_ctc(tmp_path / "01_GT", res_dir)
    assert scores["SEG"] >= 0.98
    assert scores["TRA"] >= 0.98
    res = np.stack([final[t] for t in range(12)])
    found = divisions_found(seq.labels, seq.lineage, res, graph_to_ctc_table(tracker.graph))
    assert found and all(found)


@pytest.mark.realdata
def test_oracle_chain_on_fluo_n2dh_sim(tmp_path):
    from conftest import shared_dataset
    from instatrack.data.ctc import read_track_table

    tra = shared_dataset("Fluo-N2DH-SIM+") / "01_GT" / "TRA"
    n = 16  # frames 0..15 hold the first divisions (frame 10)
    labels = np.stack([tifffile.imread(tra / f"man_track{t:03d}.tif").astype(np.int32)
                       for t in range(n)])
    lineage = [(label, b, min(e, n - 1), p) for label, b, e, p in
               read_track_table(tra / "man_track.txt") if b < n]
    tracker = Tracker(TrackSettings(min_instance_area=20))
    final = run_oracle_chain(labels, params_for("cells"), tracker)
    res_dir = write_ctc_result(tmp_path / "01_RES", sorted(final.items()), tracker.graph)
    write_gt(tmp_path / "01_GT", labels, lineage)
    scores = evaluate_ctc(tmp_path / "01_GT", res_dir)
    assert scores["SEG"] >= 0.97 and scores["TRA"] >= 0.98
    res = np.stack([final[t] for t in range(n)])
    found = divisions_found(labels, lineage, res, graph_to_ctc_table(tracker.graph))
    assert found and all(found)
