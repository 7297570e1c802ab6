"""Accuracy on a still-image dataset (e.g. CVPPP A1 leaves) with held-out images.

Images ``[0, A)`` train, ``[A, B)`` validate, ``[B, end)`` test (in the dataset's
natural file order). Prints one JSON line: CVPPP symmetric best Dice (SBD),
mean |DiC| and DiC, foreground Dice and AP on the test images.

    python benchmarks/still_accuracy.py ../shared/data/CVPPP2017_LSC_A1 \\
        --method spatial-embedding --split 48 56 --steps 1500 --run runs/cvppp-se \\
        --tune seed_threshold=0.5,0.7,0.9 --tune min_instance_area=20,100

``--tune KEY=V1,V2,...`` (repeatable) tries every combination of post-processing
values on the validation images and keeps the one with the best SBD for the
test images; ``--infer-set KEY=VALUE`` fixes a value without trying.
"""

from __future__ import annotations

import argparse
import json
import sys
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
    parser.add_argument("--tune", action="append", default=[], metavar="KEY=V1,V2,...")
    parser.add_argument("--weights", default="weights.pt", help="weights.pt or last.pt")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    from common import ensure_trained

    import instatrack
    from instatrack.data import open_dataset

    a, b = args.split
    run = ensure_trained(args.method, args.dataset, Path(args.run), args.preset,
                         [f"train_frames=0:{a}", f"val_frames={a}:{b}", *args.set], args.steps,
                         args.quiet)
    (seq,) = open_dataset(args.dataset)
    chosen, tried = choose_settings(args, run, seq, range(a, b))
    predictor = instatrack.load(run, overrides=[*args.infer_set, *chosen], weights=args.weights)
    clock = time.perf_counter()
    gts, preds = segment_all(predictor, seq, range(b, len(seq)))
    seconds = (time.perf_counter() - clock) / max(len(preds), 1)
    scores = still_scores(gts, preds)
    print(json.dumps({"dataset": str(args.dataset), "method": args.method,
                      "train": f"0:{a}", "val": f"{a}:{b}", "test": f"{b}:{len(seq)}",
                      "settings": [*args.infer_set, *chosen], "validation": tried,
                      **{k: round(v, 4) for k, v in scores.items()},
                      "seconds_per_image": round(seconds, 3)}))


def segment_all(predictor, seq, indices) -> tuple[list, list]:
    gts, preds = [], []
    for t in indices:
        gts.append(seq.labels(t))
        preds.append(predictor.segment(seq.image(t)))
    return gts, preds


def still_scores(gts: list, preds: list) -> dict[str, float]:
    """SBD, |DiC|, DiC, foreground Dice and AP averaged over images."""
    from instatrack.metrics.ap import average_precision
    from instatrack.metrics.cvppp import dic, dice, symmetric_best_dice

    pairs = list(zip(gts, preds, strict=True))
    dics = [dic(g, p) for g, p in pairs]
    return {
        "SBD": float(np.mean([symmetric_best_dice(g, p) for g, p in pairs])),
        "absDiC": float(np.mean(np.abs(dics))), "DiC": float(np.mean(dics)),
        "Dice": float(np.mean([dice(g, p) for g, p in pairs])),
        **{k: float(v) for k, v in average_precision(gts, preds).items()},
    }


def choose_settings(args, run: Path, seq, indices) -> tuple[list[str], list[dict]]:
    """The ``--tune`` combination with the best validation SBD, and every one tried."""
    from common import settings_grid

    import instatrack

    if not args.tune:
        return [], []
    tried = []
    for combo in settings_grid(args.tune):
        predictor = instatrack.load(run, overrides=[*args.infer_set, *combo],
                                    weights=args.weights)
        scores = still_scores(*segment_all(predictor, seq, indices))
        tried.append({"settings": list(combo), "SBD": round(scores["SBD"], 4),
                      "absDiC": round(scores["absDiC"], 4)})
        if not args.quiet:
            print(json.dumps(tried[-1]), file=sys.stderr)
    best = max(tried, key=lambda row: (row["SBD"], -row["absDiC"]))
    return best["settings"], tried


if __name__ == "__main__":
    main()
