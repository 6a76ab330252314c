"""Nothing lost: atomic writes, locked phase folders, resumable training state."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from power_bert_tf.errors import PowerBertError

RUN_FILE = "run.json"
MODEL_FILE = "model.keras"
STATE_CHECKPOINTS_KEPT = 2  # the last and the one before, if the last turns out corrupt
_HELD_LOCKS: dict[Path, int] = {}  # lock file -> open descriptor, held until exit
# What restoring a truncated, corrupt or mismatched checkpoint raises.
_UNREADABLE_CHECKPOINT = (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError)


def write_json_atomic(path: Path, data: Any) -> None:
    """Writes JSON to a temporary file in the same folder, then renames it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as file:
        json.dump(data, file, indent=2, default=_json_default)
        file.write("\n")
    os.replace(file.name, path)


def _json_default(value):
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """`model.save` to a temporary `.keras` file, then rename: a crash leaves the old one."""
    partial = path.with_name(path.stem + ".partial.keras")
    model.save(partial)
    os.replace(partial, path)


def load_model(path: Path, phase: str) -> keras.Model:
    """Loads a phase's `model.keras`, or says which phase to run first, or that the
    file is truncated or corrupt."""
    if not path.is_file():
        raise PowerBertError(f"no {phase} model at {path}: run --phase={phase} first "
                             f"(or point --output_dir at an earlier run)")
    import power_bert_tf.model.classifier  # noqa: F401  (registers the classes)

    try:
        return keras.saving.load_model(path)
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, ValueError, TypeError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise PowerBertError(f"{path} is truncated or corrupt ({type(error).__name__}: "
                             f"{reason[:160]}); rerun --phase={phase} --overwrite") from None


def lock_phase_dir(path: Path) -> None:
    """Takes `<path>.lock` beside the phase folder for the rest of this process, or
    refuses at once if another process holds it (a killed process releases it)."""
    lock = path.with_name(f".{path.name}.lock")
    if lock in _HELD_LOCKS:
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise PowerBertError(f"{path} is in use by another run (lock {lock} is held); wait "
                             f"for it to end or write to another --output_dir") from None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode())
    _HELD_LOCKS[lock] = descriptor


def prepare_phase_dir(path: Path, *, resume: bool, overwrite: bool,
                      chief_dir: Path | None = None) -> None:
    """Locks `path` and refuses to overwrite a finished (or silently restart an
    unfinished) phase.

    With `chief_dir` (a non-chief worker of a multi-worker run), `path` is this
    worker's temporary shadow of the chief's folder: the checks read `chief_dir`
    without changing it, and when resuming the shadow starts as a copy of it.
    """
    checked = path if chief_dir is None else chief_dir
    if chief_dir is None:
        lock_phase_dir(path)
    if overwrite:
        if chief_dir is None and path.exists():
            shutil.rmtree(path)
    elif (checked / RUN_FILE).exists():
        raise PowerBertError(f"{checked} holds a finished run; pass --overwrite to replace it")
    elif checked.exists() and any(checked.iterdir()) and not resume:
        raise PowerBertError(f"{checked} holds an unfinished run; pass --resume to continue "
                             f"it or --overwrite to start again")
    if chief_dir is not None:
        shutil.rmtree(path, ignore_errors=True)
        if resume and chief_dir.is_dir():
            shutil.copytree(chief_dir, path)
    path.mkdir(parents=True, exist_ok=True)


class TrainingState:
    """The last completed epochs' model, optimiser and progress, for `--resume`.

    A `tf.train.CheckpointManager` writes each checkpoint in full before it
    updates its `checkpoint` index, so a killed run resumes from the last
    complete epoch; the one before is kept too, for a last one found corrupt.
    """

    def __init__(self, directory: Path, model: keras.Model, optimizers: list):
        self.directory = directory
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.best = tf.Variable(-np.inf, dtype=tf.float64, trainable=False, name="best")
        trackables = {f"optimizer_{i}": optimizer for i, optimizer in enumerate(optimizers)}
        self._checkpoint = tf.train.Checkpoint(model=model, epoch=self.epoch, best=self.best,
                                               **trackables)
        self._manager = tf.train.CheckpointManager(self._checkpoint, str(directory),
                                                   max_to_keep=STATE_CHECKPOINTS_KEPT)

    def restore(self) -> bool:
        """Restores the latest readable checkpoint, if any; True when one was found.

        A corrupt or truncated last checkpoint is reported and the one before it is
        used; when none can be read, a PowerBertError names the newest.
        """
        candidates = list(reversed(self._manager.checkpoints))
        for index, path in enumerate(candidates):
            try:
                self._checkpoint.restore(path).assert_existing_objects_matched()
                return True
            except _UNREADABLE_CHECKPOINT as error:
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
                if index + 1 == len(candidates):
                    raise PowerBertError(
                        f"checkpoint {candidates[0]} cannot be restored ({type(error).__name__}: "
                        f"{reason[:160]}) and no earlier one can either; rerun the phase "
                        f"with --overwrite") from None
                print(f"warning: checkpoint {path} cannot be restored ({type(error).__name__}: "
                      f"{reason[:120]}); falling back to {candidates[index + 1]}")
        return False

    def save(self, epoch: int, best: float) -> None:
        self.epoch.assign(epoch)
        self.best.assign(best)
        self._manager.save(checkpoint_number=epoch)
