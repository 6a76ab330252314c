"""Distillation from the fine-tuned model while eliminating (docs/method.md,
"Distillation"): the losses, the teacher's one pass over the training set, and the
student's training objective.

Per example, with the teacher's cached logits t and the student's logits s:
  classification: alpha * CE(label, s) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))
  regression:     alpha * (label - s)^2 + (1 - alpha) * (t - s)^2
plus, with ranking, `ranking_weight` times the mean over the extract layers of a pairwise
(RankNet) loss pulling the student's significance scores of the teacher's top-k tokens
above those of the other tokens still present at that layer.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.significance import SignificanceScore


@dataclasses.dataclass(frozen=True)
class Distillation:
    """What the student learns from the teacher.

    Attributes:
        mode: "logits" or "logits+ranking" ("none" is no distillation at all).
        temperature: T of the softened distributions (classification).
        alpha: weight of the task loss; 1 - alpha weighs the teacher term.
        ranking_weight: weight of the ranking term ("logits+ranking").
        ranking_top_k: how many of the teacher's top tokens the ranking term lifts.
    """

    mode: str
    temperature: float = 2.0
    alpha: float = 0.5
    ranking_weight: float = 0.1
    ranking_top_k: int = 20

    @property
    def ranking(self) -> bool:
        return self.mode == "logits+ranking"


# -- losses -------------------------------------------------------------------------
def kl_distillation_loss(teacher_logits, student_logits, temperature: float):
    """(B,) T^2 * KL(softmax(teacher / T) || softmax(student / T)): the teacher's
    softened distribution is the target."""
    teacher = tf.nn.log_softmax(tf.cast(teacher_logits, tf.float32) / temperature, axis=-1)
    student = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / temperature, axis=-1)
    return temperature ** 2 * tf.reduce_sum(tf.exp(teacher) * (teacher - student), axis=-1)


def regression_distillation_loss(teacher_scores, student_scores):
    """(B,) squared distance of the student's score to the teacher's ((B, 1) each)."""
    return tf.square(tf.cast(teacher_scores[:, 0], tf.float32)
                     - tf.cast(student_scores[:, 0], tf.float32))


def task_loss(labels, outputs, regression: bool):
    """(B,) cross-entropy on logits, or squared error of the single regression output."""
    outputs = tf.cast(outputs, tf.float32)
    if regression:
        return tf.square(tf.cast(labels, tf.float32) - outputs[:, 0])
    return keras.losses.sparse_categorical_crossentropy(labels, outputs, from_logits=True)


def logit_distillation_loss(labels, student_logits, teacher_logits, settings: Distillation,
                            regression: bool):
    """(B,) alpha * task loss + (1 - alpha) * the teacher term (module docstring)."""
    teacher_term = (regression_distillation_loss(teacher_logits, student_logits) if regression
                    else kl_distillation_loss(teacher_logits, student_logits,
                                              settings.temperature))
    return (settings.alpha * task_loss(labels, student_logits, regression)
            + (1.0 - settings.alpha) * teacher_term)


def pairwise_ranking_loss(scores, positions, mask, teacher_top):
    """(B,) mean over pairs (t, u) of softplus(s_u - s_t): t among the teacher's top
    positions, u not, both real non-[CLS] tokens present at the layer; 0 without a pair.

    Args:
        scores: (B, T') the layer's significance scores of its input vectors.
        positions: (B, T') their positions in the input sequence.
        mask: (B, T') 1 for real tokens.
        teacher_top: (B, k) the teacher's top positions, -1 where an example has fewer.
    """
    scores = tf.cast(scores, tf.float32)
    real = tf.cast(mask, tf.bool) & (tf.cast(positions, tf.int32) > 0)
    top = tf.reduce_any(tf.cast(positions, tf.int32)[:, :, None]
                        == tf.cast(teacher_top, tf.int32)[:, None, :], axis=-1)
    high = tf.cast(real & top, tf.float32)
    low = tf.cast(real & ~top, tf.float32)
    pairs = high[:, :, None] * low[:, None, :]  # (B, t, u)
    losses = tf.nn.softplus(scores[:, None, :] - scores[:, :, None])
    return tf.reduce_sum(pairs * losses, axis=[1, 2]) / tf.maximum(
        tf.reduce_sum(pairs, axis=[1, 2]), 1.0)


# -- the teacher ----------------------------------------------------------------------
def teacher_pass(model: BertClassifier, include_padded_queries: bool) -> Callable:
    """A traced `features -> (logits (B, C), scores (B, T))` of the plain fine-tuned
    `model` in inference mode: its logits, and the `SignificanceScore` of its last layer
    (nothing extracted)."""
    encoder = model.encoder
    score = SignificanceScore(include_padded_queries, name="teacher_significance")
    signature = {name: tf.TensorSpec((None, None), tf.int32)
                 for name in ("input_word_ids", "input_mask", "input_type_ids")}

    @tf.function(input_signature=[signature], autograph=False)
    def run(features):
        hidden, mask = encoder.embedded(features), features["input_mask"]
        for j in range(1, encoder.num_layers + 1):
            attention, feed_forward = encoder.blocks(j)
            hidden, probs = attention(hidden, mask, training=False)
            hidden = feed_forward(hidden, training=False)
        pooled = encoder.get_layer("pooler")(hidden[:, 0, :])
        return model.get_layer("logits")(pooled), score(probs, mask)

    return run


def teacher_ranking(scores: np.ndarray, mask: np.ndarray, depth: int) -> np.ndarray:
    """(n, depth) int16: each row's real non-[CLS] positions by the teacher's score,
    highest first (ties: lower position first), -1 past its real tokens."""
    keyed = np.where(mask.astype(bool), scores, -np.inf)
    keyed[:, 0] = -np.inf  # [CLS] is always kept
    order = np.argsort(-keyed, axis=1, kind="stable")[:, :depth]
    ranked = np.take_along_axis(keyed, order, axis=1)
    return np.where(np.isfinite(ranked), order, -1).astype(np.int16)


# -- the student ---------------------------------------------------------------------
class DistillationObjective:
    """`(features, targets) -> (B,) loss` of a student trained against the teacher.

    `targets` is a dict of `label` (B,), `teacher_logits` (B, C) and, with ranking,
    `teacher_top` (B, k). The student's logits are computed by the same layers (and
    dropout draws) as `model(features, training=True)`; with ranking, its significance
    scores and their positions are read from every extract layer.
    """

    def __init__(self, model: BertClassifier, settings: Distillation, regression: bool):
        self.model = model
        self.settings = settings
        self.regression = regression
        encoder = model.encoder
        outputs = {"pooled": encoder.output["pooled_output"]}
        if settings.ranking:
            outputs["scores"] = [encoder.get_layer(f"layer_{j}_significance").output
                                 for j in range(1, encoder.num_layers + 1)]
            outputs["positions"] = encoder.output["kept_positions"]
        self._features = keras.Model(encoder.inputs, outputs, name="student_features")
        self._dropout = model.get_layer("classifier_dropout")
        self._logits = model.get_layer("logits")

    def __call__(self, features, targets):
        outputs = self._features(features, training=True)
        logits = self._logits(self._dropout(outputs["pooled"], training=True))
        loss = logit_distillation_loss(targets["label"], logits, targets["teacher_logits"],
                                       self.settings, self.regression)
        if self.settings.ranking:
            loss += self.settings.ranking_weight * self.ranking_loss(
                features["input_mask"], outputs, targets["teacher_top"])
        return loss

    def ranking_loss(self, mask, outputs, teacher_top):
        """(B,) mean over the layers of `pairwise_ranking_loss`; layer j scores the
        vectors layer j - 1 kept (layer 1: every position), whose input positions are
        the encoder's `kept_positions`."""
        mask = tf.cast(mask, tf.int32)
        positions = tf.cumsum(tf.ones_like(mask), axis=1) - 1
        losses = []
        for j, scores in enumerate(outputs["scores"]):
            kept = positions if j == 0 else tf.cast(outputs["positions"][j - 1], tf.int32)
            # A relative-mode slot masked out is position -1: gathered at 0, then excluded.
            losses.append(pairwise_ranking_loss(
                scores, kept, tf.gather(mask, tf.maximum(kept, 0), batch_dims=1), teacher_top))
        return tf.add_n(losses) / len(losses)
