"""Length buckets: the few padded lengths a served batch is cut to.

A server (and `serving.inference.BucketedPredictor`) pads each batch only to the smallest
bucket that holds its longest input, so that XLA compiles one program per bucket. This
module is the arithmetic of that plan, shared by serving, the FLOP bounds and the timed
comparisons (docs/method.md, "Dynamic padding and length buckets").
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from power_bert_tf.errors import PowerBertError

DEFAULT_BUCKETS = (16, 32, 64, 128, 256, 512)
BATCH_ORDERS = ("file", "sorted")


def buckets_for(max_length: int) -> tuple[int, ...]:
    """The default buckets below `max_length`, then `max_length` itself."""
    if max_length < 1:
        raise PowerBertError(f"max_length must be >= 1, got {max_length}")
    return tuple(bucket for bucket in DEFAULT_BUCKETS if bucket < max_length) + (max_length,)


def bucket_of(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= `length` (the largest when none holds it)."""
    index = min(int(np.searchsorted(buckets, max(int(length), 1))), len(buckets) - 1)
    return int(buckets[index])


def served_batches(lengths: Sequence[int], batch_size: int, buckets: Sequence[int],
                   order: str = "file") -> list[tuple[np.ndarray, int]]:
    """How a bucketing server batches inputs of the given real lengths.

    Args:
        lengths: (S,) real lengths (tokens with mask 1) of the inputs.
        batch_size: rows per batch.
        buckets: ascending padded lengths.
        order: "file" keeps the inputs' order; "sorted" sorts them by length first
            (stable), as a server that groups requests by length does.

    Returns:
        One (row indices, bucket) pair per batch: the batch's rows and the length it is
        padded to, the bucket of its longest row.
    """
    if order not in BATCH_ORDERS:
        raise PowerBertError(f"batch order must be one of {BATCH_ORDERS}, got {order!r}")
    if batch_size < 1:
        raise PowerBertError(f"batch size must be >= 1, got {batch_size}")
    lengths = np.asarray(lengths)
    rows = np.argsort(lengths, kind="stable") if order == "sorted" else np.arange(len(lengths))
    return [(chunk, bucket_of(lengths[chunk].max(), buckets))
            for chunk in (rows[start:start + batch_size]
                          for start in range(0, len(rows), batch_size))]
