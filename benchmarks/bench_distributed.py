"""Throughput of a plate of synthetic sequences on a local Dask cluster of 1 and 2 workers.

Writes ``--sequences`` synthetic sequences (``instatrack synth``), tracks each
serially with ``instatrack track`` (one process, one torch thread), then the
whole plate with ``--workers 1`` and ``--workers 2`` (a LocalCluster of
single-threaded worker processes, started before the clock runs; its start-up
is printed apart). Every result folder is compared byte for byte with the
serial one. Prints seconds, frames/s and the ratio of 2 workers to 1.

    python benchmarks/bench_distributed.py --run runs/se --sequences 8 --frames 6 --size 128
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from instatrack.cli import main as cli
from instatrack.data.synth import write_ctc_synthetic
from instatrack.distributed import RunSpec, find_sequences, open_client, track_plate


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def make_plate(root: Path, n: int, frames: int, size: int) -> Path:
    plate = root / "plate"
    plate.mkdir()
    for k in range(n):
        data = write_ctc_synthetic(root / f"src{k}", frames=frames, size=(size, size), seed=k)
        shutil.move(str(data / "01"), str(plate / f"well{k:02d}"))
    return plate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="trained run folder")
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plate = make_plate(root, args.sequences, args.frames, args.size)
        n_frames = args.sequences * args.frames
        print(f"# plate of {args.sequences} sequences x {args.frames} frames of "
              f"{args.size}x{args.size}, {time.strftime('%Y-%m-%d')}")
        start = time.perf_counter()
        for seq in sorted(plate.iterdir()):
            cli(["track", "--model", args.run, "--input", str(seq), "--output",
                 str(root / "serial" / seq.name), "--quiet"])
        serial = time.perf_counter() - start
        print(f"serial: {serial:.1f} s, {n_frames / serial:.2f} frames/s")
        expected = files(root / "serial")
        seconds = {}
        for workers in (1, 2):
            started = time.perf_counter()
            with open_client(workers=workers) as client:
                ready = time.perf_counter()
                out = root / f"dask{workers}"
                track_plate(client, RunSpec(args.run), find_sequences(plate), out)
                seconds[workers] = time.perf_counter() - ready
            same = files(out) == expected
            print(f"{workers} worker(s): {seconds[workers]:.1f} s "
                  f"({n_frames / seconds[workers]:.2f} frames/s; cluster start "
                  f"{ready - started:.1f} s), byte-identical to serial: {same}")
        print(f"throughput ratio 2 workers / 1 worker: {seconds[1] / seconds[2]:.2f}")


if __name__ == "__main__":
    main()
