"""A fingerprint of the tracking output: one hash that must not move in a refactor.

Trains nothing. It runs

- the tracker on the exact labels of a synthetic time-lapse
  (:func:`instatrack.data.synth.generate_cells`) after seeded damage (missed
  objects, slivers beside cells, cells cut in two, shuffled ids), pushed as
  one-frame, overlapping two-frame and already-tracked windows, under several
  tracker settings;
- the learning-free baseline (``classical_baseline.py``) on a synthetic sequence;
- every registered method's inference and post-processing on a synthetic
  sequence with its network at fixed random weights (``torch.manual_seed``).

and hashes the label movies and the track graphs (node ids, attributes, edges).
A change that should not alter any result (a refactor) must print the same
hash before and after; ``--verbose`` prints one hash per case to find the one
that moved.

    OMP_NUM_THREADS=1 PYTHONPATH=src python3 benchmarks/tracking_fingerprint.py
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import sys
from pathlib import Path

import numpy as np

#: tracker settings tried on the damaged labels (``key=value`` as for ``--set``)
TRACKER_CASES = {
    "defaults": [],
    "short tracks": ["min_track_length=3"],
    "distance": ["link_max_distance=15"],
    "every division": ["division_min_frames=1"],
    "no gaps": ["link_max_gap=0", "division_search_frames=1"],
    "unbalanced": ["division_balance=0"],
    "large only": ["min_instance_area=40"],
    "strict iou": ["link_iou_threshold=0.5", "division_dilation=0"],
    "all on": ["min_track_length=2", "link_max_distance=10", "link_max_gap=3",
               "division_search_frames=4"],
}

#: small fast-preset overrides per method so that random weights still produce objects
METHOD_CASES = {
    "cosine-hourglass": ["levels=3", "filters=8", "cluster_background_cos=0.99"],
    "spatial-embedding": ["seed_threshold=0.3", "fg_threshold=0.3", "min_instance_area=8"],
    "recurrent-instance": ["max_steps=6"],
    "spatial-propagation": ["finetune_steps=3", "finetune_pool=2"],
}


def damaged_labels(labels: np.ndarray, seed: int) -> np.ndarray:
    """``(T, Y, X)`` labels with objects dropped, slivers added and cells cut in two."""
    rng = np.random.default_rng(seed)
    out = labels.copy()
    top = int(labels.max()) + 1
    for frame in out:
        for label in np.unique(frame[frame > 0]):
            ys, xs = np.nonzero(frame == label)
            roll = rng.random()
            if roll < 0.08:
                frame[ys, xs] = 0
            elif roll < 0.16:  # cut in two halves, or into a cell and a sliver
                right = xs > np.percentile(xs, 50 if roll < 0.12 else 85)
                frame[ys[right], xs[right]] = top
                top += 1
            elif roll < 0.24:
                y, x = int(ys.max()) + 2, int(xs.mean())
                frame[y:y + 3, x:x + 3][frame[y:y + 3, x:x + 3] == 0] = top
                top += 1
    return out


def shuffled(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same objects under other ids (consistent within ``labels``)."""
    lut = np.r_[0, rng.permutation(np.arange(1000, 1000 + int(labels.max())))]
    return lut[labels].astype(np.int32)


def run_tracker(tracker, windows) -> tuple[np.ndarray, object]:
    from instatrack.methods.base import Window

    final = {}
    for start, labels, tracked in windows:
        final.update(tracker.push(Window(start, labels, tracked=tracked)))
    final.update(tracker.finish())
    return np.stack([final[t] for t in sorted(final)]), tracker.graph


def make_tracker(overrides: list[str]):
    """The tracker the shared config builds from ``overrides``."""
    from instatrack.config import TrainConfig
    from instatrack.track.link import Tracker

    config = TrainConfig.build(overrides=overrides)
    if hasattr(Tracker, "from_config"):  # before the settings owned by track/ (issue 18)
        return Tracker.from_config(config)
    return Tracker(config)


def tracker_cases():
    """``(name, labels (T, Y, X), graph)`` of every tracker case."""
    from instatrack.data.synth import generate_cells

    seq = generate_cells(frames=24, size=(96, 96), seed=4, division_rate=0.08)
    damaged = damaged_labels(seq.labels, seed=0)
    rng = np.random.default_rng(1)
    single = [(t, shuffled(damaged[t:t + 1], rng), False) for t in range(len(damaged))]
    pairs = [(t, shuffled(damaged[t:t + 2], rng), False) for t in range(len(damaged) - 1)]
    tracked = [(t, seq.labels[t:t + 1], True) for t in range(len(seq.labels))]
    jumps = damaged[::4]  # every fourth frame: cells move past their own size
    for name, overrides in TRACKER_CASES.items():
        for kind, windows in (("single", single), ("pairs", pairs)):
            yield (f"tracker {name} {kind}", *run_tracker(make_tracker(overrides), windows))
    yield ("tracker tracked windows", *run_tracker(make_tracker([]), tracked))
    for name in ("defaults", "distance", "all on"):
        windows = [(t, shuffled(jumps[t:t + 1], rng), False) for t in range(len(jumps))]
        yield (f"tracker {name} jumps", *run_tracker(make_tracker(TRACKER_CASES[name]), windows))


def classical_cases():
    """``(name, labels (T, Y, X), graph)`` of the learning-free baseline beside this script."""
    from instatrack.data.synth import generate_cells

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from classical_baseline import track_classical

    seq = generate_cells(frames=8, size=(96, 96), seed=3, noise=0.05)
    for name, settings in (("defaults", []),
                           ("small cells", ["sigma=1", "footprint=3", "link_max_distance=20"])):
        yield (f"classical {name}", *track_classical(list(seq.images), settings))


def method_cases():
    """``(name, labels (T, Y, X), graph)`` of every method at fixed random weights."""
    import torch

    from instatrack.api import Predictor
    from instatrack.data.synth import generate_cells
    from instatrack.methods import get_method

    seq = generate_cells(frames=6, size=(64, 64), seed=7)
    for name, overrides in METHOD_CASES.items():
        method_cls = get_method(name)
        config = method_cls.config_cls.build("fast", overrides=["crop=32,32", *overrides])
        method = method_cls(config)
        torch.manual_seed(0)
        model = method.build_model().eval()
        first = seq.labels[0] if name == "spatial-propagation" else None
        result = Predictor(method, model, "cpu").track(list(seq.images), first_masks=first)
        yield f"method {name}", result.labels, result.graph


def digest(labels: np.ndarray, graph) -> str:
    h = hashlib.sha256()
    h.update(repr(labels.shape).encode())
    h.update(np.ascontiguousarray(labels, dtype=np.int32).tobytes())
    for node in sorted(graph.nodes):
        attrs = graph.nodes[node]
        h.update(repr((node, *(attrs[k] for k in ("t", "label", "y", "x", "area")))).encode())
    h.update(repr(sorted(graph.edges)).encode())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verbose", action="store_true", help="one hash per case")
    args = parser.parse_args()
    total = hashlib.sha256()
    for name, labels, graph in itertools.chain(tracker_cases(), classical_cases(), method_cases()):
        case = digest(labels, graph)
        total.update(case.encode())
        if args.verbose:
            tracks = len({d["label"] for _, d in graph.nodes(data=True)})
            print(f"{case[:16]}  {name}: {graph.number_of_nodes()} nodes, {tracks} tracks, "
                  f"{graph.number_of_edges()} edges")
    print(total.hexdigest())


if __name__ == "__main__":
    main()
