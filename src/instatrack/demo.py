"""``instatrack demo``: the whole pipeline on synthetic data, in a few minutes on a CPU.

It synthesises a training and a test time-lapse, trains the ``fast`` preset,
tracks the unseen test sequence, scores it with the CTC measures and draws
the result. Everything lands in one folder with a ``report.md``.
"""

from __future__ import annotations

import time
from pathlib import Path

from instatrack.data.augment import AcquisitionSettings
from instatrack.methods import DEFAULT_METHOD


def run_demo(out: str | Path, method: str = DEFAULT_METHOD, steps: int | None = None,
             frames: int = 24, size: tuple[int, int] = (128, 128), progress: bool = True) -> str:
    """Run the demo into ``out``; returns the text of ``out/report.md``."""
    from instatrack.api import load
    from instatrack.data.ctc import CTCSequence
    from instatrack.data.synth import write_ctc_synthetic
    from instatrack.methods import get_method
    from instatrack.metrics.ctc import evaluate_ctc
    from instatrack.plot import lineage_tree, overlay_movie
    from instatrack.train import train_or_resume

    out = Path(out)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    train_data = write_ctc_synthetic(out / "data", frames=frames, size=size, seed=1)
    test_data = write_ctc_synthetic(out / "test", frames=frames, size=size, seed=2)
    timings["synthesise"] = time.perf_counter() - clock

    clock = time.perf_counter()
    method_cls = get_method(method)
    steps = steps or method_cls.demo_steps
    overrides = [f"steps={steps}", f"val_every={steps}", f"val_frames={frames * 3 // 4}:"]
    # the demo's test sequence looks like its training one, and a few hundred steps are
    # too few to also learn other acquisitions: with them on, SEG 0.651 -> 0.582
    overrides += [f"{k}={v}" for k, v in AcquisitionSettings.off().to_dict().items()]
    config = method_cls.config_cls.build(preset="fast", overrides=overrides)
    run = train_or_resume(method, train_data, out / "run", config=config, progress=progress)
    timings["train"] = time.perf_counter() - clock

    clock = time.perf_counter()
    sequence = CTCSequence(test_data / "01")
    predictor = load(run)
    images = [sequence.image(t) for t in range(len(sequence))]
    first = sequence.labels(0) if method_cls.needs_first_masks else None
    result = predictor.track(images, first_masks=first)
    res_dir = result.to_ctc(test_data / "01_RES")
    timings["track"] = time.perf_counter() - clock

    scores = evaluate_ctc(test_data / "01_GT", res_dir, ("SEG", "TRA", "DET", "BC(2)"))
    scores["division F1, BC(2)"] = scores.pop("BC(2)")
    scores["divisions found"] = count_divisions(res_dir / "res_track.txt")
    scores["divisions (truth)"] = count_divisions(test_data / "01_GT" / "TRA" / "man_track.txt")
    overlay_movie(images, result.labels, result.graph, out / "overlay.gif")
    lineage_tree(result.graph, out / "lineage.png")
    report = _report(method, config, scores, timings, out, len(images), size)
    (out / "report.md").write_text(report)
    return report


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


def _report(method, config, scores, timings, out: Path, n_frames: int, size) -> str:
    lines = [
        "# instatrack demo",
        "",
        f"Method `{method}`, preset `fast`, {config.steps} training steps on a synthetic "
        f"sequence; tracked an unseen synthetic sequence of {n_frames} frames of "
        f"{size[0]}x{size[1]} px.",
        "",
        "| measure | value |",
        "| --- | --- |",
        *[f"| {k} | {_cell(v)} |" for k, v in scores.items()],
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
        "",
        "The demo trains for a few minutes only; see docs/results.md for real data.",
        "",
    ]
    return "\n".join(lines)
