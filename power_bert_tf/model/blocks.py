"""The layers a BERT encoder is built of: embeddings, the self-attention block and the
feed-forward block (each with its Add & LayerNorm). The extract slot sits between the
two blocks of a layer (model/encoder.py)."""
from __future__ import annotations

import keras
from keras import ops


def initializer(stddev: float) -> keras.initializers.Initializer:
    """BERT's truncated-normal initialiser."""
    return keras.initializers.TruncatedNormal(stddev=stddev)


def _activation(name: str):
    if name == "gelu":
        return lambda x: keras.activations.gelu(x, approximate=False)
    if name == "gelu_approximate":
        return lambda x: keras.activations.gelu(x, approximate=True)
    return keras.activations.get(name)


@keras.saving.register_keras_serializable(package="power_bert_tf")
class BertEmbedding(keras.layers.Layer):
    """Word + position + segment embeddings, LayerNorm, dropout.

    Call args:
        token_ids: (B, T) int word-piece ids.
        segment_ids: (B, T) int segment (token type) ids.

    Returns:
        (B, T, D) embeddings.
    """

    def __init__(self, vocabulary_size: int, hidden_size: int, max_sequence_length: int,
                 type_vocabulary_size: int = 2, dropout: float = 0.1,
                 layer_norm_epsilon: float = 1e-12, initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.hidden_size = hidden_size
        self.max_sequence_length = max_sequence_length
        self.type_vocabulary_size = type_vocabulary_size
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range

    def build(self, token_ids_shape, segment_ids_shape):
        init = initializer(self.initializer_range)
        self.word_embeddings = keras.layers.Embedding(
            self.vocabulary_size, self.hidden_size, embeddings_initializer=init,
            dtype=self.dtype_policy, name="word_embeddings")
        self.position_embeddings = keras.layers.Embedding(
            self.max_sequence_length, self.hidden_size, embeddings_initializer=init,
            dtype=self.dtype_policy, name="position_embeddings")
        self.segment_embeddings = keras.layers.Embedding(
            self.type_vocabulary_size, self.hidden_size, embeddings_initializer=init,
            dtype=self.dtype_policy, name="segment_embeddings")
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm")
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="dropout")
        for layer in (self.word_embeddings, self.position_embeddings, self.segment_embeddings):
            layer.build(None)
        self.layer_norm.build((None, None, self.hidden_size))

    def call(self, token_ids, segment_ids, training=None):
        positions = ops.arange(ops.shape(token_ids)[1])
        x = (self.word_embeddings(token_ids)
             + self.position_embeddings(positions)[None]
             + self.segment_embeddings(segment_ids))
        return self.dropout_layer(self.layer_norm(x), training=training)

    def compute_output_shape(self, token_ids_shape, segment_ids_shape):
        return (*token_ids_shape, self.hidden_size)

    def get_config(self):
        config = super().get_config()
        config.update({
            "vocabulary_size": self.vocabulary_size, "hidden_size": self.hidden_size,
            "max_sequence_length": self.max_sequence_length,
            "type_vocabulary_size": self.type_vocabulary_size, "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "initializer_range": self.initializer_range,
        })
        return config


@keras.saving.register_keras_serializable(package="power_bert_tf")
class SelfAttentionBlock(keras.layers.Layer):
    """Multi-head self-attention with dropout, residual and post-LayerNorm.

    Call args:
        hidden: (B, T, D) word-vectors.
        padding_mask: (B, T), 1 for real tokens; padded keys get probability 0.

    Returns:
        (hidden, attention_probs): (B, T, D) and (B, H, T, T) (query, key).
    """

    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.1,
                 attention_dropout: float = 0.1, layer_norm_epsilon: float = 1e-12,
                 initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range

    def build(self, hidden_shape, padding_mask_shape):
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads, key_dim=self.hidden_size // self.num_heads,
            dropout=self.attention_dropout,
            kernel_initializer=initializer(self.initializer_range),
            dtype=self.dtype_policy, name="multi_head_attention")
        self.attention.build(hidden_shape, hidden_shape)
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="dropout")
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm")
        self.layer_norm.build(hidden_shape)

    def call(self, hidden, padding_mask, training=None):
        attention_mask = ops.cast(padding_mask, "bool")[:, None, :]  # (B, 1, T_key)
        output, probs = self.attention(hidden, hidden, attention_mask=attention_mask,
                                       return_attention_scores=True, training=training)
        output = self.layer_norm(hidden + self.dropout_layer(output, training=training))
        return output, probs

    def compute_output_shape(self, hidden_shape, padding_mask_shape):
        batch, length = hidden_shape[0], hidden_shape[1]
        return hidden_shape, (batch, self.num_heads, length, length)

    def get_config(self):
        config = super().get_config()
        config.update({
            "hidden_size": self.hidden_size, "num_heads": self.num_heads,
            "dropout": self.dropout, "attention_dropout": self.attention_dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "initializer_range": self.initializer_range,
        })
        return config


@keras.saving.register_keras_serializable(package="power_bert_tf")
class FeedForwardBlock(keras.layers.Layer):
    """Position-wise feed-forward with dropout, residual and post-LayerNorm.

    Call args:
        hidden: (B, T, D) the word-vectors the extract slot kept.

    Returns:
        (B, T, D).
    """

    def __init__(self, hidden_size: int, intermediate_size: int, activation: str = "gelu",
                 dropout: float = 0.1, layer_norm_epsilon: float = 1e-12,
                 initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.activation = activation
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range

    def build(self, hidden_shape):
        init = initializer(self.initializer_range)
        self.intermediate_dense = keras.layers.Dense(
            self.intermediate_size, activation=_activation(self.activation),
            kernel_initializer=init, dtype=self.dtype_policy, name="intermediate_dense")
        self.intermediate_dense.build(hidden_shape)
        self.output_dense = keras.layers.Dense(
            self.hidden_size, kernel_initializer=init, dtype=self.dtype_policy,
            name="output_dense")
        self.output_dense.build((*hidden_shape[:-1], self.intermediate_size))
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="dropout")
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm")
        self.layer_norm.build(hidden_shape)

    def call(self, hidden, training=None):
        output = self.output_dense(self.intermediate_dense(hidden))
        return self.layer_norm(hidden + self.dropout_layer(output, training=training))

    def compute_output_shape(self, hidden_shape):
        return hidden_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "hidden_size": self.hidden_size, "intermediate_size": self.intermediate_size,
            "activation": self.activation, "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "initializer_range": self.initializer_range,
        })
        return config
