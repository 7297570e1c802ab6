"""Several networks of one architecture, run side by side at inference.

Trainings of one recipe that differ only in their seed disagree on data none of them
saw (docs/results.md: three `nuclei-ch` trainings scored SEG 0.40-0.64 on one MSC
window). Run together, the method combines their outputs as it combines the views of
test-time flips: spatial-embedding averages offsets, sigmas and seeds; cosine-hourglass
joins the unit embeddings so that a cosine is the mean of the members' cosines;
spatial-propagation fits each member's heads to frame 0 and averages their per-object
scores. An
ensemble is a run folder with more than one weights file (:class:`instatrack.runs.Run`,
``members``); ``instatrack ensemble`` makes one.
"""

from __future__ import annotations

import torch


class Ensemble(torch.nn.ModuleList):
    """The members, in order; the first is the run's ``weights.pt``."""


def members(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The networks behind ``model``: an :class:`Ensemble`'s members, or ``[model]``."""
    return list(model) if isinstance(model, Ensemble) else [model]
