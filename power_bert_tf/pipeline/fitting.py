"""What the training phases share: building a classifier for the task, and training
one phase with its history, best-epoch model and resumable state."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np

from power_bert_tf.data.batching import count_batches
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.factory import build_encoder
from power_bert_tf.model.policy import TRAINING_POLICIES, dtype_policy
from power_bert_tf.pipeline.context import Context
from power_bert_tf.pipeline.layout import PhaseFolder
from power_bert_tf.training.checkpoints import save_model_atomic, write_json_atomic
from power_bert_tf.training.metrics import compute_metrics
from power_bert_tf.training.trainer import EpochLog, OptimizerGroup, Trainer


def build_classifier(ctx: Context, **extract) -> BertClassifier:
    """A classifier of --model's shape for the task, with `extract` options (random
    weights; the phase transfers them), its encoder computing in --train_precision."""
    with ctx.strategy.scope():
        with dtype_policy(TRAINING_POLICIES[ctx.config.train_precision]):
            encoder = build_encoder(ctx.pretrained.config,
                                    sequence_length=ctx.config.max_seq_length, **extract)
        return BertClassifier(encoder, ctx.task.num_classes,
                              dropout=ctx.pretrained.config.dropout)


def total_steps(ctx: Context, epochs: int) -> int:
    return epochs * count_batches(len(ctx.examples("train")), ctx.config.batch_size, False)


def read_history(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def keep_settings(folder: PhaseFolder, settings: dict, start: Path | None,
                  resume: bool) -> None:
    """Records the phase's training `settings` and the digest of the model it `start`s
    from; resuming, refuses other settings or another start model than those it was
    begun with (either would go on silently from its state)."""
    settings = {**settings, "start_sha256": _sha256(start) if start else None}
    if resume and folder.settings.is_file():
        begun = json.loads(folder.settings.read_text())
        changed = [_change(name, value, begun[name], start) for name, value in settings.items()
                   if name in begun and begun[name] != value]
        if changed:
            raise PowerBertError(f"{folder.path} was begun with other settings: "
                                 f"{'; '.join(changed)}; resume with the flags it was begun "
                                 "with, or pass --overwrite to start again")
    write_json_atomic(folder.settings, settings)


def _change(name: str, value, begun, start: Path | None) -> str:
    if name == "start_sha256":
        return (f"{start or 'the pre-trained --model'} is not the model it began from "
                "(trained again since?)")
    return f"--{name}={value} (begun with {begun})"


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def fit_phase(ctx: Context, phase: str, model: BertClassifier, groups: list[OptimizerGroup],
              epochs: int, keep_best: bool, on_epoch: Callable[[EpochLog], dict] | None = None,
              after_step: Callable[[int], dict[str, float]] | None = None,
              start: Path | None = None, distilled=None):
    """Trains and records one phase; returns (history, best dev metrics).

    Args:
        keep_best: keep the best dev epoch's model (else the last epoch's).
        on_epoch: extra entries for an epoch's history (the search's read-out).
        after_step: the speed-up controller, called after every optimiser step.
        start: the model.keras the phase's weights come from (None: pre-trained weights).
        distilled: a `pipeline.distill.DistilledTraining` (its data and objective in place
            of the labels alone), or None.
    """
    config, folder = ctx.config, ctx.writes(phase)
    metric = ctx.task.metric
    trainer = Trainer(model, ctx.strategy, groups, regression=ctx.task.labels is None,
                      jit_compile=config.jit_compile,
                      objective=distilled.objective if distilled else None)
    keep_settings(folder, config.training_settings(phase), start, config.resume)
    history = read_history(folder.history) if config.resume else []

    def on_epoch_end(log: EpochLog, improved: bool) -> None:
        entry = {"epoch": log.epoch, "train_loss": round(log.train_loss, 6),
                 "seconds": round(log.seconds, 1), "dev": log.dev}
        if on_epoch:
            entry.update(on_epoch(log))
        shown = ", ".join(f"{name} {value:.4f}" for name, value in log.dev.items())
        print(f"epoch {log.epoch}: train loss {log.train_loss:.4f}, dev {shown}"
              + (" (best so far)" if improved and keep_best else ""))
        history[:] = [h for h in history if h["epoch"] < log.epoch] + [entry]
        if improved or not keep_best:
            save_model_atomic(model, folder.model)
        write_json_atomic(folder.history, history)

    dev_data = ctx.dataset("dev")
    labels = np.array([example.label for example in ctx.examples("dev")])
    masses = model.encoder.masses if model.encoder.extract == "soft" else None
    train_data = (distilled.dataset if distilled else
                  lambda epoch: ctx.dataset("train", training=True, epoch=epoch))
    trainer.fit(train_data,
                count_batches(len(ctx.examples("train")), config.batch_size, False), epochs,
                lambda: compute_metrics(ctx.task, labels, trainer.predict(dev_data)), metric,
                folder.state, on_epoch_end, config.resume, masses=masses, log_dir=folder.logs,
                seed=config.seed, after_step=after_step)
    best = (max(history, key=lambda h: h["dev"][metric]) if keep_best else history[-1])["dev"]
    return history, best
