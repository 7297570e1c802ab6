"""The run folder: everything needed to reload, resume or inspect a training run.

```
RUN/
  config.json      method name + every config field (reloads by itself)
  weights.pt       the weights used for inference (best validation score, else last)
  last.pt          weights at the end of training
  checkpoint.pt    model, optimiser, schedule, RNG states, step (for --resume)
  log.csv          one row per logged step (loss parts, lr, speed, validation)
  curves.png       training curves
```
Files are written atomically (temporary file + rename) so an interruption never
leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from instatrack.errors import ConfigError, DataError

CONFIG = "config.json"
WEIGHTS = "weights.pt"
LAST = "last.pt"
CHECKPOINT = "checkpoint.pt"
LOG = "log.csv"
CURVES = "curves.png"
#: entries of config.json that describe the run rather than configure the method
METADATA = ("data",)


def read_run_config(run_dir: str | Path):
    """``(method_class, config)`` stored in ``run_dir/config.json``."""
    from instatrack.methods import get_method

    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise DataError(f"{path}: not a run folder (config.json missing)")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: corrupt config ({err.msg} at line {err.lineno})") from None
    if "method" not in values:
        raise DataError(f"{path}: no 'method' key")
    method_cls = get_method(values.pop("method"))
    for key in METADATA:
        values.pop(key, None)
    return method_cls, method_cls.config_cls.from_dict(values, where=str(path))


def read_run_metadata(run_dir: str | Path) -> dict[str, Any]:
    """The non-config entries of ``config.json``: ``method`` and ``data`` (the training data)."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise DataError(f"{path}: not a run folder (config.json missing)")
    values = json.loads(path.read_text())
    return {key: values.get(key) for key in ("method", *METADATA)}


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename over ``path``."""
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_torch(path: Path, device: Any = "cpu") -> Any:
    import torch

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as err:  # torch raises many kinds for corrupt files
        raise DataError(f"{path}: cannot read ({type(err).__name__}: {err})") from None


def load_model(run_dir: str | Path, device: Any = "cpu", weights: str = WEIGHTS,
               overrides: Sequence[str] = ()):
    """``(method, model)`` ready for inference from a run folder.

    ``overrides`` (``key=value``) change post-processing settings of the saved
    config, e.g. clustering settings; other keys are refused (ConfigError).
    """
    method_cls, config = read_run_config(run_dir)
    method = method_cls(config.with_post_processing(overrides))
    model = method.build_model()
    state = load_torch(Path(run_dir) / weights, device)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise DataError(f"{Path(run_dir) / weights}: weights do not fit the config ({first})") \
            from None
    return method, model.to(device).eval()


def prepare_run_dir(out: Path, resume: bool) -> None:
    """Create ``out`` for a new run, refusing to overwrite an earlier run."""
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise DataError(f"{out}: no checkpoint.pt to resume from")
        return
    if (out / CONFIG).exists():
        raise ConfigError(
            f"{out} already holds a run; resume it with --resume {out} or choose another --out")
    out.mkdir(parents=True, exist_ok=True)


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
