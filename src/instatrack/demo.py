"""``instatrack demo``: the whole pipeline on synthetic data, in a few minutes on a CPU.

It synthesises a training and a test time-lapse. With a shipped model (the
default, :data:`DEMO_MODEL`) it tracks the unseen test sequence with that model
as it comes, then fine-tunes the model for a few steps on the training sequence
(``instatrack train --init``) and tracks the test sequence again; with
``model=None`` it trains a method from scratch instead. Every result is scored
with the CTC measures, and the last one is drawn. Everything lands in one folder
with a ``report.md``.
"""

from __future__ import annotations

import time
from pathlib import Path

from instatrack.data.augment import AcquisitionSettings
from instatrack.methods import DEFAULT_METHOD

#: the shipped model the demo starts from (``instatrack models``): the one trained on
#: synthetic data alone, since the demo's data is synthetic (0.855 / 0.955 as it comes,
#: 0.892 / 0.979 fine-tuned, against 0.800 / 0.921 and 0.853 / 0.967 from nuclei-se;
#: docs/results.md, session 12)
DEMO_MODEL = "nuclei-se-synthetic"
#: the demo's fine-tuning: 300 steps from half the fast preset's learning rate (docs/results.md)
FINETUNE = {"steps": 300, "lr": 5e-4, "lr_final": 5e-5}


def run_demo(out: str | Path, model: str | Path | None = DEMO_MODEL,
             method: str = DEFAULT_METHOD, steps: int | None = None, frames: int = 24,
             size: tuple[int, int] = (128, 128), progress: bool = True) -> str:
    """Run the demo into ``out``; returns the text of ``out/report.md``.

    ``model``: a shipped model's name or a run folder to start from (scored as it
    comes, then fine-tuned for ``steps``, default ``FINETUNE["steps"]``), or None to
    train ``method`` from scratch for ``steps`` (default: the method's demo steps).
    """
    from instatrack.data.synth import write_ctc_synthetic

    out = Path(out)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    train_data = write_ctc_synthetic(out / "data", frames=frames, size=size, seed=1)
    test_data = write_ctc_synthetic(out / "test", frames=frames, size=size, seed=2)
    timings["synthesise"] = time.perf_counter() - clock

    results: dict[str, dict] = {}
    if model is not None:
        clock = time.perf_counter()
        # the shipped model's objects are larger than the demo's: --object-size auto
        results["shipped model as it comes, `--object-size auto`"], drawn = _track_and_score(
            model, test_data, "01_RES_shipped", object_size="auto")
        timings["track (shipped model)"] = time.perf_counter() - clock
        clock = time.perf_counter()
        run, config = _finetune(model, train_data, out / "run", steps, frames, progress)
        timings["fine-tune"] = time.perf_counter() - clock
        trained = f"`{Path(model).name}` fine-tuned for {config.steps} steps"
    else:
        clock = time.perf_counter()
        run, config = _from_scratch(method, train_data, out / "run", steps, frames, progress)
        timings["train"] = time.perf_counter() - clock
        trained = f"`{method}` trained from scratch for {config.steps} steps"
    clock = time.perf_counter()
    results[trained], drawn = _track_and_score(run, test_data, "01_RES")
    timings["track"] = time.perf_counter() - clock

    from instatrack.plot import lineage_tree, overlay_movie

    images, result = drawn
    overlay_movie(images, result.labels, result.graph, out / "overlay.gif")
    lineage_tree(result.graph, out / "lineage.png")
    report = _report(model, results, timings, out, len(images), size)
    (out / "report.md").write_text(report)
    return report


def _track_and_score(model, test_data: Path, res_name: str, object_size=None):
    """CTC scores of ``model`` on the test sequence, and (images, result) to draw."""
    from instatrack.api import load
    from instatrack.data.ctc import CTCSequence
    from instatrack.metrics.ctc import evaluate_ctc

    sequence = CTCSequence(test_data / "01")
    predictor = load(model, object_size=object_size)
    images = [sequence.image(t) for t in range(len(sequence))]
    first = sequence.labels(0) if predictor.method.needs_first_masks else None
    result = predictor.track(images, first_masks=first)
    res_dir = result.to_ctc(test_data / res_name)
    scores = evaluate_ctc(test_data / "01_GT", res_dir, ("SEG", "TRA", "DET", "BC(2)"))
    scores["division F1, BC(2)"] = scores.pop("BC(2)")
    scores["divisions found"] = count_divisions(res_dir / "res_track.txt")
    scores["divisions (truth)"] = count_divisions(test_data / "01_GT" / "TRA" / "man_track.txt")
    scores.update(_object_counts(test_data / "01_GT", res_dir,
                                 test_data / f"{res_name}_objects.csv"))
    return scores, (images, result)


#: the demo's rows of ``evaluate --objects`` counts: report line -> the verdicts summed
OBJECT_ROWS = {"cells outlined well": ("outline ok",),
               "cells cut or merged": ("outline cut", "outline merged"),
               "cells outlined too large or small": ("outline too large", "outline too small"),
               "cells missed": ("outline missed",), "false objects": ("found false",)}


def _object_counts(gt: Path, res_dir: Path, table: Path) -> dict[str, int]:
    """How many annotated cells the result outlines well, and how it gets the others
    wrong (:mod:`instatrack.metrics.objects`); the table, a row per object, to ``table``."""
    from instatrack.metrics.objects import table_and_counts

    counts = table_and_counts(gt, res_dir, table)
    return {line: sum(counts.get(v, 0) for v in verdicts)
            for line, verdicts in OBJECT_ROWS.items()}


def _finetune(model, train_data: Path, out: Path, steps: int | None, frames: int, progress):
    from instatrack.finetune import init_config
    from instatrack.runs import Run
    from instatrack.train import train_or_resume

    start = Run.resolve(model)
    values = {**FINETUNE, **({"steps": steps} if steps else {})}
    overrides = [f"{k}={v}" for k, v in values.items()]
    overrides += [f"val_every={values['steps']}", f"val_frames={frames * 3 // 4}:"]
    config = init_config(start, overrides=overrides)
    run = train_or_resume(None, train_data, out, config=config, progress=progress, init=start)
    return run, config


def _from_scratch(method: str, train_data: Path, out: Path, steps: int | None, frames: int,
                  progress):
    from instatrack.methods import get_method
    from instatrack.train import train_or_resume

    method_cls = get_method(method)
    steps = steps or method_cls.demo_steps
    overrides = [f"steps={steps}", f"val_every={steps}", f"val_frames={frames * 3 // 4}:"]
    # the demo's test sequence looks like its training one, and a few hundred steps are
    # too few to also learn other acquisitions: with them on, SEG 0.651 -> 0.582
    overrides += [f"{k}={v}" for k, v in AcquisitionSettings.off().to_dict().items()]
    config = method_cls.config_cls.build(preset="fast", overrides=overrides)
    return train_or_resume(method, train_data, out, config=config, progress=progress), config


def count_divisions(track_table: Path) -> int:
    """Mothers with two or more daughters in a CTC ``L B E P`` table."""
    from collections import Counter

    from instatrack.data.ctc import read_track_table

    children = Counter(parent for _, _, _, parent in read_track_table(track_table) if parent)
    return sum(1 for n in children.values() if n >= 2)


def _cell(value) -> str:
    """A report value: floats to 3 decimals, NaN (undefined, e.g. no true division) as '–'."""
    if isinstance(value, float):
        return "–" if value != value else f"{value:.3f}"
    return str(value)


def _report(model, results: dict[str, dict], timings, out: Path, n_frames: int, size) -> str:
    names = list(results)
    measures = list(results[names[-1]])
    start = (f"the shipped model `{model}` tracked it as it comes, then again after a short "
             f"fine-tune on a training sequence of the same look" if model is not None else
             "a model trained from scratch on a training sequence of the same look tracked it")
    lines = [
        "# instatrack demo",
        "",
        f"An unseen synthetic time-lapse of {n_frames} frames of {size[0]}x{size[1]} px: "
        f"{start}.",
        "",
        "| measure | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
        *[f"| {m} | " + " | ".join(_cell(results[n].get(m)) for n in names) + " |"
          for m in measures],
        "",
        "| stage | seconds |",
        "| --- | --- |",
        *[f"| {k} | {v:.1f} |" for k, v in timings.items()],
        "",
        "Files:",
        f"- `{out / 'overlay.gif'}`: frames with coloured instances and track ids",
        f"- `{out / 'lineage.png'}`: lineage tree",
        f"- `{out / 'run'}`: the trained run (config.json, weights.pt, log.csv, curves.png)",
        f"- `{out / 'test' / '01_RES'}`: CTC results (maskTTT.tif, res_track.txt)",
        f"- `{out / 'test' / '01_RES_objects.csv'}`: a row per cell, how it was found "
        f"(`instatrack evaluate --objects`)",
        "",
        "See docs/results.md for real data.",
        "",
    ]
    return "\n".join(lines)
