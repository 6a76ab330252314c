"""The Keras dtype policy a model is built under: what its layers compute in and store.

Training precision (`TRAINING_POLICIES`): "bf16" builds the encoder under Keras's
"mixed_bfloat16" policy, so its matrix multiplies and attention run in bfloat16 while
every variable (and so every optimiser update and every saved weight) stays float32; the
classifier head is built outside it and computes the logits and the loss in float32. The
encoder's config does not carry its policy, so a model saved after bfloat16 training
loads as float32 and is evaluated, timed and exported as any other.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import keras

TRAINING_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16"}


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Layers built inside the block take Keras dtype policy `name` ("float32",
    "bfloat16", "mixed_bfloat16"); the global policy is restored after it."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
