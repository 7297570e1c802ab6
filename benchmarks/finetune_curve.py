"""Fine-tuning from a shipped model against training from scratch: score against steps.

Both runs train on the same data with the same preset; the fine-tune starts from
``--init`` (``instatrack train --init``: the data are resized to the model's object
size) and trains ``--steps`` steps, the other starts from random weights and trains
``--ratio`` times as many. Every ``--every`` steps each run scores its validation
frames (SEG, the number that picks ``weights.pt``); the table lists both curves and
the step at which the fine-tune first reaches the best from-scratch score. With
``--test SEQ[:FIRST]`` both final models also track an unseen sequence, or its frames
from FIRST on (CTC SEG / TRA).

    OMP_NUM_THREADS=1 python benchmarks/finetune_curve.py --synthetic --init nuclei-se \\
        --steps 300 --ratio 3 --every 50 --out runs/curve-demo

``--synthetic`` uses the demo's data (a training and a test sequence from
``instatrack synth``, 24 frames of 128 x 128, seeds 1 and 2; the last quarter of
the training sequence validates).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def curve(run: Path) -> dict[int, float]:
    from instatrack.runs import LOG, LogWriter

    rows = LogWriter(run / LOG, resume_step=10**9).rows
    return {int(r["step"]): float(r["val_seg"]) for r in rows if "val_seg" in r}


def test_scores(run: Path, test: str) -> dict[str, float]:
    """CTC SEG / TRA of ``run`` on ``SEQ[:FIRST]`` (zero_shot.ctc_scores)."""
    from zero_shot import ctc_scores

    from instatrack.api import load

    scores = ctc_scores(load(run), str(test))
    return {k: scores[k] for k in ("SEG", "TRA")}


def main() -> None:
    from instatrack.finetune import init_config
    from instatrack.runs import Run
    from instatrack.train import train_or_resume

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path, help="CTC dataset folder to train on")
    parser.add_argument("--synthetic", action="store_true", help="the demo's data instead")
    parser.add_argument("--init", required=True, help="shipped model name or run folder")
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps")
    parser.add_argument("--ratio", type=int, default=3, help="from-scratch steps / --steps")
    parser.add_argument("--every", type=int, default=50, help="validate every N steps")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="for both runs, e.g. val_frames=18: (default: the last quarter)")
    parser.add_argument("--finetune-set", action="append", default=["lr=5e-4", "lr_final=5e-5"],
                        metavar="KEY=VALUE", help="for the fine-tune only (default: the demo's)")
    parser.add_argument("--test", metavar="SEQ[:FIRST]",
                        help="CTC sequence (from frame FIRST) both final models track")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.synthetic:
        from instatrack.data.synth import write_ctc_synthetic

        if not (args.out / "data" / "01").is_dir():
            write_ctc_synthetic(args.out / "data", frames=24, size=(128, 128), seed=1)
            write_ctc_synthetic(args.out / "test", frames=24, size=(128, 128), seed=2)
        args.data, args.test = args.out / "data", args.test or str(args.out / "test" / "01")
    if args.data is None:
        parser.error("give a dataset folder or --synthetic")
    common = [f"val_every={args.every}", "ckpt_every=50", *args.set]
    if not any(s.startswith("val_frames=") for s in args.set):
        common.append("val_frames=18:" if args.synthetic else "val_frames=-6:")
    start = Run.resolve(args.init)
    tuned = init_config(start, overrides=[f"steps={args.steps}", *common, *args.finetune_set])
    scratch = type(start.config).build("fast", overrides=[f"steps={args.steps * args.ratio}",
                                                          *common])
    runs = {"fine-tune": train_or_resume(None, args.data, args.out / "finetune", config=tuned,
                                         progress=False, init=start),
            "from scratch": train_or_resume(start.method, args.data, args.out / "scratch",
                                            config=scratch, progress=False)}
    curves = {name: curve(run) for name, run in runs.items()}
    best = max(curves["from scratch"].values())
    reached = next((s for s, v in sorted(curves["fine-tune"].items()) if v >= best), None)
    steps = sorted(set(curves["fine-tune"]) | set(curves["from scratch"]))
    print(f"# {start.path.name}: validation SEG against steps on {args.data}")
    print("| steps | fine-tune | from scratch |")
    print("| --- | --- | --- |")
    for s in steps:
        cells = [f"{curves[n][s]:.3f}" if s in curves[n] else "" for n in curves]
        print(f"| {s} | " + " | ".join(cells) + " |")
    summary = {"best from scratch": round(best, 4), "fine-tune reaches it at step": reached,
               "from-scratch steps": args.steps * args.ratio}
    if args.test is not None:
        for name, run in runs.items():
            summary[f"test {name}"] = {k: round(v, 4) for k, v in
                                       test_scores(run, args.test).items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
