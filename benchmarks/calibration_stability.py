"""How much calibration's choice depends on which few validation frames it sees.

For one model (a run folder or a shipped name) and one annotated CTC sequence, the
post-processing is chosen (``instatrack calibrate``) on each validation window in turn,
twice: as calibration chooses (a value must beat the model's own beyond the frames'
noise, :func:`instatrack.calibrate.noise`), and with the noise taken as 0 (the best
score wins, as before session 22). Each choice is scored on the same test frames, which
no window overlaps. A rule whose test scores spread less over the windows depends less
on which frames a user happens to annotate.

    python benchmarks/calibration_stability.py nuclei-ch ../shared/data/Fluo-C2DL-MSC/02 \\
        --windows 18:24 24:30 30:36 --test 36 --out runs/calstab

Both rules score the same combinations on a window once: the second reuses the first's
scores (the calibration's own ``calibration.partial.json``), so it only scores the
values its different path leads to. Prints one JSON line per window and rule, and a
Markdown table at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def calibrated(model: str, seq: str, window: str, out: Path, rule: str, seed_from: Path | None):
    """A copy of ``model`` in ``out`` calibrated on ``window`` of ``seq`` by ``rule``
    (``noise`` or ``best``); ``seed_from``: a run folder whose kept partial scores to reuse.
    Returns the calibration record."""
    from unittest import mock

    from instatrack import calibrate as module
    from instatrack.runs import Run

    run = module.copy_to_calibrate(Run.resolve(model), out, window, seq)
    if seed_from is not None:
        shutil.copy(seed_from / module.PARTIAL_FILE, out / module.PARTIAL_FILE)
    patches = [mock.patch.object(module._Partial, "remove", lambda self: None)]
    if rule == "best":
        patches.append(mock.patch.object(module, "noise", lambda *args, **kwargs: 0.0))
    for patch in patches:
        patch.start()
    try:
        return module.calibrate(run, data=seq)
    finally:
        for patch in patches:
            patch.stop()


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from zero_shot import ctc_scores

    import instatrack
    from instatrack.calibrate import calibrated_values
    from instatrack.runs import Run

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a shipped model's name or a run folder")
    parser.add_argument("sequence", help="an annotated CTC sequence folder")
    parser.add_argument("--windows", nargs="+", required=True, metavar="A:B",
                        help="validation windows, each calibrated on in turn")
    parser.add_argument("--test", type=int, required=True, metavar="FIRST",
                        help="the test frames: FIRST to the end (after every window)")
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the runs")
    args = parser.parse_args()
    rows = []
    for window in args.windows:
        seed_from = None
        for rule in ("noise", "best"):
            out = args.out / f"{window.replace(':', '-')}-{rule}"
            record = calibrated(args.model, args.sequence, window, out, rule, seed_from)
            seed_from = out
            predictor = instatrack.load(out, device="cpu")
            scores = ctc_scores(predictor, f"{args.sequence}:{args.test}")
            own = calibrated_values(Run.resolve(args.model).config)
            changed = {k: v for k, v in record["chosen"].items()
                       if json.dumps(v) != json.dumps(own.get(k))}
            row = {"window": window, "rule": rule, "frames": record["frames"],
                   "changed": changed, **{k: round(scores[k], 4) for k in ("SEG", "TRA", "DET")}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| window | rule | frames | values changed from the model's | SEG | TRA |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        changed = ", ".join(f"`{k}` {v}" for k, v in row["changed"].items()) or "none"
        print(f"| {row['window']} | {row['rule']} | {row['frames']} | {changed} | "
              f"{row['SEG']:.3f} | {row['TRA']:.3f} |")


if __name__ == "__main__":
    main()
