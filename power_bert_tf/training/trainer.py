"""The training loop: tf.distribute-aware, one optimiser per variable group,
per-epoch dev evaluation, best-epoch selection and resumable state."""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from power_bert_tf.training.checkpoints import TrainingState
from power_bert_tf.training.distribution import worker_failures


@dataclasses.dataclass
class EpochLog:
    epoch: int
    train_loss: float
    dev: dict[str, float]
    seconds: float
    masses: list[float] | None = None


@dataclasses.dataclass(frozen=True)
class OptimizerGroup:
    """An optimiser and the predicate choosing the variables it trains."""

    optimizer: keras.optimizers.Optimizer
    owns: Callable[[keras.Variable], bool]


def per_example_loss(regression: bool):
    """Cross-entropy on logits, or squared error on the single regression output."""
    if regression:
        return lambda labels, outputs: tf.square(tf.cast(labels, outputs.dtype) - outputs[:, 0])
    return lambda labels, outputs: keras.losses.sparse_categorical_crossentropy(
        labels, outputs, from_logits=True)


class Trainer:
    """Trains `model` epoch by epoch under `strategy`.

    Args:
        model: a Keras model built under `strategy.scope()`.
        strategy: a `tf.distribute.Strategy` (the default one on a single device).
        groups: optimisers and the variables each trains; every trainable
            variable must belong to exactly one group.
        regression: squared-error loss instead of cross-entropy.
        jit_compile: XLA-compile the train step.
        objective: `(features, labels) -> (B,) loss` in place of the model's loss on
            `labels` (distillation, whose labels are a dict of targets).
    """

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy,
                 groups: Sequence[OptimizerGroup], regression: bool, jit_compile: bool = False,
                 objective: Callable | None = None):
        self.model = model
        self.strategy = strategy
        self.groups = list(groups)
        self._loss = per_example_loss(regression)
        self._objective = objective
        self._variables = [[v for v in model.trainable_variables if group.owns(v)]
                           for group in self.groups]
        owned = sum(len(variables) for variables in self._variables)
        if owned != len(model.trainable_variables):
            raise ValueError("every trainable variable must belong to exactly one optimiser group")
        with strategy.scope():
            for group, variables in zip(self.groups, self._variables):
                group.optimizer.build(variables)
        self._replica_step = (
            tf.function(self._replica_train_step, jit_compile=True, autograph=False)
            if jit_compile else self._replica_train_step)
        self._traced: dict[tuple[str, str], Callable] = {}

    # -- steps -------------------------------------------------------------------
    def _replica_train_step(self, features, labels):
        flat_variables = [v for variables in self._variables for v in variables]
        with tf.GradientTape() as tape:
            if self._objective is None:
                per_example = self._loss(labels, self.model(features, training=True))
            else:
                per_example = self._objective(features, labels)
            loss = tf.nn.compute_average_loss(per_example)
            if self.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
        # Embedding gradients arrive as IndexedSlices, which Keras' Adam applies slice by
        # slice: a repeated id's row would step up to sqrt(repeats) x the learning rate.
        # Dense, as the reference's Adam takes them.
        gradients = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                     for g in tape.gradient(loss, flat_variables)]
        start = 0
        for group, variables in zip(self.groups, self._variables):
            grads = gradients[start:start + len(variables)]
            start += len(variables)
            group.optimizer.apply_gradients(zip(grads, variables))
        return loss

    def _distributed_train_step(self, features, labels):
        losses = self.strategy.run(self._replica_step, args=(features, labels))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    def _distributed_predict_step(self, features):
        outputs = self.strategy.run(lambda x: self.model(x, training=False), args=(features,))
        return self.strategy.gather(outputs, axis=0)

    def _reseed(self, seed: int, epoch: int) -> None:
        """Makes every random stream of an epoch (dropout, Rand-WS) a function of
        (seed, epoch): the checkpoint does not hold Keras seed-generator states, so
        this is what lets a resumed run repeat an unbroken one. The batch order is seeded
        by (seed, epoch) where the dataset is made. TF's global seed is set once a phase
        (`pipeline.phases.run`), not here: setting it clears TF's kernel cache, so every
        traced step would be set up again each epoch (2.6 s an epoch on the tiny test
        model, most of its epoch)."""
        states = [v for v in self.model.variables if v.path.endswith("seed_generator_state")]
        for index, state in enumerate(states):
            state.assign(np.array([seed * 7919 + epoch, index], dtype=state.dtype)
                         .reshape(state.shape))

    def _log_scalars(self, writer, after_step: Callable[[int], dict[str, float]]) -> None:
        """Runs `after_step` with the number of steps taken; its scalars go to TensorBoard."""
        step = int(self.groups[0].optimizer.iterations.numpy())
        scalars = after_step(step)
        if writer:
            with writer.as_default(step=step):
                for name, value in scalars.items():
                    tf.summary.scalar(f"controller/{name}", value)

    def _step_for(self, step: Callable, dataset) -> Callable:
        """`step` as a tf.function with the distributed `dataset`'s element spec as its
        input signature: under dynamic padding the batch and length dims are None there,
        so the step is traced once, not once per batch shape (tracing takes seconds)."""
        spec = dataset.element_spec
        key = (step.__name__, repr(spec))
        if key not in self._traced:
            signature = list(spec) if isinstance(spec, tuple) else [spec]
            self._traced[key] = tf.function(step, input_signature=signature, autograph=False)
        return self._traced[key]

    # -- public ------------------------------------------------------------------
    def train_step(self, dataset) -> Callable:
        """The traced step `(features, labels) -> summed loss` (one optimiser update on
        every replica) for the distributed `dataset`'s batches."""
        return self._step_for(self._distributed_train_step, dataset)

    def predict(self, dataset: tf.data.Dataset) -> np.ndarray:
        """Outputs (N, C) for a dataset of features (labels, if present, are dropped)."""
        dataset = self.strategy.experimental_distribute_dataset(
            dataset.map(lambda *batch: batch[0]))
        predict_step = self._step_for(self._distributed_predict_step, dataset)
        return np.concatenate([predict_step(batch).numpy() for batch in dataset], axis=0)

    def fit(self, make_train_dataset: Callable[[int], tf.data.Dataset], steps_per_epoch: int,
            epochs: int, evaluate: Callable[[], dict[str, float]], metric: str,
            state_dir: Path, on_epoch_end: Callable[[EpochLog, bool], None],
            resume: bool, masses: Callable[[], list[float]] | None = None,
            log_dir: Path | None = None, seed: int = 0,
            after_step: Callable[[int], dict[str, float]] | None = None) -> list[EpochLog]:
        """Runs the remaining epochs; returns this call's epoch logs.

        Args:
            make_train_dataset: epoch -> that epoch's shuffled batches (seeded per
                epoch, so a resumed run sees the same order as an unbroken one).
            evaluate: computes dev metrics with the current weights.
            metric: the dev metric that decides the best epoch (higher is better).
            on_epoch_end: called with the log and whether this epoch is the best so far.
            resume: continue from the last completed epoch in `state_dir`.
            masses: per-layer masses to log (search phase).
            after_step: called with the number of optimiser steps taken after each
                step (the speed-up controller); the scalars it returns go to
                TensorBoard under `controller/`.
        """
        state = TrainingState(state_dir, self.model, [g.optimizer for g in self.groups])
        if resume and state.restore():
            print(f"resuming after epoch {int(state.epoch.numpy())} "
                  f"(best dev {metric} so far {float(state.best.numpy()):.4f})")
        first, best = int(state.epoch.numpy()) + 1, float(state.best.numpy())
        writer = tf.summary.create_file_writer(str(log_dir)) if log_dir else None
        logs = []
        for epoch in range(first, epochs + 1):
            self._reseed(seed, epoch)
            print(f"epoch {epoch}/{epochs}")
            progress = keras.utils.Progbar(steps_per_epoch, stateful_metrics=["loss"],
                                           verbose=1 if sys.stdout.isatty() else 2)
            start, total, steps = time.perf_counter(), 0.0, 0
            with worker_failures(self.strategy, f"epoch {epoch}"):
                dataset = self.strategy.experimental_distribute_dataset(
                    make_train_dataset(epoch))
                train_step = self.train_step(dataset)
                for features, labels in dataset:
                    loss = float(train_step(features, labels))
                    total, steps = total + loss, steps + 1
                    if after_step:
                        self._log_scalars(writer, after_step)
                    progress.update(steps, [("loss", total / steps)])
                dev = evaluate()
            log = EpochLog(epoch, total / max(steps, 1), dev, time.perf_counter() - start,
                           masses() if masses else None)
            improved = dev[metric] > best
            best = max(best, dev[metric])
            on_epoch_end(log, improved)
            state.save(epoch, best)
            if writer:
                with writer.as_default(step=epoch):
                    tf.summary.scalar("train/loss", log.train_loss)
                    for name, value in dev.items():
                        tf.summary.scalar(f"dev/{name}", value)
                    for j, mass in enumerate(log.masses or [], start=1):
                        tf.summary.scalar(f"mass/layer_{j}", mass)
            logs.append(log)
        return logs
