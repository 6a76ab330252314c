"""Significance score: the attention a word-vector receives from the others."""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="power_bert_tf")
class SignificanceScore(keras.layers.Layer):
    """Scores each position by the attention it receives (docs/method.md, "Significance score").

        sig[b, k] = sum over queries q != k of mean over heads h of A[b, h, q, k]

    Padded keys receive probability 0, so padding scores 0 and every real token
    scores > 0. Works for any head count.

    Args:
        include_padded_queries: also count attention paid by padded query rows.
            The IBM reference does (its padding is fixed at N); the default
            `False` makes a real token's score independent of how much padding
            follows it, so length buckets give the same kept set as padding to N.

    Call args:
        attention_probs: (B, H, T, T) softmax probabilities, query axis then key axis.
        padding_mask: (B, T), 1 for real tokens, 0 for padding.

    Returns:
        (B, T) float scores.

    Example:

    >>> import numpy as np
    >>> probs = np.array([[[[0.5, 0.5, 0.0]] * 3]], "float32")  # (1, 1, 3, 3); key 2 padded
    >>> mask = np.array([[1, 1, 0]], "int32")
    >>> np.asarray(SignificanceScore()(probs, mask)).tolist()  # padding scores 0
    [[0.5, 0.5, 0.0]]
    """

    def __init__(self, include_padded_queries: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.include_padded_queries = include_padded_queries
        # The softmax inside attention attaches its mask to the probabilities;
        # the score consumes it (padded keys are 0) and passes none on.
        self.supports_masking = True

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def call(self, attention_probs, padding_mask):
        probs = ops.mean(attention_probs, axis=1)  # (B, T_query, T_key)
        # One weight per (query, key): 0 on the diagonal (q == k) and, by default, on
        # padded query rows. Cheaper than subtracting the diagonal (no gather of it:
        # 4 fewer ONNX nodes a layer), and nothing cancels.
        length = ops.shape(probs)[-1]
        weights = 1.0 - ops.eye(length, dtype=probs.dtype)  # (T_query, T_key)
        if not self.include_padded_queries:
            weights = weights * ops.cast(padding_mask, probs.dtype)[:, :, None]
        return ops.sum(probs * weights, axis=1)

    def compute_output_shape(self, attention_probs_shape, padding_mask_shape):
        return padding_mask_shape

    def get_config(self):
        config = super().get_config()
        config.update({"include_padded_queries": self.include_padded_queries})
        return config
