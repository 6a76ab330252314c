"""ALBERT (Lan et al., ICLR 2020) with PoWER-BERT extract slots.

ALBERT is BERT with two changes, both made here by overriding `BertEncoder`'s
`embed` and `layer_blocks` (the layer stack, extract slots and pooler are BERT's):
  - factorised embeddings: word, position and segment embeddings of width E
    (`embedding_size`, e.g. 128), LayerNorm, then a dense projection to D;
  - cross-layer sharing: one attention block and one feed-forward block per group
    (`num_hidden_groups`, 1 in every released model), called by every layer of the
    group. Each layer j still has its own extract slot (`layer_{j}_significance`,
    `layer_{j}_soft_extract` or `layer_{j}_hard_extract`), so retention is per layer
    although the weights are shared.
"""
from __future__ import annotations

import keras

from power_bert_tf.model.blocks import BertEmbedding, FeedForwardBlock, SelfAttentionBlock
from power_bert_tf.model.encoder import BertEncoder, Blocks


@keras.saving.register_keras_serializable(package="power_bert_tf")
class AlbertEncoder(BertEncoder):
    """ALBERT encoder with PoWER-BERT extract slots.

    Args:
        embedding_size: E, the embeddings' width, projected to `hidden_size` by the
            `embedding_projection` layer.
        num_hidden_groups: G, groups of shared weights; layer j (1-based) uses the
            blocks `group_{g}_attention` and `group_{g}_feed_forward` with
            g = (j - 1) * G // L (0-based, as ALBERT's checkpoints count groups).
        Every other argument, the inputs and the outputs are `BertEncoder`'s.
    """

    model_type = "albert"

    def __init__(self, *args, embedding_size: int = 128, num_hidden_groups: int = 1,
                 **kwargs):
        # Read by `embed` and `layer_blocks` while `BertEncoder.__init__` builds the graph.
        self.embedding_size = embedding_size
        self.num_hidden_groups = num_hidden_groups
        super().__init__(*args, **kwargs)

    def embed(self, inputs: dict, *, vocabulary_size: int, hidden_size: int,
              max_sequence_length: int, type_vocabulary_size: int, dropout: float,
              layer_norm_epsilon: float):
        """Symbolic inputs -> (B, T, E) embeddings -> (B, T, D) projection."""
        embeddings = BertEmbedding(
            vocabulary_size, self.embedding_size, max_sequence_length, type_vocabulary_size,
            dropout, layer_norm_epsilon, name="embeddings",
        )(inputs["input_word_ids"], inputs["input_type_ids"])
        return keras.layers.Dense(
            hidden_size, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="embedding_projection")(embeddings)

    def layer_blocks(self, *, num_layers: int, hidden_size: int, num_heads: int,
                     intermediate_size: int, dropout: float, attention_dropout: float,
                     layer_norm_epsilon: float, activation: str) -> Blocks:
        """One (attention, feed-forward) pair per group, repeated for its layers."""
        groups = self.num_hidden_groups
        if not 1 <= groups <= num_layers:
            raise ValueError(f"num_hidden_groups must be in [1, num_layers={num_layers}], "
                             f"got {groups}")
        shared = [(SelfAttentionBlock(hidden_size, num_heads, dropout, attention_dropout,
                                      layer_norm_epsilon, name=f"group_{g}_attention"),
                   FeedForwardBlock(hidden_size, intermediate_size, activation, dropout,
                                    layer_norm_epsilon, name=f"group_{g}_feed_forward"))
                  for g in range(groups)]
        return [shared[layer * groups // num_layers] for layer in range(num_layers)]

    def embedded(self, features: dict):
        """(B, T, D): the (B, T, E) embeddings projected to the hidden width."""
        return self.get_layer("embedding_projection")(super().embedded(features))

    def get_config(self):
        return {**super().get_config(), "embedding_size": self.embedding_size,
                "num_hidden_groups": self.num_hidden_groups}
