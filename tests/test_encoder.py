"""BertEncoder: extract modes, physical elimination, saving, XLA, validation."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY, random_inputs
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.encoder import BertEncoder

MODES = {
    "none": {},
    "soft": dict(extract="soft", sequence_length=16, mass_lambda=1e-3),
    "hard": dict(extract="hard", retention=[10, 6, 3]),
    "head": dict(extract="hard", retention=[10, 6, 3], selection="head"),
}


def test_ffn_sees_physically_smaller_tensors():
    retention = [9, 5, 2]
    encoder = BertEncoder(**TINY, extract="hard", retention=retention, sequence_length=16)
    signature = {name: tf.TensorSpec((None, 16), tf.int32) for name in
                 ("input_word_ids", "input_mask", "input_type_ids")}
    traced = tf.function(encoder).get_concrete_function(signature)
    static = [o.shape[1] for o in traced.structured_outputs["encoder_outputs"]]
    assert static == retention  # static shapes in a graph traced for length 16
    outputs = encoder(random_inputs(2, 16, lengths=[16, 7]))  # and at run time
    assert [o.shape[1] for o in outputs["encoder_outputs"]] == retention
    assert outputs["padding_mask"].shape == (2, 2)
    positions = [np.asarray(p) for p in outputs["kept_positions"]]
    assert [p.shape[1] for p in positions] == retention
    for previous, current in zip([np.tile(np.arange(16), (2, 1))] + positions, positions):
        assert (current[:, 0] == 0).all() and (np.diff(current, axis=1) > 0).all()
        assert all(set(c) <= set(p) for c, p in zip(current, previous))  # nested subsets


def test_full_retention_equals_unpruned_model():
    plain = BertEncoder(**TINY)
    full = BertEncoder(**TINY, extract="hard", retention=[16, 16, 16])
    full.set_weights(plain.get_weights())
    inputs = random_inputs(3, 16, lengths=[16, 9, 4])
    np.testing.assert_array_equal(full(inputs)["pooled_output"], plain(inputs)["pooled_output"])


def test_soft_extract_with_initial_r_equals_unpruned_model():
    plain = BertEncoder(**TINY)
    soft = BertEncoder(**TINY, **MODES["soft"])
    soft_weights = {v.path: v for v in soft.weights}
    for variable in plain.weights:
        soft_weights[variable.path].assign(variable)
    inputs = random_inputs(2, 16, lengths=[16, 5])
    np.testing.assert_allclose(soft(inputs)["pooled_output"], plain(inputs)["pooled_output"],
                               atol=1e-6)
    assert len(soft.losses) == 3 and soft.masses() == [16.0, 16.0, 16.0]
    assert float(sum(soft.losses)) == pytest.approx(1e-3 * 16 * (1 + 2 + 3), rel=1e-5)


def test_padding_amount_does_not_change_the_result():
    # Real length 5: padded to 8 (a short bucket) or to 16 gives the same [CLS] output.
    encoder = BertEncoder(**TINY, extract="hard", retention=[12, 7, 3])
    long = random_inputs(1, 16, lengths=[5], seed=3)
    short = {name: value[:, :8] for name, value in long.items()}
    np.testing.assert_allclose(encoder(short)["pooled_output"], encoder(long)["pooled_output"],
                               atol=1e-5)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_trimmed_padding_gives_the_same_loss_and_gradients(mode):
    # Dynamic padding (run_glue --dynamic_padding) trains on batches cut to their longest
    # row: padded positions must be inert in every phase, the mass loss included.
    encoder = BertEncoder(**TINY, **MODES[mode])
    full = random_inputs(3, 16, lengths=[7, 5, 2], seed=4)
    trimmed = {name: value[:, :8] for name, value in full.items()}

    def loss_and_gradients(inputs):
        with tf.GradientTape() as tape:
            pooled = encoder(inputs)["pooled_output"]
            loss = tf.reduce_sum(pooled * tf.range(32, dtype=pooled.dtype)) + sum(encoder.losses)
        return loss, tape.gradient(loss, encoder.trainable_variables)

    full_loss, full_grads = loss_and_gradients(full)
    trimmed_loss, trimmed_grads = loss_and_gradients(trimmed)
    np.testing.assert_allclose(trimmed_loss, full_loss, rtol=1e-5)
    for variable, a, b in zip(encoder.trainable_variables, trimmed_grads, full_grads):
        a, b = tf.convert_to_tensor(a), tf.convert_to_tensor(b)  # embeddings: IndexedSlices
        np.testing.assert_allclose(a, b, atol=1e-5, err_msg=variable.path)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_save_reload_and_config_round_trip(tmp_path, mode):
    encoder = BertEncoder(**TINY, **MODES[mode])
    config = encoder.get_config()
    assert BertEncoder.from_config(config).get_config() == config
    inputs = random_inputs(2, 16, lengths=[16, 11])
    path = tmp_path / "encoder.keras"
    encoder.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded, BertEncoder) and reloaded.get_config() == config
    np.testing.assert_allclose(reloaded(inputs)["pooled_output"],
                               encoder(inputs)["pooled_output"], atol=1e-6)


@pytest.mark.parametrize("mode", ["none", "hard", "head"])
def test_variable_lengths_and_xla(mode):
    encoder = BertEncoder(**TINY, **MODES[mode])
    compiled = tf.function(lambda x: encoder(x)["pooled_output"], jit_compile=True)
    for length in (6, 16, 24):
        inputs = random_inputs(2, length, lengths=[length, 3])
        np.testing.assert_allclose(compiled(inputs), encoder(inputs)["pooled_output"], atol=1e-5)


def test_soft_search_trains_r_under_xla():
    encoder = BertEncoder(**TINY, **MODES["soft"])
    optimizer = keras.optimizers.Adam(1e-2)

    @tf.function(jit_compile=True)
    def step(inputs):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(encoder(inputs, training=True)["pooled_output"] ** 2)
            loss += tf.add_n(encoder.losses)
        grads = tape.gradient(loss, encoder.trainable_variables)
        optimizer.apply_gradients(zip(grads, encoder.trainable_variables))
        return loss

    inputs = random_inputs(4, 16, lengths=[16, 12, 8, 4])
    for _ in range(3):
        step(inputs)
    masses = encoder.masses()
    assert all(0 < m < 16 for m in masses)  # the mass loss pulls every r_j down
    for layer in encoder.soft_extract_layers():
        r = np.asarray(layer.retention_parameters)
        assert ((r >= 0) & (r <= 1)).all()


@pytest.mark.parametrize("options, message", [
    (dict(extract="hard", retention=[4, 3]), "has 2 entries but the encoder has 3 layers"),
    (dict(extract="hard", retention=[4, 5, 3]), "non-increasing"),
    (dict(extract="hard", retention=[4, 0, 0]), "layer 2 keeps 0"),
    (dict(extract="hard", retention=[20, 5, 3], sequence_length=16), "20 > sequence length 16"),
    (dict(extract="hard"), "needs a retention configuration"),
    (dict(extract="soft"), "needs sequence_length"),
    (dict(extract="pruned"), "extract must be one of"),
])
def test_bad_configurations(options, message):
    with pytest.raises(ValueError, match=message) as error:
        BertEncoder(**TINY, **options)
    assert "\n" not in str(error.value)
    if ("retention" in options and "sequence_length" not in options
            and len(options["retention"]) == 3):
        assert isinstance(error.value, PowerBertError)
