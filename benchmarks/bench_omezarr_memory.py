"""Peak memory of tracking an OME-Zarr time-lapse does not grow with its length.

Writes ``(T, Y, X)`` uint16 OME-Zarr inputs of two lengths (synthetic cells,
frames repeated cyclically so that writing them is cheap), then runs
``instatrack track --format ome-zarr`` on each in a fresh process and reads
that process's peak RSS (``ru_maxrss``). The labels go into the input's
``labels/`` group. Without ``--run`` a tiny spatial-embedding run is trained
first (a few steps: the point is memory, not accuracy).

    OMP_NUM_THREADS=1 python benchmarks/bench_omezarr_memory.py --frames 50 400 --size 512 512
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path


def write_input(path: Path, frames: int, size: tuple[int, int], cycle: int = 12) -> Path:
    """An OME-Zarr 0.4 image ``(frames, Y, X)``, one chunk per frame."""
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscales_metadata

    from instatrack.data.synth import generate_cells

    seq = generate_cells(frames=cycle, size=size, seed=0)
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    array = root.create_array("0", shape=(frames, *size), chunks=(1, *size), dtype="uint16")
    for t in range(frames):
        array[t] = seq.images[t % cycle]
    axes = [{"name": "t", "type": "time"}, {"name": "y", "type": "space"},
            {"name": "x", "type": "space"}]
    datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale",
                                                             "scale": [1.0, 1.0, 1.0]}]}]
    write_multiscales_metadata(root, datasets, fmt=FormatV04(), axes=axes)
    return path


def peak_rss_of_track(run: Path, image: Path) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of ``instatrack track`` on ``image`` in a new process."""
    command = [sys.executable, "-m", "instatrack.cli", "track", "--model", str(run),
               "--input", str(image), "--output", str(image), "--format", "ome-zarr",
               "--quiet", "--device", "cpu"]
    code = ("import resource, subprocess, sys, time; start = time.perf_counter(); "
            "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
            "time.perf_counter() - start)")
    out = subprocess.run([sys.executable, "-c", code, *command], check=True,
                         capture_output=True, text=True, env=os.environ).stdout.split()
    return int(out[0]) / 1024, float(out[1])


def train_tiny(root: Path) -> Path:
    from instatrack.data.synth import write_ctc_synthetic
    from instatrack.methods import get_method
    from instatrack.train import train

    write_ctc_synthetic(root / "data", frames=6, size=(128, 128), seed=0)
    config = get_method("spatial-embedding").config_cls.build(
        "fast", overrides=["steps=3", "crop=64,64", "log_every=1", "ckpt_every=3"])
    return train("spatial-embedding", root / "data", root / "run", config=config,
                 progress=False, device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="trained run folder (default: train a tiny one)")
    parser.add_argument("--frames", type=int, nargs="+", default=[50, 400])
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512))
    parser.add_argument("--workdir", help="where to write the inputs (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        run = Path(args.run) if args.run else train_tiny(root)
        print(f"# {datetime.date.today()}  {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
        print(f"# run: {run}; input (T, {args.size[0]}, {args.size[1]}) uint16 OME-Zarr 0.4")
        print("| frames | input size (MiB) | peak RSS (MiB) | seconds | s/frame |")
        print("| --- | --- | --- | --- | --- |")
        for frames in args.frames:
            image = write_input(root / f"in{frames}.zarr", frames, tuple(args.size))
            rss, seconds = peak_rss_of_track(run, image)
            raw = frames * args.size[0] * args.size[1] * 2 / 2**20
            print(f"| {frames} | {raw:.0f} | {rss:.0f} | {seconds:.0f} | "
                  f"{seconds / frames:.2f} |", flush=True)


if __name__ == "__main__":
    main()
