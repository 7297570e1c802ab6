"""THE training loop, shared by every method.

A method contributes its model (``build_model``), its loss (``loss``) and its
inference (``predict``, used for the validation score); everything else lives
here once: sampling clips, the optimiser and learning-rate schedule, mixed
precision and ``torch.compile`` on CUDA, logging, validation, checkpoints
that resume exactly (:func:`resume`; Ctrl-C stops between two steps, so the
checkpoint it writes is exact too), and the run folder (:class:`instatrack.runs.Run`).

A run may start from another model's weights and config instead of a random
network (``init``: a shipped model's name or a run folder): the fine-tuning of
``instatrack train --init``; :mod:`instatrack.finetune` says which keys may then
differ from the init model's config.
"""

from __future__ import annotations

import copy
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from instatrack import finetune, runs
from instatrack.config import TrainConfig, parse_slice
from instatrack.data.rescale import rescaled, to_object_size
from instatrack.errors import ConfigError, DataError, InstatrackError
from instatrack.methods import get_method
from instatrack.methods.base import Method, uses_amp, with_precision

Progress = Callable[[int, int, dict[str, float]], None]
#: one dataset folder or several
Data = str | Path | Sequence[str | Path]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training; the message says what was kept and how to continue."""


def train(method: str | None, data: Data, out: str | Path, config: TrainConfig | None = None,
          progress: bool | Progress = True, device: str | torch.device | None = None,
          init: str | Path | runs.Run | None = None) -> Path:
    """Train ``method`` on the dataset(s) at ``data`` into the new run folder ``out``.

    ``data``: one dataset folder or several (their sequences are trained on
    together). ``config`` defaults to the method's ``fast`` preset. ``out`` must
    not hold a started run (continue one with :func:`resume`). ``init``: a
    shipped model's name or a run folder to start from, instead of random
    weights; ``method`` (None: the init's) must be its method and ``config``
    (default: :func:`~instatrack.finetune.init_config` of it) may differ from its config only in
    :func:`~instatrack.finetune.tunable_keys`. ``progress`` is True for a progress bar, False
    for silence, or a callable ``(step, total, metrics)`` (raising
    KeyboardInterrupt in it stops training like Ctrl-C does). Ctrl-C stops at
    the end of the current step, writes a checkpoint there and raises
    :class:`TrainingInterrupted`. Returns the run folder.
    """
    from instatrack.data import open_grouped

    start = None if init is None else init if isinstance(init, runs.Run) else \
        runs.Run.resolve(init)
    if start is not None:
        method = finetune.method_of(start, method)
        config = config if config is not None else finetune.init_config(start)
    method_cls = get_method(method)
    runs.check_new(Path(out))
    sequences, groups = open_grouped(data)
    config = config if config is not None else method_cls.config_cls.build("fast")
    config = config.replace(rescale=_rescale(config, sequences, start))
    sequences = _resized(config, sequences)
    config, sampler = _fit_to_data(method_cls, config, sequences, groups)
    if progress is True and config.synthetic_share > 0:
        print(_synthetic_notice(config), file=sys.stderr)
    weights = None
    if start is not None:
        finetune.check_fits_init(config, start)
        weights = start.load_weights()
    # created only now, so that bad data or a bad config leave no run folder behind
    run = runs.Run.create(out, method_cls, config, data=_resolved(data),
                          init=None if start is None else start.reference)
    return _fit(run, sequences, sampler, None, progress, device, weights)


def resume(run: str | Path | runs.Run, steps: int | None = None, data: Data | None = None,
           progress: bool | Progress = True, device: str | torch.device | None = None) -> Path:
    """Continue ``run`` from its checkpoint with its saved config, exactly as if it
    had never stopped. ``steps`` changes the number of training steps; ``data``
    the dataset(s) (default: those the run was trained on). Returns the run folder.
    """
    from instatrack.data import open_grouped

    run = run if isinstance(run, runs.Run) else runs.Run.open(run)
    checkpoint = run.load_checkpoint()
    data = data if data else run.data
    if not data:
        raise ConfigError(f"{run.file(runs.CONFIG)}: does not say which data the run was "
                          f"trained on; pass --data")
    config = run.config if steps is None else run.config.replace(steps=steps)
    sequences, groups = open_grouped(data)
    sequences = _resized(config, sequences)
    config, sampler = _fit_to_data(run.method_cls, config, sequences, groups)
    run.save_config(config, data=_resolved(data))
    return _fit(run, sequences, sampler, checkpoint, progress, device)


def train_or_resume(method: str | None, data: Data, out: str | Path,
                    config: TrainConfig | None = None, steps: int | None = None,
                    progress: bool | Progress = True,
                    init: str | Path | runs.Run | None = None) -> Path:
    """Continue the run ``out`` if it has started, else start it (from ``init``, see
    :func:`train`).

    For commands that pick up where they were stopped (the demo, the benchmark
    scripts): a new run uses ``config``; a started one keeps its saved config
    (only ``steps``, if given, changes) and continues from its checkpoint, and
    one with weights but no checkpoint counts as finished and is left as it is.
    """
    run = runs.Run.find(out)
    if run is not None and run.is_started:
        if method is not None and run.method != method:
            raise ConfigError(f"{out} was trained with {run.method}, not {method}")
        if not run.has_checkpoint:
            return run.path
        return resume(run, steps=steps, data=data, progress=progress)
    if steps and init is None:
        config = (config or get_method(method).config_cls.build("fast")).replace(steps=steps)
    elif steps:
        start = init if isinstance(init, runs.Run) else runs.Run.resolve(init)
        config = (config or finetune.init_config(start)).replace(steps=steps)
    return train(method, data, out, config=config, progress=progress, init=init)


def _resolved(data: Data) -> Path | list[Path]:
    if isinstance(data, (str, Path)):
        return Path(data).resolve()
    return [Path(d).resolve() for d in data]


def _fit(run: runs.Run, sequences, sampler, checkpoint: dict[str, Any] | None,
         progress: bool | Progress, device: str | torch.device | None,
         init_weights: dict[str, torch.Tensor] | None = None) -> Path:
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    session = _Session(run, sequences, sampler, checkpoint, device, init_weights)
    total = run.config.steps
    trained = session.state.step < total  # else a finished run resumed: it was calibrated
    bar = _progress_bar(progress, session.state.step, total)
    try:
        with _StopRequest() as stop:
            for step in range(session.state.step + 1, total + 1):
                row = session.step(step)
                if row is not None:
                    stop.call(_report, bar, progress, step, total, row)
                if stop.requested and step < total:
                    if session.state.saved != step:
                        session.checkpoint()
                    raise TrainingInterrupted(
                        f"training stopped after step {step}, checkpoint saved; continue with "
                        f"`instatrack train --resume {run.path}`")
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:
        raise TrainingInterrupted(_stopped_at_once(run, session.state)) from None
    finally:
        if bar is not None:
            bar.close()
    session.finish()
    if run.config.calibrate and session.validator.items and (trained or not calibrated(run)):
        _calibrate(run, device, progress)
    elif run.config.calibrate and progress is True:
        print("no validation frames (val_frames): post-processing keeps the config's values; "
              "give some to have them chosen on data (instatrack.calibrate)", file=sys.stderr)
    return run.path


def calibrated(run: runs.Run) -> bool:
    """Whether ``run`` holds the record of a calibration (:mod:`instatrack.calibrate`)."""
    from instatrack.calibrate import CALIBRATION_FILE

    return run.file(CALIBRATION_FILE).is_file()


def _calibrate(run: runs.Run, device: torch.device, progress: bool | Progress) -> None:
    """Post-processing chosen on the validation frames (:mod:`instatrack.calibrate`),
    with a bar and a one-line summary when ``progress`` is True."""
    from instatrack.calibrate import (
        CALIBRATION_FILE,
        ProgressBar,
        calibrate,
        describe,
        frames_scored,
    )

    bar = ProgressBar(enabled=progress is True)
    try:
        record = calibrate(run, device=device, progress=bar)
    finally:
        bar.close()
    if record is not None and progress is True:
        chosen = ", ".join(f"{k}={v}" for k, v in record["chosen"].items())
        print(f"post-processing chosen on {frames_scored(record)}: {chosen} "
              f"({describe(record)}; {run.file(CALIBRATION_FILE)})", file=sys.stderr)


def _stopped_at_once(run: runs.Run, state: _LoopState) -> str:
    if state.saved is None:
        return (f"training stopped at once after step {state.step}, before its first "
                f"checkpoint: nothing to resume; start it again with --out {run.path}")
    return (f"training stopped at once after step {state.step}; the checkpoint of step "
            f"{state.saved} is kept; continue with `instatrack train --resume {run.path}`")


class _StopRequest:
    """Turns Ctrl-C during training into a request to stop at the end of the step.

    Stopping between steps is what makes the checkpoint written then exact: the
    model, the optimiser, the schedule and every random generator are at the same
    step. A second Ctrl-C raises KeyboardInterrupt at once (the last checkpoint is
    kept). Only the main thread's default handler is replaced, and only meanwhile.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self) -> _StopRequest:
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _on_sigint(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        # a notice for the person pressing it; logs get the final message
        if sys.stderr is not None and sys.stderr.isatty():
            print("\nCtrl-C: stopping after this step (press again to stop at once)",
                  file=sys.stderr, flush=True)

    def call(self, fn: Callable[..., None], *args: Any) -> None:
        """``fn(*args)``; a KeyboardInterrupt raised in it becomes a stop request."""
        try:
            fn(*args)
        except KeyboardInterrupt:
            self.requested = True


# -- configuration --------------------------------------------------------------------------------
def _fit_to_data(method_cls: type[Method], config: TrainConfig, sequences,
                 groups: list[int] | None = None):
    """``(config, sampler)``: the config completed from the data, and the clip sampler
    (``groups``: the dataset folder of each sequence, for ``data_balance`` and
    ``data_weights``) over ``sequences`` and, at ``synthetic_share``, the synthetic ones."""
    from instatrack.data.augment import AcquisitionSettings
    from instatrack.data.normalize import Norm
    from instatrack.data.sampler import ClipSampler

    folders = 1 if groups is None else max(groups) + 1
    if config.data_weights and len(config.data_weights) != folders:
        raise ConfigError(f"data_weights: {len(config.data_weights)} value(s) "
                          f"({','.join(map(str, config.data_weights))}) for {folders} --data "
                          f"folder(s); give one per folder, in their order")
    config = _fit_config_to_data(method_cls, config, sequences)
    synthetic = _synthetic(config)
    groups = [0] * len(sequences) if groups is None else list(groups)
    frames = parse_slice(config.train_frames)
    sampler = ClipSampler([*sequences, *synthetic], clip_len=config.clip_len, crop=config.crop,
                          frames=[frames] * len(sequences) + [None] * len(synthetic),
                          augment=config.augment, norm=Norm.of(config), seed=config.seed,
                          object_bias=config.crop_object_bias,
                          reach_border=config.crops_reach_border,
                          acquisition=AcquisitionSettings.of(config),
                          groups=groups + [folders] * len(synthetic), balance=config.data_balance,
                          weights=config.data_weights or None,
                          share=(folders, config.synthetic_share) if synthetic else None)
    if max(config.instance_area) <= 0:  # the size of the user's objects, not the synthetic
        config = config.replace(instance_area=sampler.instance_areas(range(len(sequences))))
    return config, sampler


def _synthetic_notice(config: TrainConfig) -> str:
    if config.in_channels != 1:
        return (f"synthetic_share={config.synthetic_share:g} not used: the synthetic nuclei are "
                f"grey, the data has {config.in_channels} channels")
    return (f"{config.synthetic_share:.0%} of the training clips are randomised synthetic "
            f"nuclei (synthetic_share; --set synthetic_share=0 trains on the data alone)")


def _synthetic(config: TrainConfig) -> list:
    """The randomised synthetic sequences ``synthetic_share`` mixes in (none for data of
    other than one channel: they are grey nuclei), at the run's ``object_size`` if set."""
    from instatrack.data.synth_random import TRAINING_SIZE, training_sequences

    if config.synthetic_share <= 0 or config.in_channels != 1:
        return []
    size = tuple(max(c, s) for c, s in zip(config.crop, TRAINING_SIZE, strict=True))
    synthetic = training_sequences(frames=max(4, config.clip_len), size=size)
    return to_object_size(synthetic, config.object_size) if config.object_size > 0 else synthetic


def _rescale(config: TrainConfig, sequences, start: runs.Run | None) -> float:
    """The ``rescale`` of a new run: the config's, else the init model's object size over
    the data's (1 when either is unknown or they agree within rescale.TOLERANCE, or when
    ``object_size`` resizes each sequence by itself)."""
    from instatrack.data.rescale import data_object_size, diameter, scale_for

    if config.rescale > 0:
        return config.rescale
    if config.object_size > 0:
        return 1.0
    trained = diameter(start.config.instance_area[1]) if start is not None else 0.0
    size = data_object_size(sequences) if trained > 0 else None
    return 1.0 if size is None else scale_for(size, trained)


def _resized(config: TrainConfig, sequences) -> list:
    """The training sequences at the run's object size (``object_size``, per sequence)
    or resized by its ``rescale``."""
    if config.object_size > 0:
        return to_object_size(sequences, config.object_size)
    return rescaled(sequences, config.rescale or 1.0)


def _fit_config_to_data(method_cls: type[Method], config: TrainConfig, sequences) -> TrainConfig:
    """Channels come from the data; still images and non-recurrent methods train on T = 1."""
    channels = {seq.channels for seq in sequences}
    if len(channels) != 1:
        raise DataError(f"sequences have different channel counts {sorted(channels)}")
    clip_len = config.clip_len
    if not method_cls.temporal or not all(seq.is_video for seq in sequences):
        clip_len = 1
    return config.replace(in_channels=channels.pop(), clip_len=clip_len)


def _optimiser(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    kinds = {"adam": torch.optim.Adam, "nadam": torch.optim.NAdam, "adamw": torch.optim.AdamW}
    return kinds[config.optimizer](model.parameters(), lr=config.lr,
                                   weight_decay=config.weight_decay)


def _decay(config: TrainConfig) -> Callable[[int], float]:
    """Exponential decay from ``lr`` at step 0 to ``lr_final`` at the last step."""
    ratio = config.lr_final / config.lr
    return lambda step: ratio ** min(step / config.steps, 1.0)


def _compiled(model: torch.nn.Module, config: TrainConfig, device: torch.device):
    """The model to call in training steps: compiled on CUDA when asked for."""
    if config.compile and device.type == "cuda":
        return torch.compile(model)
    return model


# -- one step -------------------------------------------------------------------------------------
def _collate(samples: list[dict[str, np.ndarray]], device: torch.device) -> dict[str, torch.Tensor]:
    image = torch.from_numpy(np.stack([s["image"] for s in samples])).float()
    labels = torch.from_numpy(np.stack([s["labels"] for s in samples])).long()
    return {"image": image.to(device, non_blocking=True),
            "labels": labels.to(device, non_blocking=True)}


def _train_step(algo: Method, model: torch.nn.Module, batch: dict[str, torch.Tensor],
                optimiser: torch.optim.Optimizer, schedule, config: TrainConfig,
                device: torch.device) -> dict[str, float]:
    model.train()
    optimiser.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_amp(config, device)):
        loss, parts = algo.loss(model, batch)
    if not torch.isfinite(loss):
        raise InstatrackError(
            f"the loss became {loss.item()} — lower lr (now {optimiser.param_groups[0]['lr']:.2g})"
            " or check the data for empty or constant frames")
    loss.backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimiser.step()
    schedule.step()
    return {"loss": float(loss.detach()), **{k: float(v) for k, v in parts.items()}}


class _LoopState:
    """Step, running means of the loss parts between two log rows, speed, best score."""

    def __init__(self, start: int = 0, best: float = -math.inf, saved: int | None = None):
        self.step = start
        self.best = best
        self.saved = saved  # step of the last checkpoint, None before the first
        self._sums: dict[str, float] = {}
        self._count = 0
        self._since = time.perf_counter()

    def record(self, parts: dict[str, float]) -> None:
        for key, value in parts.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
        self._count += 1

    def flush(self, step: int, lr: float) -> dict[str, float]:
        elapsed = time.perf_counter() - self._since
        row = {"step": float(step), **{k: v / max(self._count, 1) for k, v in self._sums.items()},
               "lr": lr, "steps_per_s": self._count / max(elapsed, 1e-9)}
        self._sums, self._count, self._since = {}, 0, time.perf_counter()
        return row


# -- validation -----------------------------------------------------------------------------------
class _Validator:
    """Segments held-out frames with the method's own ``predict`` (in tiles where
    :func:`~instatrack.tiling.scene_tiled` says the method needs them; a tile also gets
    the run's post-processing, as at inference) and scores them with the CTC SEG measure
    (mean Jaccard of matched ground-truth objects)."""

    def __init__(self, algo: Method, sequences, config: TrainConfig, device: torch.device):
        from instatrack.calibrate import validation_frames

        self.algo, self.config, self.device = algo, config, device
        self.items: list[tuple[Any, list[int]]] = validation_frames(config, sequences)

    def due(self, step: int) -> bool:
        return bool(self.items) and (step % self.config.val_every == 0
                                     or step == self.config.steps)

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        from instatrack.api import Predictor
        from instatrack.data.normalize import Norm
        from instatrack.metrics.ctc import seg_frame
        from instatrack.tiling import scene_tiled

        total, count = 0.0, 0
        model.eval()
        for seq, frames in self.items:
            whole = Predictor(self.algo, model, self.device)
            tiled = scene_tiled(whole, seq.image(frames[0]).shape[:2])
            if tiled is not whole:  # a per-frame method that learnt scenes of its crop
                for t in frames:
                    if (gt := seq.labels(t)) is not None:
                        jaccard, n = seg_frame(gt, tiled.segment(seq.image(t)))
                        total, count = total + jaccard, count + n
                continue
            clips = [frames] if seq.is_video else [[t] for t in frames]
            for clip in clips:
                clip = list(range(clip[0], clip[-1] + 1))
                images = (Norm.of(self.config)(seq.image(t)) for t in clip)
                first = np.maximum(seq.labels(clip[0]), 0)
                done: set[int] = set()
                for window in self.algo.predict(model, images, self.device, first_masks=first):
                    for offset, labels in enumerate(window.labels):
                        t = clip[0] + window.start + offset
                        gt = seq.labels(t)
                        if t in done or gt is None:
                            continue
                        done.add(t)
                        jaccard, n = seg_frame(gt, labels)
                        total, count = total + jaccard, count + n
        model.train()
        return {"val_seg": total / max(count, 1)}


# -- one session ---------------------------------------------------------------------------------
class _Session:
    """The objects of one training session (a start or a resume) and what changes them."""

    def __init__(self, run: runs.Run, sequences, sampler, checkpoint: dict[str, Any] | None,
                 device: torch.device, init_weights: dict[str, torch.Tensor] | None = None):
        self.run, self.sampler, self.device = run, sampler, device
        self.config = config = run.config
        torch.manual_seed(config.seed)
        self.algo = run.method_cls(config)
        model = self.algo.build_model()
        if checkpoint is None and init_weights is not None:
            _load_init(model, init_weights, run.init)
        elif checkpoint is None:
            self.algo.initialise(model)
        self.model, _ = with_precision(model.to(device), config, device)
        self.average = _Average(self.model, config.ema) if config.ema > 0 else None
        self.optimiser = _optimiser(self.model, config)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimiser, _decay(config))
        self.state = _LoopState()
        if checkpoint is not None:
            try:
                self._restore(checkpoint)
            except (RuntimeError, KeyError, TypeError, ValueError) as err:
                first = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise DataError(f"{run.file(runs.CHECKPOINT)}: does not fit the run's config "
                                f"({first})") from None
        self.log = run.log(resume_step=None if checkpoint is None else self.state.step)
        self.step_fn = _compiled(self.model, config, device)
        self.validator = _Validator(self.algo, sequences, config, device)

    def step(self, step: int) -> dict[str, float] | None:
        """Train step ``step``; its log row when one is due. Checkpoints when due."""
        config = self.config
        batch = _collate([self.sampler.sample() for _ in range(config.batch_size)], self.device)
        parts = _train_step(self.algo, self.step_fn, batch, self.optimiser, self.schedule,
                            config, self.device)
        if self.average is not None:
            self.average.update(self.model, step)
        self.state.step = step
        self.state.record(parts)
        row = None
        if step % config.log_every == 0 or step == config.steps:
            row = self.state.flush(step, self.optimiser.param_groups[0]["lr"])
            if self.validator.due(step):
                row.update(self.validator(self.kept))
                if row["val_seg"] > self.state.best:
                    self.state.best = row["val_seg"]
                    if self.state.saved is None:  # weights.pt marks a started run
                        self.checkpoint()
                    self.run.save_weights(self.kept.state_dict())
            self.log.append(row)
        if step % config.ckpt_every == 0 or step == config.steps:
            self.checkpoint()
        return row

    @property
    def kept(self) -> torch.nn.Module:
        """The weights validation scores and the run keeps: the average when ``ema``."""
        return self.model if self.average is None else self.average.model

    def checkpoint(self) -> None:
        """Save the state after ``state.step`` (random generators plain, see :mod:`runs`)."""
        average = {} if self.average is None else {"ema": self.average.model.state_dict()}
        self.run.save_checkpoint({
            "step": self.state.step, "best": self.state.best, "model": self.model.state_dict(),
            "optimiser": self.optimiser.state_dict(), "schedule": self.schedule.state_dict(),
            "sampler": self.sampler.state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            **average,
        })
        self.state.saved = self.state.step

    def _restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        if self.average is not None:
            self.average.model.load_state_dict(ckpt["ema"])
        self.optimiser.load_state_dict(ckpt["optimiser"])
        self.schedule.load_state_dict(ckpt["schedule"])
        self.sampler.set_state(ckpt["sampler"])
        torch.set_rng_state(ckpt["torch_rng"].cpu())
        if ckpt.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
        step = int(ckpt["step"])
        self.state = _LoopState(start=step, best=float(ckpt["best"]), saved=step)

    def finish(self) -> None:
        """``last.pt``, ``weights.pt`` when validation chose none, ``curves.png``."""
        self.run.save_weights(self.kept.state_dict(), runs.LAST)
        if not self.validator.items or not self.run.file(runs.WEIGHTS).exists():
            self.run.save_weights(self.kept.state_dict(), runs.WEIGHTS)
        from instatrack.plot import training_curves

        training_curves(self.log.rows, self.run.file(runs.CURVES))


class _Average:
    """An exponential moving average of a network's weights (``ema``), kept in a copy of
    the network that validation scores and the run saves."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.model = copy.deepcopy(model).requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Move the average towards ``model``'s weights after ``step``."""
        decay = min(self.decay, (1 + step) / (10 + step))
        for mean, now in zip(self.model.state_dict().values(), model.state_dict().values(),
                             strict=True):
            if mean.is_floating_point():
                mean.mul_(decay).add_(now, alpha=1 - decay)
            else:
                mean.copy_(now)


def _load_init(model: torch.nn.Module, weights: dict[str, torch.Tensor], init: str | None) -> None:
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise DataError(f"{init}: its weights do not fit the network ({first})") from None


# -- reporting ------------------------------------------------------------------------------------
def _progress_bar(progress: bool | Progress, start: int, total: int):
    if progress is not True:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, desc="train")


def _report(bar, progress: bool | Progress, step: int, total: int, row: dict[str, float]) -> None:
    if bar is not None:
        shown = {k: f"{v:.4g}" for k, v in row.items() if k in ("loss", "val_seg", "lr")}
        bar.set_postfix(shown, refresh=False)
        bar.update(step - bar.n)
    elif callable(progress):
        progress(step, total, row)
