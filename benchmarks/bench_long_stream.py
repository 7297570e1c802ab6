"""Memory of a long tracking stream: peak RSS after 100, 1,000 and 10,000 frames.

Streams small synthetic frames through :meth:`instatrack.api.Predictor.stream`
(network + clustering + linking, one frame at a time) and reads the process's
peak resident set size at each checkpoint, all in one process, so the ratio
``peak RSS at the last checkpoint / peak RSS at the first`` shows whether
memory grows with the length of the sequence. The frames come from a
generator: one short synthetic movie played forwards and backwards again and
again (motion stays continuous, so tracks live on), never the whole sequence
in memory. The track graph is kept, as ``stream`` promises it once the stream
is exhausted, so memory grows with the number of objects found; the script
prints the graph's size beside the memory and, at the end, what the graph
alone takes (the resident memory a copy of it adds), so that growth from the
graph and growth from anything else (frames, labels, network state) can be
told apart.

Without ``--run`` a tiny spatial-embedding run is trained first for a few
seconds (its segmentations are rough; the memory figure needs objects, not
good ones).

    OMP_NUM_THREADS=1 python benchmarks/bench_long_stream.py --frames 10000
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

import instatrack
from instatrack.data.synth import generate_cells, write_ctc_synthetic

#: the movie that is played back and forth; its frames are all the stream holds in memory
LOOP_FRAMES = 50


def ping_pong(movie: np.ndarray, total: int) -> Iterator[np.ndarray]:
    """``total`` frames of ``movie`` ``(T, Y, X)`` played 0..T-1, T-2..1, 0..T-1, ..."""
    order = list(range(len(movie))) + list(range(len(movie) - 2, 0, -1))
    for i in range(total):
        yield movie[order[i % len(order)]]


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def graph_mib(graph) -> float:
    """Resident memory the track graph takes, measured as what a copy of it adds."""
    before = current_rss_mib()
    copy = graph.copy()
    added = current_rss_mib() - before
    del copy
    return added


def tiny_run(folder: Path, size: tuple[int, int], steps: int) -> Path:
    """Train a small spatial-embedding run for ``steps`` steps on synthetic cells."""
    from instatrack.methods import get_method
    from instatrack.train import train

    data = write_ctc_synthetic(folder / "data", frames=8, size=size, seed=0)
    config = get_method("spatial-embedding").config_cls.build(
        "fast", overrides=[f"steps={steps}", f"crop={size[0]},{size[1]}", "batch_size=2",
                           "val_frames=", f"ckpt_every={steps}"])
    return train("spatial-embedding", data, folder / "run", config=config, progress=False)


def measure(predictor, frames: Iterator[np.ndarray], marks: list[int]):
    """Stream ``frames``; at each frame count in ``marks`` record RSS, time, graph size.
    Returns the rows and the exhausted stream."""
    rows, start = [], time.perf_counter()
    stream = predictor.stream(frames)
    for count, _ in enumerate(stream, 1):
        if count in marks:
            rows.append({"frames": count, "peak_rss_mib": peak_rss_mib(),
                         "seconds": time.perf_counter() - start,
                         "graph_nodes": stream.graph.number_of_nodes()})
            print(f"{count:>6} frames  peak RSS {rows[-1]['peak_rss_mib']:7.1f} MiB  "
                  f"{rows[-1]['seconds']:7.1f} s  graph nodes {rows[-1]['graph_nodes']}",
                  flush=True)
    return rows, stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="trained run folder (default: train a tiny one)")
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--size", type=int, nargs=2, default=(64, 64), metavar=("H", "W"))
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="post-processing setting of the run")
    args = parser.parse_args()
    size = tuple(args.size)
    marks = [n for n in (100, 1_000, 10_000, 100_000) if n <= args.frames] or [args.frames]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else tiny_run(Path(tmp), size, args.train_steps)
        predictor = instatrack.load(run, device=args.device, overrides=args.overrides)
        movie = generate_cells(frames=LOOP_FRAMES, size=size, seed=1).images
        print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} thread(s), {predictor.method.name}, "
              f"{size[0]}x{size[1]} frames; peak RSS before streaming {peak_rss_mib():.1f} MiB")
        rows, stream = measure(predictor, ping_pong(movie, args.frames), marks)
        graph = graph_mib(stream.graph)
    first, last = rows[0], rows[-1]
    if len(rows) > 1:
        growth = last["peak_rss_mib"] - first["peak_rss_mib"]
        per_frame = (last["seconds"] - first["seconds"]) / (last["frames"] - first["frames"])
        print(f"peak RSS {last['frames']} / {first['frames']} frames: "
              f"{last['peak_rss_mib'] / first['peak_rss_mib']:.3f} (+{growth:.1f} MiB); "
              f"{per_frame * 1e3:.1f} ms/frame")
    print(f"track graph after {last['frames']} frames: {last['graph_nodes']} nodes, "
          f"{graph:.1f} MiB")


if __name__ == "__main__":
    main()
