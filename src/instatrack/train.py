"""THE training loop, shared by every method.

A method contributes its model (``build_model``), its loss (``loss``) and its
inference (``predict``, used for the validation score); everything else lives
here once: sampling clips, the optimiser and learning-rate schedule, mixed
precision and ``torch.compile`` on CUDA, logging, validation, checkpoints
that resume exactly, and the run folder (see :mod:`instatrack.runs`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from instatrack import runs
from instatrack.config import TrainConfig, parse_slice
from instatrack.errors import DataError, InstatrackError
from instatrack.methods import get_method
from instatrack.methods.base import Method

#: at most this many held-out frames are segmented for each validation score
VAL_MAX_FRAMES = 12

Progress = Callable[[int, int, dict[str, float]], None]


def train(method: str, data: str | Path, out: str | Path, config: TrainConfig | None = None,
          resume: bool = False, progress: bool | Progress = True,
          device: str | torch.device | None = None) -> Path:
    """Train ``method`` on the dataset at ``data``; write the run folder ``out``.

    ``config`` defaults to the method's ``fast`` preset. With ``resume=True``
    the run in ``out`` continues from its last checkpoint with its own saved
    config (``config`` must then be None or only change ``steps``).
    ``progress`` is True for a progress bar, False for silence, or a callable
    ``(step, total, metrics)``. Returns the run folder.
    """
    from instatrack.data import open_dataset
    from instatrack.data.augment import AcquisitionSettings
    from instatrack.data.sampler import ClipSampler

    out = Path(out)
    if resume:
        runs.prepare_run_dir(out, resume=True)
    sequences = open_dataset(data)
    if not resume:  # only now, so that bad --data leaves no empty run folder behind
        runs.prepare_run_dir(out, resume=False)
    method_cls, config = _resolve_config(method, out, config, resume)
    config = _fit_config_to_data(method_cls, config, sequences)
    sampler = ClipSampler(sequences, clip_len=config.clip_len, crop=config.crop,
                          frames=parse_slice(config.train_frames), augment=config.augment,
                          norm=(config.norm_low, config.norm_high), seed=config.seed,
                          object_bias=config.crop_object_bias,
                          reach_border=config.crops_reach_border,
                          acquisition=AcquisitionSettings.of(config))
    if max(config.instance_area) <= 0:
        config = config.replace(instance_area=sampler.instance_areas())
    config.save(out / runs.CONFIG, method=method_cls.name, data=str(Path(data).resolve()))

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(config.seed)
    algo = method_cls(config)
    model = algo.build_model()
    if not resume:
        algo.initialise(model)
    model = model.to(device)
    optimiser = _optimiser(model, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, _decay(config))
    start, best = 0, -math.inf
    if resume:
        start, best = _restore(out, model, optimiser, schedule, sampler, device)
    log = runs.LogWriter(out / runs.LOG, resume_step=start if resume else None)
    step_fn = _compiled(model, config, device)
    validator = _Validator(algo, sequences, config, device)

    bar = _progress_bar(progress, start, config.steps)
    state = _LoopState(start=start, best=best)
    try:
        for step in range(start + 1, config.steps + 1):
            batch = _collate([sampler.sample() for _ in range(config.batch_size)], device)
            parts = _train_step(algo, step_fn, batch, optimiser, schedule, config, device)
            state.step = step
            state.record(parts)
            if step % config.log_every == 0 or step == config.steps:
                row = state.flush(step, optimiser.param_groups[0]["lr"])
                if validator.due(step):
                    row.update(validator(model))
                    if row["val_seg"] > state.best:
                        state.best = row["val_seg"]
                        runs.atomic_save(model.state_dict(), out / runs.WEIGHTS)
                log.append(row)
                _report(bar, progress, step, config.steps, row)
            if step % config.ckpt_every == 0 or step == config.steps:
                _checkpoint(out, model, optimiser, schedule, sampler, state)
    except KeyboardInterrupt:
        _checkpoint(out, model, optimiser, schedule, sampler, state)
        raise InstatrackError(
            f"training interrupted at step {state.step}; checkpoint saved — continue with "
            f"`instatrack train --resume {out}`") from None
    finally:
        if bar is not None:
            bar.close()
    _finish(out, model, validator, log)
    return out


# -- configuration --------------------------------------------------------------------------------
def _resolve_config(method: str, out: Path, config: TrainConfig | None, resume: bool):
    if resume:
        method_cls, saved = runs.read_run_config(out)
        if method and method != method_cls.name:
            raise InstatrackError(f"{out} was trained with {method_cls.name}, not {method}")
        if config is not None:
            saved = saved.replace(steps=config.steps)
        return method_cls, saved
    method_cls = get_method(method)
    return method_cls, config if config is not None else method_cls.config_cls.build("fast")


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
    use_amp = config.amp and device.type == "cuda"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
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
    """Running means of the loss parts between two log rows, speed, best score."""

    def __init__(self, start: int, best: float):
        self.step = start
        self.best = best
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
    """Segments held-out frames with the method's own ``predict`` and scores them
    with the CTC SEG measure (mean Jaccard of matched ground-truth objects)."""

    def __init__(self, algo: Method, sequences, config: TrainConfig, device: torch.device):
        self.algo, self.config, self.device = algo, config, device
        window = parse_slice(config.val_frames)
        self.items: list[tuple[Any, list[int]]] = []
        if window is None:
            return
        for seq in sequences:
            frames = [t for t in range(len(seq))[window] if seq.labels(t) is not None]
            if frames:
                self.items.append((seq, frames))

    def due(self, step: int) -> bool:
        return bool(self.items) and (step % self.config.val_every == 0
                                     or step == self.config.steps)

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        from instatrack.data.normalize import normalize
        from instatrack.metrics.ctc import seg_frame

        total, count = 0.0, 0
        budget = VAL_MAX_FRAMES
        model.eval()
        for seq, frames in self.items:
            clips = [frames[:budget]] if seq.is_video else [[t] for t in frames[:budget]]
            budget -= sum(len(c) for c in clips)
            for clip in clips:
                clip = list(range(clip[0], clip[-1] + 1))
                images = (normalize(seq.image(t), self.config.norm_low, self.config.norm_high)
                          for t in clip)
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
            if budget <= 0:
                break
        model.train()
        return {"val_seg": total / max(count, 1)}


# -- checkpoints and reporting -------------------------------------------------------------------
def _checkpoint(out: Path, model, optimiser, schedule, sampler, state: _LoopState) -> None:
    runs.atomic_save({
        "step": state.step, "best": state.best, "model": model.state_dict(),
        "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
        "sampler": sampler.state(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }, out / runs.CHECKPOINT)


def _restore(out: Path, model, optimiser, schedule, sampler, device) -> tuple[int, float]:
    ckpt = runs.load_torch(out / runs.CHECKPOINT, device)
    model.load_state_dict(ckpt["model"])
    optimiser.load_state_dict(ckpt["optimiser"])
    schedule.load_state_dict(ckpt["schedule"])
    sampler.set_state(ckpt["sampler"])
    torch.set_rng_state(ckpt["torch_rng"].cpu())
    if ckpt.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
    return int(ckpt["step"]), float(ckpt["best"])


def _finish(out: Path, model, validator: _Validator, log: runs.LogWriter) -> None:
    runs.atomic_save(model.state_dict(), out / runs.LAST)
    if not validator.items or not (out / runs.WEIGHTS).exists():
        runs.atomic_save(model.state_dict(), out / runs.WEIGHTS)
    from instatrack.plot import training_curves

    training_curves(log.rows, out / runs.CURVES)


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
