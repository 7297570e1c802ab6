"""Training throughput (frames/s) of each method's presets, on this machine.

One training step = sample-free forward + loss + backward + optimiser step on
a random batch of the preset's shape with a few square instances, so the
number isolates the network and the loss from the data pipeline. Median of
``--repeats`` timed steps after one warm-up step; the ratio column compares
every row with the first row measured in the same process.

    python benchmarks/bench_training.py --methods cosine-hourglass --presets fast paper
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from instatrack.methods import REGISTRY, get_method


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


def time_steps(name: str, preset: str, repeats: int, device) -> tuple[float, int]:
    """Median seconds per step and frames per step."""
    method_cls = get_method(name)
    method = method_cls(method_cls.config_cls.build(preset))
    model = method.build_model().to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = fake_batch(method.config, method_cls.temporal, device)
    times = []
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        clock = time.perf_counter()
        optimiser.zero_grad()
        loss, _ = method.loss(model, batch)
        loss.backward()
        optimiser.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - clock)
    frames = batch["image"].shape[0] * batch["image"].shape[1]
    return statistics.median(times), frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=sorted(REGISTRY))
    parser.add_argument("--presets", nargs="+", default=["fast", "paper"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}")
    print("| method | preset | s/step | frames/step | frames/s | ratio to first row |")
    print("| --- | --- | --- | --- | --- | --- |")
    baseline = None
    for name in args.methods:
        for preset in args.presets:
            seconds, frames = time_steps(name, preset, args.repeats, device)
            rate = frames / seconds
            baseline = baseline or rate
            print(f"| {name} | {preset} | {seconds:.3f} | {frames} | {rate:.2f} | "
                  f"{rate / baseline:.3f} |", flush=True)


if __name__ == "__main__":
    main()
