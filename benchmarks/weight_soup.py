"""A uniform weight average ("model soup", Wortsman et al. 2022) of runs fine-tuned from one
parent, written as a model folder that every command takes.

Only runs that share a parent can be averaged this way (their weights lie near each
other); for independently trained networks use ``instatrack ensemble``, which averages
their outputs instead. The folder takes everything but the weights from ``--like`` (a
shipped model's name or a run folder), so inference settings are that model's; ``--seed``
sets the config's ``seed`` (for spatial-propagation: the seed its heads are fitted with).

    python benchmarks/weight_soup.py runs/soup runs/ft-s1 runs/ft-s2 runs/ft-s3 --like objects-spn
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def average(states: list[dict]) -> dict:
    """The mean of each floating-point tensor over ``states``; other tensors (counters) from
    the first."""
    first = states[0]
    if any(state.keys() != first.keys() for state in states):
        raise SystemExit("error: the runs' weights hold different tensors; are they one network?")
    return {key: (sum(state[key].double() for state in states) / len(states)).to(value.dtype)
            if value.is_floating_point() else value for key, value in first.items()}


def main() -> None:
    import torch

    from instatrack.pretrained import locate

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding weights.pt")
    parser.add_argument("--like", required=True, help="model whose config the soup takes")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"error: {args.out} exists; choose another folder")
    for run in args.runs:
        if not (run / "weights.pt").is_file():
            raise SystemExit(f"error: {run / 'weights.pt'} not found")
    states = [torch.load(run / "weights.pt", map_location="cpu", weights_only=True)
              for run in args.runs]
    soup = average(states)
    shutil.copytree(locate(args.like), args.out,
                    ignore=shutil.ignore_patterns("weights.pt", "*.pt", "calibration*.json"))
    torch.save(soup, args.out / "weights.pt")
    if args.seed is not None:
        config = json.loads((args.out / "config.json").read_text())
        config["seed"] = args.seed
        (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote the average of {len(states)} runs to {args.out}")


if __name__ == "__main__":
    main()
