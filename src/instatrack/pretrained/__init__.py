"""Pretrained models shipped inside the package: what ``instatrack models`` lists.

Each model is one folder here, named by the model's name::

    pretrained/NAME/
      config.json     method + every config field, as in a run folder (a Run opens it)
      weights.pt      the weights: a state dict, loaded with ``weights_only=True``
      weights-1.pt    an ensemble's further members, if any (``members`` in config.json)
      model.json      what the listing shows: purpose, scores, training data, terms
      MODEL_CARD.md   training data and its terms, recipe, the command that
                      reproduces it, scores, intended use, known limits

Adding a model is dropping its folder here; ``benchmarks/train_shipped.py
--install RUN`` writes one from a finished run (:func:`write_model`). Nothing is
downloaded, ever. The folders are only read: a shipped model opens as a
read-only :class:`~instatrack.runs.Run`, and fine-tuning it (``instatrack train
--init NAME``) writes a new run elsewhere.

``model.json``::

    {"purpose": "fluorescent nuclei and cells in 2D time-lapses",
     "scores": {"SIM+ 01 t45-64 SEG": 0.88, ...},
     "training_data": ["Fluo-N2DH-SIM+ 01, frames 0-29", ...],
     "terms": "CTC conditions of use: ..."}

The method and the training object size are read from ``config.json``, which
owns them.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from instatrack.errors import DataError

if TYPE_CHECKING:
    from instatrack.runs import Run

#: the folder scanned for models (a module constant so that tests can point it elsewhere)
ROOT = Path(__file__).resolve().parent
INFO = "model.json"
CARD = "MODEL_CARD.md"
#: what a model's name may look like (it is also a folder name)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclasses.dataclass(frozen=True)
class ShippedModel:
    """One installed model. ``object_size``: median diameter in pixels of the objects
    it was trained on (0 when not recorded); ``size_mb``: its folder on disk."""

    name: str
    path: Path
    method: str
    purpose: str
    object_size: float
    scores: dict[str, float]
    training_data: tuple[str, ...]
    terms: str
    size_mb: float


def available() -> list[ShippedModel]:
    """Every model installed in :data:`ROOT`, by name."""
    if not ROOT.is_dir():
        return []
    return [read(folder) for folder in sorted(ROOT.iterdir())
            if NAME_RE.match(folder.name) and (folder / INFO).is_file()]


def names() -> list[str]:
    return [model.name for model in available()]


def find(name: str) -> ShippedModel | None:
    """The installed model called ``name``, or None."""
    if not NAME_RE.match(name):
        return None
    folder = ROOT / name
    return read(folder) if (folder / INFO).is_file() else None


def locate(name_or_path: str | Path) -> Path:
    """The folder of a run or shipped model: an existing path wins over a model's name.

    Raises a one-line :class:`DataError` listing the shipped models when
    ``name_or_path`` is neither.
    """
    path = Path(name_or_path)
    if path.exists():
        return path
    model = find(str(name_or_path))
    if model is not None:
        return model.path
    shipped = ", ".join(names()) or "none installed"
    raise DataError(f"{name_or_path}: no such run folder, nor a shipped model of that name "
                    f"(shipped models: {shipped}; see `instatrack models`)")


def is_shipped(folder: str | Path) -> bool:
    """Whether ``folder`` is a model folder inside :data:`ROOT` (opened read-only)."""
    folder = Path(folder).resolve()
    return folder.parent == ROOT.resolve() and (folder / INFO).is_file()


def read(folder: Path) -> ShippedModel:
    """The model in ``folder``; :class:`DataError` naming the file that is broken."""
    from instatrack.data.rescale import diameter
    from instatrack.runs import CONFIG

    info = _read_json(folder / INFO)
    config = _read_json(folder / CONFIG)
    purpose, scores = info.get("purpose"), info.get("scores", {})
    if not isinstance(purpose, str):
        raise DataError(f"{folder / INFO}: needs a 'purpose' (text)")
    if not isinstance(scores, Mapping) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()):
        raise DataError(f"{folder / INFO}: 'scores' must map names to numbers")
    if not isinstance(config.get("method"), str):
        raise DataError(f"{folder / CONFIG}: no 'method' name")
    area = config.get("instance_area", [0, 0])
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return ShippedModel(
        name=folder.name, path=folder, method=config["method"], purpose=purpose,
        object_size=round(diameter(float(area[1])), 1) if len(area) == 2 else 0.0,
        scores={str(k): float(v) for k, v in scores.items()},
        training_data=tuple(str(d) for d in info.get("training_data", ())),
        terms=str(info.get("terms", "")), size_mb=round(size / 1e6, 2))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read ({type(err).__name__}: {err})") from None
    if not isinstance(values, dict):
        raise DataError(f"{path}: expected a JSON object")
    return values


def write_model(run: Run, folder: str | Path, purpose: str, scores: Mapping[str, float],
                training_data: Sequence[str], terms: str, card: str,
                weights: str = "weights.pt") -> ShippedModel:
    """Write the model folder ``folder`` from the finished ``run``.

    ``config.json`` is the run's, with the training data described by
    ``training_data`` instead of paths on the machine that trained it;
    ``weights`` (the run's best or last weights) becomes ``weights.pt``. The
    folder appears, or replaces an existing one, only once it is complete.
    """
    from instatrack.data.output import Outputs
    from instatrack.runs import CONFIG, WEIGHTS

    folder = Path(folder)
    if not NAME_RE.match(folder.name):
        raise DataError(f"{folder.name!r}: a model name is letters, digits, '.', '_', '-'")
    names = {weights: WEIGHTS, **{m: m for m in run.members}}  # an ensemble's members too
    for name in names:
        run.load_weights(name)  # refuses a file that is not a plain state dict
    extra = {"method": run.method, "data": list(training_data)}
    if run.init is not None:
        extra["init"] = run.init
    if run.members:
        extra["members"] = list(run.members)
    info = {"purpose": purpose, "scores": {k: round(float(v), 4) for k, v in scores.items()},
            "training_data": list(training_data), "terms": terms}
    with Outputs(overwrite=True) as outputs:
        staging = outputs.folder(folder)
        run.config.save(staging / CONFIG, **extra)
        for name, target in names.items():
            shutil.copyfile(run.file(name), staging / target)
        (staging / INFO).write_text(json.dumps(info, indent=2) + "\n")
        (staging / CARD).write_text(card)
    return read(folder)
