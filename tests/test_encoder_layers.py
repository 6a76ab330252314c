"""keras-hub-style contract tests for the encoder's building blocks."""
import numpy as np

from layer_testing import check_layer
from power_bert_tf.model.blocks import BertEmbedding, FeedForwardBlock, SelfAttentionBlock

RNG = np.random.default_rng(0)


def test_embedding_contract(tmp_path):
    # word, position and segment embeddings, LayerNorm gamma and beta
    check_layer(lambda **kw: BertEmbedding(50, 32, 64, dropout=0.0, name="embeddings", **kw),
                lambda n: (RNG.integers(0, 50, (2, n)).astype("int32"),
                           RNG.integers(0, 2, (2, n)).astype("int32")), tmp_path,
                num_trainable_weights=5)


def test_self_attention_block_contract(tmp_path):
    def args(n):
        mask = np.ones((2, n), "int32")
        mask[1, n // 2:] = 0
        return RNG.normal(size=(2, n, 32)).astype("float32"), mask

    # query, key, value and output kernels and biases, LayerNorm gamma and beta
    check_layer(lambda **kw: SelfAttentionBlock(32, 4, dropout=0.0, attention_dropout=0.0, **kw),
                args, tmp_path, num_trainable_weights=10)


def test_attention_probabilities_ignore_padded_keys():
    mask = np.array([[1, 1, 1, 0, 0]], "int32")
    _, probs = SelfAttentionBlock(32, 4)(RNG.normal(size=(1, 5, 32)).astype("float32"), mask)
    probs = np.asarray(probs)
    assert probs.shape == (1, 4, 5, 5)
    np.testing.assert_array_equal(probs[..., 3:], 0.0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)


def test_feed_forward_block_contract(tmp_path):
    # two dense kernels and biases, LayerNorm gamma and beta
    check_layer(lambda **kw: FeedForwardBlock(32, 64, dropout=0.0, **kw),
                lambda n: (RNG.normal(size=(2, n, 32)).astype("float32"),), tmp_path,
                num_trainable_weights=6)
