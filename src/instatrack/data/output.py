"""Outputs that appear only when complete: checked up front, staged beside, moved in at the end.

A command registers every result it will write (a folder, or a file such as a
movie) with an :class:`Outputs` before it does any work. Registering checks
the target at once: a folder is not an existing file; a file has a supported
suffix and an existing parent folder; a target that exists (a non-empty
folder, a file) is refused unless ``overwrite``; no target is or holds one of
the inputs. It also takes a lock beside the target (``.NAME.lock``), so that a
second run writing the same target is refused.

The command then writes into the staging path it got back (``.NAME.partial``
beside the target, or a path inside a staged folder). :meth:`Outputs.commit`
moves each one into place, replacing an existing target only then; when the
command fails or is interrupted, :meth:`Outputs.discard` removes the staging
and every target is as it was. Used as a context manager, an :class:`Outputs`
does one or the other. A run killed outright leaves its lock and staging
behind: the next run on the same machine finds the lock's process gone, takes
the lock over and clears the leftovers.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import warnings
from collections.abc import Iterable
from pathlib import Path

from instatrack.errors import DataError, DataWarning

STAGING_MARK = ".partial"
LOCK_MARK = ".lock"
OLD_MARK = ".old"


@dataclasses.dataclass
class _Staged:
    target: Path
    staging: Path
    lock: Path | None  # None for a file staged inside a staged folder
    is_folder: bool


class Outputs:
    """The results one command writes; see the module docstring.

    ``overwrite``: replace existing targets (only on :meth:`commit`).
    ``inputs``: paths the command reads; a target that is or holds one is refused.
    """

    def __init__(self, overwrite: bool = False, inputs: Iterable[str | Path | None] = ()):
        self.overwrite = overwrite
        self.inputs = [Path(p) for p in inputs if p is not None]
        self._staged: list[_Staged] = []

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()

    def folder(self, target: str | Path) -> Path:
        """Register the folder ``target``; returns the empty folder to write into instead."""
        target = Path(target)
        if target.exists() and not target.is_dir():
            raise DataError(f"{target}: exists and is a file; give a folder to write results to")
        self._check_target(target, exists=target.is_dir() and any(target.iterdir()))
        _try(target, lambda: target.parent.mkdir(parents=True, exist_ok=True))
        staging = _beside(target, STAGING_MARK)
        self._staged.append(_Staged(target, staging, self._lock(target), True))
        _try(target, lambda: _clear_leftovers(target, staging))
        _try(target, staging.mkdir)
        return staging

    def file(self, target: str | Path, suffixes: tuple[str, ...]) -> Path:
        """Register the file ``target`` (one of ``suffixes``); returns the path to write instead.

        A file inside a registered folder is written inside that folder's staging.
        """
        target = Path(target)
        if target.suffix.lower() not in suffixes:
            raise DataError(f"{target}: unsupported file type {target.suffix or '(none)'!r}; "
                            f"use {' or '.join(suffixes)}")
        for staged in self._staged:
            if staged.is_folder and _inside(target, staged.target):
                path = staged.staging / _relative(target, staged.target)
                path.parent.mkdir(parents=True, exist_ok=True)
                self._staged.append(_Staged(target, path, None, False))
                return path
        if target.is_dir():
            raise DataError(f"{target}: is a folder; give a file name")
        if not target.parent.is_dir():
            raise DataError(f"{target.parent}: folder not found (to write {target.name} in it)")
        self._check_target(target, exists=target.exists())
        staging = _beside(target, STAGING_MARK + target.suffix)
        self._staged.append(_Staged(target, staging, self._lock(target), False))
        _try(target, lambda: staging.unlink(missing_ok=True))
        return staging

    def commit(self) -> None:
        """Move every staged result into place (replacing existing targets); release the locks."""
        try:
            for staged in self._staged:
                if staged.lock is None:
                    continue  # moves with its folder
                if staged.is_folder:
                    _replace_folder(staged.staging, staged.target)
                else:
                    os.replace(staged.staging, staged.target)
        finally:
            self._release()

    def discard(self) -> None:
        """Remove every staged result; the targets stay as they were. Releases the locks."""
        try:
            for staged in self._staged:
                if staged.is_folder:
                    shutil.rmtree(staged.staging, ignore_errors=True)
                elif staged.lock is not None:
                    staged.staging.unlink(missing_ok=True)
        finally:
            self._release()

    # -- checks and locks ----------------------------------------------------------------------
    def _check_target(self, target: Path, exists: bool) -> None:
        for staged in self._staged:
            if _resolved(staged.target) == _resolved(target):
                raise DataError(f"{target}: given as two outputs of one run")
        for source in self.inputs:
            if _inside(source, target):
                raise DataError(f"{target}: holds the input {source}; write the results "
                                f"somewhere else")
        if exists and not self.overwrite:
            what = "folder is not empty" if target.is_dir() else "file exists"
            raise DataError(f"{target}: {what}; pass --overwrite to replace it (it is replaced "
                            f"only once this run has succeeded)")

    def _lock(self, target: Path) -> Path:
        lock = _beside(target, LOCK_MARK)
        _try(target, lambda: _acquire(lock, target))
        return lock

    def _release(self) -> None:
        for staged in self._staged:
            if staged.lock is not None:
                staged.lock.unlink(missing_ok=True)
        self._staged = []


def _acquire(lock: Path, target: Path) -> None:
    """Create ``lock`` holding ``PID HOST``; take over a lock whose process is gone."""
    for _ in range(2):
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is not None and owner[1] == socket.gethostname() and not _alive(owner[0]):
                warnings.warn(DataWarning(f"{lock}: removed the lock of run {owner[0]}, which "
                                          f"is gone"), stacklevel=4)
                lock.unlink(missing_ok=True)
                continue
            who = f"process {owner[0]} on {owner[1]}" if owner else "another run"
            raise DataError(f"{target}: {who} is writing it (lock file {lock}); wait for it, "
                            f"or delete the lock file if no run is writing there") from None
        with os.fdopen(handle, "w") as file:
            file.write(f"{os.getpid()} {socket.gethostname()}\n")
        return
    raise DataError(f"{target}: could not take the lock {lock}")


def _lock_owner(lock: Path) -> tuple[int, str] | None:
    try:
        pid, host = lock.read_text().split()
        return int(pid), host
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clear_leftovers(target: Path, staging: Path) -> None:
    """Under the lock: remove a killed run's staging; finish a replacement cut short."""
    shutil.rmtree(staging, ignore_errors=True)
    old = _beside(target, OLD_MARK)
    if old.is_dir():
        if target.exists():
            shutil.rmtree(old)
        else:  # killed between moving the old result aside and the new one in
            old.rename(target)
            warnings.warn(DataWarning(f"{target}: restored the previous result from {old.name}"),
                          stacklevel=5)


def _replace_folder(staging: Path, target: Path) -> None:
    if not target.exists():
        staging.rename(target)
        return
    old = _beside(target, OLD_MARK)
    shutil.rmtree(old, ignore_errors=True)
    target.rename(old)
    staging.rename(target)
    shutil.rmtree(old)


def _beside(target: Path, mark: str) -> Path:
    name = target.stem if mark.endswith(target.suffix) and target.suffix else target.name
    return target.parent / f".{name}{mark}"


def _resolved(path: Path) -> Path:
    return path.expanduser().resolve()


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it."""
    path, folder = _resolved(path), _resolved(folder)
    return path == folder or folder in path.parents


def _relative(path: Path, folder: Path) -> Path:
    return _resolved(path).relative_to(_resolved(folder))


def _try(target: Path, action) -> None:
    try:
        action()
    except OSError as err:
        raise DataError(f"{target}: cannot write here ({err.strerror or err})") from None
