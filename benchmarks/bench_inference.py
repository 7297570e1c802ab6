"""End-to-end tracking speed (frames/s): network + clustering + linking.

Tracks synthetic fluorescence frames of the given size with a trained run
(``--run``; clustering time depends on what the network predicts, so a
trained model gives the honest number) and reports the median seconds per
frame over the sequence after the first frame, plus frames/s.

    python benchmarks/bench_inference.py --run runs/sim-se --size 512 512 --frames 8
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

import instatrack
from instatrack.data.synth import generate_cells


def seconds_per_frame(predictor, frames: list[np.ndarray]) -> float:
    stamps = [time.perf_counter()]
    for _ in predictor.stream(frames, first_masks=None,
                              progress=lambda n: stamps.append(time.perf_counter())):
        pass
    gaps = np.diff(stamps)[1:]
    return float(statistics.median(gaps)) if len(gaps) else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="trained run folder")
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    predictor = instatrack.load(args.run, device=args.device)
    density = 4.0
    frames = list(generate_cells(frames=args.frames, size=tuple(args.size), seed=0,
                                 density=density).images)
    seconds = seconds_per_frame(predictor, frames)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {predictor.device}")
    print(f"{predictor.method.name}: {args.size[0]}x{args.size[1]}, {args.frames} frames: "
          f"{seconds:.3f} s/frame = {1 / seconds:.2f} frames/s")


if __name__ == "__main__":
    main()
