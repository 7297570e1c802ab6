"""DAVIS J&F of semi-supervised propagation on one video, given its first frame's masks.

Only the first frame's annotation is used for learning: the foreground network
and the SPN train on frames ``--train-frames`` (default ``0:1``, the given
frame, heavily augmented), the per-object heads are fine-tuned on it at
inference, and every later frame is judged against its ground truth with the
DAVIS region similarity J and contour accuracy F (first and last frame left
out, as in DAVIS). Prints one JSON line.

    python benchmarks/propagation_accuracy.py ../shared/data/DAVIS2016_sample \\
        --steps 1500 --run runs/davis-spn

``--infer-set KEY=VALUE`` changes post-processing at inference (e.g.
``score_threshold``, ``finetune_steps``); ``--out`` writes the DAVIS-layout masks.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="DAVIS root (JPEGImages/, Annotations/)")
    parser.add_argument("--run", required=True, help="run folder (trained when missing)")
    parser.add_argument("--train-frames", default="0:1")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--infer-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=None, help="write predicted masks here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    from common import ensure_trained

    import instatrack
    from instatrack.data import open_dataset
    from instatrack.metrics.davis import evaluate_davis

    run = ensure_trained("spatial-propagation", args.dataset, Path(args.run), args.preset,
                         [f"train_frames={args.train_frames}", "val_frames=", *args.set],
                         args.steps, args.quiet)
    (seq,) = open_dataset(args.dataset)
    frames = [seq.image(t) for t in range(len(seq))]
    gts = [np.maximum(seq.labels(t), 0) for t in range(len(seq))]
    predictor = instatrack.load(run, overrides=args.infer_set)
    clock = time.perf_counter()
    result = predictor.track(frames, first_masks=gts[0])
    seconds = (time.perf_counter() - clock) / max(len(frames) - 1, 1)
    if args.out is not None:
        from instatrack.data.davis import write_annotation

        args.out.mkdir(parents=True, exist_ok=True)
        for t, labels in enumerate(result.labels):
            write_annotation(args.out / f"{t:05d}.png", labels)
    scores = evaluate_davis(gts, list(result.labels))
    print(json.dumps({"dataset": str(args.dataset), "sequence": seq.name,
                      "train_frames": args.train_frames,
                      **{k: round(float(v), 4) for k, v in scores.items()},
                      "seconds_per_frame": round(seconds, 3)}))


if __name__ == "__main__":
    main()
