"""CPU speed of the networks under onnxruntime against torch, in one process.

For each method's ``--preset`` network (random weights: speed does not depend
on them) the network is exported to ONNX, then one ``--size`` frame is run
through torch and through onnxruntime in turn, ``--repeats`` times each
(interleaved, so a busy machine slows both alike), after one warm-up run. The
torch side is ``model(image)`` / ``model.step(image)``, the onnxruntime side
the same call with the learned part swapped for the session (padding,
cropping and activations included on both sides). Prints the medians and the
ratio onnxruntime / torch (below 1: onnxruntime is faster).

    python benchmarks/bench_onnx.py --size 512 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import instatrack
from instatrack.methods import get_method
from instatrack.onnx import export_onnx, onnx_predictor
from instatrack.runs import Run


def build_run(folder: Path, method: str, preset: str) -> Path:
    config = get_method(method).config_cls.build(preset)
    torch.manual_seed(0)
    model = get_method(method)(config).build_model()
    Run.create(folder, get_method(method), config).save_weights(model.state_dict())
    return folder


def forward(predictor, image: torch.Tensor) -> None:
    with torch.inference_mode():
        if predictor.method.name == "spatial-embedding":
            predictor.model(image)
        else:
            predictor.model.step(image, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=["spatial-embedding",
                                                         "cosine-hourglass"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime

    print(f"# torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"{args.threads} thread(s), {args.size}x{args.size}, median of {args.repeats}, "
          f"{time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            run = build_run(Path(tmp) / method, method, args.preset)
            torch_predictor = instatrack.load(run, device="cpu")
            ort_predictor = onnx_predictor(torch_predictor, export_onnx(run, run / "m.onnx"))
            image = torch.rand(1, 1, args.size, args.size)
            times: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
            for _ in range(args.repeats + 1):
                for name, predictor in (("torch", torch_predictor),
                                        ("onnxruntime", ort_predictor)):
                    start = time.perf_counter()
                    forward(predictor, image)
                    times[name].append(time.perf_counter() - start)
            medians = {k: statistics.median(v[1:]) for k, v in times.items()}
            print(f"{method} ({args.preset}): torch {medians['torch']:.3f} s, onnxruntime "
                  f"{medians['onnxruntime']:.3f} s, ratio onnxruntime/torch "
                  f"{medians['onnxruntime'] / medians['torch']:.2f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
