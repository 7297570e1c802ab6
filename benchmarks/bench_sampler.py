"""Cost of drawing training clips: the augmentation before session 6 against the robust one.

Draws 128x128 crops from a CTC sequence with ``AcquisitionSettings.off()`` and with
the defaults, alternating in the same process; prints the median milliseconds per
crop of each over several rounds and their ratio.

    python benchmarks/bench_sampler.py ../shared/data/Fluo-N2DH-SIM+/01 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a training dataset (any layout train reads)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--crops", type=int, default=50, help="crops per round and recipe")
    args = parser.parse_args()

    from instatrack.data import open_dataset
    from instatrack.data.augment import AcquisitionSettings
    from instatrack.data.sampler import ClipSampler

    sequences = open_dataset(args.data)
    recipes = {"before": AcquisitionSettings.off(), "robust": AcquisitionSettings()}
    samplers = {name: ClipSampler(sequences, crop=(128, 128), seed=0, frames=slice(0, 8),
                                  acquisition=acq) for name, acq in recipes.items()}
    for sampler in samplers.values():  # normalise the frames once, outside the timing
        for _ in range(20):
            sampler.sample()
    times: dict[str, list[float]] = {name: [] for name in samplers}
    for _ in range(args.rounds):
        for name, sampler in samplers.items():
            clock = time.perf_counter()
            for _ in range(args.crops):
                sampler.sample()
            times[name].append(1000 * (time.perf_counter() - clock) / args.crops)
    medians = {name: round(statistics.median(v), 2) for name, v in times.items()}
    print(json.dumps({"ms_per_crop": medians,
                      "ratio_robust_to_before": round(medians["robust"] / medians["before"], 3)}))


if __name__ == "__main__":
    main()
