"""How hard a set of videos is for masks carried by optical flow, with no network at all.

For every annotated object in every pair of consecutive frames, the true mask of the
earlier frame is carried into the later one along the optical flow spatial-propagation
uses (``flow_prior``: :func:`instatrack.cluster.flow.backward_flow`, window
``--radius``) and compared with the true mask there (IoU, ``carried_iou``; its 10th
percentile over the pairs, ``carried_iou_p10``). Beside it, the IoU of the earlier mask
left where it was (``still_iou``: how far objects move and change between frames).
Prints one JSON line per video and the mean over them (objects smaller than
``--min-area`` pixels in either frame are left out: a sliver at the frame's edge
scores 0 or 1 by chance).

A held-out set on which the carried mask keeps an IoU near 1 cannot tell a flow
setting from another, nor a network from the flow alone: session 38 measured 0.97-0.99
on the synthetic held-out videos against 0.86 on DAVIS ``motocross-jump``
(docs/propagation_pretraining.md). This script is how a set's difficulty is stated.

    python benchmarks/flow_difficulty.py ../shared/data/DAVIS2016_sample runs/spn-heldout
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def video_difficulty(sequence, radius: int, min_area: int, step: int = 1) -> dict:
    """Mean IoUs over a video's object-frame pairs (``step``: every n-th pair)."""
    from instatrack.cluster.flow import backward_flow, carry_masks, grey
    from instatrack.metrics.davis import region_similarity

    def frame(t: int) -> np.ndarray:
        image = np.asarray(sequence.image(t), np.float32)
        image = image[None] if image.ndim == 2 else image.transpose(2, 0, 1)
        return image / (255.0 if image.max() > 1 else 1.0)

    still, carried = [], []
    previous_labels, previous_grey = sequence.labels(0), grey(frame(0))
    for t in range(1, len(sequence)):
        labels, now = sequence.labels(t), grey(frame(t))
        if previous_labels is not None and labels is not None and (t - 1) % step == 0:
            pairs = [(previous_labels == i, labels == i)
                     for i in np.unique(previous_labels) if i]
            pairs = [(before, after) for before, after in pairs
                     if before.sum() >= min_area and after.sum() >= min_area]
            if pairs:
                masks = np.stack([before for before, _ in pairs])
                moved = carry_masks(masks, backward_flow(now, previous_grey, radius)) > 0.5
                for (before, after), carried_mask in zip(pairs, moved, strict=True):
                    still.append(region_similarity(after, before))
                    carried.append(region_similarity(after, carried_mask))
        previous_labels, previous_grey = labels, now
    return {"video": sequence.name, "pairs": len(carried),
            "still_iou": round(float(np.mean(still)), 4) if still else None,
            "carried_iou": round(float(np.mean(carried)), 4) if carried else None,
            "carried_iou_p10": round(float(np.percentile(carried, 10)), 4) if carried else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", type=Path, nargs="+", help="DAVIS-layout folders")
    parser.add_argument("--radius", type=int, default=7, help="the flow's window (pixels)")
    parser.add_argument("--min-area", type=int, default=100)
    parser.add_argument("--step", type=int, default=1, help="every n-th frame pair")
    args = parser.parse_args()

    from instatrack.data.davis import open_sequences

    for root in args.datasets:
        rows = [video_difficulty(s, args.radius, args.min_area, args.step)
                for s in open_sequences(root)]
        for row in rows:
            print(json.dumps({"dataset": str(root), **row}))
        scored = [r for r in rows if r["pairs"]]
        if len(scored) > 1:
            mean = {key: round(float(np.mean([r[key] for r in scored])), 4)
                    for key in ("still_iou", "carried_iou", "carried_iou_p10")}
            print(json.dumps({"dataset": str(root), "video": "mean",
                              "pairs": sum(r["pairs"] for r in scored), **mean}))


if __name__ == "__main__":
    main()
