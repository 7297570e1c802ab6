"""What each CLI subcommand does (the parsing lives in :mod:`instatrack.cli`).

Each function takes the parsed ``argparse.Namespace`` and returns an exit
status; user errors propagate as :class:`InstatrackError`.

``synth``, ``segment`` and ``track`` write every result through
:class:`~instatrack.data.output.Outputs`: the targets are checked before any
work, written beside, and moved into place only when the command succeeds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

from instatrack.errors import ConfigError, DataError, DataWarning
from instatrack.methods import DEFAULT_METHOD


def synth(args) -> int:
    from instatrack.data import synth as synthetic
    from instatrack.data.output import Outputs
    from instatrack.data.synth_random import parse_ranges, write_ctc_sequences

    knobs = {k: v for k, v in (("density", args.density), ("noise", args.noise),
                               ("division_rate", args.division_rate),
                               ("outline", getattr(args, "outline", None))) if v is not None}
    for key in ("dim_phase", "dense_phase"):
        phases = getattr(args, key) or []
        if phases:
            flag = "--" + key.replace("_", "-")
            knobs[key + "s"] = [synthetic.parse_phase(text, flag) for text in phases]
    if args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    if args.kind != "cells" and (knobs or args.randomise):
        raise ConfigError("--density/--noise/--division-rate/--dim-phase/--dense-phase/"
                          "--outline/--randomise apply to --kind cells only")
    ranges = parse_ranges(getattr(args, "range", None) or [])
    if ranges and not args.randomise:
        raise ConfigError("--range applies with --randomise only")
    video_set = getattr(args, "video_set", None) or []
    if args.kind != "video" and video_set:
        raise ConfigError("--video-set applies to --kind video only")
    if args.kind == "leaves" and args.sequences != 1:
        raise ConfigError("--sequences applies to --kind cells and video only")
    most = 999 if args.kind == "video" else 99
    if not 1 <= args.sequences <= most:
        raise ConfigError(f"--sequences must be in 1..{most}, got {args.sequences}")
    with Outputs(args.overwrite) as outputs:
        out = outputs.folder(args.out)
        if args.kind == "cells":
            write_ctc_sequences(out, sequences=args.sequences, frames=args.frames,
                                size=tuple(args.size), seed=args.seed,
                                randomise=args.randomise, ranges=ranges, **knobs)
        elif args.kind == "video":
            from instatrack.data.synth_video import VideoSettings, write_davis_videos
            from instatrack.settings import parse_overrides

            settings = VideoSettings.from_dict(parse_overrides(video_set), where="--video-set")
            write_davis_videos(out, videos=args.sequences, frames=args.frames,
                               size=tuple(args.size), seed=args.seed, settings=settings)
        else:
            synthetic.write_cvppp_synthetic(out, n=args.frames, size=tuple(args.size),
                                            seed=args.seed)
    if args.kind == "video":
        print(f"wrote {args.sequences} synthetic DAVIS video(s) of {args.frames} frames to "
              f"{args.out}")
    elif args.kind == "cells":
        what = "randomised " if args.randomise else ""
        print(f"wrote {args.sequences} {what}synthetic CTC sequence(s) of {args.frames} frames "
              f"to {args.out}")
    else:
        print(f"wrote {args.frames} synthetic leaf images to {args.out}")
    return 0


def train(args) -> int:
    with _warnings_in_one_line("train"):
        out = _train(args)
    print(f"trained run written to {out}")
    return 0


def _train(args) -> Path:
    from instatrack import train as training

    if args.resume:
        from instatrack.runs import Run

        if args.preset or args.config or args.overrides or args.init:
            raise ConfigError("--resume continues with the run's saved config; only --steps "
                              "may change")
        run = Run.open(args.resume)
        if args.method and args.method != run.method:
            raise ConfigError(f"{args.resume} was trained with {run.method}, not {args.method}")
        return training.resume(run, steps=args.steps, data=args.data, progress=not args.quiet,
                               device=args.device)
    if not args.data:
        raise ConfigError("--data is required (or --resume RUN)")
    if args.init:
        return _fine_tune(args)
    method = args.method or DEFAULT_METHOD
    return training.train(method, args.data, args.out or f"runs/{method}",
                          config=_build_config(args), progress=not args.quiet,
                          device=args.device)


def _fine_tune(args) -> Path:
    from instatrack import finetune
    from instatrack import train as training
    from instatrack.runs import Run

    if args.preset:
        raise ConfigError("--init takes the init model's config; change training keys with "
                          "--set (or --config), not --preset")
    start = Run.resolve(args.init)
    method = finetune.method_of(start, args.method)
    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"steps={args.steps}")
    config = finetune.init_config(start, args.config, overrides)
    return training.train(method, args.data, args.out or f"runs/{method}", config=config,
                          progress=not args.quiet, device=args.device, init=start)


def _build_config(args):
    from instatrack.methods import get_method

    config_cls = get_method(args.method or DEFAULT_METHOD).config_cls
    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"steps={args.steps}")
    return config_cls.build(preset=args.preset or "fast", file=args.config, overrides=overrides)


def models(args) -> int:
    from instatrack import pretrained

    found = pretrained.available()
    if args.json:
        for model in found:
            print(json.dumps({**dataclasses.asdict(model), "path": str(model.path)}))
        return 0
    if not found:
        print(f"no pretrained models installed (in {pretrained.ROOT})")
        return 0
    rows = [("name", "method", "for", "MB", "object px", "scores")]
    for m in found:
        scores = ", ".join(f"{k} {v:.3f}" for k, v in m.scores.items()) or "-"
        size = f"{m.object_size:.0f}" if m.object_size else "-"
        rows.append((m.name, m.method, m.purpose, f"{m.size_mb:.1f}", size, scores))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  "
              + row[-1])
    print("use one with --model NAME (track, segment), instatrack.load(NAME), or fine-tune it "
          "with train --init NAME; details in its MODEL_CARD.md")
    return 0


def segment(args) -> int:
    _resolve_model(args)
    if args.workers is not None or args.dask:
        return _distributed(args)
    from tqdm.auto import tqdm

    from instatrack.api import load
    from instatrack.data import open_images
    from instatrack.data.io import write_labels
    from instatrack.data.output import Outputs

    with _warnings_in_one_line("segment"), \
            Outputs(args.overwrite, inputs=(args.input, args.model)) as outputs:
        out = _output_folder(outputs, args)
        predictor = load(args.model, device=args.device, overrides=args.overrides,
                         weights=args.weights, object_size=args.object_size)
        predictor = _scaled(predictor, args)
        images = open_images(args.input)
        stems = _output_stems(images)
        _check_channels(images, predictor.config.in_channels, args.model)
        zarr_labels = None
        if args.format == "ome-zarr":
            zarr_labels = _OmeZarrLabels(out, images, args.overwrite)
        for t in tqdm(range(len(images)), desc="segment", unit="image", disable=args.quiet):
            image = images.image(t)
            labels = predictor.segment(image)
            if zarr_labels is None:
                write_labels(out / f"{stems[t]}.tif", labels)
            else:
                zarr_labels.write(images.times[t], labels)
            if args.pictures:
                _write_overlay(out / f"{stems[t]}_overlay.png", image, labels)
    print(f"segmented {len(images)} image(s) into {args.output}")
    return 0


def _resolve_model(args) -> None:
    """``--model``: a run folder, or the folder of the shipped model of that name."""
    from instatrack.pretrained import locate

    args.model = str(locate(args.model))


def _output_stems(images) -> list[str]:
    """The output name of each image: its stem, which must be unique in the folder.

    The frames of an OME-Zarr image are not files: ``frameTTTT``.
    """
    if images.paths is None:
        return [f"frame{t:04d}" for t in range(len(images))]
    seen: dict[str, Path] = {}
    for t in range(len(images)):
        path = images.frame_path(t)
        if path.stem in seen:
            raise DataError(f"{path}: has the same name as {seen[path.stem].name}; their "
                            f"results would overwrite each other")
        seen[path.stem] = path
    return list(seen)


def _check_channels(images, channels: int, model: str) -> None:
    if images.channels != channels:
        raise DataError(f"{images.frame_path(0)}: has {images.channels} channel(s), the model "
                        f"{model} was trained on {channels}")


@contextlib.contextmanager
def _warnings_in_one_line(command: str) -> Iterator[None]:
    """Print :class:`DataWarning` as ``instatrack COMMAND: warning: ...`` on stderr."""
    with warnings.catch_warnings():
        show = warnings.showwarning

        def one_line(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, DataWarning):
                print(f"instatrack {command}: warning: {message}", file=sys.stderr)
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = one_line
        warnings.simplefilter("always", DataWarning)
        yield


def _write_overlay(path: Path, image, labels) -> None:
    from PIL import Image

    from instatrack.plot import label_overlay

    Image.fromarray(label_overlay(image, labels)).save(path)


def track(args) -> int:
    _resolve_model(args)
    if args.workers is not None or args.dask:
        return _distributed(args)
    from tqdm.auto import tqdm

    from instatrack import plot
    from instatrack.api import load
    from instatrack.data import open_images
    from instatrack.data.output import Outputs
    from instatrack.track.export import shift_frames

    with _warnings_in_one_line("track"), \
            Outputs(args.overwrite, inputs=(args.input, args.model, args.first_masks)) as outputs:
        out = _output_folder(outputs, args)
        movie = lineage = None
        if args.movie:
            movie = outputs.file(plot.check_movie_path(args.movie), plot.MOVIE_SUFFIXES)
        if args.lineage:
            lineage = outputs.file(args.lineage, plot.PICTURE_SUFFIXES)
        predictor = load(args.model, device=args.device, overrides=args.overrides,
                         weights=args.weights, object_size=args.object_size)
        predictor = _scaled(predictor, args)
        if args.method and args.method != predictor.method.name:
            raise ConfigError(f"{args.model} was trained with {predictor.method.name}, "
                              f"not {args.method}")
        if predictor.method.needs_first_masks and args.first_masks is None:
            raise DataError(f"{args.model} follows the objects you outline in the first "
                            f"frame: give their label image with --first-masks MASKS")
        frames = open_images(args.input, video=True)
        first = _read_first_masks(args.first_masks, frames)
        _check_channels(frames, predictor.config.in_channels, args.model)
        with tqdm(total=len(frames), desc="track", unit="frame", disable=args.quiet) as bar:
            images = (frames.image(t) for t in range(len(frames)))
            stream = predictor.stream(images, first_masks=first,
                                      progress=lambda n: bar.update(1))
            writer = _result_writer(args.format, out, frames, args.overwrite)
            for t, labels in stream:
                writer.write(frames.times[t], labels)
        graph = shift_frames(stream.graph, frames.times[0])  # node times = frame numbers
        writer.finish(graph)
        _finish_tracks(args, out, graph, stream.graph, frames, writer, movie, lineage)
    tracks = len({d["label"] for _, d in graph.nodes(data=True)})
    print(f"tracked {len(frames)} frame(s), {tracks} track(s) -> {args.output}"
          f"{_scale_note(predictor)}")
    return 0


def _scale_note(predictor) -> str:
    """`` (objects ~63 px: frames resized x0.43 for the model)`` when the frames were
    resized for the network (``--object-size`` or its estimate; Cellpose prints its
    diameter too), else nothing."""
    scale = predictor.scale
    if scale is None or scale == 1 or predictor.trained_size <= 0:
        return ""
    return (f" (objects ~{predictor.trained_size / scale:.0f} px: frames resized "
            f"x{scale:.2g} for the model)")


def _read_first_masks(path: str | None, frames):
    if path is None:
        return None
    from instatrack.data.io import read_image

    masks = read_image(path)
    if masks.ndim != 2:
        raise DataError(f"{path}: first masks must be a 2D label image, got shape {masks.shape}")
    shape = frames.image(0).shape[:2]
    if masks.shape != shape:
        raise DataError(f"{path}: first masks of shape {masks.shape} do not fit the frames "
                        f"{shape} ({frames.frame_path(0).name})")
    return masks.astype("int32")


def _output_folder(outputs, args) -> Path:
    """The folder ``segment``/``track`` write into: ``--output`` staged by ``outputs``.

    The exception is ``--format ome-zarr`` with ``--output`` the input OME-Zarr
    image: the labels are added to it in place (refused up front when it already
    holds them, unless ``--overwrite``), since the input cannot be staged.
    """
    from instatrack.data.omezarr import check_labels_in_place, is_omezarr

    target = Path(args.output)
    if (args.format == "ome-zarr" and is_omezarr(args.input)
            and target.resolve() == Path(args.input).resolve()):
        check_labels_in_place(target, args.overwrite)
        return target
    return outputs.folder(target)


def _result_writer(fmt: str, out: Path, frames, overwrite: bool):
    """A writer of ``fmt`` into ``out``, for ``frames`` (from :func:`~instatrack.data.open_images`).

    It has ``write(t, labels)`` and ``read(t)`` (``t`` the frame number; ``read``
    gives the labels as written, for the movie) and ``finish(graph)`` (graph with
    frame numbers).
    """
    if fmt == "ctc":
        from instatrack.track.export import CTCWriter

        return CTCWriter(out, last_frame=frames.times[-1])
    if fmt == "geff":
        from instatrack.data.geff import GeffWriter
        from instatrack.data.omezarr import OmeZarrImage

        calibration = frames.calibration() if isinstance(frames, OmeZarrImage) else None
        return GeffWriter(out, frames.times[-1] + 1, calibration=calibration)
    if fmt == "ome-zarr":
        return _OmeZarrLabels(out, frames, overwrite)
    return _DavisWriter(out)


class _DavisWriter:
    """DAVIS palette PNGs ``NNNNN.png`` named by frame number."""

    def __init__(self, out: Path):
        self.out = out
        self.written: dict[int, Path] = {}

    def write(self, t: int, labels) -> None:
        from instatrack.data.davis import write_annotation

        self.written[t] = write_annotation(self.out / f"{t:05d}.png", labels)

    def read(self, t: int):
        from instatrack.data.io import read_image

        return read_image(self.written[t])

    def finish(self, graph) -> None:
        """DAVIS has no track file: the ids in the PNGs are the tracks."""


class _OmeZarrLabels:
    """The labels image of an OME-Zarr: ``out`` is the input image itself, or a new image
    holding a copy of the frames. Addressed by frame number like the other writers (the
    OME-Zarr arrays count frames from 0)."""

    def __init__(self, out: Path, frames, overwrite: bool):
        from instatrack.data.omezarr import OmeZarrImage, OmeZarrLabelsWriter

        image = frames if isinstance(frames, OmeZarrImage) else None
        self.writer = OmeZarrLabelsWriter(out, len(frames), image=image, frame_of=frames.image,
                                          overwrite=overwrite)
        self.index = {t: i for i, t in enumerate(frames.times)}

    def write(self, t: int, labels) -> None:
        self.writer.write(self.index[t], labels)

    def read(self, t: int):
        return self.writer.read(self.index[t])

    def finish(self, graph) -> None:
        """The graph is not stored in OME-Zarr (``--tables`` or ``--format geff`` keep it)."""


def _finish_tracks(args, out: Path, graph, stream_graph, frames, writer,
                   movie: Path | None, lineage: Path | None) -> None:
    """Tables, movie and lineage; ``graph`` has frame numbers, ``stream_graph`` indices."""
    from instatrack.track import export

    if args.tables:
        export.write_tracks_csv(out / "tracks.csv", graph)
        export.write_napari(out, graph)
    if movie or lineage:
        from instatrack import plot

        if movie:
            images = (frames.image(t) for t in range(len(frames)))
            labels = (writer.read(t) for t in frames.times)
            plot.overlay_movie(images, labels, stream_graph, movie)
        if lineage:
            plot.lineage_tree(graph, lineage)


def evaluate(args) -> int:
    from instatrack.metrics.evaluate import evaluate as run_evaluation

    scores = run_evaluation(args.gt, args.res)
    verdicts = {}
    if args.objects:
        from instatrack.metrics.objects import table_and_counts

        verdicts = table_and_counts(args.gt, args.res, args.objects)
    if args.json:
        print(json.dumps({**scores, **({"objects": verdicts} if args.objects else {})}))
    else:
        width = max(len(k) for k in scores)
        for key, value in scores.items():
            print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else
                  f"{key:<{width}}  {value}")
        if "FN" in scores:
            print("(TRA's errors: FN missed objects, FP false ones, NS true objects merged "
                  "into one found object; ED / EA / EC links to delete / add / relabel)")
        if args.objects:
            print(f"objects ({args.objects}):")
            for key, count in verdicts.items():
                print(f"  {key:<18}  {count}")
    return 0


def demo(args) -> int:
    from instatrack.demo import DEMO_MODEL, run_demo
    from instatrack.methods import DEFAULT_METHOD

    if args.model is not None and args.method is not None and args.model != "none":
        raise ConfigError("demo: --method trains from scratch, --model starts from a model; "
                          "give one of them")
    model = None if args.model == "none" or (args.model is None and args.method) else \
        args.model or DEMO_MODEL
    report = run_demo(args.out, model=model, method=args.method or DEFAULT_METHOD,
                      steps=args.steps, frames=args.frames, size=tuple(args.size))
    sys.stdout.write(report)
    return 0


# -- scale: tiles, ONNX, Dask (docs/scale.md) ----------------------------------
def _scaled(predictor, args):
    """The predictor that ``--backend`` and ``--tile`` ask for (else ``predictor`` itself)."""
    if args.backend == "onnxruntime":
        from instatrack.onnx import onnx_predictor

        predictor = onnx_predictor(predictor, args.onnx or Path(args.model) / "model.onnx")
    if args.tile is not None:
        from instatrack.tiling import TiledPredictor

        predictor = TiledPredictor(predictor, args.tile, args.overlap)
    elif args.overlap is not None:
        raise ConfigError("--overlap needs --tile")
    return predictor


def _distributed(args) -> int:
    """``--workers``/``--dask``: the same command on a Dask cluster."""
    from instatrack.distributed import run_command

    return run_command(args)


def calibrate(args) -> int:
    """Choose a trained run's (or a shipped model's) post-processing on annotated frames."""
    from instatrack.calibrate import (
        CALIBRATION_FILE,
        PARTIAL_FILE,
        ProgressBar,
        check_only,
        copy_to_calibrate,
        describe,
        frames_scored,
    )
    from instatrack.calibrate import calibrate as choose
    from instatrack.config import parse_slice
    from instatrack.data.rescale import parse_object_size
    from instatrack.runs import Run

    start = Run.resolve(args.model)
    if args.out is None and start.read_only:
        raise ConfigError(f"{args.model} is a shipped model: give --out, the run folder to "
                          f"write its calibrated copy to")
    data = args.data or start.data
    if not data:
        raise ConfigError(f"{start.path}: does not say which data it was trained on; pass --data")
    frames = args.frames or (":" if args.data else start.config.val_frames)
    if not frames:
        raise ConfigError(f"{start.path} has no validation frames; pass --frames A:B")
    parse_slice(frames, "--frames")
    parse_object_size(args.object_size)  # before anything is copied or written
    if args.only:
        check_only(start.config, args.only)  # before anything is copied or written
    if args.out is None:
        run = start
        run.save_config(start.config.with_post_processing(args.overrides)
                        .replace(val_frames=frames))
    elif Run.find(args.out) is not None:
        again = ("go on with the calibration that stopped there" if
                 (Path(args.out) / PARTIAL_FILE).is_file() else "calibrate that run in place")
        raise ConfigError(f"{args.out} already holds a run; choose another --out, or "
                          f"{again} with --model {args.out}")
    else:
        run = copy_to_calibrate(start, args.out, frames, data, args.overrides)
    bar = ProgressBar(enabled=not args.quiet)
    try:
        with _warnings_in_one_line("calibrate"):
            record = choose(run, data=data, device=args.device, progress=bar,
                            object_size=args.object_size, only=args.only)
    finally:
        bar.close()
    if record is None:
        print(f"{run.path}: nothing to choose (no labelled frames in {frames}, or no "
              f"post-processing values to try)")
        return 0
    chosen = ", ".join(f"{k}={v}" for k, v in record["chosen"].items())
    print(f"chose {chosen} on {frames_scored(record)}: {describe(record)}; written to "
          f"{run.file('config.json')} ({run.file(CALIBRATION_FILE)} has every score)")
    return 0


def ensemble(args) -> int:
    """Join runs of one recipe into an ensemble run folder."""
    from instatrack.runs import Run

    run = Run.create_ensemble(args.out, [Run.resolve(model) for model in args.models])
    print(f"wrote {run.path}: {len(run.weight_files)} networks of {run.method}, with the "
          f"post-processing values of {args.models[0]}; choose its own with `instatrack "
          f"calibrate --model {run.path}`")
    return 0


def export(args) -> int:
    from instatrack.onnx import export_onnx

    out = export_onnx(args.model, args.out, weights=args.weights)
    print(f"wrote {out}")
    return 0
