"""One entry point that scores a result folder against ground truth, whatever the layout.

Layouts (detected in this order by :func:`detect_layout`):

``ctc``
    ``gt`` is a CTC ``NN_GT`` folder (has ``TRA/``) or the sequence folder ``NN``
    next to ``NN_GT``; ``res`` holds ``maskTTT.tif`` + ``res_track.txt``, or is
    a GEFF with masks (:mod:`instatrack.data.geff`, converted to CTC in a
    temporary folder). Keys: ``SEG``, ``TRA``, ``DET``, and what TRA's errors
    are made of, as counts (:data:`~instatrack.metrics.ctc.AOGM_COUNTS`): ``FN``
    missed objects, ``FP`` false ones, ``NS`` true objects merged into one found
    object, ``ED`` / ``EA`` / ``EC`` links to delete / add / relabel.
``cvppp``
    ``gt`` holds CVPPP ``plantNNN_label.png``; ``res`` a label image per plant
    named by the plant stem (``plantNNN.png``, ``plantNNN_label.png``, ``.tif``...).
    Every gt plant needs a prediction.
``davis``
    ``gt`` holds PNG masks named by frame number (``00000.png`` ...), or is a
    DAVIS root with one video under ``Annotations/<resolution>/``; ``res`` a
    mask per frame with the same stem. Keys: ``J_mean``, ``J_recall``,
    ``J_decay``, ``F_mean``, ``F_recall``, ``F_decay``, ``J&F``.
``images``
    any other folders of label images, paired by file stem (a prediction may add
    a suffix such as ``_pred`` or ``_label``); gt files without a prediction are
    left out (``n_images`` says how many pairs were scored). ``gt`` and ``res``
    may also be two single files.

Still-image keys (``cvppp`` and ``images``): ``SBD`` (mean symmetric best Dice),
``DiC`` (mean signed difference in count), ``absDiC`` (mean |DiC|), ``Dice``
(mean foreground Dice), ``AP``, ``AP50``, ``AP75`` (pooled over images, see
:mod:`instatrack.metrics.ap`) and ``n_images``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from instatrack.data.geff import is_geff
from instatrack.errors import ConfigError, DataError
from instatrack.metrics._io import list_label_files, read_label_image

__all__ = ["LAYOUTS", "ctc_result", "davis_video", "detect_layout", "evaluate",
           "evaluate_label_images", "is_ctc_ground_truth", "paired_files", "read_pair"]

LAYOUTS = ("ctc", "cvppp", "davis", "images")
_PREDICTION_SUFFIX = re.compile(r"_(label|labels|mask|masks|pred|prediction|seg|rgb)$")


def is_ctc_ground_truth(gt: Path) -> bool:
    """Whether ``gt`` is a CTC ground-truth folder (``NN_GT``, or ``NN`` beside one)."""
    return (gt / "TRA").is_dir() or (gt.parent / f"{gt.name}_GT" / "TRA").is_dir()


def davis_video(gt: Path) -> Path:
    """``gt`` itself, or for a DAVIS root holding one video its annotation folder."""
    if not (gt / "Annotations").is_dir():
        return gt
    videos = sorted(p for p in (gt / "Annotations").glob("*/*") if p.is_dir())
    if len(videos) != 1:
        names = ", ".join(p.name for p in videos[:5]) or "none"
        raise DataError(
            f"{gt}: DAVIS folder with {len(videos)} videos ({names}); "
            f"give one video's Annotations/<resolution>/<name> folder"
        )
    return videos[0]


def detect_layout(gt: str | Path, res: str | Path) -> str:
    """Which of :data:`LAYOUTS` ``gt``/``res`` follow (see the module docstring)."""
    gt, res = davis_video(Path(gt)), Path(res)
    if not gt.exists():
        raise DataError(f"{gt}: ground truth not found")
    if not res.exists():
        raise DataError(f"{res}: result not found")
    if gt.is_file() and res.is_file():
        return "images"
    if gt.is_file() or res.is_file():
        raise DataError(f"{gt} and {res}: give two folders or two files, not one of each")
    if is_ctc_ground_truth(gt):
        if not any(res.glob("mask*.tif")) and not is_geff(res):  # GEFF: interop (issue 20)
            raise DataError(f"{res}: CTC ground truth given but no maskTTT.tif in the result")
        return "ctc"
    try:
        files = list_label_files(gt)
    except DataError:
        files = []
    if any(p.name.endswith("_label.png") for p in files):
        return "cvppp"
    if files and all(p.suffix.lower() == ".png" and p.stem.isdigit() for p in files):
        return "davis"
    if files:
        return "images"
    raise DataError(f"{gt}: no label images (.tif/.png) and not a CTC ground-truth folder")


def _find_prediction(predictions: list[Path], key: str) -> Path | None:
    """The prediction named ``key`` (any extension), else ``key`` plus a known suffix."""
    candidates = [p for p in predictions if p.stem == key]
    if not candidates:
        candidates = [p for p in predictions if _PREDICTION_SUFFIX.sub("", p.stem) == key]
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise DataError(f"{candidates[0].parent}: several predictions for {key!r}: {names}")
    return candidates[0] if candidates else None


def paired_files(gt: Path, res: Path, layout: str) -> list[tuple[Path, Path]]:
    """``(ground truth, prediction)`` file pairs of two label-image folders (or files)
    laid out as ``layout`` (``cvppp``, ``davis`` or ``images``): a prediction is named
    as its ground truth, optionally with a suffix such as ``_label`` or ``_pred``."""
    if gt.is_file():
        return [(gt, res)]
    predictions = list_label_files(res)
    files = list_label_files(gt)
    if layout == "cvppp":
        files = [p for p in files if p.name.endswith("_label.png")]
    pairs = []
    for path in files:
        key = path.stem[: -len("_label")] if layout == "cvppp" else path.stem
        prediction = _find_prediction(predictions, key)
        if prediction is None and layout in ("cvppp", "davis"):
            raise DataError(f"{path}: no prediction for it in {res} (expected {key}.png or .tif)")
        if prediction is not None:
            pairs.append((path, prediction))
    if not pairs:
        raise DataError(f"{res}: no prediction named like a ground-truth image in {gt}")
    return pairs


def evaluate_label_images(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Still-image measures over ``(gt, pred)`` label image pairs ``(Y, X)``.

    Returns ``SBD``, ``DiC``, ``absDiC``, ``Dice`` (means over images), ``AP``,
    ``AP50``, ``AP75`` (counts pooled over images) and ``n_images``.
    """
    from instatrack.metrics.ap import average_precision
    from instatrack.metrics.cvppp import dic, dice, symmetric_best_dice

    if not pairs:
        raise DataError("no image pairs to evaluate")
    counts = np.array([dic(gt, pred) for gt, pred in pairs], dtype=float)
    result = {
        "SBD": float(np.mean([symmetric_best_dice(gt, pred) for gt, pred in pairs])),
        "DiC": float(counts.mean()),
        "absDiC": float(np.abs(counts).mean()),
        "Dice": float(np.mean([dice(gt, pred) for gt, pred in pairs])),
    }
    result.update(average_precision([g for g, _ in pairs], [p for _, p in pairs]))
    result["n_images"] = float(len(pairs))
    return result


def read_pair(gt_path: Path, res_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The two label images of a :func:`paired_files` pair; they must have one shape."""
    gt, pred = read_label_image(gt_path), read_label_image(res_path)
    if gt.shape != pred.shape:
        raise DataError(f"{res_path}: shape {pred.shape} differs from {gt_path.name} {gt.shape}")
    return gt, pred


@contextmanager
def ctc_result(gt: Path, res: Path) -> Iterator[Path]:
    """``res`` as a CTC result folder: itself, or for a GEFF result (graph + masks) its
    masks converted into a temporary folder for as long as the ``with`` block runs.

    The masks are converted from the ground truth's first frame on: a sequence
    tracked from frame ``k`` keeps its frame numbers, its masks are empty before ``k``.
    """
    if not is_geff(res):
        yield res
        return
    import tempfile

    from instatrack.data.ctc import TRA_RE, numbered_files
    from instatrack.data.geff import geff_to_ctc
    from instatrack.metrics.ctc_files import resolve_gt_dir

    first = min(numbered_files(resolve_gt_dir(gt) / "TRA", TRA_RE), default=0)
    with tempfile.TemporaryDirectory(prefix="instatrack_geff_") as tmp:
        yield geff_to_ctc(res, Path(tmp) / "RES", first_frame=first)


def _ctc_scores(gt: Path, res: Path) -> dict[str, float | int]:
    """SEG, TRA, DET and the AOGM's error counts (as ints) of a CTC result folder."""
    from instatrack.metrics.ctc import AOGM_COUNTS, evaluate_ctc

    scores = evaluate_ctc(gt, res, ("SEG", "TRA", "DET", *AOGM_COUNTS))
    return {k: int(v) if k in AOGM_COUNTS else v for k, v in scores.items()}


def evaluate(gt: str | Path, res: str | Path, layout: str = "auto") -> dict[str, float | int]:
    """Score ``res`` against ``gt``; the measures depend on the layout.

    Args:
        gt: ground truth folder (or file, for one still image).
        res: result folder (or file).
        layout: ``"auto"`` (see :func:`detect_layout`) or one of :data:`LAYOUTS`.

    Returns:
        ``{measure: value}`` with the keys listed in the module docstring.
    """
    gt, res = davis_video(Path(gt)), Path(res)
    if layout == "auto":
        layout = detect_layout(gt, res)
    elif layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; choose from auto, {', '.join(LAYOUTS)}")
    if layout == "ctc":
        with ctc_result(gt, res) as folder:
            return _ctc_scores(gt, folder)
    pairs = [read_pair(g, r) for g, r in paired_files(gt, res, layout)]
    if layout == "davis":
        from instatrack.metrics.davis import evaluate_davis

        return evaluate_davis([g for g, _ in pairs], [p for _, p in pairs])
    return evaluate_label_images(pairs)
