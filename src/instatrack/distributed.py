"""Many sequences, frames and tiles on a Dask cluster (``--workers N`` / ``--dask ADDRESS``).

Work is split where the data flow allows and kept sequential where it must be:

- a plate (a folder of sequence folders, or a zarr group of ``(T, Y, X[, C])``
  arrays) gives every sequence its own chain of tasks, all in parallel;
- per-frame methods (spatial-embedding, recurrent-instance): one task per
  frame reads its frame itself (an image file or a zarr chunk), segments it
  (in tiles with ``--tile``) and writes the labels into its own chunk of a zarr
  array; then one task per sequence reads the frames back in order and links
  them (linking is sequential), writing the CTC result;
- methods that carry state from frame to frame (cosine-hourglass,
  spatial-propagation): one task per sequence;
- ``segment``: one task per image; with ``--tile``, one task per tile and one
  stitching task per image, which stitches the tiles in the serial order.

Every task runs the same code as the serial command, so the results are
identical to it, byte for byte. Workers load the run once each (it is read
from the shared file system, as are the inputs and outputs) and run torch on
one thread. The zarr array of untracked labels is deleted once linked.

``dask[distributed]`` and ``zarr`` are optional (``pip install
"instatrack[distributed]"``) and imported only here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import shutil
from collections.abc import Sequence as SequenceType
from pathlib import Path

import numpy as np

from instatrack.errors import ConfigError, DataError

PER_FRAME = ("spatial-embedding", "recurrent-instance")
WORK = ".instatrack-segmentation.zarr"


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What a worker needs to build the same predictor as the serial command."""

    run: str
    weights: str = "weights.pt"
    overrides: tuple[str, ...] = ()
    backend: str = "torch"
    onnx: str | None = None
    tile: int | None = None
    overlap: int | None = None
    object_size: str | None = None

    def predictor(self):
        """The predictor, loaded once per worker process."""
        return _load_predictor(self)


@functools.lru_cache(maxsize=4)
def _load_predictor(spec: RunSpec):
    import torch

    from instatrack.api import load

    torch.set_num_threads(1)
    predictor = load(spec.run, device="cpu", overrides=spec.overrides, weights=spec.weights,
                     object_size=spec.object_size)
    if spec.backend == "onnxruntime":
        from instatrack.onnx import onnx_predictor

        predictor = onnx_predictor(predictor, spec.onnx or Path(spec.run) / "model.onnx")
    if spec.tile is not None:
        from instatrack.tiling import TiledPredictor

        predictor = TiledPredictor(predictor, spec.tile, spec.overlap)
    return predictor


@dataclasses.dataclass(frozen=True)
class FrameSequence:
    """One sequence: a folder of frames (read as ``instatrack track`` reads it) or a
    ``(T, Y, X[, C])`` zarr array (a task reads only its frame's chunks)."""

    name: str
    folder: str | None = None
    store: str | None = None
    array: str | None = None

    def frames(self):
        """An object with ``image(t)``, ``times`` (frame numbers) and ``len()``."""
        if self.folder is not None:
            from instatrack.data import open_images

            return open_images(self.folder, video=True)
        return _ZarrFrames(self.store, self.array)


class _ZarrFrames:
    """The frames of a plain zarr array, numbered from 0."""

    def __init__(self, store: str, array: str | None):
        import zarr

        self.data = zarr.open_array(store, path=array or "", mode="r")
        self.times = list(range(self.data.shape[0]))
        self.channels = 1 if self.data.ndim == 3 else self.data.shape[3]

    def __len__(self) -> int:
        return self.data.shape[0]

    def image(self, t: int) -> np.ndarray:
        return np.asarray(self.data[t])


def find_sequences(source: str | Path) -> list[FrameSequence]:
    """The sequences in ``source``: a folder of frames (one sequence), a folder of such
    folders (a plate), a zarr array (one) or a zarr group of arrays (a plate), by name."""
    from instatrack.data.io import IMAGE_SUFFIXES

    source = Path(source)
    if _is_zarr(source):
        return _zarr_sequences(source)
    if not source.is_dir():
        raise DataError(f"{source}: folder not found")
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in source.iterdir() if p.is_file()):
        return [FrameSequence(source.name, folder=str(source))]
    found = [FrameSequence(d.name, folder=str(d)) for d in sorted(source.iterdir())
             if d.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in d.iterdir())]
    if not found:
        raise DataError(f"{source}: no images and no folders of images")
    return found


def _is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr" or any((path / n).is_file()
                                         for n in ("zarr.json", ".zarray", ".zgroup"))


def _zarr_sequences(path: Path) -> list[FrameSequence]:
    import zarr

    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Array):
        return [FrameSequence(path.stem, store=str(path))]
    if "multiscales" in node.attrs:
        raise DataError(f"{path}: an OME-Zarr image; give a plain zarr array or group of "
                        f"(T, Y, X) arrays, or track it without --workers/--dask")
    names = sorted(name for name, item in node.arrays() if item.ndim in (3, 4))
    if not names:
        raise DataError(f"{path}: a zarr group without (T, Y, X) arrays")
    return [FrameSequence(name, store=str(path), array=name) for name in names]


@contextlib.contextmanager
def open_client(workers: int | None = None, address: str | None = None,
                processes: bool = True):
    """A ``dask.distributed.Client``: to the scheduler at ``address``, else to a new
    local cluster of ``workers`` single-threaded workers (processes, or threads),
    closed on exit."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--workers/--dask need dask; pip install "
                          "'instatrack[distributed]'") from None
    if address:
        with Client(address) as client:
            yield client
        return
    if workers is None or workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


# -- track ------------------------------------------------------------------------
def track_plate(client, spec: RunSpec, sequences: SequenceType[FrameSequence], out: Path,
                tables: bool = False) -> dict[str, dict]:
    """Track every sequence into ``out`` (one sequence) or ``out/NAME`` (a plate).

    Returns ``{name: {"frames": T, "tracks": n}}``; raises the first task error.
    """
    method = _method_name(spec)
    out = Path(out)
    targets = {s.name: out if len(sequences) == 1 else out / s.name for s in sequences}
    futures = []
    for seq in sequences:
        target = targets[seq.name]
        target.mkdir(parents=True, exist_ok=True)
        if method in PER_FRAME:
            frames = seq.frames()
            store = _create_store(target / WORK, frames)
            done = [client.submit(_segment_frame, spec, seq, t, store, pure=False)
                    for t in range(len(frames))]
            futures.append(client.submit(_link, spec, seq, store, str(target), tables, done,
                                         pure=False))
        else:
            futures.append(client.submit(_track_sequence, spec, seq, str(target), tables,
                                         pure=False))
    results = client.gather(futures)
    return {seq.name: r for seq, r in zip(sequences, results, strict=True)}


def _method_name(spec: RunSpec) -> str:
    from instatrack.runs import Run
    from instatrack.tiling import TILEABLE, WHY_NOT

    name = Run.open(spec.run).method
    if spec.tile is not None and name not in TILEABLE:
        raise ConfigError(f"--tile is not available for {name}: {WHY_NOT.get(name, '')}")
    return name


def _create_store(path: Path, frames) -> str:
    """The zarr array of untracked labels ``(T, Y, X)`` int32, one chunk row per frame."""
    import zarr

    y, x = frames.image(0).shape[:2]
    zarr.open_array(str(path), mode="w", shape=(len(frames), y, x), dtype="int32",
                    chunks=(1, min(y, 4096), min(x, 4096)), fill_value=0)
    return str(path)


def _segment_frame(spec: RunSpec, seq: FrameSequence, t: int, store: str) -> int:
    """Task: labels of frame ``t`` into the zarr chunk(s) of frame ``t``; returns the count."""
    import zarr

    labels = spec.predictor().segment(seq.frames().image(t))
    zarr.open_array(store, mode="r+")[t] = labels
    return int(labels.max())


def _link(spec: RunSpec, seq: FrameSequence, store: str, target: str, tables: bool,
          _frames_done: list[int]) -> dict:
    """Task: the tracker over the stored frames, in order; writes the CTC result."""
    import zarr

    from instatrack.methods.base import Window
    from instatrack.track.link import Tracker

    labels = zarr.open_array(store, mode="r")
    tracker = Tracker(spec.predictor().config)

    def tracked():
        for t in range(labels.shape[0]):
            yield from tracker.push(Window(t, np.asarray(labels[t])[None]))
        yield from tracker.finish()

    summary = _write_ctc(tracked(), tracker, Path(target), seq.frames().times, tables)
    shutil.rmtree(store)
    return summary


def _track_sequence(spec: RunSpec, seq: FrameSequence, target: str, tables: bool) -> dict:
    """Task: a whole sequence through the predictor's stream (state carried frame to frame)."""
    frames = seq.frames()
    stream = spec.predictor().stream(frames.image(t) for t in range(len(frames)))
    return _write_ctc(iter(stream), stream, Path(target), frames.times, tables)


def _write_ctc(tracked, holder, target: Path, times: list[int], tables: bool) -> dict:
    """Write the ``(index, labels)`` frames and the graph as ``instatrack track`` does:
    masks named by frame number, the graph's times shifted to frame numbers."""
    from instatrack.track import export

    writer = export.CTCWriter(target, last_frame=times[-1])
    count = 0
    for t, labels in tracked:
        writer.write(times[t], labels)
        count += 1
    graph = export.shift_frames(holder.graph, times[0])
    writer.finish(graph)
    if tables:
        export.write_tracks_csv(target / "tracks.csv", graph)
        export.write_napari(target, graph)
    return {"frames": count, "tracks": len({d["label"] for _, d in graph.nodes(data=True)})}


# -- segment ----------------------------------------------------------------------
def segment_images(client, spec: RunSpec, folder: str | Path, out: Path) -> int:
    """Segment every image of ``folder`` into ``out/STEM.tif`` as ``instatrack segment``
    does; with ``spec.tile`` the tiles of each image run in parallel too."""
    from instatrack.data import open_images

    images = open_images(folder)
    names = [Path(images.frame_path(t)).stem for t in range(len(images))]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    futures = []
    for t, name in enumerate(names):
        image = _Image(str(folder), t)
        target = str(out / f"{name}.tif")
        if spec.tile is None:
            futures.append(client.submit(_segment_image, spec, image, target, pure=False))
            continue
        ranges = client.submit(_ranges, spec, image, pure=False)
        count = client.submit(_tile_count, spec, image, pure=False).result()
        tiles = [client.submit(_tile_labels, spec, image, ranges, k, pure=False)
                 for k in range(count)]
        futures.append(client.submit(_stitch_image, spec, image, tiles, target, pure=False))
    client.gather(futures)
    return len(futures)


@dataclasses.dataclass(frozen=True)
class _Image:
    """Image ``index`` of a folder, read by a worker as ``instatrack segment`` reads it."""

    folder: str
    index: int

    def read(self) -> np.ndarray:
        from instatrack.data import open_images

        return open_images(self.folder).image(self.index)


def _segment_image(spec: RunSpec, image: _Image, target: str) -> None:
    from instatrack.data.io import write_labels

    write_labels(target, spec.predictor().segment(image.read()))


def _ranges(spec: RunSpec, image: _Image) -> np.ndarray:
    from instatrack.data.normalize import Norm

    return Norm.of(spec.predictor().config).ranges(image.read())


def _tile_count(spec: RunSpec, image: _Image) -> int:
    return len(spec.predictor().tiles(image.read().shape[:2]))


def _tile_labels(spec: RunSpec, image: _Image, ranges: np.ndarray, k: int) -> np.ndarray:
    """Task: labels ``(1, y, x)`` of tile ``k`` of the image."""
    from instatrack.data.normalize import normalize_crop

    pixels = image.read()
    tile = spec.predictor().tiles(pixels.shape[:2])[k]
    return np.asarray(spec.predictor().predict_tile(normalize_crop(pixels[tile.window],
                                                                   ranges)), np.int32)


def _stitch_image(spec: RunSpec, image: _Image, tile_labels: list[np.ndarray], target: str
                  ) -> None:
    """Task: stitch the tiles in the serial order and write the label image."""
    from instatrack.data.io import write_labels
    from instatrack.tiling import stitch

    shape = image.read().shape[:2]
    canvas = np.zeros((1, *shape), np.int32)
    next_id = 1
    for tile, labels in zip(spec.predictor().tiles(shape), tile_labels, strict=True):
        next_id, _ = stitch(canvas, labels, tile, next_id)
    write_labels(target, canvas[0])


# -- the command line -------------------------------------------------------------
def run_command(args) -> int:
    """``instatrack segment|track ... --workers N | --dask ADDRESS``."""
    spec = RunSpec(run=str(args.model), weights=args.weights, overrides=tuple(args.overrides),
                   backend=args.backend, onnx=args.onnx, tile=args.tile, overlap=args.overlap,
                   object_size=args.object_size)
    unsupported = [flag for flag, value in (("--first-masks", getattr(args, "first_masks", None)),
                                            ("--movie", getattr(args, "movie", None)),
                                            ("--lineage", getattr(args, "lineage", None)),
                                            ("--pictures", getattr(args, "pictures", False)))
                   if value]
    if args.format not in ("ctc", "tif"):
        unsupported.append(f"--format {args.format}")
    if unsupported:
        raise ConfigError(f"{', '.join(unsupported)} cannot run on a Dask cluster yet; "
                          "drop --workers/--dask")
    method = _method_name(spec)
    if getattr(args, "method", None) and args.method != method:
        raise ConfigError(f"{args.model} was trained with {method}, not {args.method}")
    out = Path(args.output)
    if out.exists() and any(out.iterdir()):
        # workers write in place (the serial commands write beside and swap): no overwriting
        raise DataError(f"{out}: output folder is not empty; with --workers/--dask give a new "
                        f"or empty one")
    with open_client(args.workers, args.dask) as client:
        if args.command == "segment":
            n = segment_images(client, spec, args.input, out)
            print(f"segmented {n} image(s) into {args.output}")
            return 0
        results = track_plate(client, spec, find_sequences(args.input), out,
                              tables=args.tables)
    for name, summary in results.items():
        print(f"tracked {name}: {summary['frames']} frame(s), {summary['tracks']} track(s)")
    print(f"-> {args.output}")
    return 0
