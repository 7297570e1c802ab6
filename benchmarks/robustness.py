"""How a trained model holds up on data it never saw, side by side with the classical baseline.

For one run (or ``--method classical``) trained on frames ``[0, A)`` of a CTC
sequence, with post-processing chosen on its validation frames ``[A, B)``,
scores SEG / TRA / DET on:

``clean``
    the held-out test frames ``[B, end)`` as recorded;
``dim÷K``
    the same frames with the contrast over the background divided by ``K``
    and the noise kept at the sensor's level (:func:`dim_frame`, defined in
    ``docs/robustness.md``);
``NAME``
    the test frames of another sequence (``--other SEQ:FIRST``, e.g. train on
    SIM+ 01 and test on GOWT1 01), nothing tuned on it;
``synthetic``
    with ``--synthetic``, a synthetic sequence (``instatrack synth``) of nuclei
    about as large as SIM+'s, with a dim phase (frames 10-19, fluorescence ÷6)
    and a dense phase (from frame 15 on, twice the cells): :data:`SYNTHETIC`.

    python benchmarks/robustness.py ../shared/data/Fluo-N2DH-SIM+/01 --split 39 45 \\
        --method spatial-embedding --run runs/sim-se --tune seed_threshold=0.5,0.7 \\
        --other ../shared/data/Fluo-N2DH-GOWT1/01:36

Prints one JSON line per condition and a Markdown table at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

#: pixels around annotated objects left out of the background estimate
BACKGROUND_MARGIN = 10
#: the ``--synthetic`` sequence: nuclei of SIM+'s size, a dim phase and a dense phase
SYNTHETIC = {"frames": 30, "size": (512, 512), "seed": 11, "radius": (18.0, 26.0),
             "density": 1.0, "noise": 0.15, "dim_phases": [(10, 20, 6.0)],
             "dense_phases": [(15, 30, 2.0)]}


def background_stats(image: np.ndarray, objects: np.ndarray) -> tuple[float, float]:
    """Background level (median) and sensor noise (MAD std) of a raw ``(Y, X)`` frame.

    Both are measured over the pixels farther than ``BACKGROUND_MARGIN`` from
    any annotated object (``objects`` > 0).
    """
    near = ndi.binary_dilation(objects > 0, iterations=BACKGROUND_MARGIN)
    values = np.asarray(image, np.float64)[~near]
    if values.size < 100:
        values = np.asarray(image, np.float64).ravel()
    level = float(np.median(values))
    return level, float(1.4826 * np.median(np.abs(values - level)))


def dim_frame(image: np.ndarray, objects: np.ndarray, factor: float,
              rng: np.random.Generator) -> np.ndarray:
    """``B + (I - B) / factor + N(0, s^2 (1 - 1/factor^2))``, rounded and clipped to the dtype.

    ``B`` and ``s`` are :func:`background_stats`: the contrast of everything
    over the background shrinks by ``factor`` while the background noise keeps
    its recorded std ``s`` (the scaled noise plus the added noise).
    """
    level, noise = background_stats(image, objects)
    raw = np.asarray(image, np.float64)
    out = level + (raw - level) / factor
    if factor > 1 and noise > 0:
        out = out + rng.normal(0.0, noise * np.sqrt(1.0 - factor ** -2), raw.shape)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        return np.clip(np.round(out), info.min, info.max).astype(image.dtype)
    return out.astype(image.dtype)


class DimmedSequence:
    """A CTC sequence with frames dimmed by ``factor`` (:func:`dim_frame`, seeded per frame)."""

    def __init__(self, seq, factor: float, seed: int = 0):
        self.seq, self.factor, self.seed = seq, factor, seed
        self.gt_dir = seq.gt_dir

    def __len__(self) -> int:
        return len(self.seq)

    def labels(self, t: int):
        return self.seq.labels(t)

    def image(self, t: int) -> np.ndarray:
        frame = self.seq.image(t)
        if self.factor == 1:
            return frame
        objects = self._objects(t, frame.shape)
        return dim_frame(frame, objects, self.factor, np.random.default_rng([self.seed, t]))

    def _objects(self, t: int, shape: tuple[int, ...]) -> np.ndarray:
        """Every annotated object of frame ``t`` (SEG where given, TRA markers always)."""
        import tifffile

        objects = np.zeros(shape, bool)
        labels = self.seq.labels(t)
        if labels is not None:
            objects |= labels != 0
        for path in (self.gt_dir / "TRA").glob(f"man_track{t:03d}.tif"):
            objects |= tifffile.imread(path) > 0
        return objects


def score(args, seq, first: int, settings: tuple[str, ...], tmp: Path, name: str) -> dict:
    """Track frames ``[first, end)`` of ``seq`` and score them against its ground truth."""
    from ctc_accuracy import MEASURES, subset_ground_truth, track_test_frames

    from instatrack.metrics.ctc import evaluate_ctc

    gt = subset_ground_truth(seq.gt_dir, first, len(seq), tmp / f"GT_{name}")
    res = tmp / f"RES_{name}"
    seconds, _ = track_test_frames(args, seq, first, res, settings=settings)
    scores = evaluate_ctc(gt, res, MEASURES)
    return {"condition": name, **{k: round(float(v), 4) for k, v in scores.items()},
            "seconds_per_frame": round(seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sequence", type=Path, help="CTC sequence the run was trained on")
    parser.add_argument("--split", type=int, nargs=2, metavar=("A", "B"), required=True)
    parser.add_argument("--method", default="spatial-embedding")
    parser.add_argument("--run", default=None, help="trained run folder (not for classical)")
    parser.add_argument("--weights", default="weights.pt")
    parser.add_argument("--infer-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tune", action="append", default=[], metavar="KEY=V1,V2,...")
    parser.add_argument("--dim", default="2,4,8", help="contrast divisors, comma separated")
    parser.add_argument("--other", action="append", default=[], metavar="SEQ:FIRST",
                        help="another sequence and its first test frame")
    parser.add_argument("--synthetic", action="store_true",
                        help="also score a synthetic sequence with a dim and a dense phase")
    parser.add_argument("--object-size", default=None,
                        help="diameter of the objects in pixels, or auto (see --object-size)")
    parser.add_argument("--label", default=None, help="row name in the table")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ctc_accuracy import choose_settings

    from instatrack.data.ctc import CTCSequence

    seq = CTCSequence(args.sequence)
    a, b = args.split
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        chosen, _ = choose_settings(args, seq, a, b, tmp)
        settings = tuple(chosen)
        conditions = [("clean", seq, b)]
        conditions += [(f"dim÷{k}", DimmedSequence(seq, float(k)), b)
                       for k in args.dim.split(",") if k.strip()]
        for item in args.other:
            path, _, first = item.rpartition(":")
            other = CTCSequence(path)
            conditions.append((Path(path).parent.name, other, int(first)))
        if args.synthetic:
            from instatrack.data.synth import write_ctc_synthetic

            write_ctc_synthetic(tmp / "synthetic", **SYNTHETIC)
            conditions.append(("synthetic", CTCSequence(tmp / "synthetic" / "01"), 0))
        for name, data, first in conditions:
            rows.append(score(args, data, first, settings, tmp, name.replace("÷", "div")))
            rows[-1]["condition"] = name
            print(json.dumps({"run": args.run, "method": args.method,
                              "settings": [*args.infer_set, *settings],
                              **rows[-1]}), flush=True)
    label = args.label or args.method
    print("\n| model | " + " | ".join(r["condition"] for r in rows) + " |")
    print("| --- |" + " --- |" * len(rows))
    print(f"| {label} | " + " | ".join(f"{r['SEG']:.3f} / {r['TRA']:.3f}" for r in rows) + " |")


if __name__ == "__main__":
    main()
