"""A model on data it never saw: CTC SEG / TRA / DET of a sequence's frames from FIRST on,
or DSB2018-style AP of label images, as ``instatrack.load(MODEL, object_size=...)``
gives them (no training, no tuning), or after ``--calibrate SEQ:A:B``: post-processing
chosen on frames [A, B) of SEQ as ``instatrack calibrate`` does (no training).

    python benchmarks/zero_shot.py nuclei-se --ctc ../shared/data/Fluo-C2DL-MSC/02:36 \\
        --object-size none auto
    python benchmarks/zero_shot.py nuclei-se-synthetic \\
        --image ../shared/data/DSB2018_stardist_sample/img2d.tif:mask2d.tif
    python benchmarks/zero_shot.py nuclei-se-synthetic --ctc ../shared/data/Fluo-N2DH-GOWT1/01:36 \
        --calibrate ../shared/data/Fluo-N2DH-GOWT1/01:30:36
    python benchmarks/zero_shot.py RUN --ctc ../shared/data/Fluo-N2DH-SIM+/01:45 \
        --tile 128    # recurrent-instance in tiles of its training crop
    python benchmarks/zero_shot.py RUN --ctc ../shared/data/Fluo-C2DL-MSC/02:36 \
        --objects runs/objects   # + a row per object (instatrack evaluate --objects),
                                 # in runs/objects/RUN-size-none/02-36.csv
    python benchmarks/zero_shot.py RUN --ctc ../shared/data/Fluo-C2DL-MSC/02:30:36 \
        --object-size auto 100 150   # frames 30-35 alone, at three sizes

Each line also gives ``scale``, the factor the frames were resized by for the network
(what ``--object-size`` came to).

Prints one JSON line per model, data and object size.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def ctc_scores(predictor, spec: str, objects: Path | None = None) -> dict:
    """SEG / TRA / DET and TRA's error counts of ``SEQ[:FIRST[:STOP]]`` (frames FIRST up to
    STOP, default to the end); with ``objects`` (a folder) also the count of each verdict
    of :mod:`instatrack.metrics.objects`, whose table is written there as
    ``NAME-FIRST.csv`` (the sequence folder's name and its first frame scored)."""
    from ctc_accuracy import subset_ground_truth

    from instatrack.data.ctc import CTCSequence
    from instatrack.metrics.ctc import AOGM_COUNTS, evaluate_ctc

    path, _, span = spec.partition(":")
    first, _, stop = span.partition(":")
    seq = CTCSequence(path)
    first, stop = int(first or 0), min(len(seq), int(stop or len(seq)))
    clock = time.perf_counter()
    result = predictor.track([seq.image(t) for t in range(first, stop)])
    seconds = (time.perf_counter() - clock) / max(1, stop - first)
    with tempfile.TemporaryDirectory() as tmp:
        gt = subset_ground_truth(seq.gt_dir, first, stop, Path(tmp) / "01_GT",
                                 [seq.frame_path(t) for t in range(first, stop)])
        res = result.to_ctc(Path(tmp) / "RES")
        scores = evaluate_ctc(gt, res, ("SEG", "TRA", "DET", *AOGM_COUNTS))  # what TRA lost
        if objects is not None:
            from common import write_objects

            scores["objects"] = write_objects(gt, res, first,
                                              objects / f"{Path(path).name}-{first}.csv")
    return {**scores, "s_per_frame": seconds, "scale": predictor.scale}


def image_scores(predictor, spec: str) -> dict[str, float]:
    import numpy as np

    from instatrack.data.io import read_image
    from instatrack.metrics.ap import average_precision

    image_path, _, mask_name = spec.partition(":")
    image_path = Path(image_path)
    labels = predictor.segment(read_image(image_path))
    truth = read_image(image_path.parent / mask_name).astype(np.int32)
    return {**average_precision([truth], [labels]), "objects": int(len(np.unique(labels)) - 1),
            "true objects": int(len(np.unique(truth)) - 1)}


def main() -> None:
    import instatrack

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="shipped model names or run folders")
    parser.add_argument("--ctc", action="append", default=[], metavar="SEQ[:FIRST[:STOP]]")
    parser.add_argument("--image", action="append", default=[], metavar="IMAGE:MASK_NAME",
                        help="an image and its label image (a name in the same folder)")
    parser.add_argument("--object-size", nargs="+", default=["none"],
                        help="none, auto or diameters in pixels")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a post-processing setting (chosen elsewhere, not on these data); "
                             "with --calibrate, a starting value calibration may change")
    parser.add_argument("--tile", type=int, metavar="PIXELS",
                        help="run the model in tiles of this size (as `instatrack track "
                             "--tile`; e.g. recurrent-instance at its training crop)")
    parser.add_argument("--objects", type=Path, metavar="DIR",
                        help="also write a row per object of each --ctc sequence to DIR "
                             "(instatrack evaluate --objects) and count the verdicts")
    parser.add_argument("--calibrate", metavar="SEQ:A:B",
                        help="first choose the post-processing on frames [A, B) of SEQ "
                             "(instatrack calibrate; a temporary copy of the model)")
    args = parser.parse_args()
    for model in args.models:
        for size in args.object_size:
            size = None if size == "none" else size
            with tempfile.TemporaryDirectory() as tmp:
                chosen = calibrated(model, args.calibrate, Path(tmp) / "run", size, args.set) \
                    if args.calibrate else None
                # a calibrated copy already holds --set as its starting values, and
                # calibration's choices over them: applying --set again would undo those
                predictor = instatrack.load(chosen["run"], device="cpu", object_size=size) \
                    if chosen else instatrack.load(model, device="cpu", overrides=args.set,
                                                   object_size=size)
                if args.tile:
                    from instatrack.tiling import TiledPredictor

                    predictor = TiledPredictor(predictor, args.tile)
                report(args, model, size or "none", predictor, chosen)


def calibrated(model: str, spec: str, out: Path, size, overrides=()) -> dict:
    """A copy of ``model`` in ``out`` with its post-processing chosen on ``SEQ:A:B``,
    starting from the ``overrides`` (``--set``, e.g. ``calibrate_dim=1,4``)."""
    from instatrack.calibrate import ProgressBar, calibrate, copy_to_calibrate
    from instatrack.runs import Run

    path, a, b = spec.rsplit(":", 2)
    run = copy_to_calibrate(Run.resolve(model), out, f"{a}:{b}", path, overrides)
    bar = ProgressBar()  # a bar on stderr: a calibration takes minutes to an hour
    try:
        record = calibrate(run, data=path, object_size=size, progress=bar)
    finally:
        bar.close()
    return {"run": out, "calibrated_on": spec, "chosen": record["chosen"] if record else {}}


def rounded(scores: dict) -> dict:
    """``scores`` with every float rounded to four places, for a JSON line."""
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}


def report(args, model: str, size: str, predictor, chosen: dict | None) -> None:
    """One JSON line per dataset of ``args``."""
    extra = {k: v for k, v in (chosen or {}).items() if k != "run"}
    for kind, specs, score in (("ctc", args.ctc, ctc_scores), ("image", args.image, image_scores)):
        for spec in specs:
            # a folder per model and object size, a file per sequence
            folder = args.objects / f"{Path(model).name}-size-{size}" if args.objects else None
            scores = score(predictor, spec, folder) if kind == "ctc" else score(predictor, spec)
            print(json.dumps({"model": model, kind: spec, "object_size": size,
                              "settings": args.set, **({"tile": args.tile} if args.tile else {}),
                              **extra,
                              **rounded(scores)}), flush=True)


if __name__ == "__main__":
    main()
