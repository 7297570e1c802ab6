"""How a trained model holds up on data it never saw, side by side with the classical baseline.

For one run (or ``--method classical``) trained on frames ``[0, A)`` of a CTC
sequence, with post-processing chosen on its validation frames ``[A, B)``,
scores SEG / TRA / DET on:

``clean``
    the held-out test frames ``[B, end)`` as recorded;
``dim÷K``
    the same frames with the contrast over the background divided by ``K``
    and the noise kept at the sensor's level
    (:func:`instatrack.data.dim.dim_frame`, defined in ``docs/robustness.md``);
``NAME``
    the test frames of another sequence (``--other SEQ:FIRST``, e.g. train on
    SIM+ 01 and test on GOWT1 01), nothing tuned on it;
``synthetic``
    with ``--synthetic``, a synthetic sequence (``instatrack synth``) of nuclei
    about as large as SIM+'s, with a dim phase (frames 10-19, fluorescence ÷6)
    and a dense phase (from frame 15 on, twice the cells): :data:`SYNTHETIC`.

    python benchmarks/robustness.py ../shared/data/Fluo-N2DH-SIM+/01 --split 39 45 \\
        --method spatial-embedding --run runs/sim-se --tune seed_threshold=0.5,0.7 \\
        --other ../shared/data/Fluo-N2DH-GOWT1/01:36

Prints one JSON line per condition and a Markdown table at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from instatrack.data.dim import DimmedSequence

#: the ``--synthetic`` sequence: nuclei of SIM+'s size, a dim phase and a dense phase
SYNTHETIC = {"frames": 30, "size": (512, 512), "seed": 11, "radius": (18.0, 26.0),
             "density": 1.0, "noise": 0.15, "dim_phases": [(10, 20, 6.0)],
             "dense_phases": [(15, 30, 2.0)]}


def score(args, seq, first: int, settings: tuple[str, ...], tmp: Path, name: str) -> dict:
    """Track frames ``[first, end)`` of ``seq`` and score them against its ground truth."""
    from ctc_accuracy import MEASURES, subset_ground_truth, track_test_frames

    from instatrack.metrics.ctc import AOGM_COUNTS, evaluate_ctc

    gt = subset_ground_truth(seq.gt_dir, first, len(seq), tmp / f"GT_{name}")
    res = tmp / f"RES_{name}"
    seconds, _ = track_test_frames(args, seq, first, res, settings=settings)
    scores = evaluate_ctc(gt, res, (*MEASURES, *AOGM_COUNTS))  # the counts: what TRA lost
    return {"condition": name, **{k: round(float(v), 4) for k, v in scores.items()},
            "seconds_per_frame": round(seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sequence", type=Path, help="CTC sequence the run was trained on")
    parser.add_argument("--split", type=int, nargs=2, metavar=("A", "B"), required=True)
    parser.add_argument("--method", default="spatial-embedding")
    parser.add_argument("--run", default=None, help="trained run folder (not for classical)")
    parser.add_argument("--weights", default="weights.pt")
    parser.add_argument("--infer-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tune", action="append", default=[], metavar="KEY=V1,V2,...")
    parser.add_argument("--dim", default="2,4,8", help="contrast divisors, comma separated")
    parser.add_argument("--other", action="append", default=[], metavar="SEQ:FIRST",
                        help="another sequence and its first test frame")
    parser.add_argument("--synthetic", action="store_true",
                        help="also score a synthetic sequence with a dim and a dense phase")
    parser.add_argument("--object-size", default=None,
                        help="diameter of the objects in pixels, or auto (see --object-size)")
    parser.add_argument("--label", default=None, help="row name in the table")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ctc_accuracy import choose_settings

    from instatrack.data.ctc import CTCSequence

    seq = CTCSequence(args.sequence)
    a, b = args.split
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        chosen, _ = choose_settings(args, seq, a, b, tmp)
        settings = tuple(chosen)
        conditions = [("clean", seq, b)]
        conditions += [(f"dim÷{k}", DimmedSequence(seq, float(k)), b)
                       for k in args.dim.split(",") if k.strip()]
        for item in args.other:
            path, _, first = item.rpartition(":")
            other = CTCSequence(path)
            conditions.append((Path(path).parent.name, other, int(first)))
        if args.synthetic:
            from instatrack.data.synth import write_ctc_synthetic

            write_ctc_synthetic(tmp / "synthetic", **SYNTHETIC)
            conditions.append(("synthetic", CTCSequence(tmp / "synthetic" / "01"), 0))
        for name, data, first in conditions:
            rows.append(score(args, data, first, settings, tmp, name.replace("÷", "div")))
            rows[-1]["condition"] = name
            print(json.dumps({"run": args.run, "method": args.method,
                              "settings": [*args.infer_set, *settings],
                              **rows[-1]}), flush=True)
    label = args.label or args.method
    print("\n| model | " + " | ".join(r["condition"] for r in rows) + " |")
    print("| --- |" + " --- |" * len(rows))
    print(f"| {label} | " + " | ".join(f"{r['SEG']:.3f} / {r['TRA']:.3f}" for r in rows) + " |")


if __name__ == "__main__":
    main()
