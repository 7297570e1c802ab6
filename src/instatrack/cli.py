"""``instatrack`` command line: argument parsing only.

Every subcommand imports its implementation lazily, so ``instatrack --help``
does not import torch. Errors the user can fix (:class:`InstatrackError`) are
printed as one line and exit with status 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import sys

from instatrack.demo import DEMO_MODEL, FINETUNE
from instatrack.methods import DEFAULT_METHOD, REGISTRY

METHODS = tuple(REGISTRY)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instatrack",
        description="Segment every object instance in images and videos and track it over time.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("synth", help="write a synthetic dataset with exact ground truth")
    p.add_argument("out", help="output folder (new, or empty unless --overwrite)")
    p.add_argument("--kind", choices=("cells", "leaves", "video"), default="cells",
                   help="cells: CTC time-lapse; leaves: CVPPP-style still images; video: "
                        "DAVIS-layout colour videos of moving objects over moving clutter")
    p.add_argument("--frames", type=int, default=30,
                   help="frames (cells, video) or images (leaves)")
    p.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--density", type=float, default=None, help="cells per 100x100 pixels")
    p.add_argument("--noise", type=float, default=None, help="noise level (0 = none)")
    p.add_argument("--division-rate", type=float, default=None,
                   help="probability per cell and frame of dividing")
    p.add_argument("--dim-phase", action="append", metavar="START:STOP:FACTOR",
                   help="frames START..STOP-1 with the fluorescence divided by FACTOR "
                        "(noise floor unchanged; repeatable)")
    p.add_argument("--dense-phase", action="append", metavar="START:STOP:FACTOR",
                   help="frames START..STOP-1 with FACTOR times as many cells (repeatable)")
    p.add_argument("--outline", choices=("object", "visible"), default=None,
                   help="cells: where a nucleus's ground truth ends: its drawn outline "
                        "(default) or the visible edge of its blurred light, as annotators "
                        "draw it")
    p.add_argument("--sequences", type=int, default=1, metavar="N",
                   help="cells: write N sequences 01..NN into one dataset folder; video: N "
                        "videos synth-000 ...")
    p.add_argument("--video-set", action="append", default=[], metavar="KEY=VALUE",
                   help="video: a field of VideoSettings (e.g. zoom=0.1, "
                        "scale_range=0.3,3 for approaching objects; articulation=1, "
                        "motion_blur=1.5, flat=0.5 for motion the optical flow follows "
                        "badly; thin=0.3 for wheels the background shows through; "
                        "restyle=0.05 for objects whose look changes; "
                        "repeatable)")
    p.add_argument("--range", action="append", default=[], metavar="NAME=LOW,HIGH",
                   help="with --randomise: draw NAME from LOW..HIGH instead of its default "
                        "range (e.g. radius=12,32, or arms=1,4 for spread cells; names: "
                        "instatrack.data.synth_random.RANGES and LATER_RANGES; repeatable)")
    p.add_argument("--randomise", action="store_true",
                   help="cells: each sequence draws its look (size, shape, texture, density, "
                        "contrast, noise, blur, background) from broad ranges; knobs given "
                        "above are kept fixed")
    _overwrite_arg(p)

    p = sub.add_parser("train", help="train a method on an annotated dataset")
    p.add_argument("--method", choices=METHODS,
                   help=f"method to train (default: {DEFAULT_METHOD}, or the --init model's)")
    p.add_argument("--data", action="append", metavar="FOLDER",
                   help="dataset folder (CTC, CVPPP, DAVIS or images/ + masks/); repeat it to "
                        "train on several datasets together")
    p.add_argument("--init", metavar="MODEL",
                   help="start from the weights and config of a shipped model (instatrack "
                        "models) or a run folder: fine-tuning; --set may change training keys")
    p.add_argument("--preset", default=None, help="fast (CPU, minutes) or paper (published set-up)")
    p.add_argument("--config", help="JSON file of config values")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value (repeatable)")
    p.add_argument("--steps", type=int, help="number of training steps (overrides the config)")
    p.add_argument("--out", help="run folder to write (default: runs/METHOD)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in RUN from its checkpoint")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("models", help="list the pretrained models shipped with instatrack")
    p.add_argument("--json", action="store_true", help="print one JSON object per model")

    p = sub.add_parser("segment", help="segment still images with a trained run")
    _model_io_args(p)
    _scale_args(p)
    p.add_argument("--pictures", action="store_true", help="also write overlay PNGs")
    p.add_argument("--format", choices=("tif", "ome-zarr"), default="tif",
                   help="tif: one label TIFF per image; ome-zarr: a labels image of the input "
                        "(needs instatrack[zarr])")

    p = sub.add_parser("track", help="segment and track a sequence with a trained run")
    _model_io_args(p)
    _scale_args(p)
    p.add_argument("--method", choices=METHODS, help="check that RUN was trained with this method")
    p.add_argument("--first-masks", help="label image of frame 0 (semi-supervised methods)")
    p.add_argument("--format", choices=("ctc", "davis", "geff", "ome-zarr"), default="ctc",
                   help="result layout: CTC folder, DAVIS PNGs, GEFF graph + masks "
                        "(instatrack[geff]) or labels of an OME-Zarr image (instatrack[zarr])")
    p.add_argument("--movie", help="also write an overlay movie (.gif, or .mp4 with "
                                   "imageio-ffmpeg installed)")
    p.add_argument("--lineage", help="also write a lineage-tree picture (.png, .pdf or .svg)")
    p.add_argument("--tables", action="store_true",
                   help="also write tracks.csv and napari tracks (tracks.npy, graph.json)")

    p = sub.add_parser("calibrate", help="choose a model's post-processing thresholds on "
                                         "annotated frames (no training)")
    p.add_argument("--model", required=True, metavar="MODEL",
                   help="run folder (changed in place unless --out) or shipped model name")
    p.add_argument("--data", action="append", metavar="FOLDER",
                   help="annotated dataset(s) to choose on (default: the run's training data)")
    p.add_argument("--frames", metavar="A:B",
                   help="frames to choose on (default: all labelled ones of --data, at most "
                        "12; without --data the run's validation frames)")
    p.add_argument("--out", help="write a calibrated copy here instead (needed for a shipped "
                                 "model)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="post-processing setting to start from, e.g. calibrate_dim=1,4 (also "
                        "score the frames with their contrast divided by 4, and choose "
                        "values that hold on both)")
    p.add_argument("--only", action="append", metavar="KEY",
                   help="choose this setting alone and keep the model's others, e.g. "
                        "cluster_split_area (a pass per value instead of the whole grid); "
                        "repeatable")
    p.add_argument("--object-size", metavar="PIXELS",
                   help="diameter of the objects in --data, or 'auto' to estimate it, as for "
                        "track (give track the same value)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("ensemble", help="join trainings of one recipe (e.g. seeds) into one "
                                        "model whose networks run together")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="run folders or shipped model names, two or more, one method and "
                        "network; the first's post-processing values are kept")
    p.add_argument("--out", required=True, help="the new run folder")

    p = sub.add_parser("export", help="write a trained run's network in another format")
    p.add_argument("--model", required=True, metavar="MODEL",
                   help="run folder from train, or the name of a shipped model")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="file format")
    p.add_argument("--weights", default="weights.pt", help="weights.pt (default) or last.pt")
    p.add_argument("out", help="file to write, e.g. RUN/model.onnx (where --backend "
                               "onnxruntime looks by default)")

    p = sub.add_parser("evaluate", help="score results against ground truth")
    p.add_argument("--gt", required=True, help="ground truth (CTC NN_GT, label folder, DAVIS)")
    p.add_argument("--res", required=True,
                   help="results in the matching layout (for CTC ground truth, a CTC "
                        "folder or a GEFF from track --format geff)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--objects", metavar="CSV",
                   help="also write a row per object to this CSV file: each reference "
                        "object's overlap and verdict (missed, cut, merged, too large, too "
                        "small, ok) and each false object, with how far it stands over the "
                        "background in noise std (snr; from a CTC sequence's frames beside "
                        "its NN_GT); a count of each verdict is printed")

    p = sub.add_parser("demo", help="synthesise, track with a shipped model, fine-tune, "
                                    "evaluate and draw, in minutes")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--model", default=None, metavar="MODEL",
                   help=f"shipped model (instatrack models) or run folder to start from "
                        f"(default: {DEMO_MODEL}); 'none' trains --method from scratch")
    p.add_argument("--method", choices=METHODS, default=None,
                   help=f"train this method from scratch instead (default with --model none: "
                        f"{DEFAULT_METHOD})")
    p.add_argument("--steps", type=int, default=None,
                   help=f"fine-tuning steps (default {FINETUNE['steps']}), or training steps "
                        "from scratch (default: the method's demo steps)")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    return parser


def _model_io_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="MODEL",
                   help="run folder from train, or the name of a shipped model "
                        "(instatrack models); an existing folder wins over a name")
    p.add_argument("--input", required=True, help="folder of frames / images, or an OME-Zarr image")
    p.add_argument("--output", required=True,
                   help="folder to write results to (new, or empty unless --overwrite)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change a post-processing setting of the run, e.g. "
                        "cluster_min_cluster_size=200 (repeatable)")
    p.add_argument("--weights", default="weights.pt",
                   help="weights.pt (best validation score, default) or last.pt")
    p.add_argument("--object-size", metavar="PIXELS",
                   help="diameter of the objects in the input, or 'auto' to estimate it: "
                        "frames are resized so they match the training objects")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _overwrite_arg(p)


def _overwrite_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing results (only once this run has succeeded)")


def _scale_args(p: argparse.ArgumentParser) -> None:
    """Large images, other runtimes, many sequences (see docs/scale.md)."""
    g = p.add_argument_group("scale")
    g.add_argument("--tile", type=int, metavar="SIZE",
                   help="run the network on tiles of SIZE x SIZE pixels and stitch the "
                        "instances (memory bounded by the tile, not the frame)")
    g.add_argument("--overlap", type=int, metavar="PX",
                   help="tile overlap in pixels (default: twice the network's reach, which "
                        "gives the untiled result)")
    g.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="run the network with torch (default) or onnxruntime")
    g.add_argument("--onnx", metavar="FILE",
                   help="ONNX file from 'instatrack export' (default: RUN/model.onnx)")
    g.add_argument("--workers", type=int, metavar="N",
                   help="process sequences / frames in parallel on a local Dask cluster "
                        "of N worker processes")
    g.add_argument("--dask", metavar="ADDRESS",
                   help="process on the Dask scheduler at ADDRESS (e.g. tcp://host:8786; "
                        "a dask-jobqueue SLURM/PBS cluster's scheduler address)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from instatrack import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 0
    from instatrack.errors import InstatrackError

    try:
        from instatrack import commands

        return getattr(commands, args.command)(args) or 0
    except InstatrackError as err:
        print(f"instatrack {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # training says what it kept and how to go on
        detail = f": {err}" if str(err) else ""
        print(f"instatrack {args.command}: interrupted{detail}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
