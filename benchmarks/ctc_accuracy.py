"""Accuracy on a Cell Tracking Challenge sequence split in time.

Trains a method on the first frames of a sequence (or reuses a trained run),
tracks the held-out last frames it never saw, and scores them with
py-ctcmetrics (SEG, TRA, DET) against the ground truth of those frames only.
``--method classical`` runs the learning-free baseline (threshold, watershed,
IoU linking) on the same frames instead; its settings (see
``classical_baseline.py``) are chosen by ``--tune`` on the validation frames too.

    python benchmarks/ctc_accuracy.py ../shared/data/Fluo-N2DH-SIM+/01 \\
        --method spatial-embedding --split 39 45 --steps 3000 --run runs/sim-se

Frames ``[0, a)`` train, ``[a, b)`` validate (pick the best weights and, with
``--tune KEY=V1,V2,...``, the post-processing values whose SEG + TRA on the
validation frames is best), ``[b, end)`` test. Prints one JSON line with the
scores, the settings used and the split.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def subset_ground_truth(gt_dir: Path, start: int, stop: int, out: Path,
                        frames: list[Path] | None = None) -> Path:
    """Copy GT frames ``[start, stop)`` renumbered from 0, lineage clipped to the window.
    ``frames``: the window's raw frames, linked renumbered into the sequence folder beside
    ``out`` (``out`` named ``NN_GT``), so that the per-object table can say how far each
    object stands over the background (``instatrack.metrics.objects``, ``snr``)."""
    import tifffile

    from instatrack.data.ctc import read_track_table, write_track_table

    if frames is not None:
        if not out.name.endswith("_GT"):
            raise ValueError(f"{out}: the window's ground truth must be named NN_GT")
        raw = out.parent / out.name.removesuffix("_GT")
        raw.mkdir(parents=True, exist_ok=True)
        for t, path in enumerate(frames):
            (raw / f"t{t:03d}{Path(path).suffix}").symlink_to(Path(path).resolve())

    for kind, prefix in (("SEG", "man_seg"), ("TRA", "man_track")):
        (out / kind).mkdir(parents=True, exist_ok=True)
        for path in sorted((gt_dir / kind).glob(f"{prefix}*.tif")):
            t = int(path.stem[len(prefix):])
            if start <= t < stop:
                tifffile.imwrite(out / kind / f"{prefix}{t - start:03d}.tif",
                                 tifffile.imread(path))
    rows = read_track_table(gt_dir / "TRA" / "man_track.txt")
    kept = {}
    for label, begin, end, parent in rows:
        b, e = max(begin, start), min(end, stop - 1)
        if b <= e:
            kept[label] = (b - start, e - start, parent if begin >= start else 0)
    table = [(lab, b, e, p if p in kept else 0) for lab, (b, e, p) in kept.items()]
    write_track_table(out / "TRA" / "man_track.txt", table)
    return out


def lineage_jf(seq, b: int, labels: list[np.ndarray]) -> dict[str, float]:
    """DAVIS J&F of propagated objects: each object of frame ``b`` against itself and,
    after it divides, the union of its descendants (a propagated mask follows the cell,
    the CTC ground truth relabels its daughters)."""
    from instatrack.data.ctc import read_track_table
    from instatrack.metrics.davis import evaluate_davis

    parent = {label: p for label, _, _, p in read_track_table(seq.gt_dir / "TRA" /
                                                                "man_track.txt")}
    first = set(np.unique(np.maximum(seq.labels(b), 0))) - {0}

    def ancestor(label: int) -> int:
        while label not in first and parent.get(label, 0):
            label = parent[label]
        return label if label in first else 0

    gts, preds = [], []
    for t in range(b, len(seq)):
        gt = np.maximum(seq.labels(t), 0)
        lut = np.zeros(int(gt.max()) + 1, np.int32)
        for label in np.unique(gt[gt > 0]):
            lut[label] = ancestor(int(label))
        gts.append(lut[gt])
        preds.append(labels[t - b])
    return {k: round(float(v), 4) for k, v in evaluate_davis(gts, preds, binary=False).items()}


def track_test_frames(args, seq, b: int, res: Path, stop: int | None = None,
                      settings: tuple[str, ...] = ()) -> tuple[float, list[np.ndarray]]:
    """Track frames ``[b, stop)`` into ``res``; returns seconds per frame and the labels."""
    from instatrack.track.export import write_ctc_result

    frames = [seq.image(t) for t in range(b, stop or len(seq))]
    clock = time.perf_counter()
    if args.method == "classical":
        from classical_baseline import track_classical

        labels, graph = track_classical(frames, (*args.infer_set, *settings))
    else:
        import instatrack

        first = np.maximum(seq.labels(b), 0) if seq.labels(b) is not None else None
        predictor = instatrack.load(args.run, overrides=[*args.infer_set, *settings],
                                    weights=args.weights,
                                    object_size=getattr(args, "object_size", None))
        result = predictor.track(frames, first_masks=first)
        labels, graph = result.labels, result.graph
    seconds = (time.perf_counter() - clock) / len(frames)
    write_ctc_result(res, enumerate(labels), graph)
    return seconds, list(labels)


#: py-ctcmetrics measures reported; BC(2) is the F1 of divisions found within 2 frames
MEASURES = ("SEG", "TRA", "DET", "BC(2)")


def choose_settings(args, seq, a: int, b: int, tmp: Path) -> tuple[list[str], list[dict]]:
    """The ``--tune`` combination with the best SEG + TRA on frames ``[a, b)``."""
    from common import settings_grid

    from instatrack.metrics.ctc import evaluate_ctc

    if not args.tune:
        return [], []
    gt = subset_ground_truth(seq.gt_dir, a, b, tmp / "GT_val")
    tried = []
    for i, combo in enumerate(settings_grid(args.tune)):
        res = tmp / f"RES_val{i}"
        track_test_frames(args, seq, a, res, stop=b, settings=combo)
        scores = evaluate_ctc(gt, res, MEASURES)
        tried.append({"settings": list(combo),
                      **{k: round(scores[k], 4) for k in MEASURES}})
        if not args.quiet:
            print(json.dumps(tried[-1]), file=sys.stderr)
    best = max(tried, key=lambda row: row["SEG"] + row["TRA"])
    return best["settings"], tried


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sequence", type=Path, help="CTC sequence folder, e.g. .../01")
    parser.add_argument("--method", default="cosine-hourglass")
    parser.add_argument("--split", type=int, nargs=2, metavar=("A", "B"), required=True,
                        help="train on [0, A), validate on [A, B), test on [B, end)")
    parser.add_argument("--test", type=int, default=None, metavar="C",
                        help="test on [C, end) instead of [B, end) (C >= B), e.g. to compare "
                             "validation windows on the same test frames")
    parser.add_argument("--objects", type=Path, metavar="CSV",
                        help="also write a row per object of the test frames to this file "
                             "(instatrack evaluate --objects) and count the verdicts")
    parser.add_argument("--run", default=None, help="run folder (trained when missing)")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--infer-set", action="append", default=[], metavar="KEY=VALUE",
                        help="post-processing setting changed at inference only")
    parser.add_argument("--tune", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="try these post-processing values on the validation frames")
    parser.add_argument("--weights", default="weights.pt", help="weights.pt or last.pt")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    from common import ensure_trained

    from instatrack.data.ctc import CTCSequence
    from instatrack.metrics.ctc import evaluate_ctc

    seq = CTCSequence(args.sequence)
    a, b = args.split
    start = b if args.test is None else args.test
    if start < b:
        parser.error(f"--test {start} overlaps the validation frames {a}:{b}")
    if args.method != "classical":
        args.run = args.run or f"runs/{args.sequence.parent.name}-{args.method}"
        ensure_trained(args.method, args.sequence, Path(args.run), args.preset,
                       [f"train_frames=0:{a}", f"val_frames={a}:{b}", *args.set], args.steps,
                       args.quiet)
    with tempfile.TemporaryDirectory() as tmp:
        gt = subset_ground_truth(seq.gt_dir, start, len(seq), Path(tmp) / "01_GT",
                                 [seq.frame_path(t) for t in range(start, len(seq))])
        chosen, tried = choose_settings(args, seq, a, b, Path(tmp))
        res = Path(args.run or tmp) / f"RES_{start}-{len(seq)}"
        seconds, labels = track_test_frames(args, seq, start, res, settings=tuple(chosen))
        scores = evaluate_ctc(gt, res, MEASURES)
        if args.objects:
            from common import write_objects

            scores["objects"] = write_objects(gt, res, start, args.objects)
        if args.method == "spatial-propagation":
            scores.update(lineage_jf(seq, start, labels))
    print(json.dumps({"sequence": str(args.sequence), "method": args.method,
                      "train": f"0:{a}", "val": f"{a}:{b}", "test": f"{start}:{len(seq)}",
                      "settings": [*args.infer_set, *chosen], "validation": tried,
                      **{k: round(v, 4) if isinstance(v, float) else v
                         for k, v in scores.items()},
                      "seconds_per_frame": round(seconds, 3)}))


if __name__ == "__main__":
    main()
