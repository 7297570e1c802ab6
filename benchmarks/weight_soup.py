"""A uniform weight average ("model soup", Wortsman et al. 2022) of runs fine-tuned from one
parent, written as a model folder that every command takes.

Only runs that share a parent can be averaged this way (their weights lie near each
other); for independently trained networks use ``instatrack ensemble``, which averages
their outputs instead. The folder takes its config from ``--like`` (a shipped model's name
or a run folder), so inference settings are that model's, and records the averaged runs
as its ``init``; ``--seed`` sets the config's ``seed`` (for spatial-propagation: the seed
its heads are fitted with).

    python benchmarks/weight_soup.py runs/soup runs/ft-s1 runs/ft-s2 runs/ft-s3 --like objects-spn
"""

from __future__ import annotations

import argparse
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
    from instatrack.errors import InstatrackError
    from instatrack.finetune import network_differences
    from instatrack.runs import Run

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("runs", nargs="+", help="run folders (or shipped models) to average")
    parser.add_argument("--like", required=True, help="model whose config the soup takes")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    try:
        like = Run.resolve(args.like)
        sources = [Run.resolve(run) for run in args.runs]
        for source in sources:
            if source.method != like.method:
                raise SystemExit(f"error: {source.path}: a {source.method} model; "
                                 f"{like.path} is {like.method}")
            differ = network_differences(like.config, source.config)
            if differ:
                raise SystemExit(f"error: {source.path}: {', '.join(differ)} differ from "
                                 f"{like.path} (a soup averages one network)")
        soup = average([source.load_weights() for source in sources])
        config = like.config if args.seed is None else like.config.replace(seed=args.seed)
        run = Run.create(args.out, like.method_cls, config, data=like.data,
                         init=", ".join(source.reference for source in sources))
        run.save_weights(soup)
    except InstatrackError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"wrote the average of {len(sources)} runs to {run.path}")


if __name__ == "__main__":
    main()
