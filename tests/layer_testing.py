"""keras-hub-style layer checks: config round trip, symbolic and eager calls,
`.keras` save and reload with equal outputs, a jit-compiled call."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf


def _flat(outputs) -> list[np.ndarray]:
    return [np.asarray(x) for x in tf.nest.flatten(outputs)]


def check_layer(make_layer: Callable[[], keras.layers.Layer],
                make_args: Callable[[int], Sequence[np.ndarray]],
                tmp_path: Path, lengths: Sequence[int] = (8, 12),
                deterministic: bool = True) -> None:
    """Runs the standard checks on a layer whose call takes positional tensors.

    Args:
        make_layer: builds a fresh layer.
        make_args: sequence length -> the call's positional numpy arguments.
        lengths: two or more sequence lengths to call with.
        deterministic: False for layers with randomness (shapes compared only).
    """
    layer = make_layer()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config, "get_config/from_config round trip changed the config"

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
