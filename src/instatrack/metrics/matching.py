"""Pixel overlaps between two label images and one-to-one IoU matching.

They live in :mod:`instatrack.labels`, below both the measures and the tracker,
which match objects the same way; the measures import them from here.
"""

from instatrack.labels import (
    IGNORE,
    Overlap,
    check_label_pair,
    iou_from_overlap,
    iou_matrix,
    majority_matches,
    match_from_iou,
    match_iou,
    overlap_matrix,
)

__all__ = ["IGNORE", "Overlap", "check_label_pair", "iou_from_overlap", "iou_matrix",
           "majority_matches", "match_from_iou", "match_iou", "overlap_matrix"]
