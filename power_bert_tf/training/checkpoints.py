"""Nothing lost: atomic writes, phase folders, resumable training state."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from power_bert_tf.errors import PowerBertError

RUN_FILE = "run.json"
MODEL_FILE = "model.keras"


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
    """Loads a phase's `model.keras`, or says which phase to run first."""
    if not path.is_file():
        raise PowerBertError(f"no {phase} model at {path}: run --phase={phase} first "
                             f"(or point --output_dir at an earlier run)")
    import power_bert_tf.model.classifier  # noqa: F401  (registers the classes)

    return keras.saving.load_model(path)


def prepare_phase_dir(path: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuses to overwrite a finished (or silently restart an unfinished) phase."""
    if path.exists() and overwrite:
        shutil.rmtree(path)
    elif (path / RUN_FILE).exists():
        raise PowerBertError(f"{path} holds a finished run; pass --overwrite to replace it")
    elif path.exists() and any(path.iterdir()) and not resume:
        raise PowerBertError(f"{path} holds an unfinished run; pass --resume to continue it "
                             f"or --overwrite to start again")
    path.mkdir(parents=True, exist_ok=True)


class TrainingState:
    """The last completed epoch's model, optimiser and progress, for `--resume`.

    A `tf.train.CheckpointManager` writes each checkpoint in full before it
    updates its `checkpoint` index, so a killed run resumes from the last
    complete epoch.
    """

    def __init__(self, directory: Path, model: keras.Model, optimizers: list):
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.best = tf.Variable(-np.inf, dtype=tf.float64, trainable=False, name="best")
        trackables = {f"optimizer_{i}": optimizer for i, optimizer in enumerate(optimizers)}
        self._checkpoint = tf.train.Checkpoint(model=model, epoch=self.epoch, best=self.best,
                                               **trackables)
        self._manager = tf.train.CheckpointManager(self._checkpoint, str(directory),
                                                   max_to_keep=1)

    def restore(self) -> bool:
        """Restores the latest checkpoint, if any; True when one was found."""
        latest = self._manager.latest_checkpoint
        if latest is None:
            return False
        self._checkpoint.restore(latest).assert_existing_objects_matched()
        return True

    def save(self, epoch: int, best: float) -> None:
        self.epoch.assign(epoch)
        self.best.assign(best)
        self._manager.save(checkpoint_number=epoch)
