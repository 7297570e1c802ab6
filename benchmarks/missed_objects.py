"""Where a cosine-hourglass model loses the objects it misses: before clustering or after.

Runs a model (run folder or shipped name) on a CTC sequence's frames from FIRST on, as
``instatrack track`` does, and for every tracking marker that no found object covers by
more than half (CTC's missed object, FN) reports

- whether the clustering of its frame pair already missed it (so the network's embedding
  lost it) or a later stage did (growth, refinement, filters, the tracker);
- the median cosine of its pixels' embeddings with the background direction (clustering
  calls a pixel foreground below ``cluster_background_cos``);
- its contrast: the marker's median grey level over the frame's background median.

    python benchmarks/missed_objects.py nuclei-ch --ctc ../shared/data/Fluo-N2DH-GOWT1/01:36

Diagnostic only: it wraps the method's clustering function to see its input, so it
needs the cosine-hourglass. Prints a summary, one line per missed track, and with
``--every`` one line per missed marker.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np


def matched(markers: np.ndarray, labels: np.ndarray) -> set[int]:
    """The markers one object of ``labels`` covers more than half of (CTC's rule, as
    :func:`instatrack.metrics.ctc.match_frame` applies it)."""
    from instatrack.labels import majority_matches, overlap_matrix

    overlap = overlap_matrix(markers, labels)
    return set(overlap.gt_ids[majority_matches(overlap) >= 0].tolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="run folder or shipped model name (cosine-hourglass)")
    parser.add_argument("--ctc", required=True, metavar="SEQ[:FIRST]")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a post-processing setting")
    parser.add_argument("--every", action="store_true", help="one line per missed marker")
    args = parser.parse_args()

    from skimage.transform import resize

    import instatrack
    from instatrack.data.ctc import CTCSequence
    from instatrack.methods import cosine_hourglass

    clustered: list[tuple[np.ndarray, np.ndarray | None]] = []
    cluster = cosine_hourglass._cluster

    def recording(frames, params, reference, sizes):
        labels = cluster(frames, params, reference, sizes)
        cosine = None if reference is None else np.tensordot(reference, frames[-1][0], (0, 0))
        clustered.append((labels[-1], cosine))  # the pair's newest frame
        return labels

    cosine_hourglass._cluster = recording
    path, _, first = args.ctc.partition(":")
    seq, first = CTCSequence(path), int(first or 0)
    predictor = instatrack.load(args.model, overrides=args.set)
    if predictor.method.name != "cosine-hourglass":
        raise SystemExit(f"{args.model}: a {predictor.method.name} model; this needs the "
                         "cosine-hourglass")
    frames = [seq.image(t) for t in range(first, len(seq))]
    result = predictor.track(frames)
    # the size estimate clusters its own passes first: the sequence's pairs come last
    pairs = clustered[len(clustered) - (len(frames) - 1):]

    missed, found = [], []
    for i in range(1, len(frames)):
        markers = seq.markers(first + i)
        if markers is None:
            continue
        labels, cosine = pairs[i - 1]
        labels = resize(labels, markers.shape, order=0, preserve_range=True,
                        anti_aliasing=False).astype(np.int32)
        if cosine is not None:
            cosine = resize(cosine, markers.shape, order=1, preserve_range=True)
        image = np.asarray(frames[i], np.float64)
        image = image.mean(0) if image.ndim == 3 else image
        background = np.median(image[result.labels[i] == 0])
        in_pair, final = matched(markers, labels), matched(markers, result.labels[i])
        for k in np.unique(markers)[1:].tolist():
            marker = markers == k
            row = (first + i, k, k in in_pair,
                   float("nan") if cosine is None else float(np.median(cosine[marker])),
                   float(np.median(image[marker]) - background))
            (found if k in final else missed).append(row)

    lost_early = sum(1 for row in missed if not row[2])
    print(f"{args.model} on {args.ctc}: {len(missed) + len(found)} markers, {len(missed)} "
          f"missed; {lost_early} already missed by the clustering of their frame pair, "
          f"{len(missed) - lost_early} lost after it")
    for name, rows in (("found", found), ("missed", missed)):
        if rows:
            cos, contrast = np.array([r[3] for r in rows]), np.array([r[4] for r in rows])
            print(f"  {name}: background cosine median {np.nanmedian(cos):.2f} "
                  f"[{np.nanmin(cos):.2f}, {np.nanmax(cos):.2f}], contrast median "
                  f"{np.median(contrast):.1f} [{contrast.min():.1f}, {contrast.max():.1f}]")
    by_track = defaultdict(list)
    for row in missed:
        by_track[row[1]].append(row)
    for k, rows in sorted(by_track.items(), key=lambda item: -len(item[1])):
        print(f"  track {k}: missed in {len(rows)} frames ({rows[0][0]}-{rows[-1][0]}), "
              f"contrast median {np.median([r[4] for r in rows]):.1f}, background cosine "
              f"median {np.nanmedian([r[3] for r in rows]):.2f}")
    if args.every:
        for t, k, early, cos, contrast in missed:
            print(f"    t{t} track {k}: clustered {early}, cosine {cos:.2f}, "
                  f"contrast {contrast:.1f}")


if __name__ == "__main__":
    main()
