"""What each CLI subcommand does (the parsing lives in :mod:`instatrack.cli`).

Each function takes the parsed ``argparse.Namespace`` and returns an exit
status; user errors propagate as :class:`InstatrackError`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from instatrack.errors import ConfigError, DataError


def synth(args) -> int:
    from instatrack.data import synth as synthetic

    knobs = {k: v for k, v in (("density", args.density), ("noise", args.noise),
                               ("division_rate", args.division_rate)) if v is not None}
    for key in ("dim_phase", "dense_phase"):
        phases = getattr(args, key) or []
        if phases:
            flag = "--" + key.replace("_", "-")
            knobs[key + "s"] = [synthetic.parse_phase(text, flag) for text in phases]
    if args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    if args.kind == "cells":
        out = synthetic.write_ctc_synthetic(args.out, frames=args.frames, size=tuple(args.size),
                                            seed=args.seed, **knobs)
        print(f"wrote a synthetic CTC sequence of {args.frames} frames to {out}")
    else:
        if knobs:
            raise ConfigError("--density/--noise/--division-rate/--dim-phase/--dense-phase "
                              "apply to --kind cells only")
        out = synthetic.write_cvppp_synthetic(args.out, n=args.frames, size=tuple(args.size),
                                              seed=args.seed)
        print(f"wrote {args.frames} synthetic leaf images to {out}")
    return 0


def train(args) -> int:
    from instatrack.runs import read_run_metadata
    from instatrack.train import train as run_training

    if args.resume:
        data = args.data or read_run_metadata(args.resume).get("data")
        config = None
        if args.steps is not None:
            _, saved = _saved_config(args.resume)
            config = saved.replace(steps=args.steps)
        if args.preset or args.config or args.overrides:
            raise ConfigError("--resume continues with the run's saved config; only --steps "
                              "may change")
        out = Path(args.resume)
    else:
        if not args.data:
            raise ConfigError("--data is required (or --resume RUN)")
        data, config = args.data, _build_config(args)
        out = Path(args.out or f"runs/{args.method or 'cosine-hourglass'}")
    run = run_training(method=args.method or ("" if args.resume else "cosine-hourglass"),
                       data=data, out=out, config=config, resume=bool(args.resume),
                       progress=not args.quiet, device=args.device)
    print(f"trained run written to {run}")
    return 0


def _saved_config(run: str):
    from instatrack.runs import read_run_config

    return read_run_config(run)


def _build_config(args):
    from instatrack.methods import get_method

    config_cls = get_method(args.method or "cosine-hourglass").config_cls
    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"steps={args.steps}")
    return config_cls.build(preset=args.preset or "fast", file=args.config, overrides=overrides)


def segment(args) -> int:
    from tqdm.auto import tqdm

    from instatrack.api import load
    from instatrack.data.io import list_images, read_image, write_labels
    from instatrack.data.omezarr import is_omezarr

    predictor = load(args.model, device=args.device, overrides=args.overrides,
                     object_size=args.object_size,
                     weights=args.weights)
    if args.format == "ome-zarr" or is_omezarr(args.input):  # interop hook (issue 20)
        return _segment_frames(args, predictor)
    paths = list_images(args.input)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for path in tqdm(paths, desc="segment", unit="image", disable=args.quiet):
        image = read_image(path)
        labels = predictor.segment(image)
        write_labels(out / f"{path.stem}.tif", labels)
        if args.pictures:
            _write_overlay(out / f"{path.stem}_overlay.png", image, labels)
    print(f"segmented {len(paths)} image(s) into {out}")
    return 0


def _write_overlay(path: Path, image, labels) -> None:
    from PIL import Image

    from instatrack.plot import label_overlay

    Image.fromarray(label_overlay(image, labels)).save(path)


def track(args) -> int:
    from tqdm.auto import tqdm

    from instatrack.api import load
    from instatrack.data.omezarr import open_frames

    predictor = load(args.model, device=args.device, overrides=args.overrides,
                     object_size=args.object_size,
                     weights=args.weights)
    if args.method and args.method != predictor.method.name:
        raise ConfigError(f"{args.model} was trained with {predictor.method.name}, "
                          f"not {args.method}")
    source = open_frames(args.input)  # a folder of images or an OME-Zarr image
    first = _read_first_masks(args.first_masks)
    bar = tqdm(total=len(source), desc="track", unit="frame", disable=args.quiet)
    stream = predictor.stream(source.frames(), first_masks=first,
                              progress=lambda n: bar.update(1))
    writer = _result_writer(args.format, Path(args.output), source)
    count = 0
    try:
        for t, labels in stream:
            writer.write(t, labels)
            count += 1
    finally:
        bar.close()
    if hasattr(writer, "finish"):
        writer.finish(stream.graph)
    _finish_tracks(args, stream.graph, source)
    print(f"tracked {count} frame(s), {len({d['label'] for _, d in stream.graph.nodes(data=True)})}"
          f" track(s) -> {args.output}")
    return 0


def _read_first_masks(path: str | None):
    if path is None:
        return None
    from instatrack.data.io import read_image

    masks = read_image(path)
    if masks.ndim != 2:
        raise DataError(f"{path}: first masks must be a 2D label image, got shape {masks.shape}")
    return masks.astype("int32")


def _result_writer(fmt: str, out: Path, source):
    """An object with ``write(t, labels)``: a CTCWriter, DAVIS palette PNGs, GEFF, OME-Zarr."""
    n_frames = len(source)
    if fmt in ("geff", "ome-zarr"):  # interop hook (issue 20)
        return _interop_writer(fmt, out, source)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "ctc":
        from instatrack.track.export import CTCWriter

        return CTCWriter(out, digits=4 if n_frames > 1000 else 3)
    from types import SimpleNamespace

    from instatrack.data.davis import write_annotation

    return SimpleNamespace(write=lambda t, labels: write_annotation(out / f"{t:05d}.png",
                                                                    labels))


def _finish_tracks(args, graph, source) -> None:
    from instatrack.track import export

    out = Path(args.output)
    if args.tables:
        export.write_tracks_csv(out / "tracks.csv", graph)
        export.write_napari(out, graph)
    if args.movie or args.lineage:
        from instatrack import plot

        if args.movie and args.format in ("geff", "ome-zarr"):  # interop hook (issue 20)
            plot.overlay_movie(source.frames(), _interop_labels(args.format, out, len(source)),
                               graph, args.movie)
        elif args.movie:
            plot.overlay_movie_from_files(source.paths,
                                          _result_paths(args.format, out, len(source)),
                                          graph, args.movie)
        if args.lineage:
            plot.lineage_tree(graph, args.lineage)


def _result_paths(fmt: str, out: Path, n: int) -> list[Path]:
    if fmt == "ctc":
        digits = 4 if n > 1000 else 3
        return [out / f"mask{t:0{digits}d}.tif" for t in range(n)]
    return [out / f"{t:05d}.png" for t in range(n)]


def evaluate(args) -> int:
    from instatrack.metrics.evaluate import evaluate as run_evaluation

    scores = run_evaluation(args.gt, args.res)
    if args.json:
        print(json.dumps(scores))
    else:
        width = max(len(k) for k in scores)
        for key, value in scores.items():
            print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else
                  f"{key:<{width}}  {value}")
    return 0


# -- interop (issue 20): OME-Zarr input, GEFF / OME-Zarr output ----------------------------------
def _interop_writer(fmt: str, out: Path, source):
    """A GeffWriter (graph + masks) or an OmeZarrLabelsWriter (labels image of the input)."""
    from instatrack.data.omezarr import OmeZarrImage, OmeZarrLabelsWriter

    image = source if isinstance(source, OmeZarrImage) else None
    if fmt == "geff":
        from instatrack.data.geff import GeffWriter

        return GeffWriter(out, len(source), calibration=image.calibration() if image else None)
    return OmeZarrLabelsWriter(out, len(source), image=image, frame_of=source.frame)


def _interop_labels(fmt: str, out: Path, n_frames: int):
    """The labels just written in ``fmt`` at ``out``, one frame at a time."""
    from instatrack.data.omezarr import LABELS_NAME, OmeZarrImage

    if fmt == "geff":
        from instatrack.data.geff import read_geff

        tracks = read_geff(out)
        return (tracks.track_masks(t) for t in range(n_frames))
    return OmeZarrImage(out / "labels" / LABELS_NAME).frames()


def _segment_frames(args, predictor) -> int:
    """``segment`` of an OME-Zarr input, or into an OME-Zarr labels image (``--format``)."""
    from tqdm.auto import tqdm

    from instatrack.data.io import write_labels
    from instatrack.data.omezarr import OmeZarrImage, OmeZarrLabelsWriter, open_frames

    source = open_frames(args.input)
    out = Path(args.output)
    writer = None
    if args.format == "ome-zarr":
        image = source if isinstance(source, OmeZarrImage) else None
        writer = OmeZarrLabelsWriter(out, len(source), image=image, frame_of=source.frame)
    for t in tqdm(range(len(source)), desc="segment", unit="image", disable=args.quiet):
        image = source.frame(t)
        labels = predictor.segment(image)
        if writer is not None:
            writer.write(t, labels)
        else:
            write_labels(out / f"frame{t:04d}.tif", labels)
        if args.pictures:
            out.mkdir(parents=True, exist_ok=True)
            _write_overlay(out / f"frame{t:04d}_overlay.png", image, labels)
    print(f"segmented {len(source)} image(s) into {out}")
    return 0


def demo(args) -> int:
    from instatrack.demo import run_demo

    report = run_demo(args.out, method=args.method, steps=args.steps, frames=args.frames,
                      size=tuple(args.size))
    sys.stdout.write(report)
    return 0
