"""tf.data input pipeline: Examples -> batches of token ids (and labels).

A split is tokenized once (`encode`: the in-graph tokenizer, `BertTokenizer` or
`SentencePieceTokenizer`, over chunks of examples, no Python per example) into rows of
token ids padded to N, which `batch_rows` then shuffles and batches, anew for each epoch:
a dataset whose map runs the tokenizer costs seconds to start an iterator on (tf.data
instantiates the tokenizer's graph for each), one over rows of ids milliseconds, and every
epoch and dev pass starts one. Optionally each batch is then trimmed
to its longest sequence (dynamic padding): padded positions are inert in every phase
(they score 0 and are masked), so this saves time and changes no output. Optionally the
shuffled rows are grouped by length first (windows of several batches sorted by length,
the batches then shuffled), so that a batch's rows are of similar length and trimming cuts
more; this changes which rows share a batch, not which rows an epoch sees.
"""
from __future__ import annotations

import contextlib
import math
import sys
from typing import Callable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context

from power_bert_tf.data.tasks import Example
from power_bert_tf.errors import PowerBertError

Tokenizer = Callable[[tf.Tensor, tf.Tensor | None], dict[str, tf.Tensor]]
Rows = dict[str, np.ndarray]  # "input_word_ids", "input_mask", "input_type_ids", "label"


def make_dataset(examples: Sequence[Example], tokenizer: Tokenizer, *, batch_size: int,
                 is_pair: bool, regression: bool, shuffle: bool = False,
                 seed: int | None = None, drop_remainder: bool = False,
                 trim_to_multiple: int | None = None,
                 length_window: int = 0) -> tf.data.Dataset:
    """`batch_rows(encode(examples, ...), ...)`: batches of a split tokenized now."""
    return batch_rows(encode(examples, tokenizer, is_pair=is_pair, regression=regression),
                      batch_size=batch_size, shuffle=shuffle, seed=seed,
                      drop_remainder=drop_remainder, trim_to_multiple=trim_to_multiple,
                      length_window=length_window)


def encode(examples: Sequence[Example], tokenizer: Tokenizer, *, is_pair: bool,
           regression: bool, progress: str | None = None) -> Rows:
    """The split as rows: `tokenize`'s int32 (n, N) features, plus (n,) labels (int32
    class indices, float32 scores for regression) when every example is labelled.

    Args:
        examples: the split, all labelled or all unlabelled (label None).
        tokenizer: `BertTokenizer`, `SentencePieceTokenizer` (or any callable mapping
            (B,) strings to int32 (B, N) `input_word_ids`, `input_mask`, `input_type_ids`).
        is_pair: tokenize `text_b` as the second segment.
        regression: float32 labels (scores) instead of int32 class indices.
        progress: a name to show a progress bar under (`tokenize`).
    """
    labelled = [example.label is not None for example in examples]
    if any(labelled) and not all(labelled):
        raise PowerBertError("examples mix labelled and unlabelled rows; label all or none")
    rows = tokenize(examples, tokenizer, is_pair=is_pair, progress=progress)
    if examples and all(labelled):
        rows["label"] = np.array([example.label for example in examples],
                                 np.float32 if regression else np.int32)
    return rows


def batch_rows(rows: Rows, *, batch_size: int, shuffle: bool = False,
               seed: int | None = None, drop_remainder: bool = False,
               trim_to_multiple: int | None = None,
               length_window: int = 0) -> tf.data.Dataset:
    """Batches of `(features, labels)`, or of `features` alone when `rows` has no labels.

    Args:
        rows: `encode`'s rows of a split.
        batch_size: examples per batch.
        shuffle: shuffle all rows, anew each epoch; the order is fixed by `seed`.
        seed: shuffle seed, TF's global and op seed both (`shuffle_seeds`); None draws
            a random order.
        drop_remainder: drop the last, smaller batch.
        trim_to_multiple: None keeps every batch at the tokenizer's length N; an integer m
            trims each batch to its longest sequence rounded up to a multiple of m (at
            most N), so a tf.function sees at most N / m shapes.
        length_window: 0, or group by length: the (shuffled) rows are taken
            `length_window * batch_size` at a time, sorted by real length and cut into
            batches, and the batches are shuffled in a buffer of `length_window` (seeded);
            each row still comes once an epoch, and the number of batches is unchanged.

    Returns:
        A dataset of `({"input_word_ids", "input_mask", "input_type_ids"}, labels)`: int32
        (B, L) features and (B,) labels, int32 or float32 for regression; L = N unless
        trimmed.
    """
    if batch_size < 1:
        raise PowerBertError(f"batch size must be >= 1, got {batch_size}")
    if trim_to_multiple is not None and trim_to_multiple < 1:
        raise PowerBertError(f"trim_to_multiple must be >= 1, got {trim_to_multiple}")
    if length_window < 0:
        raise PowerBertError(f"length_window must be >= 0, got {length_window}")
    with shuffle_seeds(seed):
        return _batches(rows, batch_size, shuffle, seed, drop_remainder, trim_to_multiple,
                        length_window)


@contextlib.contextmanager
def shuffle_seeds(seed: int | None) -> Iterator[None]:
    """Inside, TF's global seed is `seed` (unless None), so that a shuffle made with op
    seed `seed` orders as it did under `tf.random.set_seed(seed)` each epoch, which the
    study's recorded runs did; without `tf.random.set_seed`'s clearing of TF's kernel
    cache, which sets every traced step up again (seconds an epoch). Only the seeds of
    the ops made inside change. TF has no public setter of the global seed that keeps the
    cache: this sets the eager context's attribute that `tf.random.set_seed` sets."""
    if seed is None:
        yield
        return
    eager = context.context()
    saved = eager._seed  # noqa: SLF001
    eager._seed = seed  # noqa: SLF001
    try:
        yield
    finally:
        eager._seed = saved  # noqa: SLF001


def _batches(rows: Rows, batch_size: int, shuffle: bool, seed: int | None,
             drop_remainder: bool, trim_to_multiple: int | None,
             length_window: int) -> tf.data.Dataset:
    count = len(rows["input_mask"])
    dataset = tf.data.Dataset.from_tensor_slices(rows)
    if shuffle:
        dataset = dataset.shuffle(max(count, 1), seed=seed, reshuffle_each_iteration=True)

    def by_length(rows: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        order = tf.argsort(tf.reduce_sum(rows["input_mask"], axis=1), stable=True)
        return {name: tf.gather(value, order) for name, value in rows.items()}

    def finish(rows: dict[str, tf.Tensor]):
        rows = dict(rows)
        label = rows.pop("label", None)
        if trim_to_multiple is not None:
            rows = trim_padding(rows, trim_to_multiple)
        return rows if label is None else (rows, label)

    parallel = {"num_parallel_calls": tf.data.AUTOTUNE, "deterministic": True}
    if length_window:
        dataset = (dataset.batch(batch_size * length_window).map(by_length, **parallel)
                   .unbatch()
                   .batch(batch_size, drop_remainder=drop_remainder).map(finish, **parallel)
                   .shuffle(length_window, seed=seed, reshuffle_each_iteration=True))
    else:
        dataset = (dataset.batch(batch_size, drop_remainder=drop_remainder)
                   .map(finish, **parallel))
    return dataset.prefetch(tf.data.AUTOTUNE)


def tokenize(examples: Sequence[Example], tokenizer: Tokenizer, *, is_pair: bool,
             chunk: int = 2048, progress: str | None = None) -> dict[str, np.ndarray]:
    """Every example's features as int32 numpy arrays (`encode`'s rows; runtimes outside
    tf.data: ONNX Runtime, a SavedModel client): `input_word_ids`, `input_mask`,
    `input_type_ids`, each (len(examples), L). Tokenized `chunk` examples at a time, under
    a progress bar named `progress` when there is more than one chunk (SST-2's 67,349
    sentences take about 5 s on 2 cores)."""
    _check_pairs(examples, is_pair)
    parts: list[dict[str, tf.Tensor]] = []
    bar = (keras.utils.Progbar(len(examples), verbose=1 if sys.stdout.isatty() else 2,
                               unit_name="example")
           if progress and len(examples) > chunk else None)
    if bar:
        print(f"tokenizing {progress}")
    for start in range(0, max(len(examples), 1), chunk):  # an empty split: (0, N) arrays
        rows = examples[start:start + chunk]
        parts.append(tokenizer(tf.constant([example.text_a for example in rows], tf.string),
                               tf.constant([example.text_b for example in rows], tf.string)
                               if is_pair else None))
        if bar:
            bar.update(start + len(rows))
    return {name: np.concatenate([part[name].numpy() for part in parts]).astype(np.int32)
            for name in parts[0]}


def _check_pairs(examples: Sequence[Example], is_pair: bool) -> None:
    if is_pair and any(example.text_b is None for example in examples):
        raise PowerBertError("a pair task needs text_b in every example")


def trim_padding(features: dict[str, tf.Tensor], multiple: int) -> dict[str, tf.Tensor]:
    """Cuts (B, N) features to (B, L): L is the batch's longest `input_mask` row rounded
    up to a multiple of `multiple`, at most N."""
    padded = tf.shape(features["input_mask"])[1]
    longest = tf.reduce_max(tf.reduce_sum(features["input_mask"], axis=1))
    length = tf.minimum((longest + multiple - 1) // multiple * multiple, padded)
    return {name: value[:, :length] for name, value in features.items()}


def count_batches(num_examples: int, batch_size: int, drop_remainder: bool = False) -> int:
    """Number of batches `make_dataset` yields for `num_examples` examples."""
    if drop_remainder:
        return num_examples // batch_size
    return math.ceil(num_examples / batch_size)
