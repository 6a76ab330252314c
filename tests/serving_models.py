"""A tiny trained Hard-Extract classifier and its tokenizer, shared by the serving tests."""
from __future__ import annotations

import functools
from pathlib import Path

import keras
import numpy as np

from conftest import random_inputs
from power_bert_tf.data.tokenizer import BertTokenizer
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.encoder import BertEncoder
from tiny_task import NEGATIVE, POSITIVE, VOCAB, tiny_config

# The head of a script run in a fresh interpreter that must not import power_bert_tf,
# even if it is installed (the SavedModel and ONNX tests: what a server would have).
NO_PACKAGE = """import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] == "power_bert_tf":
            raise ModuleNotFoundError(name)

sys.meta_path.insert(0, Block())
"""

N = 32
RETENTION = [20, 12, 6]


@functools.cache
def tiny_classifier(num_classes: int = 2, seed: int = 0) -> BertClassifier:
    """N=32, retention 20,12,6, fitted a few steps (more positive than negative words)
    so that its outputs differ between inputs. Built once per test process and shared
    by the serving tests' modules: read it, never change it."""
    keras.utils.set_random_seed(seed)
    config = tiny_config().to_dict()
    encoder = BertEncoder(**config, extract="hard", retention=RETENTION, sequence_length=N)
    model = BertClassifier(encoder, num_classes, dropout=0.0)
    lengths = list(np.random.default_rng(seed).integers(3, N + 1, size=64))
    inputs = random_inputs(64, N, lengths=lengths, seed=seed, vocabulary_size=len(VOCAB))
    ids = inputs["input_word_ids"]
    positive = (np.isin(ids, [VOCAB.index(w) for w in POSITIVE]).sum(1)
                > np.isin(ids, [VOCAB.index(w) for w in NEGATIVE]).sum(1))
    if num_classes == 1:
        labels, loss = positive.astype("float32") * 4.0, "mse"
    else:
        labels = positive.astype("int32")
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    model.fit(inputs, labels, epochs=10, batch_size=16, verbose=0)
    return model


def tiny_tokenizer(folder: Path, max_seq_length: int = N) -> BertTokenizer:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    return BertTokenizer(vocab, lower_case=True, max_seq_length=max_seq_length)
