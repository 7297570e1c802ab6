"""What each pass of ``--object-size auto`` finds, and what it costs.

The estimate (``Predictor.input_scale``) segments a frame at each factor of
``AUTO_SIZE_FACTORS``, takes the largest median diameter found (in the frame's pixels)
and corrects it with one more pass at the factor that size gives. For each model and
image this prints a JSON line with the size every pass found (``size@F``, None when it
found fewer than ``AUTO_MIN_OBJECTS`` objects), its seconds (``s@F``), the size the
estimate returns and whether the magnified pass (factor > 1) was the largest, i.e.
whether skipping it once objects of the training size were found could change anything
(docs/results.md, session 51). Every pass is run and timed, skipped or not.

    python benchmarks/size_estimate.py nuclei-ch nuclei-se
    python benchmarks/size_estimate.py runs/mine --image my_frame.tif

Images: the first frame of each shared CTC sequence, the DSB2018 image and a synthetic
512² frame (``write_ctc_synthetic``, seed 5); shared ones that are absent are left out.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

#: the shared data beside the project
DATA = Path(__file__).resolve().parents[1].parent / "shared/data"
#: the shared images, by name
SHARED = {"sim+": "Fluo-N2DH-SIM+/01/t000.tif", "gowt1": "Fluo-N2DH-GOWT1/01/t000.tif",
          "msc": "Fluo-C2DL-MSC/02/t000.tif", "dsb2018": "DSB2018_stardist_sample/img2d.tif"}


def passes(predictor, image) -> dict:
    """Every pass of the estimate (:meth:`~instatrack.api.Predictor.size_at`) on one
    prepared image ``(C, Y, X)``, timed."""
    from instatrack.api import AUTO_SIZE_FACTORS

    row: dict = {}

    def found(factor: float) -> float | None:
        start = time.perf_counter()
        size = predictor.size_at(image, factor)
        row[f"s@{factor:.3g}"] = round(time.perf_counter() - start, 2)
        return None if size is None else round(size, 2)

    sizes = {f: found(f) for f in AUTO_SIZE_FACTORS}
    row.update({f"size@{f:.3g}": size for f, size in sizes.items()})
    seen = [size for size in sizes.values() if size]
    if seen:
        largest = max(seen)
        row["magnified_largest"] = any(f > 1 and size == largest for f, size in sizes.items())
        row["estimate"] = found(predictor.correction_factor(largest)) or largest
    return row


def main() -> None:
    import instatrack
    from instatrack.data.io import read_frame
    from instatrack.data.synth import write_ctc_synthetic

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="shipped model names or run folders")
    parser.add_argument("--image", type=Path, action="append", default=[],
                        help="an image of your own (instead of the default set)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images = {str(path): path for path in args.image}  # two t036.tif may differ
        if not images:
            images = {name: DATA / rel for name, rel in SHARED.items() if (DATA / rel).is_file()}
            synth = write_ctc_synthetic(Path(tmp) / "synth", frames=1, size=(512, 512), seed=5)
            images["synthetic"] = sorted(Path(synth).glob("*/t000.tif"))[0]
        for model in args.models:
            predictor = instatrack.load(model, device="cpu", object_size="auto")
            for name, path in images.items():
                row = {"model": model, "image": name,
                       "trained": round(predictor.trained_size, 2),
                       **passes(predictor, predictor.prepare(read_frame(path)))}
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
