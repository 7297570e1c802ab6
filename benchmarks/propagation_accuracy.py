"""DAVIS J&F of semi-supervised propagation on a video, given its first frame's masks.

Only the first frame's annotation is used for learning: the foreground network
and the SPN train on frames ``--train-frames`` (default ``0:1``, the given
frame, heavily augmented), the per-object heads are fine-tuned on it at
inference, and every later frame is judged against its ground truth with the
DAVIS region similarity J and contour accuracy F (first and last frame left
out, as in DAVIS). Prints one JSON line per video (and their mean when there are
several, e.g. held-out synthetic videos from ``instatrack synth --kind video``).

    python benchmarks/propagation_accuracy.py ../shared/data/DAVIS2016_sample \\
        --steps 1500 --run runs/davis-spn

``--infer-set KEY=VALUE`` changes post-processing at inference (e.g.
``score_threshold``, ``finetune_steps``); ``--out`` writes the DAVIS-layout masks;
``--per-frame`` adds each frame's J and F (``"per_frame"``), to see where the masks
drift; ``--object-size PIXELS`` resizes the frames so objects of that diameter look the
training objects' size (e.g. 238 runs ``objects-spn``, trained at ~119 px, on DAVIS at
half resolution).

``--degrade KIND=VALUE`` judges the frames made worse in one documented way (the
first frame's masks stay as given): ``noise=S``, Gaussian noise of std ``S`` times the
frame's value range (255 for 8-bit frames); ``blur=S``, a Gaussian blur of ``S``
pixels in each channel; ``dim=K``, every value's distance from the frame's mean
divided by ``K`` (a flatter, darker-looking frame); ``jpeg=Q``, saved and read back
as JPEG at quality ``Q``. The noise is drawn with a fixed seed per frame, so a run
repeats exactly.

    python benchmarks/propagation_accuracy.py ../shared/data/DAVIS2016_sample \
        --model objects-spn --degrade noise=0.05

``--model`` judges a network that never saw the video instead (a run folder or a
shipped model, e.g. one pretrained on synthetic videos): nothing is trained, only
the per-object heads are fine-tuned on the first frame at inference, as always.

    python benchmarks/propagation_accuracy.py ../shared/data/DAVIS2016_sample \\
        --model objects-spn

``--draws N`` judges every video N times, with the heads fitted on draws
``finetune_seed`` 0 to N-1, and ends with the mean J&F over the draws and its
standard error: on one clip the draw moves J&F by about 0.02 (session 56), as much as
many changes being compared. One process runs the draws one after another.

    python benchmarks/propagation_accuracy.py ../shared/data/DAVIS2016_sample \\
        --model objects-spn --draws 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="DAVIS root (JPEGImages/, Annotations/)")
    parser.add_argument("--run", help="run folder (trained on the video when missing)")
    parser.add_argument("--model", help="run folder or shipped model to judge as it is "
                                        "(trained elsewhere; --run and training flags unused)")
    parser.add_argument("--train-frames", default="0:1")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--infer-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--object-size", type=float, default=None, metavar="PIXELS",
                        help="the objects' diameter in the clip's pixels: the frames are "
                             "resized so they look the training objects' size "
                             "(instatrack.load's object_size; default: as trained)")
    parser.add_argument("--out", type=Path, default=None, help="write predicted masks here")
    parser.add_argument("--per-frame", action="store_true",
                        help="also print each frame's J and F (mean over objects)")
    parser.add_argument("--degrade", default=None, metavar="KIND=VALUE",
                        help="make every frame worse: noise=S, blur=S, dim=K or jpeg=Q")
    parser.add_argument("--draws", type=int, default=1, metavar="N",
                        help="judge with the heads fitted on N draws (finetune_seed 0..N-1) "
                             "and report their mean and standard error")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.draws < 1:
        parser.error(f"--draws must be >= 1, got {args.draws}")
    if args.draws > 1 and any(o.startswith("finetune_seed=") for o in args.infer_set):
        parser.error("--draws sets finetune_seed itself; leave it out of --infer-set")
    degrade = None if args.degrade is None else parse_degrade(args.degrade, parser)

    from common import ensure_trained

    import instatrack
    from instatrack.data import open_dataset
    if (args.run is None) == (args.model is None):
        parser.error("give one of --run (train on the video) or --model (judge as it is)")
    if args.model is not None:
        run, trained_on = args.model, "elsewhere"
    else:
        run = ensure_trained("spatial-propagation", args.dataset, Path(args.run), args.preset,
                             [f"train_frames={args.train_frames}", "val_frames=", *args.set],
                             args.steps, args.quiet)
        trained_on = args.train_frames
    sequences = open_dataset(args.dataset)
    means = []
    for draw in range(args.draws):
        infer_set = args.infer_set + ([f"finetune_seed={draw}"] if args.draws > 1 else [])
        predictor = instatrack.load(run, overrides=infer_set, object_size=args.object_size)
        header = {"dataset": str(args.dataset), "model": str(run), "train_frames": trained_on,
                  "infer_set": infer_set, "degrade": args.degrade}
        rows = []
        for seq in sequences:
            out = None if args.out is None else args.out / (
                f"draw{draw}" if args.draws > 1 else "") / (
                seq.name if len(sequences) > 1 else "")
            scores, frames = judge(predictor, seq, out, args.per_frame, degrade)
            rows.append(scores)
            extra = {"per_frame": frames} if frames else {}
            print(json.dumps({**header, "sequence": seq.name, **scores, **extra}), flush=True)
        mean = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}
        if len(rows) > 1:
            print(json.dumps({**header, "sequence": f"mean of {len(rows)}", **mean}),
                  flush=True)
        means.append(mean["J&F"])
    if args.draws > 1:
        centre, error = draw_summary(means)
        print(json.dumps({**header, "infer_set": args.infer_set,
                          "sequence": f"mean over {args.draws} draws", "J&F": centre,
                          "J&F_standard_error": error, "J&F_per_draw": means}))


def draw_summary(values: list[float]) -> tuple[float, float]:
    """The mean of ``values`` (one J&F per draw) and its standard error (sample standard
    deviation over the square root of their number), both rounded to 4 decimals."""
    values = np.asarray(values, float)
    error = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
    return round(float(values.mean()), 4), round(error, 4)


DEGRADATIONS = ("noise", "blur", "dim", "jpeg")


def parse_degrade(text: str, parser: argparse.ArgumentParser) -> tuple[str, float]:
    """``KIND=VALUE`` of ``--degrade``, checked."""
    kind, _, value = text.partition("=")
    try:
        amount = float(value)
    except ValueError:
        parser.error(f"--degrade {text!r}: expected KIND=NUMBER, e.g. noise=0.05")
    if kind not in DEGRADATIONS:
        parser.error(f"--degrade {text!r}: KIND must be one of {', '.join(DEGRADATIONS)}")
    if amount <= 0 or (kind == "dim" and amount < 1) or (kind == "jpeg" and not 1 <= amount <= 100):
        parser.error(f"--degrade {text!r}: out of range (noise, blur > 0; dim >= 1; "
                     "jpeg quality 1-100)")
    return kind, amount


def degraded(image: np.ndarray, kind: str, amount: float, t: int) -> np.ndarray:
    """Frame ``t`` (``(Y, X)`` or ``(Y, X, C)``) made worse as ``--degrade`` says, in its
    own dtype and value range."""
    import io

    from PIL import Image
    from scipy import ndimage as ndi

    top = 255.0 if image.dtype == np.uint8 else float(np.max(image)) or 1.0
    values = np.asarray(image, np.float64)
    if kind == "noise":
        values = values + np.random.default_rng(t).normal(0, amount * top, values.shape)
    elif kind == "blur":
        sigma = (amount, amount, 0) if values.ndim == 3 else amount
        values = ndi.gaussian_filter(values, sigma)
    elif kind == "dim":
        values = values.mean() + (values - values.mean()) / amount
    else:  # jpeg, through 8 bits
        buffer = io.BytesIO()
        Image.fromarray(np.clip(values / top * 255, 0, 255).astype(np.uint8).squeeze()
                        ).save(buffer, format="JPEG", quality=int(amount))
        values = np.asarray(Image.open(buffer), np.float64).reshape(values.shape) / 255 * top
    values = np.clip(values, 0, top)
    return (np.round(values) if np.issubdtype(image.dtype, np.integer) else values
            ).astype(image.dtype)


def judge(predictor, seq, out: Path | None, per_frame: bool = False,
          degrade: tuple[str, float] | None = None
          ) -> tuple[dict[str, float], dict[str, list[float]] | None]:
    """Propagate ``seq``'s first annotated masks through it: its DAVIS scores and speed,
    and with ``per_frame`` each frame's J and F (else None); ``degrade`` ``(kind,
    amount)`` makes every frame worse first (:func:`degraded`)."""
    from instatrack.metrics.davis import davis_with_per_frame, evaluate_davis

    frames = [seq.image(t) for t in range(len(seq))]
    if degrade is not None:
        frames = [degraded(frame, *degrade, t) for t, frame in enumerate(frames)]
    gts = [np.maximum(seq.labels(t), 0) for t in range(len(seq))]
    clock = time.perf_counter()
    result = predictor.track(frames, first_masks=gts[0])
    seconds = (time.perf_counter() - clock) / max(len(frames) - 1, 1)
    if out is not None:
        from instatrack.data.davis import write_annotation

        out.mkdir(parents=True, exist_ok=True)
        for t, labels in enumerate(result.labels):
            write_annotation(out / f"{t:05d}.png", labels)
    if per_frame:  # each frame scored once for both
        scores, frames = davis_with_per_frame(gts, list(result.labels))
        frames = {k: [round(v, 3) for v in values] for k, values in frames.items()}
    else:
        scores, frames = evaluate_davis(gts, list(result.labels)), None
    return ({**{k: round(float(v), 4) for k, v in scores.items()},
             "seconds_per_frame": round(seconds, 3)}, frames)

if __name__ == "__main__":
    main()
