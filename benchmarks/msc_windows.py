"""A nuclei model on MSC 02, a sequence it never trained on, as a user would run it there:
its post-processing calibrated on six of MSC 02's frames before the test frames (a
"window": 24-29, 30-35 or 18-23), then CTC SEG / TRA on frames 36-47. Three windows,
because six frames choose values noisily (docs/results.md, sessions 22 and 44); the mean
over them is the figure issue 16 compares with the classical pipeline tuned on the same
windows (``classical_baseline.py``; 0.634 / 0.926 in session 47). Frames 0-17 hold three
more windows (``--windows 0 6 12 18 24 30``: all six; the classical pipeline 0.628 / 0.904
over them, session 54).

    python benchmarks/msc_windows.py runs/scr-msc-dg-s3              # windows 24, 30, 18
    python benchmarks/msc_windows.py nuclei-ch --windows 24 --keep runs --objects runs/objects
    python benchmarks/msc_windows.py runs/ens --windows 18 24 --length 12   # 18-29, 24-35
    python benchmarks/msc_windows.py nuclei-ch --set calibrate_measure=tra  # scored by TRA
    python benchmarks/msc_windows.py nuclei-ch --object-size 128   # MSC's annotated size
    python benchmarks/msc_windows.py classical --windows 0 6 12 18 24 30   # the baseline

``classical`` in place of a model tunes the classical pipeline on each window instead
(session 5's two grids, :data:`CLASSICAL_GRIDS`, ``ctc_accuracy.py --tune``; the
combination with the best SEG + TRA on the window wins), a few minutes a window.

Calibration starts from :data:`STARTING_VALUES` (session 45's shipped post-processing),
so runs trained with other values are compared from the same start. Prints a JSON line
per window and one with the mean; about 15-25 minutes a window on one CPU core.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

#: MSC 02 in the shared data
MSC = Path(__file__).resolve().parents[1].parent / "shared/data/Fluo-C2DL-MSC/02"
#: the test frames (CTC numbering): 36-47
TEST_FIRST = 36
#: first frames of the windows calibration chooses on (before the test frames)
WINDOWS = (24, 30, 18)
#: frames in a window unless --length says otherwise
LENGTH = 6
#: the post-processing calibration starts from (session 45's shipped values)
STARTING_VALUES = ("cluster_background_cos=0.15", "grow_foreground=li", "grow_trim=true",
                   "grow_trim_snr=1.2", "merge_fragments=0.25", "refine_band=6",
                   "refine_boundaries=0.3", "split_pairs=0.95", "merge_halves=0")
#: the classical pipeline's grids (session 5; ``classical_baseline.py``): the first for
#: nuclei-sized objects, the second for MSC's large cells
CLASSICAL_GRIDS = (
    ("sigma=2,4", "threshold=li,otsu,triangle", "footprint=9,40,80",
     "min_instance_area=30,2000", "link_max_distance=0,300"),
    ("sigma=4,8", "threshold=li,triangle", "footprint=80,150,300",
     "min_instance_area=2000,4000", "link_max_distance=0,300"))


def classical(data: Path, first: int, last: int) -> dict:
    """The classical pipeline tuned on frames ``[first, last)`` of ``data`` (each grid of
    :data:`CLASSICAL_GRIDS`, the best SEG + TRA there wins) and scored on the test frames
    (``ctc_accuracy.py``)."""
    script = Path(__file__).with_name("ctc_accuracy.py")
    best = None
    for grid in CLASSICAL_GRIDS:
        command = [sys.executable, str(script), str(data), "--method", "classical",
                   "--split", str(first), str(last), "--test", str(TEST_FIRST), "--quiet",
                   *(arg for axis in grid for arg in ("--tune", axis))]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        window = max(row["validation"], key=lambda tried: tried["SEG"] + tried["TRA"])
        if best is None or window["SEG"] + window["TRA"] > best[0]:
            best = (window["SEG"] + window["TRA"], row)
    row = best[1]
    return {"settings": row["settings"], **{k: row[k] for k in ("SEG", "TRA", "DET")}}


def main() -> None:
    import numpy as np
    from zero_shot import calibrated, ctc_scores, rounded

    import instatrack
    from instatrack.calibrate import MAX_FRAMES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a shipped model's name, a run folder, or classical")
    parser.add_argument("--windows", type=int, nargs="+", default=list(WINDOWS),
                        metavar="FIRST", help="first frames of the windows (default "
                             f"{' '.join(map(str, WINDOWS))})")
    parser.add_argument("--length", type=int, default=LENGTH, metavar="N",
                        help=f"frames in each window (default {LENGTH}, at most {MAX_FRAMES}, "
                             "what calibration scores)")
    parser.add_argument("--data", type=Path, default=MSC, help="the MSC 02 folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="a post-processing setting calibration "
                        "starts from, after the starting values (e.g. calibrate_measure=tra)")
    parser.add_argument("--object-size", default=None, metavar="PIXELS",
                        help="the cells' diameter, for calibration and the test frames alike "
                             "(default: estimated on each, as instatrack.load does)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help=f"keep each calibrated copy as DIR/NAME-cal-FIRST (-LAST when "
                             f"--length is not {LENGTH})")
    parser.add_argument("--objects", type=Path, metavar="DIR",
                        help="write a row per object (instatrack evaluate --objects) to "
                             "DIR/NAME-cal-FIRST/")
    args = parser.parse_args()
    if not 1 <= args.length <= MAX_FRAMES:
        parser.error(f"--length {args.length}: calibration scores 1-{MAX_FRAMES} frames")
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: no MSC 02 folder (the shared data is not here)")
    if args.model == "classical" and (args.overrides or args.object_size or args.keep
                                      or args.objects):
        parser.error("--set, --object-size, --keep and --objects are for models; the classical "
                     "pipeline takes its grids (CLASSICAL_GRIDS)")
    name = Path(args.model).name
    rows = []
    for first in args.windows:
        last = first + args.length  # one past the window's last frame
        if last > TEST_FIRST:
            parser.error(f"window {first}-{last - 1} reaches the test frames ({TEST_FIRST}-)")
        label = f"{name}-cal-{first}" + (f"-{last - 1}" if args.length != LENGTH else "")
        if args.model == "classical":
            row = {"model": "classical", "window": f"{first}-{last - 1}",
                   **classical(args.data, first, last)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = args.keep / label if args.keep else Path(tmp) / label
            chosen = calibrated(args.model, f"{args.data}:{first}:{last}", out,
                                args.object_size, [*STARTING_VALUES, *args.overrides])
            predictor = instatrack.load(out, device="cpu", object_size=args.object_size)
            folder = args.objects / label if args.objects else None
            scores = ctc_scores(predictor, f"{args.data}:{TEST_FIRST}", folder)
        row = {"model": args.model, "window": f"{first}-{last - 1}", **chosen,
               **rounded(scores)}
        row.pop("run")
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"model": args.model, "windows": args.windows,
                      **{f"mean {k}": round(float(np.mean([r[k] for r in rows])), 4)
                         for k in ("SEG", "TRA", "DET", "FN", "FP") if k in rows[0]}}),
          flush=True)


if __name__ == "__main__":
    main()
