"""Inference speed on the CPU (or a device): seconds per frame.

Two measurements:

``--run RUN``: end-to-end tracking (network + clustering + linking) of synthetic
fluorescence frames of ``--size`` with a trained run, the median seconds per frame
over the sequence after the first frame, plus frames/s (clustering time depends on
what the network predicts, so a trained model gives the honest number)::

    python benchmarks/bench_inference.py --run runs/sim-se --size 512 512 --frames 8

``--models NAME_OR_RUN ...``: segmenting one still frame (``instatrack segment``:
normalisation, network, clustering) with each shipped model or run folder at each
square ``--sizes``, the median over ``--repeats`` rounds. The learning-free
pipeline of ``benchmarks/classical_baseline.py`` is timed on the same frames in
the same process, and every model's time is also given as a multiple of it (the
ratio is what survives a busy machine). The rounds interleave the models, so a
change of load hits all of them alike. One-channel models get synthetic
fluorescence frames (4 cells per 100x100 px), three-channel models tiles of
synthetic leaf rosettes (leaves of CVPPP size). A semi-supervised model
(``objects-spn``) follows the objects of a synthetic video's first frame instead: its
seconds per later frame, and the first frame's fitting apart::

    OMP_NUM_THREADS=1 python benchmarks/bench_inference.py \\
        --models nuclei-se nuclei-se-synthetic leaves-se --sizes 512 1024 --repeats 5
    OMP_NUM_THREADS=1 python benchmarks/bench_inference.py --models objects-spn

``--flow``: the optical flow that carries a semi-supervised model's masks
(``flow_prior``) on square ``--sizes`` frames, at each ``--flow-scales`` (``flow_scale``:
the flow on shrunk frames), the median over ``--repeats`` rounds and each scale's
speed-up over the first::

    OMP_NUM_THREADS=1 python benchmarks/bench_inference.py --flow --flow-scales 1 0.5

``--crf``: the dense CRF of a semi-supervised model's scores (``crf``) on square
``--sizes`` frames with one object, on the whole frame and on the box around the object
(as the method runs it), the median over ``--repeats`` interleaved rounds::

    OMP_NUM_THREADS=1 python benchmarks/bench_inference.py --crf --sizes 512 1024
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np
import torch

import instatrack
from instatrack.data.synth import generate_cells, generate_leaves

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classical_baseline import ClassicalSettings, segment_classical  # noqa: E402

#: frames of the synthetic video a semi-supervised model follows (:func:`time_followers`)
FOLLOWED = 6
#: side of one synthetic rosette in a leaf frame: its leaves then have a median area
#: of ~1,700 px, as CVPPP A1's (1,800 px on the training plants)
ROSETTE = 320


def frame_gaps(predictor, frames: list[np.ndarray], first_masks=None) -> np.ndarray:
    """Seconds between the frames of tracking ``frames``; the first gap holds the first
    frame's extra work (a semi-supervised model fits its objects to it)."""
    stamps = [time.perf_counter()]
    for _ in predictor.stream(frames, first_masks=first_masks,
                              progress=lambda n: stamps.append(time.perf_counter())):
        pass
    return np.diff(stamps)


def seconds_per_frame(predictor, frames: list[np.ndarray], first_masks=None) -> float:
    gaps = frame_gaps(predictor, frames, first_masks)[1:]
    return float(statistics.median(gaps)) if len(gaps) else float("nan")


def time_followers(followers: dict[str, object], sizes: list[int], frames: int
                   ) -> list[dict]:
    """Semi-supervised predictors by name (``objects-spn``): at each size, a synthetic video of the
    package's own (``instatrack synth --kind video``) followed from its first frame's
    objects; the median seconds per later frame, the first frame's fitting, and the
    classical pipeline on the same frames in the same process (``ratio``)."""
    from instatrack.data.synth_video import generate_video

    classical = ClassicalSettings()
    rows = []
    for size in sizes:
        images, labels = generate_video(frames, (size, size), seed=0)
        base = statistics.median(_timed(segment_classical, image, classical)
                                 for image in images)
        for model, predictor in followers.items():
            gaps = frame_gaps(predictor, list(images), labels[0])
            seconds = float(statistics.median(gaps[1:]))
            rows.append({"model": model, "size": size, "channels": 3, "seconds": seconds,
                         "first": float(gaps[0]), "ratio": seconds / base,
                         "objects": len(np.unique(labels[0])) - 1})
    return rows


def _timed(function, *args) -> float:
    clock = time.perf_counter()
    function(*args)
    return time.perf_counter() - clock


def test_frame(channels: int, size: int, seed: int = 0) -> np.ndarray:
    """A synthetic ``(Y, X)`` fluorescence frame (1 channel) or ``(Y, X, 3)`` RGB frame
    tiled with leaf rosettes (3 channels) of ``size`` x ``size`` pixels."""
    if channels == 1:
        return generate_cells(frames=1, size=(size, size), seed=seed, density=4.0).images[0]
    if channels != 3:
        raise SystemExit(f"bench_inference: no test frames for {channels}-channel models")
    per_side = -(-size // ROSETTE)
    tiles = generate_leaves(per_side ** 2, (ROSETTE, ROSETTE), seed=seed).images
    rows = [np.concatenate(list(tiles[i * per_side:(i + 1) * per_side]), axis=1)
            for i in range(per_side)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:size, :size])


def time_segmenters(segmenters: dict[str, tuple[int, object]], sizes: list[int],
                    repeats: int) -> list[dict]:
    """Median seconds per frame of every ``name -> (channels, segment)`` at every size.

    ``segment`` maps one raw frame to labels. Each is called once untimed, then
    ``repeats`` times, the rounds going through all of them in turn.
    """
    rows = []
    for size in sizes:
        frames = {c: test_frame(c, size) for c in {c for c, _ in segmenters.values()}}
        times: dict[str, list[float]] = {name: [] for name in segmenters}
        for round_ in range(repeats + 1):
            for name, (channels, segment) in segmenters.items():
                clock = time.perf_counter()
                labels = segment(frames[channels])
                if round_:
                    times[name].append(time.perf_counter() - clock)
                if round_ == repeats:
                    objects = len(np.unique(labels)) - 1
                    rows.append({"model": name, "size": size, "channels": channels,
                                 "seconds": statistics.median(times[name]),
                                 "objects": objects})
    return rows


def speed_table(models: list[str], sizes: list[int], repeats: int, device=None,
                object_size=None) -> list[dict]:
    """Rows of :func:`time_segmenters` for the models and the classical pipeline on each
    kind of frame they get, each with ``ratio``: its time over the classical one's.
    ``object_size``: as ``instatrack.load``'s, for every model (None: each its default)."""
    segmenters, followers = {}, {}
    for model in models:
        predictor = instatrack.load(model, device=device, object_size=object_size)
        if predictor.method.needs_first_masks:
            followers[model] = predictor
            continue
        segmenters[model] = (predictor.config.in_channels, predictor.segment)
    classical = ClassicalSettings()
    for channels in sorted({c for c, _ in segmenters.values()}):
        segmenters[f"classical ({channels} ch)"] = (
            channels, lambda frame: segment_classical(frame, classical))
    rows = time_segmenters(segmenters, sizes, repeats)
    reference = {(r["size"], r["channels"]): r["seconds"] for r in rows
                 if r["model"].startswith("classical")}
    return ([{**r, "ratio": r["seconds"] / reference[r["size"], r["channels"]]} for r in rows]
            + (time_followers(followers, sizes, FOLLOWED) if followers else []))


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
            f"{torch.__version__}, {torch.get_num_threads()} torch thread(s), load average "
            f"{load}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")


def print_table(rows: list[dict]) -> None:
    print("| model | frame | input | s/frame | frames/s | x classical | objects |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        kind = "fluorescence" if r["channels"] == 1 else "RGB leaves"
        if "first" in r:
            kind = f"RGB video, followed (frame 0: {r['first']:.1f} s)"
        print(f"| {r['model']} | {r['size']}x{r['size']} | {kind} | {r['seconds']:.3f} | "
              f"{1 / r['seconds']:.2f} | {r['ratio']:.1f} | {r['objects']} |")


def time_flow(sizes: list[int], scales: list[float], repeats: int) -> None:
    """Print the median seconds of one flow at each size and scale: a smooth random
    frame and the same frame moved by (3, 2) px."""
    from scipy import ndimage

    from instatrack.cluster.flow import backward_flow

    rng = np.random.default_rng(0)
    print(f"# {machine()}; median of {repeats} rounds")
    print("| frame | flow_scale | s | speed-up |\n| --- | --- | --- | --- |")
    for size in sizes:
        previous = ndimage.gaussian_filter(rng.random((size, size)), 2).astype(np.float32)
        image = np.roll(previous, (3, 2), (0, 1))
        times: dict[float, list[float]] = {scale: [] for scale in scales}
        for _ in range(repeats):  # interleaved, so a change of load hits every scale
            for scale in scales:
                times[scale].append(_timed(partial(backward_flow, scale=scale), image, previous))
        first = statistics.median(times[scales[0]])
        for scale in scales:
            median = statistics.median(times[scale])
            print(f"| {size}x{size} | {scale:g} | {median:.2f} | {first / median:.1f} |")


def time_crf(sizes: list[int], repeats: int) -> None:
    """Print the median seconds of the dense CRF of spatial-propagation (default kernels)
    on a smooth random RGB frame with one object, a disc of a sixth of the side: on the
    whole frame, and on the box around the object as the method runs it."""
    from scipy import ndimage

    from instatrack.cluster.crf import CRFParams, crf_refine, crf_refine_near

    rng = np.random.default_rng(0)
    print(f"# {machine()}; median of {repeats} rounds")
    print("| frame | whole frame, s | near the object, s | speed-up |\n| --- | --- | --- | --- |")
    for size in sizes:
        image = torch.from_numpy(ndimage.gaussian_filter(
            rng.random((3, size, size)), (0, 2, 2))).float()
        yy, xx = np.mgrid[:size, :size]
        disc = np.hypot(yy - size / 2, xx - size / 3) < size / 12
        masks = torch.from_numpy(ndimage.gaussian_filter(disc * 0.9, 3)[None]).float()
        times: dict[str, list[float]] = {"whole": [], "near": []}
        for _ in range(repeats):  # interleaved, so a change of load hits both
            times["whole"].append(_timed(crf_refine, image, masks, CRFParams()))
            times["near"].append(_timed(crf_refine_near, image, masks, CRFParams()))
        whole, near = (statistics.median(times[k]) for k in ("whole", "near"))
        print(f"| {size}x{size} | {whole:.2f} | {near:.2f} | {whole / near:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", help="trained run folder: time end-to-end tracking")
    what.add_argument("--models", nargs="+", metavar="NAME_OR_RUN",
                      help="shipped models or run folders: time segmenting a still frame")
    what.add_argument("--flow", action="store_true",
                      help="time the optical flow of semi-supervised models")
    what.add_argument("--crf", action="store_true",
                      help="time the dense CRF of semi-supervised models")
    parser.add_argument("--flow-scales", type=float, nargs="+", default=[1.0, 0.5],
                        help="with --flow: the flow_scale values")
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512),
                        help="with --run: frame size Y X")
    parser.add_argument("--frames", type=int, default=8, help="with --run: frames tracked")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024],
                        help="with --models, --flow or --crf: sides of the square frames")
    parser.add_argument("--repeats", type=int, default=5,
                        help="with --models, --flow or --crf: timed rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default=None)
    parser.add_argument("--object-size", default=None,
                        help="with --models: the objects' diameter in pixels (the synthetic "
                             "fluorescence frames' nuclei are ~12 px) or auto; default: each "
                             "model's own default")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.flow:
        time_flow(args.sizes, args.flow_scales, args.repeats)
        return
    if args.crf:
        time_crf(args.sizes, args.repeats)
        return
    if args.models:
        rows = speed_table(args.models, args.sizes, args.repeats, args.device,
                           args.object_size)
        print(f"# {machine()}; median of {args.repeats} rounds (a followed video: of its "
              f"{FOLLOWED - 1} frames after the first)")
        print_table(rows)
        return
    predictor = instatrack.load(args.run, device=args.device)
    frames = list(generate_cells(frames=args.frames, size=tuple(args.size), seed=0,
                                 density=4.0).images)
    seconds = seconds_per_frame(predictor, frames)
    print(f"# {machine()}, device {predictor.device}")
    print(f"{predictor.method.name}: {args.size[0]}x{args.size[1]}, {args.frames} frames: "
          f"{seconds:.3f} s/frame = {1 / seconds:.2f} frames/s")


if __name__ == "__main__":
    main()
