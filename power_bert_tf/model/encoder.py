"""A Keras 3 BERT encoder with an extract slot in every layer.

Encoder layer j on its n_{j-1} input vectors (docs/method.md, "Where elimination happens"):
  1. `SelfAttentionBlock`: multi-head self-attention, Add & LayerNorm;
  2. extract slot: `SignificanceScore` -> `SoftExtract` (search) or `HardExtract`
     (retrain, inference), or nothing (plain BERT);
  3. `FeedForwardBlock`: dense -> activation -> dense, Add & LayerNorm, on the
     n_j vectors the slot kept.
`extract_stack` wires these for any list of per-layer blocks, so `AlbertEncoder`
(model/albert.py) reuses it with blocks shared across layers.
"""
from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from power_bert_tf.model.blocks import (BertEmbedding, FeedForwardBlock, SelfAttentionBlock,
                                        initializer)
from power_bert_tf.model.config import SELECTIONS
from power_bert_tf.model.extract import (HardExtract, RelativeHardExtract,
                                         RelativeSoftExtract, SoftExtract)
from power_bert_tf.model.retention import Retention, RetentionConfig, check_mode, make_retention
from power_bert_tf.model.significance import SignificanceScore

EXTRACT_MODES = ("none", "soft", "hard")


Blocks = list[tuple[SelfAttentionBlock, FeedForwardBlock]]


def check_extract_options(num_layers: int, max_sequence_length: int, extract: str,
                          sequence_length: int | None, retention: Sequence[int] | None,
                          selection: str, retention_mode: str = "absolute") -> None:
    """Raises ValueError (PowerBertError for retention) on inconsistent extract options."""
    check_mode(retention_mode)
    if extract not in EXTRACT_MODES:
        raise ValueError(f"extract must be one of {EXTRACT_MODES}, got {extract!r}")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if extract == "soft" and sequence_length is None:
        raise ValueError("extract='soft' needs sequence_length (the length of r)")
    if extract == "hard":
        if retention is None:
            raise ValueError("extract='hard' needs a retention configuration")
        if retention_mode == "relative":
            config = make_retention(retention, sequence_length or max_sequence_length,
                                    retention_mode)
        else:
            config = RetentionConfig(tuple(retention), sequence_length or max(retention))
        config.check_layers(num_layers)
    if sequence_length is not None and sequence_length > max_sequence_length:
        raise ValueError(f"sequence_length {sequence_length} exceeds max_sequence_length "
                         f"{max_sequence_length}")


def extract_stack(hidden, mask, blocks: Blocks, *, extract: str, sequence_length: int | None,
                  retention: Sequence[int] | None, selection: str, mass_lambda: float,
                  include_padded_queries: bool, seed: int | None,
                  retention_mode: str = "absolute") -> dict:
    """Runs the encoder layers on (B, T, D) `hidden` with a (B, T) `mask`.

    `blocks[j - 1]` is layer j's (attention, feed-forward) pair; the same pair may
    serve several layers (ALBERT), while each layer j gets its own extract slot,
    `layer_{j}_significance` -> `layer_{j}_soft_extract` | `layer_{j}_hard_extract`.
    With `retention_mode="relative"` the slots are `RelativeSoftExtract` and
    `RelativeHardExtract`, fed the input `mask` (each input's real length); a
    position they mask out is -1 in `kept_positions`.

    Returns:
        The encoder outputs without the pooler: `sequence_output`, `padding_mask`,
        `encoder_outputs` and `kept_positions` (see `BertEncoder`).
    """
    positions = ops.cumsum(ops.ones_like(mask), axis=1) - 1  # (B, T) 0, 1, ...
    if retention_mode == "relative":
        return _relative_stack(hidden, mask, positions, blocks, extract=extract,
                               sequence_length=sequence_length, retention=retention,
                               selection=selection, mass_lambda=mass_lambda,
                               include_padded_queries=include_padded_queries, seed=seed)
    encoder_outputs, kept_positions = [], []
    for j, (attention, feed_forward) in enumerate(blocks, start=1):
        hidden, probs = attention(hidden, mask)
        if extract == "soft" or (extract == "hard" and selection == "attention"):
            scores = SignificanceScore(include_padded_queries,
                                       name=f"layer_{j}_significance")(probs, mask)
        if extract == "soft":
            hidden = SoftExtract(sequence_length, mass_lambda * j,
                                 name=f"layer_{j}_soft_extract")(hidden, scores)
        elif extract == "hard":
            hidden, mask, indices = HardExtract(
                retention[j - 1], selection, seed, name=f"layer_{j}_hard_extract",
            )(hidden, mask, scores if selection == "attention" else None)
            positions = ops.take_along_axis(positions, indices, axis=1)
        hidden = feed_forward(hidden)
        encoder_outputs.append(hidden)
        kept_positions.append(positions)
    return {"sequence_output": hidden, "padding_mask": mask,
            "encoder_outputs": encoder_outputs, "kept_positions": kept_positions}


def _relative_stack(hidden, mask, positions, blocks: Blocks, *, extract: str,
                    sequence_length: int | None, retention: Sequence[float] | None,
                    selection: str, mass_lambda: float, include_padded_queries: bool,
                    seed: int | None) -> dict:
    """`extract_stack` in the relative mode: the input mask travels to every slot."""
    input_mask = mask
    encoder_outputs, kept_positions = [], []
    for j, (attention, feed_forward) in enumerate(blocks, start=1):
        hidden, probs = attention(hidden, mask)
        if extract == "soft" or (extract == "hard" and selection == "attention"):
            scores = SignificanceScore(include_padded_queries,
                                       name=f"layer_{j}_significance")(probs, mask)
        if extract == "soft":
            hidden = RelativeSoftExtract(sequence_length, mass_lambda * j,
                                         name=f"layer_{j}_soft_extract")(hidden, scores, mask)
        elif extract == "hard":
            hidden, mask, indices = RelativeHardExtract(
                retention[j - 1], selection, seed, name=f"layer_{j}_hard_extract",
            )(hidden, mask, scores if selection == "attention" else None, input_mask)
            positions = ops.take_along_axis(positions, indices, axis=1)
            positions = ops.where(ops.not_equal(mask, 0), positions, -1)
        hidden = feed_forward(hidden)
        encoder_outputs.append(hidden)
        kept_positions.append(positions)
    return {"sequence_output": hidden, "padding_mask": mask,
            "encoder_outputs": encoder_outputs, "kept_positions": kept_positions}


@keras.saving.register_keras_serializable(package="power_bert_tf")
class BertEncoder(keras.Model):
    """BERT encoder (embeddings, L post-LN layers, pooler) with PoWER-BERT extract slots.

    Args:
        vocabulary_size, num_layers, hidden_size, num_heads, intermediate_size,
        max_sequence_length, type_vocabulary_size, dropout, attention_dropout,
        layer_norm_epsilon, activation: the BERT shape (see `EncoderConfig`).
        extract: "none" (plain BERT), "soft" (configuration search) or "hard".
        sequence_length: N, the padded input length the model is trained for; required
            for "soft" (the length of each r_j), optional otherwise. Inputs may be
            shorter (T <= N, e.g. batches trimmed to their longest row): padded
            positions are inert, and a layer keeps min(l_j, T) vectors.
        retention: (l_1, ..., l_L) kept vectors per layer, for "hard".
        selection: "attention" (PoWER-BERT), "head" or "random" (baselines), for "hard".
        mass_lambda: lambda of the search loss; layer j's mass is weighted lambda * j.
        include_padded_queries: see `SignificanceScore`.
        seed: seed of the "random" selection.
        retention_mode: "absolute" (the paper's: `retention` counts l_j at N) or
            "relative" (`retention` fractions f_j: an input of real length T keeps
            ceil(f_j * T); see `RelativeHardExtract` and `RelativeSoftExtract`).

    Inputs: dict of int32 (B, T) tensors `input_word_ids`, `input_mask`, `input_type_ids`.

    Outputs: dict with `sequence_output` (B, n_L, D), `pooled_output` (B, D),
    `padding_mask` (B, n_L), `encoder_outputs`, the list of every layer's
    output (B, n_j, D), and `kept_positions`, the list of every layer's (B, n_j)
    input positions of the vectors it kept.

    Subclasses (`AlbertEncoder`) change the embeddings and the layer blocks by
    overriding `embed` and `layer_blocks`; the extract slots and the pooler stay.

    Example:

    >>> import numpy as np
    >>> encoder = BertEncoder(vocabulary_size=30, num_layers=2, hidden_size=8, num_heads=2,
    ...                       intermediate_size=16, max_sequence_length=16, extract="hard",
    ...                       sequence_length=8, retention=[5, 2])
    >>> ids = np.ones((3, 8), "int32")
    >>> outputs = encoder({"input_word_ids": ids, "input_mask": ids,
    ...                    "input_type_ids": np.zeros_like(ids)})
    >>> [tuple(layer.shape) for layer in outputs["encoder_outputs"]]  # 5, then 2 vectors
    [(3, 5, 8), (3, 2, 8)]
    >>> tuple(outputs["pooled_output"].shape)
    (3, 8)
    """

    model_type = "bert"

    def __init__(self, vocabulary_size: int, num_layers: int, hidden_size: int,
                 num_heads: int, intermediate_size: int, max_sequence_length: int = 512,
                 type_vocabulary_size: int = 2, dropout: float = 0.1,
                 attention_dropout: float = 0.1, layer_norm_epsilon: float = 1e-12,
                 activation: str = "gelu", extract: str = "none",
                 sequence_length: int | None = None, retention: Sequence[int] | None = None,
                 selection: str = "attention", mass_lambda: float = 0.0,
                 include_padded_queries: bool = False, seed: int | None = None,
                 retention_mode: str = "absolute", **kwargs):
        check_extract_options(num_layers, max_sequence_length, extract, sequence_length,
                              retention, selection, retention_mode)
        inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name)
                  for name in ("input_word_ids", "input_mask", "input_type_ids")}
        hidden = self.embed(inputs, vocabulary_size=vocabulary_size, hidden_size=hidden_size,
                            max_sequence_length=max_sequence_length,
                            type_vocabulary_size=type_vocabulary_size, dropout=dropout,
                            layer_norm_epsilon=layer_norm_epsilon)
        blocks = self.layer_blocks(
            num_layers=num_layers, hidden_size=hidden_size, num_heads=num_heads,
            intermediate_size=intermediate_size, dropout=dropout,
            attention_dropout=attention_dropout, layer_norm_epsilon=layer_norm_epsilon,
            activation=activation)
        outputs = extract_stack(
            hidden, inputs["input_mask"], blocks, extract=extract,
            sequence_length=sequence_length, retention=retention, selection=selection,
            mass_lambda=mass_lambda, include_padded_queries=include_padded_queries, seed=seed,
            retention_mode=retention_mode)
        pooled = keras.layers.Dense(hidden_size, activation="tanh",
                                    kernel_initializer=initializer(0.02),
                                    name="pooler")(outputs["sequence_output"][:, 0, :])
        super().__init__(inputs=inputs, outputs={
            "sequence_output": outputs["sequence_output"], "pooled_output": pooled,
            "padding_mask": outputs["padding_mask"],
            "encoder_outputs": outputs["encoder_outputs"],
            "kept_positions": outputs["kept_positions"],
        }, **kwargs)

        self._block_names = [(attention.name, ff.name) for attention, ff in blocks]
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.max_sequence_length = max_sequence_length
        self.type_vocabulary_size = type_vocabulary_size
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.activation = activation
        self.extract = extract
        self.sequence_length = sequence_length
        self.retention = None if retention is None else [
            float(value) if retention_mode == "relative" else int(value) for value in retention]
        self.retention_mode = retention_mode
        self.selection = selection
        self.mass_lambda = mass_lambda
        self.include_padded_queries = include_padded_queries
        self.seed = seed

    def embed(self, inputs: dict, *, vocabulary_size: int, hidden_size: int,
              max_sequence_length: int, type_vocabulary_size: int, dropout: float,
              layer_norm_epsilon: float):
        """Symbolic inputs -> (B, T, D) embeddings, the `embeddings` layer."""
        return BertEmbedding(
            vocabulary_size, hidden_size, max_sequence_length, type_vocabulary_size,
            dropout, layer_norm_epsilon, name="embeddings",
        )(inputs["input_word_ids"], inputs["input_type_ids"])

    def layer_blocks(self, *, num_layers: int, hidden_size: int, num_heads: int,
                     intermediate_size: int, dropout: float, attention_dropout: float,
                     layer_norm_epsilon: float, activation: str) -> Blocks:
        """Each layer's own attention and feed-forward blocks, `layer_{j}_*`."""
        return [(SelfAttentionBlock(hidden_size, num_heads, dropout, attention_dropout,
                                    layer_norm_epsilon, name=f"layer_{j}_attention"),
                 FeedForwardBlock(hidden_size, intermediate_size, activation, dropout,
                                  layer_norm_epsilon, name=f"layer_{j}_feed_forward"))
                for j in range(1, num_layers + 1)]

    def embedded(self, features: dict) -> "keras.KerasTensor":
        """(B, T, D) inputs of layer 1 for `features` (the embeddings, inference mode)."""
        return self.get_layer("embeddings")(features["input_word_ids"],
                                            features["input_type_ids"])

    def blocks(self, j: int) -> tuple[SelfAttentionBlock, FeedForwardBlock]:
        """Layer j's (attention, feed-forward) blocks, 1-based; shared across layers in
        ALBERT. The extract slot between them is `extract_slot(j)`."""
        if not 1 <= j <= self.num_layers:
            raise ValueError(f"layer {j} is not in [1, {self.num_layers}]")
        attention, feed_forward = self._block_names[j - 1]
        return self.get_layer(attention), self.get_layer(feed_forward)

    def extract_slot(self, j: int) -> keras.layers.Layer | None:
        """Layer j's extract layer (SoftExtract or HardExtract), None in a plain encoder."""
        if self.extract == "none":
            return None
        return self.get_layer(f"layer_{j}_{self.extract}_extract")

    def soft_extract_layers(self) -> list[SoftExtract]:
        return [self.get_layer(f"layer_{j}_soft_extract") for j in range(1, self.num_layers + 1)]

    def masses(self) -> list[float]:
        """mass(j) = sum_i r_j[i] for every layer (search encoders only)."""
        return [float(layer.mass()) for layer in self.soft_extract_layers()]

    def retention_config(self) -> Retention | None:
        """The Hard-Extract configuration in its mode (None without Hard-Extract)."""
        if self.retention is None:
            return None
        return make_retention(self.retention, self.sequence_length or self.max_sequence_length,
                              self.retention_mode)

    def get_config(self):
        return {
            "name": self.name, "trainable": self.trainable,
            "vocabulary_size": self.vocabulary_size, "num_layers": self.num_layers,
            "hidden_size": self.hidden_size, "num_heads": self.num_heads,
            "intermediate_size": self.intermediate_size,
            "max_sequence_length": self.max_sequence_length,
            "type_vocabulary_size": self.type_vocabulary_size, "dropout": self.dropout,
            "attention_dropout": self.attention_dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon, "activation": self.activation,
            "extract": self.extract, "sequence_length": self.sequence_length,
            "retention": self.retention, "selection": self.selection,
            "mass_lambda": self.mass_lambda,
            "include_padded_queries": self.include_padded_queries, "seed": self.seed,
            "retention_mode": self.retention_mode,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
