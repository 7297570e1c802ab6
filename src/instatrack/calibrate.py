"""Post-processing chosen on the validation frames when training ends (calibration).

A trained network does not say which thresholds turn its outputs into the
objects a dataset counts. The defaults fit some data and not other: a
spatial-embedding net trained on GOWT1 finds 143 objects per frame at the
default seed threshold (0.5), where 24 nuclei are annotated; at 0.9 it finds
the annotated ones (docs/robustness.md). Benchmarks chose such values on
validation frames by hand (``--tune``); users of ``instatrack train`` got the
defaults. StarDist users run ``optimize_thresholds`` for this; here training
does it by itself:

- every post-processing stage lists the values worth trying in its class
  attribute ``calibration`` (e.g. ``SeedClustering``: the seed threshold);
- when the run has validation frames and ``calibrate`` is on, every
  combination runs through the :class:`~instatrack.api.Predictor` with the
  kept weights (resizing, refinement and linking as at inference) on the
  validation frames at their original size, and is scored by
  ``(SEG + DET) / 2`` (:func:`frame_scores`; the Cell Tracking Challenge ranks
  segmentation by the same mean); with ``calibrate_measure=tra``, a video whose every
  validation frame has tracking markers is scored by ``(SEG + TRA) / 2`` instead, the
  mean it ranks trackers by and the one the classical pipeline is tuned by
  (``benchmarks/ctc_accuracy.py --tune``): the links between frames count too
  (:func:`link_errors`). Not the default: on MSC 02, which the shipped nuclei models
  never saw, it chose values that scored no better on the test frames than DET's
  (two models, three windows each; docs/results.md, session 51); with ``calibrate_dim``
  the frames are also scored
  dimmed and the scores averaged, so that a value which holds only on the contrast
  of the validation frames loses to one that holds on dimmer frames too, among the
  values within :data:`CLEAN_TOLERANCE` of the best on the recorded frames;
- a stage that acts last (dropping faint objects, ``min_contrast``) or a value that
  only refines a grid choice (the outline refinement's band, ``refine_band``) lists its
  values in ``calibration_last`` instead: each is tried alone on the best
  combination so far, which adds a pass per value rather than multiplying the grid,
  and the best of a key's values replaces it only when it gains more than
  :data:`LAST_MIN_GAIN`;
- a few validation frames tell values apart only so far: each frame's result differs
  from the next by more than many choices do (MSC 02's three annotated validation
  frames chose settings that scored 0.63 on its test frames in one calibration and 0.45
  in another; docs/results.md, session 22). So the frame-to-frame noise of each
  difference is measured (its jackknife standard error over the frames,
  :func:`noise`), and the best combination's only rival is any within that noise of it:
  among those the one that changes fewest of the run's own values wins (the
  "one-standard-error rule" of model selection), and a value tried after the grid
  must gain more than its noise too;
- frames with tracking markers but no outlines (the Cell Tracking Challenge annotates
  every frame's cells with a marker and only some with outlines) count in the
  detection half of the score, so they are not wasted;
- the chosen combination is written into the run's ``config.json`` (on a tie the
  run's own values win, so nothing changes without a reason) and every score
  into ``calibration.json``;
- ``only`` (``instatrack calibrate --only KEY``) chooses the listed keys alone and keeps
  the run's other values: a pass per value of those keys instead of the whole grid, for
  a stage added after the run was calibrated (a full calibration of the shipped
  cosine-hourglass takes over an hour on one core);
- each combination's score is also written to ``calibration.partial.json`` as soon as
  it is known, so a calibration that stops (a cosine-hourglass's takes an hour or
  more on one CPU core) goes on where it stopped when it runs again on the same run,
  weights, data and settings, instead of from the start; the file goes when it ends.

The values tried are a few per key, so the cost is a few validation passes:
seconds for the spatial-embedding nets, a minute or two for the cosine-hourglass, times
the number of contrast divisors in ``calibrate_dim``. Only combinations that change
what the method itself does cost a pass of the network: the stages that act on its
labels afterwards (outlines, growth, fragments, contrast;
:attr:`~instatrack.settings.Settings.after_method`) reuse the labels it gave
(:class:`_Reused`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from instatrack.settings import Settings, require

#: file of the run folder that records every combination tried and its scores
CALIBRATION_FILE = "calibration.json"
#: the scores known so far of a calibration that has not ended (to go on from there)
PARTIAL_FILE = "calibration.partial.json"
#: error weights of the Cell Tracking Challenge's DET measure (AOGM-D)
FN_WEIGHT, FP_WEIGHT, SPLIT_WEIGHT = 10.0, 1.0, 5.0
#: and of the links its TRA measure (AOGM) adds: a link to delete, to add, or whose kind
#: (the same track, or a parent to a daughter) is wrong
ED_WEIGHT, EA_WEIGHT, EC_WEIGHT = 1.0, 1.5, 1.0
#: validation frames scored, at most: by each validation during training and by each
#: combination here (:func:`validation_frames` chooses them for both)
MAX_FRAMES = 12
#: bytes of the method's labels calibration keeps for reuse (:class:`_Reused`); beyond
#: it the least recently used are dropped (and computed again if asked for)
KEPT_BYTES = 1 << 30
#: a value tried after the grid replaces the one chosen so far only when it raises the
#: score by more than this: on 6-12 frames smaller gains are noise (the shipped
#: ``nuclei-se`` "gained" 0.0003 with ``refine_band=6`` and lost 0.004-0.007 SEG on its
#: test frames; docs/results.md, session 13)
LAST_MIN_GAIN = 0.001
#: with ``calibrate_dim``, the dimmed frames choose only among the values that score within
#: this of the best on the frames as recorded (about half the run-to-run spread of SEG):
#: on the demo's synthetic cells the mean over both preferred refined outlines that cost
#: 0.017 on the recorded validation frames and 0.019 SEG on its test frames
CLEAN_TOLERANCE = 0.005
#: what the detection half of a combination's score can be (``calibrate_measure``)
MEASURES = ("det", "tra")


@dataclasses.dataclass(frozen=True)
class CalibrationSettings(Settings):
    """``calibrate``: choose the post-processing values on the validation frames after
    training (:mod:`instatrack.calibrate`); off, the config's values stay.
    ``calibrate_measure``: ``det`` scores each combination by ``(SEG + DET) / 2``;
    ``tra`` by ``(SEG + TRA) / 2`` on a video whose every validation frame has tracking
    markers (the links between frames count too; :func:`link_errors`), by DET elsewhere.
    ``calibrate_dim``: the contrast divisors single-channel validation frames are scored
    at (1: as recorded; K: the contrast over the background divided by K with the
    sensor's noise kept, :mod:`instatrack.data.dim`); each combination's score is the
    mean over them, so the default ``1,4`` chooses values that also hold on dimmer data
    (``1``: the recorded frames alone). Colour frames are scored as recorded: the dimming
    models a fluorescence sensor, not a camera."""

    post_processing = True

    calibrate: bool = True
    calibrate_measure: str = "det"
    calibrate_dim: tuple[float, ...] = (1.0, 4.0)

    def check(self) -> None:
        super().check()
        require(self.calibrate_measure in MEASURES,
                f"calibrate_measure must be one of {', '.join(MEASURES)}, got "
                f"{self.calibrate_measure!r}")
        require(len(self.calibrate_dim) > 0 and all(k >= 1 for k in self.calibrate_dim),
                f"calibrate_dim must list contrast divisors >= 1 (1 = the frames as "
                f"recorded), got {self.calibrate_dim}")


def _listed(config, attribute: str) -> dict[str, list[Any]]:
    """``{key: [own value, other listed values...]}`` of the stages' class ``attribute``.

    A stage tried last is also tried at its default (off) when the config's own value is
    not that: a model shipped with a stage on (``nuclei-ch`` cuts waisted objects in two,
    ``split_pairs=0.9``) must be able to turn it off on data where it does harm (MSC's
    spread cells are waisted too, and were cut)."""
    defaults = {field.name: field.default for field in dataclasses.fields(config)}
    values: dict[str, list[Any]] = {}
    for stage in type(config).__mro__:
        for key, options in vars(stage).get(attribute, {}).items():
            if key in values or not hasattr(config, key):
                continue
            own = getattr(config, key)
            values[key] = [own, *(v for v in options if v != own)]
            default = defaults.get(key, dataclasses.MISSING)
            if (attribute == "calibration_last" and default is not dataclasses.MISSING
                    and default not in values[key]):
                values[key].append(default)
    return values


def candidates(config, only: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Every combination of the values the config's post-processing stages list in
    ``calibration``, the config's own values first in each key (so they win ties);
    with ``only``, the other keys keep the config's own value."""
    values = _listed(config, "calibration")
    if only is not None:
        values = {key: v if key in only else v[:1] for key, v in values.items()}
    keys = list(values)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values.values())]


def calibrated_values(config) -> dict[str, Any]:
    """The config's own value of every key calibration tries (grid and last)."""
    return {key: values[0] for attribute in ("calibration", "calibration_last")
            for key, values in _listed(config, attribute).items()}


def last_candidates(config, only: Iterable[str] | None = None) -> dict[str, list[Any]]:
    """``{key: values}`` listed in ``calibration_last`` other than the config's own:
    each tried alone on the best of :func:`candidates` (a stage that acts last). A
    value may be a mapping of several keys, tried together (``grow_trim`` with the
    growth it trims for). With ``only``, those keys alone."""
    return {key: values[1:] for key, values in _listed(config, "calibration_last").items()
            if only is None or key in only}


def check_only(config, only: Iterable[str]) -> list[str]:
    """``only`` as a list, each a key calibration tries for ``config``; else a
    :class:`~instatrack.errors.ConfigError` naming the keys it tries."""
    from instatrack.errors import ConfigError

    known = calibrated_values(config)
    unknown = [key for key in only if key not in known]
    if unknown:
        raise ConfigError(f"calibration does not choose {', '.join(unknown)} for this "
                          f"model; it chooses {', '.join(known)}")
    return list(only)


def _matches(gt: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, dict[int, list[int]]]:
    """``(true ids, {found id: the true objects it matches, most overlap first})``: a
    found object *matches* a true one it covers more than half of (the CTC rule; a true
    object has at most one match, a found one several when it merges them)."""
    objects, areas = np.unique(gt[gt > 0], return_counts=True)
    area = dict(zip(objects.tolist(), areas.tolist(), strict=True))
    both = (gt > 0) & (labels > 0)
    pairs, overlap = np.unique(np.stack([gt[both], labels[both]]), axis=1, return_counts=True)
    matches: dict[int, list[tuple[int, int]]] = {}
    for (true, found), count in zip(pairs.T.tolist(), overlap.tolist(), strict=True):
        if count > area[true] / 2:
            matches.setdefault(found, []).append((count, true))
    return objects, {found: [true for _, true in sorted(trues, reverse=True)]
                     for found, trues in matches.items()}


def detection_errors(gt: np.ndarray, labels: np.ndarray) -> tuple[int, int, int, int]:
    """``(objects, missed, false, merged)`` of one frame against its ground truth.

    ``gt``: ``(Y, X)`` with ids > 0, 0 background and -1 unannotated (a nucleus
    marked but not outlined). A found object *matches* a true one it covers more
    than half of (the CTC rule). *missed*: true objects nobody matches; *merged*:
    extra true objects matched by one found object; *false*: found objects that
    match none and touch no unannotated pixel (those may be the unoutlined ones).
    """
    objects, matches = _matches(gt, labels)
    matched = sum(len(trues) for trues in matches.values())
    found_ids = set(np.unique(labels[labels > 0]).tolist())
    unannotated = set(np.unique(labels[(gt < 0) & (labels > 0)]).tolist())
    false = len(found_ids - set(matches) - unannotated)
    return len(objects), len(objects) - matched, false, matched - len(matches)


def link_errors(markers: list[np.ndarray], labels: list[np.ndarray], graph,
                lineage: Iterable[tuple[int, int, int, int]] = (),
                times: list[int] | None = None) -> list[tuple[int, float]]:
    """``(true links, weighted link errors)`` into each frame of a tracked window, the
    links half of the Cell Tracking Challenge's TRA (AOGM).

    ``markers``: each frame's tracking markers (track ids); ``labels``: each frame's
    found objects (track ids), as ``graph`` (nodes with ``t``, the frame's index in the
    window, and ``label``; edges from a track's node to its next, or from a parent's
    last node to a daughter's first) links them. The true links join a track's markers
    in consecutive frames, and a parent's last frame to a daughter's first
    (``lineage``: ``man_track.txt``'s rows ``L B E P``; ``times``: each frame's CTC
    frame number), both ends in the window. A found link between the objects that
    match (:func:`_matches`; a merged object stands for the true one it covers most)
    the two ends of a true link is right (:data:`EC_WEIGHT` when one is a track's and
    the other a division's); any other found link between matched objects is deleted
    (:data:`ED_WEIGHT`; a false object's links go with it, as in the CTC's measure),
    and each true link no found link gives is added (:data:`EA_WEIGHT`, a missed
    object's too). Each link counts in the frame it enters."""
    times = list(range(len(markers))) if times is None else list(times)
    index = {time: i for i, time in enumerate(times)}
    ends = {label: end for label, _, end, _ in lineage}
    true: dict[tuple, bool] = {}  # ((i, id), (j, id)) -> True for a track's own link
    for i in range(1, len(markers)):
        before = set(np.unique(markers[i - 1][markers[i - 1] > 0]).tolist())
        for label in set(np.unique(markers[i][markers[i] > 0]).tolist()) & before:
            true[(i - 1, label), (i, label)] = True
    for label, begin, _, parent in lineage:
        if parent and begin in index and ends.get(parent) in index:
            true[(index[ends[parent]], parent), (index[begin], label)] = False
    match = [{f: trues[0] for f, trues in _matches(m, found)[1].items()}
             for m, found in zip(markers, labels, strict=True)]
    errors = [0.0] * len(markers)
    given: set[tuple] = set()
    for u, v in graph.edges:
        (tu, lu), (tv, lv) = ((int(graph.nodes[n]["t"]), int(graph.nodes[n]["label"]))
                              for n in (u, v))
        link = ((tu, match[tu].get(lu)), (tv, match[tv].get(lv)))
        if link[0][1] is None or link[1][1] is None:
            continue  # goes with its false object, whose cost is the object's
        if link in true and link not in given:
            given.add(link)
            errors[tv] += EC_WEIGHT * (true[link] != (lu == lv))
        else:
            errors[tv] += ED_WEIGHT
    links = [0] * len(markers)
    for link in true:
        links[link[1][0]] += 1
        if link not in given:
            errors[link[1][0]] += EA_WEIGHT
    return list(zip(links, errors, strict=True))


def frame_stats(gt: np.ndarray, labels: np.ndarray, outlined: bool = True,
                markers: np.ndarray | None = None, links: tuple[int, float] = (0, 0.0)
                ) -> tuple[float, int, int, float, int]:
    """``(jaccard, matched, objects, errors, links)`` of one frame, the sums :func:`pooled`
    adds up: the Jaccard indices of its true objects and how many were scored (0 and 0
    when ``outlined`` is False: ``gt`` then holds tracking markers, which count in
    detection only), its true objects, their weighted detection errors (10 a missed
    object, 1 a false one, 5 a merge) and its true links. Detection is judged against
    ``markers`` when given (TRA's nodes), else against ``gt``; ``links``: the true links
    into the frame and their weighted errors (:func:`link_errors`)."""
    from instatrack.metrics.ctc import seg_frame

    jaccard, count = seg_frame(gt, labels) if outlined else (0.0, 0)
    n_true, missed, false, merged = detection_errors(gt if markers is None else markers,
                                                     labels)
    errors = FN_WEIGHT * missed + FP_WEIGHT * false + SPLIT_WEIGHT * merged + links[1]
    return float(jaccard), int(count), int(n_true), float(errors), int(links[0])


def pooled(stats: Iterable[tuple]) -> dict[str, float]:
    """``seg``, ``det`` and their mean ``score`` over frames' :func:`frame_stats`.

    SEG: mean Jaccard of the true objects (0 for a missed one). DET: one minus the
    weighted errors over their cost from nothing (10 per true object, and 1.5 per true
    link where links are scored: then it is TRA), at least 0, as the CTC's DET (TRA) on
    these frames. Sums of four items (from before links were scored) have no links.
    """
    jaccard = count = objects = errors = links = 0.0
    for j, c, n, e, *rest in stats:
        jaccard, count, objects, errors = jaccard + j, count + c, objects + n, errors + e
        links += rest[0] if rest else 0
    seg = jaccard / count if count else 0.0
    total = FN_WEIGHT * objects + EA_WEIGHT * links
    det = 1.0 - min(errors, total) / total if total else 0.0
    return {"seg": seg, "det": det, "score": (seg + det) / 2}


def frame_scores(pairs: Iterable[tuple[np.ndarray, ...]]) -> dict[str, Any]:
    """``seg``, ``det`` and their mean ``score`` over ``(gt, labels)`` frame pairs (further
    items are :func:`frame_stats`'s: ``outlined``, ``markers``, ``links``), and each
    frame's sums under ``frames`` (what :func:`noise` reads)."""
    stats = [frame_stats(*pair) for pair in pairs]
    return {**pooled(stats), "frames": stats}


def noise(row: dict[str, Any], other: dict[str, Any], level: str | None = None) -> float:
    """The frame-to-frame noise of ``row``'s score minus ``other``'s: the jackknife
    standard error of that difference, each frame left out in turn (at every contrast
    level at once, or at ``level`` alone, e.g. ``"1"``: as recorded, where both have it).
    0 when fewer than two frames were scored or a row lacks its frames' sums (a score
    from before they were kept)."""
    a, b = row.get("frames"), other.get("frames")
    if not a or not b or set(a) != set(b):
        return 0.0
    if level in a:
        a, b = {level: a[level]}, {level: b[level]}
    n = len(next(iter(a.values())))
    if n < 2 or any(len(a[k]) != n or len(b[k]) != n for k in a):
        return 0.0

    def score(sums: list, i: int) -> float:
        return pooled(sums[:i] + sums[i + 1:])["score"]

    left_out = np.array([np.mean([score(a[k], i) - score(b[k], i) for k in a])
                         for i in range(n)])
    return float(np.sqrt((n - 1) / n * np.sum((left_out - left_out.mean()) ** 2)))


def changes(row: dict[str, Any], own: dict[str, Any]) -> int:
    """How many of ``own`` settings ``row`` changes."""
    return sum(_canonical(row["settings"].get(key)) != _canonical(value)
               for key, value in own["settings"].items())


def recorded(row: dict[str, Any]) -> float:
    """A calibration row's score on the frames as recorded (its ``score`` when they were
    the only ones scored, or when every level was dimmed)."""
    return row.get("dim", {}).get("1", row)["score"]


def frames_scored(record: dict[str, Any]) -> str:
    """``6 frame(s)``, or ``6 frame(s), 3 of them outlined`` when some had markers alone."""
    outlined = record.get("outlined", record["frames"])
    return f"{record['frames']} frame(s)" + (
        f", {outlined} of them outlined" if outlined < record["frames"] else "")


def describe(record: dict[str, Any]) -> str:
    """What calibration changed, e.g. ``(SEG+DET)/2 0.911 -> 0.913 as recorded, 0.80 -> 0.86
    at contrast /4``: the score of the config's own values and of the chosen ones, per
    contrast level scored (``(SEG+TRA)/2`` where the frames were :func:`tracked`), and the
    object size the frames ran at when it was stated or estimated (``; objects 63 px``)."""
    before, after = record["before"], record["after"]
    score = f"(SEG+{record.get('measure', 'DET')})/2"
    sizes = [row["object_size"] for row in record.get("sizes", ())
             if isinstance(row["object_size"], float)]
    at = f"; objects {', '.join(f'{size:.0f}' for size in sizes)} px" if sizes else ""
    if "dim" not in after:
        return f"{score} {before['score']:.3f} -> {after['score']:.3f}{at}"
    levels = [f"{before['dim'][k]['score']:.3f} -> {after['dim'][k]['score']:.3f} "
              f"{'as recorded' if k == '1' else 'at contrast /' + k}" for k in after["dim"]]
    return f"{score} " + ", ".join(levels) + at


def _size_text(size: float | str | None) -> float | str | None:
    """An object size of :func:`fixed_sizes` for the record: a diameter rounded to a tenth
    of a pixel, ``"auto"`` (a still, estimated image by image) or None (as trained)."""
    return round(float(size), 1) if isinstance(size, (int, float)) else size


def validation_frames(config, sequences, markers: bool = False
                      ) -> list[tuple[Any, list[int]]]:
    """``(sequence, frames)`` with labels in the config's validation window (with
    ``markers``, also those with tracking markers alone: :func:`_annotated`), at most
    :data:`MAX_FRAMES` in all (a video's frames stay consecutive)."""
    from instatrack.config import parse_slice
    from instatrack.data.types import markers as marked
    from instatrack.errors import DataWarning

    window = parse_slice(config.val_frames)
    if window is None:
        return []

    def annotated(seq):
        return (t for t in range(len(seq))[window]
                if seq.labels(t) is not None or (markers and marked(seq, t) is not None))

    chosen, budget, sequences = [], MAX_FRAMES, list(sequences)
    for i, seq in enumerate(sequences):
        found = annotated(seq)
        frames = list(itertools.islice(found, budget))
        if frames:
            chosen.append((seq, frames))
            budget -= len(frames)
        if budget <= 0:
            # more annotated frames in the window are not used: say so, not silently
            if next(found, None) is not None or any(
                    next(annotated(other), None) is not None for other in sequences[i + 1:]):
                warnings.warn(f"validation frames {config.val_frames} hold more than "
                              f"{MAX_FRAMES} annotated frames; only the first {MAX_FRAMES} are "
                              f"used (a narrower window chooses others)", DataWarning,
                              stacklevel=2)
            break
    return chosen


def copy_to_calibrate(start, out, frames: str, data, overrides=()):
    """A new run in ``out``: ``start``'s weights and config (a run or a shipped model,
    untouched), with ``frames`` of ``data`` as its validation frames and the
    post-processing ``overrides`` (``key=value``, e.g. ``calibrate_dim=1,4``), ready for
    :func:`calibrate`."""
    from instatrack.runs import Run

    config = start.config.with_post_processing(overrides).replace(val_frames=frames)
    run = Run.create(out, start.method_cls, config, data=data, init=start.reference,
                     members=start.members)
    start.copy_weights(run.path)
    return run


def fixed_sizes(predictor, items: list[tuple[Any, list[int]]]) -> list[Any]:
    """The object size each validation sequence of ``items`` is run at, for every
    combination: the ``predictor``'s (the run's own values), except that a video whose
    size it would estimate (``"auto"``) is estimated once here, from its first validation
    frames as recorded. The estimate segments each frame at several sizes, up to twice
    its own (for ``nuclei-ch`` on MSC's 782×1200 frames, most of a combination's cost),
    and it reads the objects the post-processing makes, so each combination would run at
    a size of its own: the size is the data's, the same for every value tried. Stills
    keep ``"auto"`` (each image is estimated alone, as at inference)."""
    from instatrack.api import AUTO_SIZE_FRAMES

    if predictor.requested_size != "auto":
        return [predictor.object_size] * len(items)
    sizes = []
    for seq, frames in items:
        if not seq.is_video:
            sizes.append("auto")
            continue
        span = range(frames[0], min(frames[-1] + 1, frames[0] + AUTO_SIZE_FRAMES))
        head = [predictor.prepare(seq.image(t), name=str(seq.frame_path(t))) for t in span]
        sizes.append(predictor.trained_size / predictor.input_scale(*head))
    return sizes


def _annotated(seq, t: int) -> tuple[np.ndarray, bool]:
    """``(gt, outlined)`` of frame ``t``: its labels and True, or, in a frame with
    tracking markers alone, the markers and False (scored in detection only)."""
    from instatrack.data.types import markers

    labels = seq.labels(t)
    return (np.asarray(labels), True) if labels is not None else \
        (np.asarray(markers(seq, t)), False)


def _window_markers(config, seq, frames: list[int]) -> list[np.ndarray] | None:
    """The tracking markers of every frame of the window ``frames`` of video ``seq``, from
    the first to the last, when ``config`` asks for TRA (``calibrate_measure=tra``) and
    every one of them has markers; else None (the window is scored by DET)."""
    from instatrack.data.types import markers

    if config.calibrate_measure != "tra" or not seq.is_video:
        return None
    marks = [markers(seq, t) for t in range(frames[0], frames[-1] + 1)]
    return marks if all(m is not None for m in marks) else None


def tracked(predictor, seq, frames: list[int]) -> bool:
    """True when the window ``frames`` of ``seq`` is scored by TRA, links and all:
    :func:`_window_markers` has its markers and ``predictor`` tracks the video whole (not
    in tiles: :func:`_labelled`)."""
    from instatrack.tiling import scene_tiled

    return (_window_markers(predictor.config, seq, frames) is not None
            and scene_tiled(predictor, seq.image(frames[0]).shape[:2]) is predictor)


def _labelled(predictor, seq, frames: list[int]) -> Iterable[tuple[Any, ...]]:
    """:func:`frame_stats`' arguments for ``frames``: ``(gt, labels, outlined)``
    (:func:`_annotated`), and on a :func:`tracked` window the frame's markers and its
    links' errors too. A video is tracked from its first chosen frame to its last (the
    first one's masks given, for methods that start from them), stills one by one, and
    so frames a method sees in tiles (:func:`~instatrack.tiling.scene_tiled`)."""
    from instatrack.tiling import scene_tiled

    tiled = scene_tiled(predictor, seq.image(frames[0]).shape[:2])
    if not seq.is_video or tiled is not predictor:
        for t in frames:
            gt, outlined = _annotated(seq, t)
            yield gt, tiled.segment(seq.image(t)), outlined
        return
    span = range(frames[0], frames[-1] + 1)
    first_gt, _ = _annotated(seq, frames[0])
    result = predictor.track((seq.image(t) for t in span), first_masks=np.maximum(first_gt, 0))
    marks = _window_markers(predictor.config, seq, frames)  # tracked(): tiles ruled out
    if marks is not None:
        times = getattr(seq, "times", None)
        links = link_errors(marks, list(result.labels), result.graph,
                            getattr(seq, "lineage", ()),
                            None if times is None else [times[t] for t in span])
        for i, t in enumerate(span):
            gt, outlined = _annotated(seq, t)
            yield gt, result.labels[i], outlined, marks[i], links[i]
        return
    for t in frames:
        gt, outlined = _annotated(seq, t)
        yield gt, result.labels[t - frames[0]], outlined


def calibrate(run, data=None, device=None,
              progress: Callable[[int, int], None] | None = None,
              object_size: float | str | None = None,
              only: Iterable[str] | None = None) -> dict[str, Any] | None:
    """Choose ``run``'s post-processing on its validation frames and write it into its config.

    ``run``: a :class:`~instatrack.runs.Run`; ``data``: the datasets (default: those it
    was trained on). Returns the record written to ``calibration.json``, or None when
    there is nothing to choose (no validation frames, or no stage lists values).
    ``progress(done, total)`` is called before the first combination and after each.
    ``object_size``: as in :func:`instatrack.load`, for frames whose objects are not
    the training size. ``only``: choose these keys alone, keeping the run's other
    values (:func:`check_only`).
    """
    import torch

    from instatrack.api import Predictor
    from instatrack.data import open_datasets
    from instatrack.data.dim import DimmedSequence
    from instatrack.data.rescale import parse_object_size
    from instatrack.runs import WEIGHTS

    config = run.config
    only = None if only is None else check_only(config, only)
    options, last = candidates(config, only), last_candidates(config, only)
    total = len(options) + sum(len(values) for values in last.values())
    items = validation_frames(config, open_datasets(data or run.data), markers=True)
    if total < 2 or not items:
        return None
    gray = all(seq.channels == 1 for seq, _ in items)
    # dimmed once: every combination reads the same frames
    levels = {factor: [(seq if factor == 1 else DimmedSequence(seq, factor, keep=True), frames)
                       for seq, frames in items]
              for factor in (dict.fromkeys(config.calibrate_dim) if gray else (1.0,))}
    device = torch.device(device or "cpu")
    _, net = run.load_model(device, weights=WEIGHTS)
    own = Predictor(run.method_cls(config), net, device,
                    object_size=parse_object_size(object_size))
    sizes = fixed_sizes(own, items)
    # what the detection half of the score is: TRA where every window is tracked
    scored = {tracked(own, seq, frames) for seq, frames in items}
    measure = "TRA" if scored == {True} else "DET" if scored == {False} else "DET|TRA"
    tried: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []  # values of the last stages the best has already
    partial = _Partial(run, {"config": config.to_dict(), "frames": [f for _, f in items],
                             "data": [str(seq.frame_path(f[0])) for seq, f in items],
                             "dim": list(levels), "object_size": str(object_size),
                             "measure": measure,
                             "sizes": [str(size) for size in sizes],
                             "weights": _digest(*map(run.file, run.weight_files))})

    kept: dict[tuple, list] = {}  # the method's own labels, for _Reused

    def score(combo: dict[str, Any]) -> dict[str, Any]:
        row = partial.row(combo)  # scored before the calibration stopped, or None
        if row is None:
            method = run.method_cls(config.replace(**combo))
            each = {factor: frame_scores(itertools.chain.from_iterable(
                        _labelled(Predictor(_Reused(method, kept, (factor, i)), net, device,
                                            object_size=size), seq, frames)
                        for i, (size, (seq, frames)) in enumerate(zip(sizes, level,
                                                                      strict=True))))
                    for factor, level in levels.items()}
            mean = {k: float(np.mean([s[k] for s in each.values()]))
                    for k in ("seg", "det", "score")}
            row = {"settings": combo, **{k: round(v, 4) for k, v in mean.items()}}
            if len(each) > 1:  # the mean's parts, by contrast divisor
                row["dim"] = {f"{factor:g}": {k: round(s[k], 4) for k in ("seg", "det", "score")}
                              for factor, s in each.items()}
            if all("frames" in s for s in each.values()):  # for the noise of a difference
                row["frames"] = {f"{factor:g}": [list(f) for f in s["frames"]]
                                 for factor, s in each.items()}
            partial.add(row)
        tried.append(row)
        if progress is not None:
            progress(len(tried) + len(skipped), total)
        return row

    if progress is not None:
        progress(0, total)
    for combo in options:
        score(combo)
    # the dimmed frames decide among the combinations that are about as good as the best
    # one on the frames as recorded, so that robustness is not bought with clean accuracy
    clean = max(tried, key=recorded)
    floor = recorded(clean) - CLEAN_TOLERANCE
    eligible = [row for row in tried if recorded(row) >= recorded(clean) - max(
        CLEAN_TOLERANCE, noise(clean, row, "1"))]
    top = max(eligible, key=lambda row: row["score"])  # the first (own values) on a tie
    # any within the noise of the best is as good: the one closest to the run's own wins
    best = min((row for row in eligible if row["score"] >= top["score"] - noise(top, row)),
               key=lambda row: (changes(row, tried[0]), -row["score"]))
    for key, values in last.items():
        best = {**best, "settings": {**best["settings"], key: getattr(config, key)}}
        rows = []
        for value in values:
            # a mapping sets several keys together (a value that needs another stage on)
            change = value if isinstance(value, dict) else {key: value}
            if {**best["settings"], **change} != best["settings"]:
                rows.append(score({**best["settings"], **change}))
            else:  # the best has this value already (a model shipped with it): no new pass
                skipped.append(change)
                if progress is not None:
                    progress(len(tried) + len(skipped), total)
        # the best of the key's values, not the first to gain: which is listed first
        # must not decide (MSC: the triangle threshold at sigma 2 gained beyond the noise,
        # then sigma 4 gained more over Li's, but not beyond the noise over sigma 2)
        eligible = [row for row in rows if recorded(row) >= floor]
        if eligible:
            top = max(eligible, key=lambda row: row["score"])
            if top["score"] > best["score"] + max(LAST_MIN_GAIN, noise(top, best)):
                best = top
        floor = max([floor, *(recorded(row) - CLEAN_TOLERANCE for row in rows)])
    record = {"chosen": best["settings"], "before": tried[0], "after": best,
              "frames": sum(len(f) for _, f in items),
              "outlined": sum(seq.labels(t) is not None for seq, f in items for t in f),
              "dim": list(levels), "measure": measure,
              "sizes": [{"data": str(seq.frame_path(f[0])), "object_size": _size_text(size)}
                        for size, (seq, f) in zip(sizes, items, strict=True)],
              "tried": tried}
    if only is not None:
        record["only"] = only
    run.save_config(config.replace(**best["settings"]))
    Path(run.file(CALIBRATION_FILE)).write_text(json.dumps(record, indent=1) + "\n")
    partial.remove()
    return record


class ProgressBar:
    """``progress`` for :func:`calibrate`: a bar of the combinations scored (opened at the
    first call, when their number is known; a calibration that goes on from
    :data:`PARTIAL_FILE` starts it part-full). Close it when calibration returns."""

    def __init__(self, enabled: bool = True):
        self.enabled, self.bar = enabled, None

    def __call__(self, done: int, total: int) -> None:
        if self.enabled and self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="setting", dynamic_ncols=True, desc="calibrate")
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def method_key(config) -> str:
    """``config`` without the keys of the stages that act after the method
    (:attr:`~instatrack.settings.Settings.after_method`): equal for two configs whose
    methods give the same labels."""
    after = set(type(config).after_method_keys())
    return _canonical({k: v for k, v in config.to_dict().items() if k not in after})


class _Reused:
    """``method`` with its labels kept in ``kept`` and given back, not computed again,
    to a later combination whose config differs only in stages that act after the
    method (:func:`method_key`): a spatial-propagation run fits every object on the
    first frame anew for each of its ~20 combinations, none of which changes that
    fit. ``item`` names the frames; calls are counted, so a method called once per
    tile is reused tile by tile. The frames are still read on a reuse (the stages after
    the method keep them as they pass). At most :data:`KEPT_BYTES` of labels are kept."""

    def __init__(self, method, kept: dict[tuple, list], item: tuple):
        self._method, self._kept, self._item, self._calls = method, kept, item, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._method, name)

    def predict(self, model, frames, device="cpu", **kwargs):
        key = (self._item, self._calls, method_key(self._method.config))
        self._calls += 1
        windows = self._kept.pop(key, None)
        if windows is not None:
            for _ in frames:
                pass
        else:
            windows = list(self._method.predict(model, frames, device, **kwargs))
        self._kept[key] = windows  # the most recently used last
        while (sum(w.labels.nbytes for kept in self._kept.values() for w in kept)
               > KEPT_BYTES and len(self._kept) > 1):
            del self._kept[next(iter(self._kept))]
        return iter([dataclasses.replace(w, labels=w.labels.copy()) for w in windows])


def _digest(*paths: Path) -> str:
    """SHA-256 of the files' bytes, in order (an ensemble's members together)."""
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


class _Partial:
    """The rows of a calibration in progress, in the run's :data:`PARTIAL_FILE`: rows
    scored by an earlier calibration of the same ``key`` (config, data, frames, contrast
    levels, weights) are given back instead of scored again; a file of another key is
    replaced."""

    def __init__(self, run, key: dict[str, Any]):
        self.path = Path(run.file(PARTIAL_FILE))
        self.key = json.loads(json.dumps(key))
        self.rows: list[dict[str, Any]] = []
        try:
            stored = json.loads(self.path.read_text())
        except (OSError, ValueError):
            stored = None
        if isinstance(stored, dict) and stored.get("key") == self.key:
            self.rows = list(stored.get("rows", []))
        self._by_settings = {_canonical(row["settings"]): row for row in self.rows}

    def row(self, combo: dict[str, Any]) -> dict[str, Any] | None:
        """The stored row of ``combo`` (with ``combo`` itself as its settings), or None."""
        row = self._by_settings.get(_canonical(combo))
        return None if row is None else {**row, "settings": combo}

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(json.loads(json.dumps(row)))
        self._by_settings[_canonical(row["settings"])] = self.rows[-1]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": self.key, "rows": self.rows}) + "\n")
        tmp.replace(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _canonical(settings: dict[str, Any]) -> str:
    """``settings`` as JSON text with sorted keys: equal for equal values, whether they
    came from a config (tuples) or from a file (lists)."""
    return json.dumps(settings, sort_keys=True)
