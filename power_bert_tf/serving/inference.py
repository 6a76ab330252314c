"""Bucketed, XLA-compiled inference: one compiled program per padded length bucket.

XLA compiles once per input shape, and Hard-Extract's kept counts min(l_j, T) are
static only when T is (docs/method.md, "Dynamic padding and length buckets"). So a batch
is trimmed to its longest real length and padded to the smallest of a few fixed lengths,
the buckets; each bucket has one `tf.function(jit_compile=True)` with a fixed input
signature. Padded positions score 0 and are masked, and the significance score ignores
padded query rows by default, so a short bucket gives the same logits as padding to N.
"""
from __future__ import annotations

import functools
import warnings
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from power_bert_tf.data.buckets import buckets_for
from power_bert_tf.data.tokenizer import INPUT_NAMES, PackingTokenizer
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.serving.precision import (default_jit_compile, resolve_precision,
                                             with_precision)

def valid_utf8(texts: tf.Tensor) -> tf.Tensor:
    """(B,) string -> (B,) string with every invalid UTF-8 sequence replaced by U+FFFD.

    The tokenizer's normalization deletes U+FFFD (as Hugging Face does), so invalid
    bytes vanish: b"good \\xff film" is read as "good  film".
    """
    return tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace",
                                        replacement_char=0xFFFD)


def any_length_copy(model: BertClassifier) -> BertClassifier:
    """The same classifier (weights copied) taking inputs of any length T.

    A classifier built with `sequence_length=N` only accepts (B, N) inputs; the copy
    is built with `sequence_length=None`, so Hard-Extract keeps min(l_j, T) vectors.
    """
    encoder = model.encoder
    if encoder.extract == "soft":
        raise PowerBertError("a search (Soft-Extract) model cannot be served: serve the "
                             "retrained (Hard-Extract) or the fine-tuned model")
    config = {**encoder.get_config(), "sequence_length": None}
    copy = BertClassifier(type(encoder).from_config(config), model.num_classes, model.dropout,
                          name=model.name)
    copy.set_weights(model.get_weights())
    return copy


def _longest_real_length(mask: tf.Tensor) -> tf.Tensor:
    """(B, T) mask -> () int32, 1 + the last position any row has a real token at (>= 1)."""
    positions = tf.range(1, tf.shape(mask)[1] + 1, dtype=tf.int32)
    return tf.maximum(tf.reduce_max(tf.cast(mask != 0, tf.int32) * positions), 1)


def _fit(tensor: tf.Tensor, length: int) -> tf.Tensor:
    """(B, T) -> (B, length): cut after `length` or right-pad with 0."""
    tensor = tensor[:, :length]
    tensor = tf.pad(tensor, [[0, 0], [0, length - tf.shape(tensor)[1]]])
    return tf.ensure_shape(tensor, (None, length))


class BucketedPredictor:
    """Runs a classifier on the smallest length bucket that fits each batch.

    Args:
        model: a `BertClassifier` with a Hard-Extract (or no) extract layer.
        buckets: ascending padded lengths; default `buckets_for(N)`, N the model's
            sequence length. Inputs longer than the largest are truncated to it.
        tokenizer: for `predict_texts`.
        jit_compile: XLA-compile each bucket's program; None: the measured fastest path
            for `precision` on this device (`precision.default_jit_compile`).
        precision: "fp32", "bf16" (the encoder computes in bfloat16; the inputs and
            the logits stay int32 and float32) or "auto" (`resolve_precision`).
        warm: compile every bucket's program now (`warm_up`), so that no request pays
            for it (XLA: seconds a bucket); False compiles each on its first use.

    Attributes:
        buckets: the padded lengths.
        precision, jit_compile: as used ("fp32" or "bf16").
        trace_counts: bucket -> how often its program was traced (compiled): 1 after
            its first call, and it stays 1.
    """

    def __init__(self, model: BertClassifier, buckets: Sequence[int] | None = None,
                 tokenizer: PackingTokenizer | None = None, jit_compile: bool | None = None,
                 precision: str = "fp32", warm: bool = True):
        encoder = model.encoder
        max_length = encoder.sequence_length or encoder.max_sequence_length
        self.buckets = tuple(sorted(set(buckets))) if buckets else buckets_for(max_length)
        if self.buckets[0] < 1 or self.buckets[-1] > encoder.max_sequence_length:
            raise PowerBertError(f"buckets {self.buckets} must lie in [1, "
                                 f"{encoder.max_sequence_length}] (the model's positions)")
        precision = resolve_precision(precision)
        self.model = with_precision(any_length_copy(model), precision)
        self.precision = precision
        self.jit_compile = default_jit_compile(precision) if jit_compile is None else jit_compile
        self.tokenizer = tokenizer
        self.trace_counts = {bucket: 0 for bucket in self.buckets}
        self._programs = {
            bucket: tf.function(
                self._logits, jit_compile=self.jit_compile,
                input_signature=[{name: tf.TensorSpec((None, bucket), tf.int32, name=name)
                                  for name in INPUT_NAMES}])
            for bucket in self.buckets}
        if warm:
            self.warm_up()

    def warm_up(self) -> None:
        """Runs (so traces and compiles) every bucket's program once on one row."""
        for bucket in self.buckets:
            ones = tf.ones((1, bucket), tf.int32)
            self._programs[bucket]({"input_word_ids": ones, "input_mask": ones,
                                    "input_type_ids": tf.zeros_like(ones)})

    def _logits(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        self.trace_counts[features["input_word_ids"].shape[1]] += 1
        return tf.cast(self.model(features, training=False), tf.float32)

    def logits(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """(B, T) int32 features, any T -> (B, C) logits (B, 1 scores for regression).

        Graph-friendly: in a `tf.function` it becomes a `switch_case` over the buckets'
        compiled programs; run eagerly it calls only the chosen one.
        """
        features = {name: tf.convert_to_tensor(features[name], tf.int32)
                    for name in INPUT_NAMES}
        length = _longest_real_length(features["input_mask"])
        index = tf.minimum(tf.reduce_sum(tf.cast(tf.constant(self.buckets) < length, tf.int32)),
                           len(self.buckets) - 1)
        return tf.switch_case(index, [functools.partial(self._run_bucket, features, bucket)
                                      for bucket in self.buckets])

    def _run_bucket(self, features: dict[str, tf.Tensor], bucket: int) -> tf.Tensor:
        return self._programs[bucket]({name: _fit(value, bucket)
                                       for name, value in features.items()})

    def __call__(self, features: Mapping[str, ArrayLike]) -> np.ndarray:
        """(B, T) int features, padded or not -> (B, C) logits as a NumPy array.

        Rows with real tokens beyond the largest bucket are truncated to it, with a
        `UserWarning` saying how many.
        """
        missing = [name for name in INPUT_NAMES if name not in features]
        if missing:
            raise PowerBertError(f"features lack {', '.join(missing)}")
        mask = np.asarray(features["input_mask"])
        truncated = int(np.count_nonzero(mask[:, self.buckets[-1]:].any(axis=1)))
        if truncated:
            warnings.warn(f"{truncated} input(s) longer than the largest bucket "
                          f"({self.buckets[-1]} tokens) were truncated to it", stacklevel=2)
        return self.logits(features).numpy()

    def predict_texts(self, texts_a: Sequence[str | bytes],
                      texts_b: Sequence[str | bytes] | None = None) -> np.ndarray:
        """B texts (or pairs) -> (B, C) logits.

        Texts longer than the tokenizer's max_seq_length are truncated by it (longest
        first for pairs). Invalid UTF-8 is read as U+FFFD and then deleted (see
        `valid_utf8`); an empty text is "[CLS] [SEP]" and gets the model's logits for it.
        """
        if self.tokenizer is None:
            raise PowerBertError("predict_texts needs a tokenizer: BucketedPredictor(model, "
                                 "tokenizer=...)")
        if texts_b is not None and len(texts_b) != len(texts_a):
            raise PowerBertError(f"{len(texts_a)} first texts but {len(texts_b)} second texts")
        segments = [valid_utf8(_string_tensor(texts))
                    for texts in (texts_a, texts_b) if texts is not None]
        return self(self.tokenizer(*segments))


def _string_tensor(texts: Sequence[str | bytes]) -> tf.Tensor:
    return tf.constant([text.encode("utf-8") if isinstance(text, str) else bytes(text)
                        for text in texts], dtype=tf.string, shape=(len(texts),))
