"""What tells a model's false objects from its matched ones: per-object measures on frames
of a CTC sequence, split by whether the object matches a tracking marker, at the frames'
own contrast and dimmed.

    python benchmarks/object_features.py runs/msc-cal-24 ../shared/data/Fluo-C2DL-MSC/02:18:36
    python benchmarks/object_features.py nuclei-ch ../shared/data/Fluo-N2DH-GOWT1/01:30:36 \\
        --dim 1 4 --sigma 2 4 --csv runs/features.csv

The model (a run folder or a shipped name, with its own post-processing) tracks frames
[A, B); each object it finds is *matched* when it holds more than half of a tracking
marker (the CTC's match), else *false*. For each object, on the frame as recorded and
dimmed by each ``--dim`` factor (``instatrack.data.dim``: contrast over the background
divided, the sensor's noise kept; the objects stay those found on the recorded frame):

* ``contrast``: mean over the object minus the background's median, in units of the
  frame's pixel noise (``instatrack.data.normalize.noise_std``, which leaves out a
  background clipped at 0, as GOWT1's is), the background being the unlabelled pixels;
* ``edge_S``: the median gradient magnitude (Gaussian, sigma ``S`` of the frame's pixels)
  on the band within ``S`` of the outline, over its median on the background farther
  than ``3 S`` plus the band from every object (how far the outline stands out of the
  noise and texture);
* ``fg_triangle``: the share of the object above the triangle threshold of the frame
  smoothed by 2 pixels (what ``min_foreground`` reads).

Prints, per measure and dim factor, the false and matched objects' quantiles and how
many of each fall under a few thresholds, as JSON lines. Session 52 used it on MSC 02's
validation frames (docs/results.md): an outline measure told MSC's unannotated cells
from its annotated ones on the recorded frames, and nothing did at a quarter of the
contrast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

#: quantiles printed for each group
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def edge_strengths(labels: np.ndarray, image: np.ndarray, sigma: float) -> np.ndarray:
    """Each object's (``np.unique`` order, background left out) outline strength, as in
    the module docstring; NaN for all when the background far from objects is too small."""
    ids = np.unique(labels[labels > 0])
    band = max(1, round(sigma))
    away = ndi.distance_transform_edt(labels == 0) > 3 * sigma + band
    gradient = ndi.gaussian_gradient_magnitude(np.asarray(image, np.float32), sigma)
    level = float(np.median(gradient[away])) if np.count_nonzero(away) >= 100 else 0.0
    if level <= 0:
        return np.full(ids.size, np.nan)
    out = np.empty(ids.size)
    boxes = ndi.find_objects(labels)
    pad = band + 1
    for k, label in enumerate(ids):
        ys, xs = boxes[label - 1]
        box = (slice(max(0, ys.start - pad), ys.stop + pad),
               slice(max(0, xs.start - pad), xs.stop + pad))
        # the frame's edge is no outline: the mask goes on past it
        mask = np.pad(labels[box] == label, pad, mode="edge")
        ring = ndi.binary_dilation(mask, iterations=band) & ~ndi.binary_erosion(
            mask, iterations=band)
        values = gradient[box][ring[pad:-pad, pad:-pad]]
        out[k] = np.median(values) / level if values.size else np.nan
    return out


def measures(labels: np.ndarray, image: np.ndarray, sigmas) -> dict[str, np.ndarray]:
    """``{name: value per object}`` for one frame (objects in ``np.unique`` order): the
    contrast ``min_contrast`` reads over the noise, the share ``min_foreground`` reads
    (``instatrack.cluster.contrast``) and the outline at each sigma."""
    from instatrack.cluster.contrast import foreground_shares, object_contrasts
    from instatrack.data.normalize import noise_std

    image = np.asarray(image, np.float64)
    ids, contrast = object_contrasts(labels, image)
    shares = foreground_shares(labels, image)
    out = {"contrast": contrast / max(noise_std(image), 1e-9),
           "fg_triangle": np.full(ids.size, np.nan) if shares is None else shares[1]}
    for sigma in sigmas:
        out[f"edge_{sigma:g}"] = edge_strengths(labels, image, sigma)
    return out


def matched(labels: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """Per object (``np.unique`` order): True when it holds more than half of a marker
    (the CTC's match, as calibration counts it)."""
    from instatrack.calibrate import _matches

    hits = _matches(marks, labels)[1]
    return np.array([label in hits for label in np.unique(labels[labels > 0]).tolist()],
                    bool)


def main() -> None:
    import instatrack
    from instatrack.data.ctc import CTCSequence
    from instatrack.data.dim import dim_frame
    from instatrack.data.types import markers

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a run folder or shipped model's name")
    parser.add_argument("frames", metavar="SEQ:A:B", help="a CTC sequence folder and frames")
    parser.add_argument("--dim", type=float, nargs="+", default=[1.0, 4.0],
                        help="contrast divisors (default 1 4)")
    parser.add_argument("--sigma", type=float, nargs="+", default=[2.0, 4.0],
                        help="gradient sigmas of the edge measure, frame pixels (default 2 4)")
    parser.add_argument("--object-size", default=None,
                        help="as instatrack.load's (default: the model's own)")
    parser.add_argument("--csv", type=Path, help="also write a row per object here")
    args = parser.parse_args()
    path, a, b = args.frames.rsplit(":", 2)
    seq, span = CTCSequence(path), range(int(a), int(b))
    predictor = instatrack.load(args.model, device="cpu", object_size=args.object_size)
    result = predictor.track([seq.image(t) for t in span])
    rows = []
    for i, t in enumerate(span):
        marks = markers(seq, t)
        if marks is None:
            continue
        labels, marks = np.asarray(result.labels[i]), np.asarray(marks)
        truth = seq.labels(t)
        objects = (np.asarray(truth) > 0) if truth is not None else marks > 0
        hits = matched(labels, marks)
        for factor in args.dim:
            image = dim_frame(np.asarray(seq.image(t)), objects, factor,
                              np.random.default_rng(t))
            for k, values in measures(labels, image, args.sigma).items():
                rows += [{"frame": t, "object": int(o), "matched": bool(h), "dim": factor,
                          "measure": k, "value": float(v)}
                         for o, h, v in zip(np.unique(labels[labels > 0]), hits, values,
                                            strict=True)]
    if args.csv:
        import csv

        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    for name in dict.fromkeys(r["measure"] for r in rows):
        for factor in args.dim:
            group = [r for r in rows if r["measure"] == name and r["dim"] == factor]
            false = np.array([r["value"] for r in group if not r["matched"]])
            true = np.array([r["value"] for r in group if r["matched"]])
            cuts = np.nanquantile(np.concatenate([false, true]), (0.1, 0.2, 0.3)) \
                if group else []
            print(json.dumps({
                "model": args.model, "frames": args.frames, "measure": name, "dim": factor,
                "false": int(false.size), "matched": int(true.size),
                "false_quantiles": _quantiles(false), "matched_quantiles": _quantiles(true),
                "under": {f"{c:.3g}": [int(np.sum(false < c)), int(np.sum(true < c))]
                          for c in cuts}}))


def _quantiles(values: np.ndarray) -> list[float]:
    values = values[~np.isnan(values)]
    return [round(float(q), 3) for q in np.quantile(values, QUANTILES)] if values.size else []


if __name__ == "__main__":
    main()
