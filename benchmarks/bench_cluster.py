"""Fast vs full HDBSCAN clustering of cosine embeddings, plus linking, on a 512 x 512 pair.

Builds a synthetic sequence (``instatrack.data.synth.generate_cells``, ~60
cells), turns its ground truth into oracle-like embeddings (a random unit
vector per track id orthogonal to a fixed background vector, plus Gaussian
noise per pixel and channel, renormalised), and reports for each mode the
median time to cluster one frame pair (and to link it), and the CTC SEG of the
result against the ground truth.

    OMP_NUM_THREADS=2 python benchmarks/bench_cluster.py [--noise 0.15] [--runs 5]
    python benchmarks/bench_cluster.py --no-full      # skip the minutes-long full run
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from instatrack.cluster.hdbscan import ClusterParams, cluster_embeddings, params_for
from instatrack.data.synth import generate_cells
from instatrack.methods.base import Window
from instatrack.metrics.ctc import seg_frame
from instatrack.track.link import Tracker
from instatrack.track.rules import TrackSettings


def oracle_embeddings(labels: np.ndarray, dim: int = 16, noise: float = 0.15, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``(T, Y, X)`` labels -> embeddings ``(T, d, Y, X)`` float32 and background ``(d,)``."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(int(labels.max()) + 1, dim))
    vectors[:, 0] = 0.0
    vectors[0] = 0.0
    vectors[0, 0] = 1.0
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    emb = vectors[labels] + noise * rng.normal(size=(*labels.shape, dim))
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    return np.moveaxis(emb, -1, 1).astype(np.float32), vectors[0].astype(np.float32)


def seg(gt: np.ndarray, pred: np.ndarray) -> float:
    """CTC SEG over the frames of a ``(T, Y, X)`` pair."""
    scores = [seg_frame(g, p) for g, p in zip(gt, pred, strict=True)]
    return sum(s for s, _ in scores) / max(sum(n for _, n in scores), 1)


def time_mode(emb, background, gt, params: ClusterParams, runs: int) -> dict[str, float]:
    """Median seconds to cluster pair (0, 1), then to link pair (1, 2) after it; SEG of pair 0."""
    cluster_times, link_times = [], []
    for _ in range(runs):
        tracker = Tracker(TrackSettings(min_instance_area=0))
        clock = time.perf_counter()
        first = cluster_embeddings(emb[0:2], params, background)
        cluster_times.append(time.perf_counter() - clock)
        tracker.push(Window(0, first))
        second = cluster_embeddings(emb[1:3], params, background)
        clock = time.perf_counter()
        tracker.push(Window(1, second))
        link_times.append(time.perf_counter() - clock)
    return {"cluster_s": statistics.median(cluster_times),
            "link_s": statistics.median(link_times),
            "seg": seg(gt[0:2], first), "objects": int(len(np.unique(first)) - 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--noise", type=float, default=0.15)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--full-runs", type=int, default=1)
    parser.add_argument("--no-full", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-samples", type=int, default=ClusterParams.cluster_max_samples)
    args = parser.parse_args(argv)

    seq = generate_cells(frames=3, size=(args.size, args.size), seed=args.seed, density=2.0,
                         radius=(10.0, 16.0), speed=2.0, noise=0.1)
    gt = seq.labels
    emb, background = oracle_embeddings(gt, noise=args.noise, seed=args.seed)
    cluster_embeddings(emb[0:2, :, :64, :64], params_for("cells"), background)  # warm imports
    n_cells = len(np.unique(gt[0])) - 1
    foreground = float((gt[:2] > 0).mean())
    print(f"{args.size}x{args.size} pair, {n_cells} cells, {foreground:.0%} foreground, "
          f"embedding noise {args.noise} per channel (d=16)")
    fast_params = params_for("cells", cluster_fast=True,
                             cluster_max_samples=args.max_samples)
    results = {"fast": time_mode(emb, background, gt, fast_params, args.runs)}
    if not args.no_full:
        results["full"] = time_mode(emb, background, gt, params_for("cells", cluster_fast=False),
                                    args.full_runs)
    for name, r in results.items():
        print(f"{name:>5}: cluster {r['cluster_s']:.3f} s, link {r['link_s']:.3f} s, "
              f"SEG {r['seg']:.4f}, {r['objects']} objects")
    if "full" in results:
        fast, full = results["fast"], results["full"]
        print(f"speed-up {full['cluster_s'] / fast['cluster_s']:.0f}x, "
              f"SEG difference {fast['seg'] - full['seg']:+.4f}")


if __name__ == "__main__":
    main()
