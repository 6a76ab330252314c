"""Distillation in the retrain (and, with --distill_search, the search): the teacher's
targets, computed once per training example and cached beside the run, and the
student's training data and objective (training/distillation.py, docs/method.md).

The teacher is the run's fine-tuned model, `finetune/model.keras` (a user's imported
model lands there too). Its logits and its last layer's ranking of the positions by
significance are computed in one inference pass over the training rows and written to
`finetune/teacher_cache/<key>.npz`, atomically; the key is the SHA-256 of the teacher's
file and of the training rows (and the scoring option), so later seeds, phases and arms
that share the teacher and the data read it back, and a new teacher or other data make
another. A cache that cannot be read, whose recorded key or shapes differ, or whose
checksum fails is rebuilt, never used.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.config import RANK_DEPTH
from power_bert_tf.pipeline.context import Context
from power_bert_tf.training.distillation import (Distillation, DistillationObjective,
                                                 teacher_pass, teacher_ranking)

CACHE_VERSION = 1
CACHE_FOLDER = "teacher_cache"


@dataclasses.dataclass(frozen=True)
class TeacherTargets:
    """The teacher's outputs for each training row, in row order.

    Attributes:
        logits: (n, C) float32 logits (scores for regression).
        ranking: (n, depth) int16 positions by the teacher's last-layer significance,
            highest first, [CLS] left out, -1 past an example's real tokens.
        path: the cache file they were read from or written to.
        seconds: how long the teacher's pass took (0: read from the cache).
    """

    logits: np.ndarray
    ranking: np.ndarray
    path: Path
    seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class DistilledTraining:
    """What `fit_phase` trains with instead of the labels alone."""

    dataset: Callable[[int], tf.data.Dataset]  # epoch -> (features, targets) batches
    objective: Callable  # (features, targets) -> (B,) loss
    teacher: TeacherTargets


def settings_of(ctx: Context) -> Distillation:
    config = ctx.config
    return Distillation(config.distill, config.distill_temperature, config.distill_alpha,
                        config.ranking_weight, config.ranking_top_k)


def distilled_training(ctx: Context, model: BertClassifier,
                       phase: str) -> DistilledTraining | None:
    """The student `model`'s distilled data and objective for `phase`, or None where
    `phase` is not distilled (--distill=none, or the search without --distill_search)."""
    config = ctx.config
    if config.distill == "none" or (phase == "search" and not config.distill_search):
        return None
    settings = settings_of(ctx)
    teacher = teacher_targets(ctx)
    rows = ctx.rows("train")
    indexed = {**rows, "label": np.arange(len(rows["input_mask"]), dtype=np.int32)}
    targets = {"label": tf.constant(rows["label"]),
               "teacher_logits": tf.constant(teacher.logits)}
    if settings.ranking:
        targets["teacher_top"] = tf.constant(teacher.ranking[:, :settings.ranking_top_k])

    def dataset(epoch: int) -> tf.data.Dataset:
        # The label column carries the row index (the shuffle and the length grouping
        # order rows alike whatever it holds); the index then picks the row's targets.
        return ctx.dataset("train", training=True, epoch=epoch, rows=indexed).map(
            lambda features, index: (features, {name: tf.gather(value, index)
                                                for name, value in targets.items()}))

    with ctx.strategy.scope():
        objective = DistillationObjective(model, settings, regression=ctx.task.labels is None)
    print(f"{phase}: distilling ({settings.mode}, T {settings.temperature:g}, alpha "
          f"{settings.alpha:g}" + (f", ranking weight {settings.ranking_weight:g}, top "
                                   f"{settings.ranking_top_k}" if settings.ranking else "")
          + f") from {ctx.reads('finetune').model}")
    return DistilledTraining(dataset, objective, teacher)


def cache_key(teacher_sha256: str, rows: dict[str, np.ndarray],
              include_padded_queries: bool) -> str:
    """SHA-256 of what the teacher's targets depend on: its file, the training rows'
    token ids, mask and segments, and the scoring option."""
    digest = hashlib.sha256(json.dumps({
        "version": CACHE_VERSION, "teacher": teacher_sha256, "depth": RANK_DEPTH,
        "include_padded_queries": include_padded_queries}, sort_keys=True).encode())
    for name in ("input_word_ids", "input_mask", "input_type_ids"):
        array = np.ascontiguousarray(rows[name], dtype=np.int32)
        digest.update(f"{name}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def teacher_targets(ctx: Context) -> TeacherTargets:
    """The teacher's targets for the training rows: read from the cache when it is
    whole and made for this teacher and data, else computed and cached."""
    teacher_file = ctx.reads("finetune").model
    if not teacher_file.is_file():
        ctx.load_phase_model("finetune")  # says which phase to run first
    rows = ctx.rows("train")
    key = cache_key(_sha256(teacher_file), rows, ctx.config.include_padded_queries)
    depth = min(RANK_DEPTH, ctx.config.max_seq_length - 1)
    name = f"{key[:24]}.npz"
    for folder in dict.fromkeys([ctx.reads("finetune").path, ctx.writes("finetune").path]):
        cached = read_cache(folder / CACHE_FOLDER / name, key, len(rows["input_mask"]),
                            ctx.task.num_classes, depth)
        if cached:
            print(f"teacher targets read from {cached.path}")
            return cached
    logits, ranking, started = [], [], time.perf_counter()
    run = teacher_pass(ctx.load_phase_model("finetune"), ctx.config.include_padded_queries)
    for features, _ in ctx.dataset("train"):  # row order, batches trimmed
        batch_logits, scores = run(features)
        logits.append(batch_logits.numpy().astype(np.float32))
        ranked = teacher_ranking(scores.numpy(), features["input_mask"].numpy(), depth)
        ranking.append(np.pad(ranked, ((0, 0), (0, depth - ranked.shape[1])),
                              constant_values=-1))
    path = ctx.writes("finetune").path / CACHE_FOLDER / name
    logits, ranking = np.concatenate(logits), np.concatenate(ranking)
    seconds = time.perf_counter() - started
    write_cache(path, key, logits, ranking)
    print(f"teacher targets computed for {len(logits)} training examples in "
          f"{seconds:.1f} s, cached in {path}")
    return TeacherTargets(logits, ranking, path, seconds)


def _checksum(logits: np.ndarray, ranking: np.ndarray) -> str:
    return hashlib.sha256(logits.tobytes() + ranking.tobytes()).hexdigest()


def write_cache(path: Path, key: str, logits: np.ndarray, ranking: np.ndarray) -> None:
    """Writes the targets with their key and checksum to a temporary file in the same
    folder, then renames it over `path`: a reader sees the old file or the new whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"version": CACHE_VERSION, "key": key, "rows": len(logits),
                       "checksum": _checksum(logits, ranking)})
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, suffix=".tmp",
                                     delete=False) as file:
        try:
            np.savez(file, logits=logits, ranking=ranking, meta=np.array(meta))
        except BaseException:
            os.unlink(file.name)
            raise
    os.replace(file.name, path)


def read_cache(path: Path, key: str, rows: int, num_classes: int,
               depth: int) -> TeacherTargets | None:
    """The cached targets at `path`, or None (with the reason printed) when there are
    none, or they cannot be read, or were made for another teacher or data (stale), or
    are of other shapes, or fail their checksum (corrupt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            logits, ranking = data["logits"], data["ranking"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        return _rebuild(path, f"unreadable ({type(error).__name__})")
    if meta.get("version") != CACHE_VERSION or meta.get("key") != key:
        return _rebuild(path, "stale: made for another teacher or other training data")
    if logits.shape != (rows, num_classes) or ranking.shape != (rows, depth):
        return _rebuild(path, f"of other shapes {logits.shape}, {ranking.shape}")
    if meta.get("checksum") != _checksum(logits, ranking) or not np.isfinite(logits).all():
        return _rebuild(path, "corrupt: its checksum fails")
    return TeacherTargets(logits, ranking, path)


def _rebuild(path: Path, reason: str) -> None:
    print(f"warning: teacher cache {path} is {reason}; computing it again")
    return None


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
