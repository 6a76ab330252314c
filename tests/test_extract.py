"""SoftExtract and HardExtract (with the Head-WS / Rand-WS strategies)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from layer_testing import check_layer
from power_bert_tf.model.extract import HardExtract, SoftExtract


def _hidden(batch, length, dim=4):
    # Row t of every example holds the value t, so gathered rows name their position.
    return np.broadcast_to(np.arange(length, dtype="float32")[None, :, None],
                           (batch, length, dim)).copy()


# ---- SoftExtract -------------------------------------------------------------

def test_soft_extract_initial_r_is_identity():
    hidden = np.random.default_rng(0).normal(size=(2, 6, 4)).astype("float32")
    scores = np.random.default_rng(1).random((2, 6)).astype("float32")
    layer = SoftExtract(sequence_length=6)
    np.testing.assert_array_equal(layer(hidden, scores), hidden)
    np.testing.assert_array_equal(np.asarray(layer.retention_parameters), np.ones(6))


def test_soft_extract_scales_by_rank():
    layer = SoftExtract(sequence_length=4)
    layer(np.zeros((1, 4, 2), "float32"), np.zeros((1, 4), "float32"))
    layer.retention_parameters.assign([1.0, 0.8, 0.5, 0.2])
    scores = np.array([[0.3, 0.9, 0.1, 0.5]], "float32")  # ranks: 2, 0, 3, 1
    out = layer(np.ones((1, 4, 2), "float32"), scores)
    np.testing.assert_allclose(out[0, :, 0], [0.5, 1.0, 0.2, 0.8], atol=1e-7)


def test_soft_extract_shorter_input_uses_prefix_of_r():
    layer = SoftExtract(sequence_length=6)
    layer(np.zeros((1, 6, 2), "float32"), np.zeros((1, 6), "float32"))
    layer.retention_parameters.assign([1.0, 0.9, 0.8, 0.7, 0.6, 0.5])
    out = layer(np.ones((1, 3, 2), "float32"), np.array([[0.1, 0.3, 0.2]], "float32"))
    np.testing.assert_allclose(out[0, :, 0], [0.8, 1.0, 0.9], atol=1e-7)


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_soft_extract_r_is_clipped_after_an_optimizer_step(direction):
    hidden = keras.Input((5, 3))
    scores = keras.Input((5,))
    layer = SoftExtract(sequence_length=5)
    model = keras.Model([hidden, scores], layer(hidden, scores))
    optimizer = keras.optimizers.SGD(learning_rate=10.0)
    x = [np.ones((2, 5, 3), "float32"), np.random.default_rng(0).random((2, 5)).astype("float32")]
    with tf.GradientTape() as tape:
        loss = direction * tf.reduce_sum(model(x))  # pushes r far below 0 / above 1
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                  model.trainable_variables))
    r = np.asarray(layer.retention_parameters)
    assert ((r >= 0) & (r <= 1)).all()
    np.testing.assert_array_equal(r, np.zeros(5) if direction > 0 else np.ones(5))


def test_soft_extract_mass_loss():
    layer = SoftExtract(sequence_length=4, mass_penalty=0.5)
    layer(np.zeros((1, 4, 2), "float32"), np.zeros((1, 4), "float32"))
    layer.retention_parameters.assign([1.0, 0.5, 0.25, 0.0])
    assert float(layer.mass()) == pytest.approx(1.75)
    assert float(sum(layer.losses)) == pytest.approx(0.5 * 1.75)


def _distinct_scores(rng, n):
    # Multiples of 1/n: distinct even in bfloat16, so every dtype ranks alike.
    return np.stack([rng.permutation(n), rng.permutation(n)]).astype("float32") / n


def test_soft_extract_contract(tmp_path):
    rng = np.random.default_rng(3)
    check_layer(lambda **kw: SoftExtract(sequence_length=12, mass_penalty=1e-3, **kw),
                lambda n: (rng.normal(size=(2, n, 4)).astype("float32"),
                           _distinct_scores(rng, n)), tmp_path, num_trainable_weights=1)


# ---- HardExtract -------------------------------------------------------------

def test_hard_extract_keeps_cls_and_top_scores_in_order():
    scores = np.array([[0.0, 0.9, 0.1, 0.5, 0.7]], "float32")  # [CLS] scores lowest
    mask = np.ones((1, 5), "int32")
    hidden, kept_mask, indices = HardExtract(retain=3)(_hidden(1, 5), mask, scores)
    np.testing.assert_array_equal(hidden[0, :, 0], [0, 1, 4])
    np.testing.assert_array_equal(indices, [[0, 1, 4]])
    np.testing.assert_array_equal(kept_mask, [[1, 1, 1]])


def test_hard_extract_gathers_mask_with_the_same_indices():
    # Real length 3; the two padded positions score 0 and lose to real tokens.
    scores = np.array([[0.2, 0.0, 0.0, 0.4, 0.3, 0.0]], "float32")
    mask = np.array([[1, 0, 0, 1, 1, 0]], "int32")
    hidden, kept_mask, _ = HardExtract(retain=4)(_hidden(1, 6), mask, scores)
    np.testing.assert_array_equal(hidden[0, :, 0], [0, 1, 3, 4])
    np.testing.assert_array_equal(kept_mask, [[1, 0, 1, 1]])  # not the first 4 of the mask


def test_hard_extract_input_shorter_than_retain_keeps_everything():
    hidden, mask = _hidden(2, 3), np.ones((2, 3), "int32")
    out, out_mask, _ = HardExtract(retain=8)(hidden, mask, np.random.random((2, 3)))
    np.testing.assert_array_equal(out, hidden)
    np.testing.assert_array_equal(out_mask, mask)


def test_hard_extract_retain_one_keeps_only_cls():
    out, mask, _ = HardExtract(retain=1)(_hidden(2, 5), np.ones((2, 5), "int32"),
                                      np.random.random((2, 5)).astype("float32"))
    assert out.shape == (2, 1, 4)
    np.testing.assert_array_equal(out[:, 0, 0], [0, 0])


def test_head_strategy_keeps_first_positions():
    out, mask, indices = HardExtract(retain=3, selection="head")(_hidden(2, 6),
                                                               np.ones((2, 6), "int32"))
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 2])
    np.testing.assert_array_equal(indices, [[0, 1, 2], [0, 1, 2]])


def test_random_strategy_keeps_cls_real_tokens_sorted_and_varies():
    mask = np.array([[1] * 10 + [0] * 6], "int32")
    layer = HardExtract(retain=5, selection="random", seed=7)
    draws = []
    for _ in range(6):
        out, kept_mask, _ = layer(_hidden(1, 16), mask)
        positions = np.asarray(out[0, :, 0]).astype(int)
        assert positions[0] == 0
        assert (np.diff(positions) > 0).all()  # distinct, ascending
        assert (positions < 10).all() and (np.asarray(kept_mask) == 1).all()
        draws.append(tuple(positions))
    assert len(set(draws)) > 1
    again = HardExtract(retain=5, selection="random", seed=7)
    assert tuple(np.asarray(again(_hidden(1, 16), mask)[0][0, :, 0]).astype(int)) == draws[0]


def test_hard_extract_rejects_bad_arguments():
    with pytest.raises(ValueError, match="selection"):
        HardExtract(retain=3, selection="tail")
    with pytest.raises(ValueError, match="retain"):
        HardExtract(retain=0)


@pytest.mark.parametrize("selection", ["attention", "head"])
def test_hard_extract_contract(tmp_path, selection):
    rng = np.random.default_rng(4)
    check_layer(lambda **kw: HardExtract(retain=6, selection=selection, **kw),
                lambda n: (rng.normal(size=(2, n, 4)).astype("float32"),
                           np.ones((2, n), "int32"), _distinct_scores(rng, n)),
                tmp_path, num_trainable_weights=0, lengths=(4, 12))


def test_random_strategy_contract(tmp_path):
    rng = np.random.default_rng(5)
    check_layer(lambda **kw: HardExtract(retain=6, selection="random", seed=1, **kw),
                lambda n: (rng.normal(size=(2, n, 4)).astype("float32"),
                           np.ones((2, n), "int32")),
                tmp_path, num_trainable_weights=0, num_seed_generators=1, lengths=(4, 12),
                deterministic=False)
