"""data.buckets: the bucket plan a length-bucketing server follows, and its FLOP bound."""
import numpy as np
import pytest

from power_bert_tf.data.buckets import bucket_of, buckets_for, served_batches
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.model.retention import RetentionConfig, flop_bound, served_flop_bound


def test_buckets_for():
    assert buckets_for(32) == (16, 32)
    assert buckets_for(100) == (16, 32, 64, 100)
    assert buckets_for(512) == (16, 32, 64, 128, 256, 512)
    assert buckets_for(8) == (8,)


def test_bucket_of_is_the_smallest_that_holds_the_length():
    buckets = (16, 32, 64)
    assert [bucket_of(n, buckets) for n in (0, 1, 16, 17, 32, 33, 64, 99)] == [
        16, 16, 16, 32, 32, 64, 64, 64]


def test_served_batches_in_file_order_and_sorted():
    lengths = [30, 5, 60, 6, 7, 20]
    file_order = served_batches(lengths, 2, (16, 32, 64))
    assert [(list(rows), bucket) for rows, bucket in file_order] == [
        ([0, 1], 32), ([2, 3], 64), ([4, 5], 32)]
    ordered = served_batches(lengths, 2, (16, 32, 64), order="sorted")
    assert [(list(rows), bucket) for rows, bucket in ordered] == [
        ([1, 3], 16), ([4, 5], 32), ([0, 2], 64)]
    every_row = np.sort(np.concatenate([rows for rows, _ in ordered]))
    assert list(every_row) == list(range(len(lengths)))


@pytest.mark.parametrize("bad, message", [(dict(order="random"), "batch order"),
                                          (dict(batch_size=0), "batch size")])
def test_served_batches_errors(bad, message):
    with pytest.raises(PowerBertError, match=message):
        served_batches([3, 4], **{"batch_size": 2, "buckets": (16,), **bad})


def test_served_flop_bound():
    config = EncoderConfig(vocabulary_size=10, hidden_size=32, num_layers=3, num_heads=2,
                           intermediate_size=64, max_sequence_length=64)
    retention = RetentionConfig((8, 4, 2), 64)
    # Padded to N every batch, the served bound is the paper's.
    assert served_flop_bound(config, retention, [(5, 64)]) == pytest.approx(
        flop_bound(config, retention))
    # A bucket no longer than every l_j removes nothing; a mix lies in between.
    assert served_flop_bound(config, retention, [(3, 2)]) == pytest.approx(1.0)
    mixed = served_flop_bound(config, retention, [(3, 2), (5, 64)])
    assert 1.0 < mixed < flop_bound(config, retention)
