"""Evaluation: CTC SEG/TRA/DET, CVPPP SBD/|DiC|, Dice, AP, DAVIS J&F.

Standalone (numpy/scipy, py-ctcmetrics for the CTC measures; no torch). Names
are resolved lazily so that ``import instatrack.metrics`` does not pay for
scipy.optimize or py-ctcmetrics (about two seconds) until a measure is used.

Quick use::

    from instatrack.metrics import evaluate
    evaluate("Fluo-N2DH-SIM+/01_GT", "Fluo-N2DH-SIM+/01_RES")   # {'SEG':..,'TRA':..,'DET':..}
    evaluate("A1/", "predictions/")                             # {'SBD':.., 'absDiC':.., ...}
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# The submodule ``evaluate`` shares its name with its main function; binding the
# function here, eagerly (the module imports only numpy), keeps
# ``from instatrack.metrics import evaluate`` the function even after someone
# imports the submodule itself.
from instatrack.metrics.evaluate import evaluate

_EXPORTS = {
    "Overlap": "matching",
    "overlap_matrix": "matching",
    "iou_matrix": "matching",
    "match_iou": "matching",
    "seg_frame": "ctc",
    "seg_score": "ctc",
    "evaluate_ctc": "ctc",
    "validate_ctc_result": "ctc",
    "CTCCheck": "ctc",
    "best_dice": "cvppp",
    "symmetric_best_dice": "cvppp",
    "dic": "cvppp",
    "dice": "cvppp",
    "average_precision": "ap",
    "detection_counts": "ap",
    "region_similarity": "davis",
    "contour_accuracy": "davis",
    "jf_statistics": "davis",
    "evaluate_davis": "davis",
    "evaluate_label_images": "evaluate",
    "detect_layout": "evaluate",
}

__all__ = [
    "CTCCheck",
    "Overlap",
    "average_precision",
    "best_dice",
    "contour_accuracy",
    "detect_layout",
    "detection_counts",
    "dic",
    "dice",
    "evaluate",
    "evaluate_ctc",
    "evaluate_davis",
    "evaluate_label_images",
    "iou_matrix",
    "jf_statistics",
    "match_iou",
    "overlap_matrix",
    "region_similarity",
    "seg_frame",
    "seg_score",
    "symmetric_best_dice",
    "validate_ctc_result",
]

if TYPE_CHECKING:
    from instatrack.metrics.ap import average_precision, detection_counts
    from instatrack.metrics.ctc import (
        CTCCheck,
        evaluate_ctc,
        seg_frame,
        seg_score,
        validate_ctc_result,
    )
    from instatrack.metrics.cvppp import best_dice, dic, dice, symmetric_best_dice
    from instatrack.metrics.davis import (
        contour_accuracy,
        evaluate_davis,
        jf_statistics,
        region_similarity,
    )
    from instatrack.metrics.evaluate import detect_layout, evaluate_label_images
    from instatrack.metrics.matching import Overlap, iou_matrix, match_iou, overlap_matrix


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
