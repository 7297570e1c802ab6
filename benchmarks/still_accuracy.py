"""Accuracy on a still-image dataset (e.g. CVPPP A1 leaves) with held-out images.

Images ``[0, A)`` train, ``[A, B)`` validate, ``[B, end)`` test (in the dataset's
natural file order). Prints one JSON line: CVPPP symmetric best Dice (SBD),
mean |DiC| and DiC, foreground Dice and AP on the test images.

    python benchmarks/still_accuracy.py ../shared/data/CVPPP2017_LSC_A1 \\
        --method spatial-embedding --split 48 56 --steps 1500 --run runs/cvppp-se
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--method", default="spatial-embedding")
    parser.add_argument("--split", type=int, nargs=2, metavar=("A", "B"), required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--infer-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    import instatrack
    from instatrack.data import open_dataset
    from instatrack.methods import get_method
    from instatrack.metrics.ap import average_precision
    from instatrack.metrics.cvppp import dic, dice, symmetric_best_dice
    from instatrack.train import train

    a, b = args.split
    run = Path(args.run)
    if not (run / "weights.pt").is_file() or (run / "checkpoint.pt").is_file():
        resume = (run / "checkpoint.pt").is_file()
        overrides = [f"train_frames=0:{a}", f"val_frames={a}:{b}", *args.set]
        if args.steps:
            overrides.append(f"steps={args.steps}")
        config = get_method(args.method).config_cls.build(args.preset, overrides=overrides)
        train(args.method, args.dataset, run, config=None if resume else config,
              resume=resume, progress=not args.quiet)
    (seq,) = open_dataset(args.dataset)
    predictor = instatrack.load(run, overrides=args.infer_set)
    gts, preds = [], []
    clock = time.perf_counter()
    for t in range(b, len(seq)):
        gts.append(seq.labels(t))
        preds.append(predictor.segment(seq.image(t)))
    seconds = (time.perf_counter() - clock) / max(len(preds), 1)
    dics = [dic(g, p) for g, p in zip(gts, preds, strict=True)]
    scores = {
        "SBD": float(np.mean([symmetric_best_dice(g, p) for g, p in zip(gts, preds,
                                                                      strict=True)])),
        "absDiC": float(np.mean(np.abs(dics))), "DiC": float(np.mean(dics)),
        "Dice": float(np.mean([dice(g, p) for g, p in zip(gts, preds, strict=True)])),
        **{k: float(v) for k, v in average_precision(gts, preds).items()},
    }
    print(json.dumps({"dataset": str(args.dataset), "method": args.method,
                      "train": f"0:{a}", "val": f"{a}:{b}", "test": f"{b}:{len(seq)}",
                      **{k: round(v, 4) for k, v in scores.items()},
                      "seconds_per_image": round(seconds, 3)}))


if __name__ == "__main__":
    main()
