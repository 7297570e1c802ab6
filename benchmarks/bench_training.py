"""Training throughput (steps/s) of each method's presets on this machine, float32
against bfloat16 autocast (``amp``, with channels-last weights on CPU), in one process.

A step is what ``instatrack train`` does: draw a batch from the clip sampler
(crops, warps and the acquisition augmentation of the preset) on a synthetic
movie, then forward, loss, backward and the optimiser step. ``--no-data``
times the network alone on a random batch of the preset's shape. The variants
are timed in alternating rounds so a busy machine slows them alike; the table
gives the median over rounds and each row's ratio to float32 of the same
method and preset.

    OMP_NUM_THREADS=1 python benchmarks/bench_training.py --methods cosine-hourglass
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from instatrack.methods import REGISTRY, get_method

VARIANTS = {"float32": False, "bfloat16": True}


def fake_batch(config, temporal: bool, device) -> dict[str, torch.Tensor]:
    clip = config.clip_len if temporal else 1
    size = config.crop
    gen = torch.Generator().manual_seed(0)
    image = torch.rand((config.batch_size, clip, config.in_channels, *size), generator=gen)
    labels = torch.zeros((config.batch_size, clip, *size), dtype=torch.long)
    step = max(size[0] // 6, 4)
    label = 1
    for y in range(2, size[0] - step, step + 2):
        for x in range(2, size[1] - step, step + 2):
            labels[:, :, y:y + step, x:x + step] = label
            label += 1
    return {"image": image.to(device), "labels": labels.to(device)}


class Trainer:
    """One method, preset and precision: model, optimiser and a batch source, as in training."""

    def __init__(self, name: str, preset: str, amp: bool, data: bool, device: torch.device):
        from instatrack.methods.base import with_precision
        from instatrack.train import _optimiser

        method_cls = get_method(name)
        self.config = method_cls.config_cls.build(preset).replace(amp=amp)
        self.method = method_cls(self.config)
        torch.manual_seed(0)
        self.model, self.amp = with_precision(self.method.build_model().to(device).train(),
                                              self.config, device)
        self.optimiser = _optimiser(self.model, self.config)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimiser, lambda _: 1.0)
        self.device = device
        self.sampler = _sampler(self.config, method_cls) if data else None
        self.fixed = None if data else fake_batch(self.config, method_cls.temporal, device)

    def batch(self) -> dict[str, torch.Tensor]:
        from instatrack.train import _collate

        if self.sampler is None:
            return self.fixed
        return _collate([self.sampler.sample() for _ in range(self.config.batch_size)],
                        self.device)

    def step(self) -> float:
        from instatrack.train import _train_step

        if self.device.type == "cuda":
            torch.cuda.synchronize()
        clock = time.perf_counter()
        _train_step(self.method, self.model, self.batch(), self.optimiser, self.schedule,
                    self.config, self.device)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - clock


def _sampler(config, method_cls):
    """The clip sampler training builds, on a synthetic movie written once."""
    from instatrack.data import open_datasets
    from instatrack.data.synth import write_ctc_synthetic
    from instatrack.train import _fit_to_data

    global _MOVIE
    if _MOVIE is None:
        _MOVIE = tempfile.mkdtemp(prefix="bench-training-")
        write_ctc_synthetic(_MOVIE, frames=12, size=(256, 256), seed=0)
    return _fit_to_data(method_cls, config, open_datasets([Path(_MOVIE)]))[1]


_MOVIE: str | None = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=sorted(REGISTRY))
    parser.add_argument("--presets", nargs="+", default=["fast"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--no-data", action="store_true",
                        help="time the network on a fixed random batch, without the sampler")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"# {datetime.date.today()}, {platform.processor() or platform.machine()}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} thread(s), device {device}, "
          f"{'network only' if args.no_data else 'sampler included'}, median of "
          f"{args.rounds} rounds x {args.steps} steps")
    print("| method | preset | precision | s/step | steps/s | ratio to float32 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.methods:
        for preset in args.presets:
            trainers = {v: Trainer(name, preset, amp, not args.no_data, device)
                        for v, amp in VARIANTS.items()}
            for trainer in trainers.values():
                trainer.step()  # warm-up
            times: dict[str, list[float]] = {v: [] for v in trainers}
            for _ in range(args.rounds):
                for v, trainer in trainers.items():
                    times[v].append(statistics.median(trainer.step() for _ in range(args.steps)))
            base = statistics.median(times["float32"])
            for v, trainer in trainers.items():
                seconds = statistics.median(times[v])
                label = v if trainer.amp or v == "float32" else f"{v} (not used here)"
                print(f"| {name} | {preset} | {label} | {seconds:.3f} | {1 / seconds:.2f} | "
                      f"{base / seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
