"""Peak memory of ``track`` on a few frames: a model (an ensemble, with or without
test-time flips) as a user runs it, the object size estimated or stated.

Each row runs in a fresh Python process (peak resident memory is per process) that
loads the model, tracks the frames and reports its peak RSS, the seconds and the
objects of the last frame. An ensemble's memory grows with members × flips × pixels,
and the size estimate segments a frame at several sizes first (docs/methods.md,
"Ensembles"), so the rows tell which of the two a peak comes from.

    python benchmarks/bench_track_memory.py runs/ens --tta 0 1
    python benchmarks/bench_track_memory.py nuclei-ch --crop 512 512 --object-size 60

Default frames: MSC 02 frames 24-25 of the shared data (782×1200).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

#: default sequence: MSC 02 in the shared data
MSC = Path(__file__).resolve().parents[1].parent / "shared/data/Fluo-C2DL-MSC/02"


def child(model: str, sequence: str, first: int, count: int, crop, tta: int, size) -> None:
    """Track the frames in this process and print one JSON line."""
    import resource
    import time

    import numpy as np

    import instatrack
    from instatrack.data import open_datasets

    seq = open_datasets(sequence)[0]
    frames = [seq.image(t) for t in range(first, first + count)]
    if crop:
        frames = [frame[:crop[0], :crop[1]] for frame in frames]
    start = time.perf_counter()
    predictor = instatrack.load(model, device="cpu", object_size=size,
                                overrides=[f"tta={'true' if tta else 'false'}"])
    labels = predictor.track(frames).labels
    print(json.dumps({
        "model": model, "tta": bool(tta), "object_size": size,
        "frame": list(frames[0].shape[:2]), "frames": count,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "seconds": round(time.perf_counter() - start, 1),
        "objects": int(len(np.unique(labels[-1])) - 1)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="shipped model name or run folder (an ensemble too)")
    parser.add_argument("--sequence", default=str(MSC), help="a CTC sequence folder")
    parser.add_argument("--first", type=int, default=24, help="index of the first frame")
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"),
                        help="track the top-left H×W of each frame")
    parser.add_argument("--tta", type=int, nargs="+", default=[0, 1], choices=(0, 1))
    parser.add_argument("--object-size", default="auto",
                        help="'auto' (estimated, the default of a model trained with "
                             "object_size) or pixels; 'none': the model's own scale")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = None if args.object_size == "none" else args.object_size
    if args.child:
        child(args.model, args.sequence, args.first, args.frames, args.crop, args.tta[0], size)
        return
    if not Path(args.sequence).is_dir():
        raise SystemExit(f"{args.sequence}: no such sequence folder (is the shared data here?)")
    for tta in args.tta:
        command = [sys.executable, __file__, args.model, "--child", "--tta", str(tta),
                   "--sequence", args.sequence, "--first", str(args.first),
                   "--frames", str(args.frames), "--object-size", args.object_size]
        if args.crop:
            command += ["--crop", *map(str, args.crop)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            # killed for memory (-9) or failed: say so, and go on with the next row
            print(json.dumps({"model": args.model, "tta": bool(tta), "returncode":
                              done.returncode, "error": done.stderr.strip()[-300:]}), flush=True)
        else:
            print(done.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
