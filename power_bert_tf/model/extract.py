"""Extract layers: Soft-Extract for the configuration search, Hard-Extract after.

Both sit between a layer's attention block and its feed-forward block and are fed
that layer's significance scores (docs/method.md, "Soft-Extract: the configuration search"
and "Hard-Extract: retraining and inference").
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from power_bert_tf.model.config import SELECTIONS
from power_bert_tf.model.retention import FRACTION_SCALE, fraction_units, kept_count



@keras.saving.register_keras_serializable(package="power_bert_tf")
class UnitInterval(keras.constraints.Constraint):
    """Projects a weight back into [0, 1] after every optimiser step."""

    def __call__(self, w):
        return ops.clip(w, 0.0, 1.0)

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="power_bert_tf")
class SoftExtract(keras.layers.Layer):
    """Scales the word-vector at significance rank i by a trainable r[i] in [0, 1].

    Per example, positions are ranked by score, descending; the vector at rank i
    is multiplied by r[i], so r[0] scales the most significant vector and
    r[N-1] the least. Nothing is removed and the attention mask is unchanged.
    r starts at 1 (the identity) and its mass sum_i r[i] is what the search
    penalises: `mass_penalty` adds `mass_penalty * sum_i |r[i]|` to the layer's
    losses (the reference's L1 regulariser, lambda * j for layer j).

    Args:
        sequence_length: N, the length of r; inputs may be shorter (r[:T] is used).
        mass_penalty: coefficient of the mass loss for this layer (lambda * j).

    Call args:
        hidden: (B, T, D) word-vectors, T <= N.
        scores: (B, T) significance scores.

    Returns:
        (B, T, D) scaled word-vectors.

    Example:

    >>> import numpy as np
    >>> layer = SoftExtract(sequence_length=3)
    >>> hidden = np.ones((1, 3, 2), "float32")
    >>> scores = np.array([[0.2, 0.9, 0.5]], "float32")  # ranks: position 1, 2, then 0
    >>> np.asarray(layer(hidden, scores))[0, :, 0].tolist()  # r starts at 1: the identity
    [1.0, 1.0, 1.0]
    >>> _ = layer.retention_parameters.assign([1.0, 0.5, 0.0])  # r[rank]
    >>> np.asarray(layer(hidden, scores))[0, :, 0].tolist()
    [0.0, 1.0, 0.5]
    """

    def __init__(self, sequence_length: int, mass_penalty: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = sequence_length
        self.mass_penalty = mass_penalty

    def build(self, hidden_shape, scores_shape):
        self.retention_parameters = self.add_weight(
            name="retention_parameters",
            shape=(self.sequence_length,),
            initializer="ones",
            constraint=UnitInterval(),
            regularizer=keras.regularizers.L1(self.mass_penalty) if self.mass_penalty else None,
        )

    def call(self, hidden, scores):
        length = tf.shape(hidden)[1]
        tf.debugging.assert_less_equal(
            length, self.sequence_length,
            message=f"{self.name}: input longer than the retention vector")
        order = tf.argsort(scores, axis=-1, direction="DESCENDING", stable=True)  # rank -> position
        rank = tf.argsort(order, axis=-1, stable=True)  # position -> rank
        factors = tf.gather(self.retention_parameters[:length], rank)  # (B, T)
        return hidden * ops.cast(factors, hidden.dtype)[:, :, None]

    def mass(self):
        """sum_i r[i], the expected number of kept word-vectors."""
        return ops.sum(self.retention_parameters)

    def compute_output_shape(self, hidden_shape, scores_shape):
        return hidden_shape

    def get_config(self):
        config = super().get_config()
        config.update({"sequence_length": self.sequence_length,
                       "mass_penalty": self.mass_penalty})
        return config


@keras.saving.register_keras_serializable(package="power_bert_tf")
class HardExtract(keras.layers.Layer):
    """Keeps `retain` word-vectors and physically drops the others.

    Always keeps [CLS] (position 0) plus the `retain - 1` other positions chosen
    by the selection, in ascending position order, gathering the hidden states AND
    the padding mask with the same indices. An input shorter than `retain` is
    kept whole, so the output length is min(retain, T), static when T is.

    Selections (the paper's ablation, one mechanism):
        "attention": top scores (Attn-WS, PoWER-BERT);
        "head": the first positions (Head-WS);
        "random": random real tokens, fresh per call (Rand-WS).

    Call args:
        hidden: (B, T, D) word-vectors.
        padding_mask: (B, T), 1 for real tokens.
        scores: (B, T) significance scores; required for "attention" only.

    Returns:
        (hidden, padding_mask, indices) of shapes (B, K, D), (B, K) and (B, K),
        K = min(retain, T); `indices` are the kept positions of the input.

    Example:

    >>> import numpy as np
    >>> hidden = np.arange(8, dtype="float32").reshape(1, 4, 2)  # 4 word-vectors
    >>> mask = np.array([[1, 1, 1, 0]], "int32")
    >>> scores = np.array([[0.9, 0.1, 0.7, 0.0]], "float32")
    >>> kept, kept_mask, positions = HardExtract(retain=2)(hidden, mask, scores)
    >>> np.asarray(positions).tolist()  # [CLS] and the best-scored other position
    [[0, 2]]
    >>> np.asarray(kept).tolist(), np.asarray(kept_mask).tolist()
    ([[[0.0, 1.0], [4.0, 5.0]]], [[1, 1]])
    """

    def __init__(self, retain: int, selection: str = "attention", seed: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        if selection not in SELECTIONS:
            raise ValueError(f"HardExtract: selection must be one of {SELECTIONS}, "
                             f"got {selection!r}")
        if retain < 1:
            raise ValueError(f"HardExtract: retain must be >= 1, got {retain}")
        self.retain = retain
        self.selection = selection
        self.seed = seed
        if selection == "random":
            self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")

    def _kept_length(self, hidden):
        static = hidden.shape[1]
        if static is not None:
            return min(self.retain, static)
        return tf.minimum(self.retain, tf.shape(hidden)[1])

    def call(self, hidden, padding_mask, scores=None):
        k = self._kept_length(hidden)
        if self.selection == "head":
            indices = ops.zeros_like(padding_mask[:, :k]) + ops.arange(k, dtype=padding_mask.dtype)
            return hidden[:, :k], padding_mask[:, :k], indices
        if self.selection == "attention":
            if scores is None:
                raise ValueError(f"{self.name}: the attention selection needs scores")
            others = scores[:, 1:]
        else:  # random: real tokens first (in [1, 2)), padding after (in [0, 1))
            noise = keras.random.uniform(tf.shape(padding_mask[:, 1:]), seed=self.seed_generator)
            others = noise + ops.cast(padding_mask[:, 1:], noise.dtype)
        top = tf.math.top_k(others, k=k - 1, sorted=False).indices + 1
        cls = tf.zeros_like(padding_mask[:, :1], dtype=top.dtype)
        indices = tf.concat([cls, tf.sort(top, axis=-1)], axis=1)  # (B, K)
        return (tf.gather(hidden, indices, batch_dims=1),
                tf.gather(padding_mask, indices, batch_dims=1),
                ops.cast(indices, padding_mask.dtype))

    def compute_output_shape(self, hidden_shape, padding_mask_shape, scores_shape=None):
        length = hidden_shape[1]
        kept = None if length is None else min(self.retain, length)
        return ((hidden_shape[0], kept, hidden_shape[2]), (padding_mask_shape[0], kept),
                (padding_mask_shape[0], kept))

    def get_config(self):
        config = super().get_config()
        config.update({"retain": self.retain, "selection": self.selection, "seed": self.seed})
        return config


def real_lengths(input_mask):
    """(B, b) encoder input mask -> (B,) int32 real lengths T (tokens with mask 1)."""
    return ops.sum(ops.cast(ops.not_equal(input_mask, 0), "int32"), axis=1)


def relative_counts(fraction: float, lengths):
    """(B,) int32 lengths T -> (B,) int32 max(1, ceil(fraction * T)), exact integer
    arithmetic on the 1e-4 grid of `fraction` (as `retention.kept_count`)."""
    units = fraction_units(fraction)
    return ops.maximum((lengths * units + FRACTION_SCALE - 1) // FRACTION_SCALE, 1)


@keras.saving.register_keras_serializable(package="power_bert_tf")
class RelativeSoftExtract(SoftExtract):
    """Soft-Extract of the relative mode: r indexed by relative rank.

    The vector at significance rank i of an input of real length T is scaled by
    r[min(floor(i * N / T), N - 1)], so every input, however short, reads the whole
    of r, and mass(j) / N is the fraction of its length an input keeps in expectation:
    (1/T) sum_{i<T} r[floor(i N / T)] ~ (1/N) sum_i r[i]. Padding (rank >= T) reads
    r[N - 1] and stays masked. The mass loss is the absolute one (lambda * j * mass).

    Call args:
        hidden: (B, T_b, D) word-vectors, any padded length T_b.
        scores: (B, T_b) significance scores.
        padding_mask: (B, T_b), 1 for real tokens (their count is T).

    Returns:
        (B, T_b, D) scaled word-vectors.
    """

    def call(self, hidden, scores, padding_mask):
        order = tf.argsort(scores, axis=-1, direction="DESCENDING", stable=True)
        rank = tf.argsort(order, axis=-1, stable=True)  # position -> rank
        lengths = ops.maximum(real_lengths(padding_mask), 1)[:, None]  # (B, 1)
        index = ops.minimum(rank * self.sequence_length // lengths, self.sequence_length - 1)
        factors = tf.gather(self.retention_parameters, index)  # (B, T_b)
        return hidden * ops.cast(factors, hidden.dtype)[:, :, None]

    def compute_output_shape(self, hidden_shape, scores_shape, padding_mask_shape):
        return hidden_shape


@keras.saving.register_keras_serializable(package="power_bert_tf")
class RelativeHardExtract(keras.layers.Layer):
    """Keeps ceil(fraction * T) word-vectors of an input of real length T, with static shapes.

    In an input padded to b tokens (the encoder's input length, a length bucket), it
    gathers K = min(ceil(fraction * b), n) positions of its n input vectors, static when
    b is: [CLS] plus the K - 1 best others by the selection, in ascending position
    order, as `HardExtract` does. Of these, each example keeps (mask 1) [CLS] and its
    own ceil(fraction * T) - 1 best (T <= b, so they fit) and masks out the rest
    (mask 0): later layers ignore them as keys, the significance score ignores them as
    queries, and they score 0, so the kept set and the logits do not depend on b.

    Selections: as `HardExtract` ("attention", "head", "random"); the rank of a
    position is its order under the selection.

    Args:
        fraction: f_j in (0, 1].
        selection, seed: as `HardExtract`.

    Call args:
        hidden: (B, n, D) word-vectors.
        padding_mask: (B, n), 1 for the real, kept tokens.
        scores: (B, n) significance scores; required for "attention" only.
        input_mask: (B, b) the encoder's input mask: T per example is its sum, b its length.

    Returns:
        (hidden, padding_mask, indices) of shapes (B, K, D), (B, K) and (B, K);
        `indices` are the gathered positions of the input, the mask is 0 on those
        masked out.
    """

    def __init__(self, fraction: float, selection: str = "attention", seed: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        if selection not in SELECTIONS:
            raise ValueError(f"RelativeHardExtract: selection must be one of {SELECTIONS}, "
                             f"got {selection!r}")
        if not 0 < fraction <= 1 or fraction_units(fraction) < 1:
            raise ValueError(f"RelativeHardExtract: fraction must be in (0, 1], got {fraction}")
        self.fraction = fraction
        self.selection = selection
        self.seed = seed
        if selection == "random":
            self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")

    def _gathered_length(self, hidden, input_mask):
        padded, received = input_mask.shape[1], hidden.shape[1]
        if padded is not None and received is not None:
            return min(kept_count(self.fraction, padded), received)
        padded = tf.shape(input_mask)[1:2]
        return tf.minimum(relative_counts(self.fraction, padded)[0], tf.shape(hidden)[1])

    def _priorities(self, padding_mask, scores):
        """(B, n - 1) priorities of the non-[CLS] positions: higher is kept first."""
        if self.selection == "attention":
            if scores is None:
                raise ValueError(f"{self.name}: the attention selection needs scores")
            return scores[:, 1:]
        if self.selection == "head":
            later = ops.cast(ops.arange(1, ops.shape(padding_mask)[1]), "float32")
            return ops.zeros_like(ops.cast(padding_mask[:, 1:], "float32")) - later[None]
        noise = keras.random.uniform(tf.shape(padding_mask[:, 1:]), seed=self.seed_generator)
        return noise + ops.cast(padding_mask[:, 1:], noise.dtype)

    def call(self, hidden, padding_mask, scores=None, input_mask=None):
        if input_mask is None:
            raise ValueError(f"{self.name}: the relative mode needs the encoder's input mask")
        k = self._gathered_length(hidden, input_mask)
        top = tf.math.top_k(self._priorities(padding_mask, scores), k=k - 1,
                            sorted=True).indices + 1  # (B, K - 1), best first
        own = relative_counts(self.fraction, real_lengths(input_mask))  # (B,)
        keep = ops.cast(ops.arange(k - 1)[None, :] < (own - 1)[:, None], padding_mask.dtype)
        ascending = tf.argsort(top, axis=-1, stable=True)
        cls = tf.zeros_like(padding_mask[:, :1], dtype=top.dtype)
        indices = tf.concat([cls, tf.gather(top, ascending, batch_dims=1)], axis=1)  # (B, K)
        keep = tf.concat([ops.ones_like(padding_mask[:, :1]),
                          tf.gather(keep, ascending, batch_dims=1)], axis=1)
        return (tf.gather(hidden, indices, batch_dims=1),
                tf.gather(padding_mask, indices, batch_dims=1) * keep,
                ops.cast(indices, padding_mask.dtype))

    def compute_output_shape(self, hidden_shape, padding_mask_shape, scores_shape=None,
                             input_mask_shape=None):
        padded, received = (input_mask_shape or (None, None))[1], hidden_shape[1]
        kept = (None if padded is None or received is None
                else min(kept_count(self.fraction, padded), received))
        return ((hidden_shape[0], kept, hidden_shape[2]), (padding_mask_shape[0], kept),
                (padding_mask_shape[0], kept))

    def get_config(self):
        config = super().get_config()
        config.update({"fraction": self.fraction, "selection": self.selection,
                       "seed": self.seed})
        return config
