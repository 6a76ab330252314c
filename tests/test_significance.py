"""SignificanceScore: column sum minus diagonal of the head-averaged attention."""
import numpy as np
import pytest

from layer_testing import check_layer
from power_bert_tf.model.significance import SignificanceScore


def test_single_head_hand_computed():
    probs = np.array([[[[0.5, 0.3, 0.2],
                        [0.1, 0.6, 0.3],
                        [0.2, 0.2, 0.6]]]], "float32")
    scores = SignificanceScore()(probs, np.ones((1, 3), "int32"))
    # key 0 receives 0.1 + 0.2, key 1 receives 0.3 + 0.2, key 2 receives 0.2 + 0.3.
    np.testing.assert_allclose(scores, [[0.3, 0.5, 0.5]], atol=1e-7)


def test_heads_are_averaged_any_head_count():
    rng = np.random.default_rng(0)
    for heads in (1, 3, 5):
        logits = rng.normal(size=(2, heads, 6, 6))
        probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype("float32")
        expected = np.zeros((2, 6))
        for b in range(2):
            for k in range(6):
                expected[b, k] = sum(probs[b, :, q, k].mean() for q in range(6) if q != k)
        got = SignificanceScore()(probs, np.ones((2, 6), "int32"))
        np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("include, expected", [(False, [0.3, 0.4, 0.0]),
                                               (True, [0.8, 0.9, 0.0])])
def test_padding_scores_zero(include, expected):
    # Position 2 is padding: no query attends to it.
    probs = np.array([[[[0.6, 0.4, 0.0],
                        [0.3, 0.7, 0.0],
                        [0.5, 0.5, 0.0]]]], "float32")
    mask = np.array([[1, 1, 0]], "int32")
    scores = SignificanceScore(include_padded_queries=include)(probs, mask)
    np.testing.assert_allclose(scores, [expected], atol=1e-7)


def test_real_tokens_score_positive_padding_zero():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(1, 4, 5, 5))
    mask = np.array([[1, 1, 1, 0, 0]], "int32")
    logits = np.where(mask[:, None, None, :] > 0, logits, -1e9)
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype("float32")
    scores = np.asarray(SignificanceScore()(probs, mask))
    assert (scores[0, :3] > 0).all() and (scores[0, 3:] == 0).all()


def test_layer_contract(tmp_path):
    rng = np.random.default_rng(2)

    def make_args(length):
        probs = rng.random((2, 3, length, length)).astype("float32")
        probs /= probs.sum(-1, keepdims=True)
        return probs, np.ones((2, length), "int32")

    check_layer(lambda **kw: SignificanceScore(include_padded_queries=True, **kw), make_args,
                tmp_path, num_trainable_weights=0)
