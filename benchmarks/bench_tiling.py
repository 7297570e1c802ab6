"""Tiled inference on a large synthetic frame: peak memory, time, and agreement with untiled.

Builds an ``--size`` x ``--size`` mosaic of synthetic fluorescence frames
(``instatrack.data.synth``), then measures, each in a fresh process so that
the peak resident memory (``ru_maxrss``) belongs to one pass only:

1. the untiled and the tiled labels of the top-left ``--compare`` square
   (small enough to run whole), and how many instances agree (same pixels /
   IoU >= 0.5);
2. the tiled pass over the whole mosaic (``--tile``, ``--overlap``);
3. the untiled pass over the whole mosaic; ``--whole-network-only`` runs just
   the network (its float outputs are what tiling avoids holding), for when
   the whole pass with clustering takes too long.

    python benchmarks/bench_tiling.py --run runs/se --size 8192 --tile 2048 --compare 2048
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BLOCK = 2048  # side of one synthetic frame of the mosaic


def mosaic(path: Path, size: int, density: float) -> Path:
    """A ``(size, size)`` uint16 mosaic of synthetic frames, cached as ``.npy``."""
    if path.is_file():
        return path
    from instatrack.data.synth import generate_cells

    block = min(BLOCK, size)
    quads = [generate_cells(frames=1, size=(block, block), seed=k, density=density).images[0]
             for k in range(4)]
    pattern = np.block([[quads[0], quads[1]], [quads[2], quads[3]]]) if size > block else quads[0]
    reps = -(-size // pattern.shape[0])
    np.save(path, np.tile(pattern, (reps, reps))[:size, :size])
    return path


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(args) -> None:
    """One pass in this process; prints a JSON line."""
    import torch

    import instatrack
    from instatrack.tiling import TiledPredictor

    torch.set_num_threads(1)
    image = np.load(args.image)[:args.crop, :args.crop]
    predictor = instatrack.load(args.run, device="cpu", overrides=["max_instances=1000000"])
    if args.tile:
        predictor = TiledPredictor(predictor, args.tile, args.overlap)
    base = peak_mb()
    start = time.perf_counter()
    if args.network_only:
        from instatrack.data.normalize import normalize

        with torch.inference_mode():
            predictor.model(torch.from_numpy(normalize(image))[None])
        labels = None
    else:
        labels = predictor.segment(image)
    row = {"pass": "tiled" if args.tile else "whole", "size": image.shape[0],
           "network_only": args.network_only, "seconds": round(time.perf_counter() - start, 1),
           "baseline_mb": round(base), "peak_mb": round(peak_mb())}
    if args.tile:
        row.update(tile=predictor.tile, overlap=predictor.overlap, cut=predictor.cut)
    if labels is not None:
        row["instances"] = int(len(np.unique(labels)) - 1)
        if args.save:
            np.save(args.save, labels)
    print(json.dumps(row), flush=True)


def run_pass(args, crop: int, tile: int | None, save: Path | None = None,
             network_only: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--measure", "--run", args.run, "--image", str(args.image),
           "--crop", str(crop), "--overlap", str(args.overlap or -1)]
    cmd += ["--tile", str(tile or 0)]
    cmd += ["--save", str(save)] if save else []
    cmd += ["--whole-network-only"] if network_only else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    row = json.loads(out.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="trained spatial-embedding run folder")
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--tile", type=int, default=2048)
    parser.add_argument("--overlap", type=int, default=None, help="default: the exact overlap")
    parser.add_argument("--compare", type=int, default=2048, help="side of the compared square")
    parser.add_argument("--compare-tile", type=int, default=1024)
    parser.add_argument("--density", type=float, default=1.0, help="cells per 100x100 px")
    parser.add_argument("--work", default="bench_tiling_work", help="folder for the mosaic")
    parser.add_argument("--whole-network-only", dest="network_only", action="store_true")
    parser.add_argument("--skip-whole", action="store_true", help="no untiled pass at --size")
    # internal: one measured pass
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--image", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--crop", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--save", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.overlap is not None and args.overlap < 0:
        args.overlap = None
    if args.measure:
        measure(args)
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    args.image = mosaic(work / f"mosaic_{args.size}_{args.density}.npy", args.size, args.density)
    print(f"# {platform.machine()}, {platform.processor() or ''}, 1 torch thread, "
          f"{time.strftime('%Y-%m-%d')}")
    from instatrack.tiling import instance_agreement

    run_pass(args, args.compare, None, work / "whole.npy")
    run_pass(args, args.compare, args.compare_tile, work / "tiled.npy")
    agreement = instance_agreement(np.load(work / "whole.npy"), np.load(work / "tiled.npy"))
    print(json.dumps({"compare": args.compare, **agreement}), flush=True)
    run_pass(args, args.size, args.tile)
    if not args.skip_whole:
        run_pass(args, args.size, None, network_only=args.network_only)


if __name__ == "__main__":
    main()
