"""Time of a calibration, with the method's labels reused across the stages that act
after it (today's :func:`instatrack.calibrate.calibrate`) and computed again for every
combination (before session 33), in one process on the same copy of a model.

    python benchmarks/bench_calibration.py runs/spn31 --out runs/bench-cal
    python benchmarks/bench_calibration.py nuclei-ch --data ../shared/data/Fluo-C2DL-MSC/02 \\
        --frames 30:36 --out runs/bench-cal-ch

Both calibrations must choose the same values and score every combination alike;
prints one JSON line: seconds each way, their ratio, the network passes each made.
``--repeats N`` times each way N times (medians; the order alternates).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path


def timed(model: str, out: Path, data: str | None, frames: str | None, reuse: bool
          ) -> tuple[float, int, dict]:
    """Seconds, method passes and the record of one calibration of a fresh copy."""
    from unittest import mock

    from instatrack import calibrate as module
    from instatrack.runs import Run

    start = Run.resolve(model)
    shutil.rmtree(out, ignore_errors=True)
    default = start.config.val_frames if data is None else ":"
    run = module.copy_to_calibrate(start, out, frames or default, data or start.data)
    passes = []
    method_cls = run.method_cls
    real = method_cls.predict

    def counted(self, *args, **kwargs):
        passes.append(1)
        return real(self, *args, **kwargs)

    patches = [mock.patch.object(method_cls, "predict", counted)]
    if not reuse:  # every config its own key: nothing reused
        patches.append(mock.patch.object(
            module, "method_key", lambda config: module._canonical(config.to_dict())))
    for patch in patches:
        patch.start()
    try:
        clock = time.perf_counter()
        record = module.calibrate(run, data=data)
        return time.perf_counter() - clock, len(passes), record
    finally:
        for patch in patches:
            patch.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a run folder or a shipped model's name")
    parser.add_argument("--data", help="annotated dataset to calibrate on (default: the "
                                       "run's own validation frames)")
    parser.add_argument("--frames", help="frames of --data (A:B)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="a scratch folder")
    args = parser.parse_args()
    seconds: dict[bool, list[float]] = {True: [], False: []}
    passes, records = {}, {}
    for i in range(args.repeats):
        for reuse in ((True, False) if i % 2 == 0 else (False, True)):
            took, passes[reuse], records[reuse] = timed(
                args.model, args.out / ("reuse" if reuse else "again"), args.data,
                args.frames, reuse)
            seconds[reuse].append(took)
    same = (records[True]["chosen"] == records[False]["chosen"]
            and records[True]["tried"] == records[False]["tried"])
    reused, again = (statistics.median(seconds[k]) for k in (True, False))
    print(json.dumps({"model": args.model, "data": args.data, "frames": args.frames,
                      "combinations": len(records[True]["tried"]),
                      "seconds_reused": round(reused, 1), "seconds_again": round(again, 1),
                      "speedup": round(again / reused, 2),
                      "passes_reused": passes[True], "passes_again": passes[False],
                      "same_choice_and_scores": same, "repeats": args.repeats}))


if __name__ == "__main__":
    main()
