"""Shared test set-up: quiet TF logs, tiny BERT shapes, embedded-model fixtures."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

TINY = dict(vocabulary_size=50, num_layers=3, hidden_size=32, num_heads=4,
            intermediate_size=64, max_sequence_length=64)


def random_inputs(batch: int, length: int, lengths=None, seed: int = 0,
                  vocabulary_size: int = 50) -> dict[str, np.ndarray]:
    """Random ids with [CLS]=1 at position 0; `lengths` pads each row after its length."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, vocabulary_size, size=(batch, length)).astype("int32")
    ids[:, 0] = 1
    mask = np.ones((batch, length), "int32")
    for row, real in enumerate(lengths or []):
        mask[row, real:] = 0
        ids[row, real:] = 0
    return {"input_word_ids": ids, "input_mask": mask,
            "input_type_ids": np.zeros((batch, length), "int32")}


@pytest.fixture(scope="session")
def pretrained():
    from power_bert_tf.weights import load_pretrained

    return load_pretrained("embedded")
