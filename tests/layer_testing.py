"""keras-hub-style layer checks (after `run_layer_test`): weight counts, config and JSON
serialisation round trips, symbolic, eager and jit-compiled calls, a bfloat16 and a
mixed_bfloat16 call, and a `.keras` save and reload with equal outputs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

# bfloat16 keeps 8 significant bits: outputs agree with float32 to about 1e-2.
BFLOAT16_TOLERANCE = 5e-2


def _flat(outputs) -> list[np.ndarray]:
    return [np.asarray(x) for x in tf.nest.flatten(outputs)]


def _check_serialization(layer: keras.layers.Layer) -> None:
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config, "get_config/from_config round trip changed the config"
    text = json.dumps(keras.saving.serialize_keras_object(layer))
    revived = keras.saving.deserialize_keras_object(json.loads(text))
    assert type(revived) is type(layer)
    assert revived.get_config() == config, "JSON round trip changed the config"


def _check_weight_counts(layer: keras.layers.Layer, trainable: int, non_trainable: int,
                         seed_generators: int) -> None:
    assert len(layer.trainable_weights) == trainable, layer.trainable_weights
    assert len(layer.non_trainable_weights) == non_trainable, layer.non_trainable_weights
    states = [v for v in layer.non_trainable_variables
              if v.path.endswith("seed_generator_state")]
    assert len(states) == seed_generators, layer.non_trainable_variables


def _check_bfloat16(make_layer: Callable[..., keras.layers.Layer], reference: keras.layers.Layer,
                    args: Sequence[np.ndarray], deterministic: bool) -> None:
    """The layer under bfloat16 policies: compute dtype of float outputs, variable dtype
    of weights, and (same weights) the float32 outputs to bfloat16 precision."""
    expected = _flat(reference(*args))
    for policy in ("bfloat16", "mixed_bfloat16"):
        layer = make_layer(dtype=policy)
        layer(*args)  # builds the weights
        for weight in layer.weights:
            assert weight.dtype == layer.dtype_policy.variable_dtype, (policy, weight.path)
        layer.set_weights(reference.get_weights())
        outputs = tf.nest.flatten(layer(*args))
        for output, want in zip(outputs, expected):
            if want.dtype.kind == "f":
                assert output.dtype == "bfloat16", (policy, output.dtype)
                assert np.isfinite(np.asarray(tf.cast(output, "float32"))).all()
            else:
                assert output.dtype == want.dtype, (policy, output.dtype)
            if deterministic:
                np.testing.assert_allclose(np.asarray(tf.cast(output, want.dtype)), want,
                                           atol=BFLOAT16_TOLERANCE, rtol=BFLOAT16_TOLERANCE,
                                           err_msg=policy)


def check_layer(make_layer: Callable[..., keras.layers.Layer],
                make_args: Callable[[int], Sequence[np.ndarray]],
                tmp_path: Path, *, num_trainable_weights: int,
                num_non_trainable_weights: int = 0, num_seed_generators: int = 0,
                lengths: Sequence[int] = (8, 12), deterministic: bool = True) -> None:
    """Runs the standard checks on a layer whose call takes positional tensors.

    Args:
        make_layer: builds a fresh layer; keyword arguments (`dtype`) go to its constructor.
        make_args: sequence length -> the call's positional numpy arguments.
        num_trainable_weights, num_non_trainable_weights, num_seed_generators: the
            built layer's expected counts.
        lengths: two or more sequence lengths to call with.
        deterministic: False for layers with randomness (shapes and dtypes compared only).
    """
    layer = make_layer()
    _check_serialization(layer)

    for length in lengths:
        args = make_args(length)
        eager = _flat(layer(*args))

        inputs = [keras.Input(shape=a.shape[1:], dtype=str(a.dtype)) for a in args]
        symbolic = tf.nest.flatten(layer(*inputs))
        assert [tuple(s.shape[1:]) for s in symbolic] == [e.shape[1:] for e in eager]

        compiled = _flat(tf.function(lambda *xs: layer(*xs), jit_compile=True)(*args))
        assert [c.shape for c in compiled] == [e.shape for e in eager]
        if deterministic:
            for c, e in zip(compiled, eager):
                np.testing.assert_allclose(c, e, atol=1e-5)
    _check_weight_counts(layer, num_trainable_weights, num_non_trainable_weights,
                         num_seed_generators)
    _check_serialization(layer)  # the built layer's config is the same
    _check_bfloat16(make_layer, layer, make_args(lengths[0]), deterministic)

    args = make_args(lengths[0])
    inputs = [keras.Input(shape=(None,) + a.shape[2:], dtype=str(a.dtype)) for a in args]
    model = keras.Model(inputs, make_layer()(*inputs))
    path = tmp_path / "layer.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    for original, restored in zip(model.weights, reloaded.weights):
        np.testing.assert_array_equal(np.asarray(original), np.asarray(restored))
    before, after = _flat(model(args)), _flat(reloaded(args))
    for b, a in zip(before, after):
        assert b.shape == a.shape
        if deterministic:
            np.testing.assert_allclose(a, b, atol=1e-6)
