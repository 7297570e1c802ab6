"""DAVIS J&F of semi-supervised propagation on a video, given its first frame's masks.

Only the first frame's annotation is used for learning: the foreground network
and the SPN train on frames ``--train-frames`` (default ``0:1``, the given
frame, heavily augmented), the per-object heads are fine-tuned on it at
inference, and every later frame is judged against its ground truth with the
DAVIS region similarity J and contour accuracy F (first and last frame left
out, as in DAVIS). Prints one JSON line per video (and their mean when there are
several, e.g. held-out synthetic videos from ``instatrack synth --kind video``).

    python benchmarks/propagation_accuracy.py ../shared/data/DAVIS2016_sample \\
        --steps 1500 --run runs/davis-spn

``--infer-set KEY=VALUE`` changes post-processing at inference (e.g.
``score_threshold``, ``finetune_steps``); ``--out`` writes the DAVIS-layout masks;
``--per-frame`` adds each frame's J and F (``"per_frame"``), to see where the masks
drift.

``--model`` judges a network that never saw the video instead (a run folder or a
shipped model, e.g. one pretrained on synthetic videos): nothing is trained, only
the per-object heads are fine-tuned on the first frame at inference, as always.

    python benchmarks/propagation_accuracy.py ../shared/data/DAVIS2016_sample \\
        --model objects-spn
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
    parser.add_argument("--run", help="run folder (trained on the video when missing)")
    parser.add_argument("--model", help="run folder or shipped model to judge as it is "
                                        "(trained elsewhere; --run and training flags unused)")
    parser.add_argument("--train-frames", default="0:1")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--infer-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=None, help="write predicted masks here")
    parser.add_argument("--per-frame", action="store_true",
                        help="also print each frame's J and F (mean over objects)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    from common import ensure_trained

    import instatrack
    from instatrack.data import open_dataset
    if (args.run is None) == (args.model is None):
        parser.error("give one of --run (train on the video) or --model (judge as it is)")
    if args.model is not None:
        run, trained_on = args.model, "elsewhere"
    else:
        run = ensure_trained("spatial-propagation", args.dataset, Path(args.run), args.preset,
                             [f"train_frames={args.train_frames}", "val_frames=", *args.set],
                             args.steps, args.quiet)
        trained_on = args.train_frames
    predictor = instatrack.load(run, overrides=args.infer_set)
    sequences = open_dataset(args.dataset)
    rows = []
    for seq in sequences:
        out = None if args.out is None else \
            args.out / seq.name if len(sequences) > 1 else args.out
        scores, frames = judge(predictor, seq, out, args.per_frame)
        rows.append(scores)
        extra = {"per_frame": frames} if frames else {}
        print(json.dumps({"dataset": str(args.dataset), "sequence": seq.name,
                          "model": str(run), "train_frames": trained_on,
                          "infer_set": args.infer_set, **scores, **extra}), flush=True)
    if len(rows) > 1:
        print(json.dumps({"dataset": str(args.dataset), "sequence": f"mean of {len(rows)}",
                          "model": str(run), "train_frames": trained_on,
                          "infer_set": args.infer_set,
                          **{k: round(float(np.mean([r[k] for r in rows])), 4)
                             for k in rows[0]}}))


def judge(predictor, seq, out: Path | None, per_frame: bool = False
          ) -> tuple[dict[str, float], dict[str, list[float]] | None]:
    """Propagate ``seq``'s first annotated masks through it: its DAVIS scores and speed,
    and with ``per_frame`` each frame's J and F (else None)."""
    from instatrack.metrics.davis import davis_with_per_frame, evaluate_davis

    frames = [seq.image(t) for t in range(len(seq))]
    gts = [np.maximum(seq.labels(t), 0) for t in range(len(seq))]
    clock = time.perf_counter()
    result = predictor.track(frames, first_masks=gts[0])
    seconds = (time.perf_counter() - clock) / max(len(frames) - 1, 1)
    if out is not None:
        from instatrack.data.davis import write_annotation

        out.mkdir(parents=True, exist_ok=True)
        for t, labels in enumerate(result.labels):
            write_annotation(out / f"{t:05d}.png", labels)
    if per_frame:  # each frame scored once for both
        scores, frames = davis_with_per_frame(gts, list(result.labels))
        frames = {k: [round(v, 3) for v in values] for k, values in frames.items()}
    else:
        scores, frames = evaluate_davis(gts, list(result.labels)), None
    return ({**{k: round(float(v), 4) for k, v in scores.items()},
             "seconds_per_frame": round(seconds, 3)}, frames)

if __name__ == "__main__":
    main()
