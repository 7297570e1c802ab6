"""The run folder: everything needed to reload, resume or inspect a training run.

```
RUN/
  config.json      method name + every config field (reloads by itself)
  weights.pt       the weights used for inference (best validation score, else last)
  last.pt          weights at the end of training
  checkpoint.pt    model, optimiser, schedule, RNG states, step (for --resume)
  log.csv          one row per logged step (loss parts, lr, speed, validation)
  curves.png       training curves
  weights-1.pt ... an ensemble's further members (``members`` in config.json)
```
A pretrained model shipped in the package (:mod:`instatrack.pretrained`) is a
folder of the same layout without the training files; it opens read-only.
Files are written atomically (temporary file + rename) so an interruption never
leaves a half-written checkpoint behind, and read without unpickling arbitrary
objects. :class:`Run` is the one owner of this layout.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from instatrack.errors import ConfigError, DataError
from instatrack.pretrained import is_shipped, locate

CONFIG = "config.json"
WEIGHTS = "weights.pt"
LAST = "last.pt"
CHECKPOINT = "checkpoint.pt"
LOG = "log.csv"
CURVES = "curves.png"
#: an ensemble's further members: weights-1.pt, weights-2.pt, ...
MEMBER = "weights-{}.pt"
MEMBER_RE = re.compile(r"weights-[1-9][0-9]*\.pt")
#: entries every checkpoint has
CHECKPOINT_KEYS = ("step", "best", "model", "optimiser", "schedule", "sampler", "torch_rng")


class Run:
    """One run folder: the only code that opens, creates, loads and resumes one.

    ``Run.create`` starts a new run (``config.json`` written), ``Run.open``
    reads an existing one; both give the method class, its config and the
    metadata (training data). Weights and checkpoints are written atomically
    and read without unpickling arbitrary Python objects (``torch.load`` with
    ``weights_only=True``), so a run folder from elsewhere cannot run code.

    A run is *started* once it holds weights or a checkpoint. A folder with only
    ``config.json`` (+ ``log.csv``) is a run that failed or was stopped before its
    first checkpoint: there is nothing to resume, and a new run may replace it.

    ``data``: the dataset folder(s) it was trained on (a list when several);
    ``init``: the model or run whose weights it started from (``--init``), or
    None; ``members``: an ensemble's weights files after ``weights.pt``
    (:meth:`create_ensemble`), empty for one network. A ``read_only`` run (a shipped
    model) refuses every write.
    """

    def __init__(self, path: Path, method_cls: type, config: Any,
                 data: str | list[str] | None = None, init: str | None = None,
                 read_only: bool = False, members: Sequence[str] = ()):
        self.path = Path(path)
        self.method_cls = method_cls
        self.config = config
        self.data = data
        self.init = init
        self.read_only = read_only
        self.members = tuple(members)

    # -- opening and creating ----------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> Run:
        """The run in ``path``; one-line :class:`DataError` if it is not a readable run."""
        from instatrack.methods import get_method

        config_path = Path(path) / CONFIG
        values = _read_config_json(config_path)
        try:
            method_cls = get_method(values.pop("method"))
        except ConfigError as err:
            raise DataError(f"{config_path}: {err}") from None
        # like the method, these describe the run; they are not settings
        data, init = values.pop("data", None), values.pop("init", None)
        members = values.pop("members", [])
        if not (isinstance(members, list) and all(
                isinstance(m, str) and MEMBER_RE.fullmatch(m) for m in members)):
            raise DataError(f"{config_path}: members must be a list of file names like "
                            f"weights-1.pt, got {members!r}")
        try:
            config = method_cls.config_cls.from_dict(values, where=str(config_path))
        except ConfigError as err:  # not every message names the file
            if str(config_path) in str(err):
                raise
            raise ConfigError(f"{config_path}: {err}") from None
        return cls(Path(path), method_cls, config, data, init, read_only=is_shipped(path),
                   members=members)

    @classmethod
    def resolve(cls, name_or_path: str | Path) -> Run:
        """The run folder ``name_or_path``, or else the shipped model of that name.

        An existing path wins over a name; neither gives a one-line
        :class:`DataError` listing the shipped models.
        """
        return cls.open(locate(name_or_path))

    @classmethod
    def find(cls, path: str | Path) -> Run | None:
        """The run in ``path``, or None when ``path`` holds no run (no config.json)."""
        return cls.open(path) if (Path(path) / CONFIG).is_file() else None

    @classmethod
    def create(cls, path: str | Path, method_cls: type, config: Any,
               data: str | Path | Sequence[str | Path] | None = None,
               init: str | None = None, members: Sequence[str] = ()) -> Run:
        """Start a new run in ``path``: refuse a started run, replace an unstarted one."""
        path = Path(path)
        check_new(path)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path, method_cls, config, data_record(data), init, members=members)
        run.save_config(config)
        return run

    @classmethod
    def create_ensemble(cls, path: str | Path, sources: Sequence[Run]) -> Run:
        """A new run in ``path`` whose members are the weights of ``sources`` (runs or
        shipped models: trainings of one recipe, e.g. different seeds), in order.

        The members must share the method and every key that built the network or
        reads its input; the ensemble takes the first's config (its post-processing
        values: calibrate the ensemble for its own) and every source's training data;
        ``init`` records the sources.
        """
        from instatrack.finetune import network_differences

        if len(sources) < 2:
            raise ConfigError("an ensemble needs two or more runs or models")
        first = sources[0]
        if not first.method_cls.ensembles:
            from instatrack.methods import REGISTRY, get_method

            able = [name for name in REGISTRY if get_method(name).ensembles]
            raise ConfigError(f"{first.method} does not combine networks; ensembles are for "
                              f"{' and '.join(able)}")
        for source in sources:
            if source.members:
                raise ConfigError(f"{source.path}: is an ensemble already; list its trainings")
        for other in sources[1:]:
            if other.method != first.method:
                raise ConfigError(f"{other.path}: a {other.method} model; the first member, "
                                  f"{first.path}, is {first.method}")
            # what a fine-tuning could not change (network, input), and the input scale
            differ = network_differences(first.config, other.config,
                                         also=("rescale", "object_size"))
            if differ:
                raise ConfigError(f"{other.path}: {', '.join(differ)} differ from the first "
                                  f"member, {first.path} (members share one network and input)")
        data: list[str] = []
        for source in sources:
            for item in [source.data] if isinstance(source.data, str) else source.data or []:
                if item not in data:
                    data.append(item)
        names = [WEIGHTS, *(MEMBER.format(i) for i in range(1, len(sources)))]
        states = [source.load_weights() for source in sources]  # checked before writing
        run = cls.create(path, first.method_cls, first.config, data=data or None,
                         init=", ".join(source.reference for source in sources),
                         members=names[1:])
        # weights.pt last: it marks the run as started, so all members are in by then
        for name, state in reversed(list(zip(names, states, strict=True))):
            run.save_weights(state, name)
        return run

    def save_config(self, config: Any, data: str | Path | Sequence[str | Path] | None = None
                    ) -> None:
        """Write ``config.json`` (method, training data, init, every config field)."""
        self._check_writable()
        self.config = config
        if data is not None:
            self.data = data_record(data)
        tmp = self.path / (CONFIG + ".tmp")
        config.save(tmp, **self.metadata)
        os.replace(tmp, self.path / CONFIG)

    # -- what the folder holds ----------------------------------------------------------------
    @property
    def method(self) -> str:
        return self.method_cls.name

    @property
    def metadata(self) -> dict[str, Any]:
        """The entries of ``config.json`` that describe the run: ``method``, ``data``,
        for a run started from another model's weights ``init``, and for an ensemble
        ``members``."""
        extra: dict[str, Any] = {"method": self.method, "data": self.data}
        if self.init is not None:
            extra["init"] = self.init
        if self.members:
            extra["members"] = list(self.members)
        return extra

    @property
    def reference(self) -> str:
        """How a run started from this one records it: a shipped model's name, else the path."""
        return self.path.name if self.read_only else str(self.path.resolve())

    @property
    def has_checkpoint(self) -> bool:
        return (self.path / CHECKPOINT).is_file()

    @property
    def is_started(self) -> bool:
        return _is_started(self.path)

    def file(self, name: str) -> Path:
        return self.path / name

    def log(self, resume_step: int | None = None) -> LogWriter:
        """The run's ``log.csv``: a new one, or the old one up to ``resume_step``."""
        self._check_writable()
        return LogWriter(self.path / LOG, resume_step=resume_step)

    # -- weights and checkpoints --------------------------------------------------------------
    def save_weights(self, state: dict[str, Any], name: str = WEIGHTS) -> None:
        self._check_writable()
        atomic_save(state, self.path / name)

    @property
    def weight_files(self) -> list[str]:
        """``weights.pt`` and an ensemble's further members."""
        return [WEIGHTS, *self.members]

    def copy_weights(self, folder: str | Path) -> None:
        """Copy :attr:`weight_files` into ``folder`` (another run of the same network)."""
        for name in self.weight_files:
            atomic_save(self.load_weights(name), Path(folder) / name)

    def load_weights(self, name: str = WEIGHTS, device: Any = "cpu") -> dict[str, Any]:
        """The state dict in ``name`` (``weights.pt`` or ``last.pt``)."""
        import torch

        path = self.path / name
        state = load_safely(path, device)
        if not isinstance(state, Mapping) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
            raise DataError(f"{path}: holds a {type(state).__name__}, not a model's named "
                            f"weights (a state dict)")
        return dict(state)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write ``checkpoint.pt``: everything :func:`instatrack.train.resume` needs."""
        self._check_writable()
        atomic_save(state, self.path / CHECKPOINT)

    def _check_writable(self) -> None:
        if self.read_only:
            raise ConfigError(f"{self.path.name} is a shipped model and is not changed; "
                              f"fine-tune it into a new run with `instatrack train --init "
                              f"{self.path.name} --data ...`")

    def load_checkpoint(self, device: Any = "cpu") -> dict[str, Any]:
        self._check_writable()  # a checkpoint is read only to continue writing the run
        path = self.path / CHECKPOINT
        if not path.is_file():
            if self.is_started:
                raise DataError(f"{self.path}: no checkpoint.pt to resume from")
            raise DataError(f"{self.path}: the run stopped before its first checkpoint, so "
                            f"there is nothing to resume; start it again with the same --out")
        state = load_safely(path, device)
        missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, Mapping) or k not in state]
        if missing:
            raise DataError(f"{path}: not a training checkpoint (no {', '.join(missing)})")
        return state

    def load_model(self, device: Any = "cpu", weights: str = WEIGHTS,
                   overrides: Sequence[str] = ()):
        """``(method, model)`` ready for inference, the model in eval mode on ``device``.

        ``overrides`` (``key=value``) change the saved config, e.g. clustering
        settings at inference; keys that shape the network must not change. An
        ensemble (``members``) gives an :class:`~instatrack.models.ensemble.Ensemble` of
        its ``weights.pt`` and members; it has no ``last.pt``.
        """
        from instatrack.models.ensemble import Ensemble

        method = self.method_cls(self.config.with_post_processing(overrides))
        names = [weights]
        if self.members and not self.method_cls.ensembles:
            raise DataError(f"{self.path / CONFIG}: lists members, but {self.method} does "
                            f"not combine networks")
        if self.members:
            if weights != WEIGHTS:
                raise DataError(f"{self.path}: an ensemble has {WEIGHTS} and its members "
                                f"only, not {weights}")
            names = self.weight_files
        models = []
        for name in names:
            model = method.build_model()
            try:
                model.load_state_dict(self.load_weights(name, device))
            except RuntimeError as err:
                first = str(err).splitlines()[0]
                raise DataError(f"{self.path / name}: weights do not fit the config ({first})") \
                    from None
            models.append(model)
        model = models[0] if len(models) == 1 else Ensemble(models)
        return method, model.to(device).eval()


def load_model(run_dir: str | Path, device: Any = "cpu", weights: str = WEIGHTS,
               overrides: Sequence[str] = ()):
    """``(method, model)`` of the run in ``run_dir`` (or of the shipped model of that name):
    ``Run.resolve(run_dir).load_model(...)``."""
    return Run.resolve(run_dir).load_model(device, weights, overrides)


def data_record(data: str | Path | Sequence[str | Path] | None) -> str | list[str] | None:
    """``data`` as ``config.json`` records it: one folder as a string, several as a list."""
    if data is None or isinstance(data, (str, Path)):
        return None if data is None else str(data)
    folders = [str(d) for d in data]
    return folders[0] if len(folders) == 1 else folders


def check_new(path: Path) -> None:
    """Raise :class:`ConfigError` unless a new run may be written to ``path``."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path}: exists and is not a folder; choose another --out")
    if _is_started(path):
        hint = f"resume it with --resume {path} or " if (path / CHECKPOINT).is_file() else ""
        raise ConfigError(f"{path} already holds a run; {hint}choose another --out")


def _is_started(path: Path) -> bool:
    return any((path / name).is_file() for name in (CHECKPOINT, WEIGHTS, LAST))


def _read_config_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: not a run folder (config.json missing)")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: corrupt config ({err.msg} at line {err.lineno})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({type(err).__name__}: {err})") from None
    if not isinstance(values, dict):
        raise DataError(f"{path}: corrupt config (a JSON {type(values).__name__}, not an object)")
    if not isinstance(values.get("method"), str):
        raise DataError(f"{path}: no 'method' name")
    return values


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename over ``path``."""
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_safely(path: Path, device: Any = "cpu") -> Any:
    """``torch.load`` that only rebuilds tensors, numbers, strings and containers.

    A file that asks for anything else (a pickled object with ``__reduce__``)
    is refused before any of it runs.
    """
    import pickle

    import torch

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f" ({found.group(1)})" if found else ""
        raise DataError(f"{path}: refused to load: it holds Python objects{what}, not only "
                        f"tensors and numbers, and loading them could run code") from None
    except Exception as err:  # torch raises many kinds for corrupt files
        first = str(err).splitlines()[0] if str(err) else ""
        raise DataError(f"{path}: cannot read ({type(err).__name__}: {first})") from None


class LogWriter:
    """Append-only CSV of logged rows; keeps the rows in memory for plots.

    On resume the rows after the checkpoint's step are dropped, so the log of
    an interrupted and resumed run is continuous.
    """

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = path
        self.rows: list[dict[str, float]] = []
        if resume_step is not None and path.is_file():
            with path.open(newline="") as handle:
                self.rows = [{k: float(v) for k, v in row.items() if v != ""}
                             for row in csv.DictReader(handle)]
            self.rows = [r for r in self.rows if r["step"] <= resume_step]
        self._rewrite()

    def append(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        self._rewrite()

    def _rewrite(self) -> None:
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys or ["step"])
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)
