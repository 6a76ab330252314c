"""Properties of the extract layers over random shapes, scores, padding and retain counts
(hypothesis): what Hard-Extract keeps, and the factor Soft-Extract gives each vector."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from power_bert_tf.model.extract import HardExtract, SoftExtract

DIM = 3


@st.composite
def batches(draw, max_length: int = 12):
    """(hidden (B, T, D), mask (B, T), scores (B, T)): row b has a real length in
    [1, T] (position 0 is [CLS]); real tokens score distinct values in (0, 1], padding 0."""
    batch = draw(st.integers(1, 3))
    length = draw(st.integers(1, max_length))
    mask = np.zeros((batch, length), "int32")
    scores = np.zeros((batch, length), "float32")
    for row in range(batch):
        real = draw(st.integers(1, length))
        mask[row, :real] = 1
        scores[row, :real] = (np.array(draw(st.permutations(range(real)))) + 1) / real
    hidden = np.arange(batch * length * DIM, dtype="float32").reshape(batch, length, DIM)
    return hidden, mask, scores


def _check_gathered(hidden, mask, out, out_mask, indices, kept):
    assert out.shape == (hidden.shape[0], kept, DIM)
    assert out_mask.shape == indices.shape == (hidden.shape[0], kept)
    assert (indices[:, 0] == 0).all(), "[CLS] is always kept"
    assert (np.diff(indices, axis=1) > 0).all(), "kept positions are distinct and in order"
    rows = np.arange(hidden.shape[0])[:, None]
    np.testing.assert_array_equal(out, hidden[rows, indices])
    np.testing.assert_array_equal(out_mask, mask[rows, indices])


@settings(max_examples=40, deadline=None)
@given(batches(), st.integers(1, 14))
def test_attention_keeps_cls_and_the_top_scores(batch, retain):
    hidden, mask, scores = batch
    out, out_mask, indices = (np.asarray(x) for x in HardExtract(retain)(hidden, mask, scores))
    kept = min(retain, hidden.shape[1])
    _check_gathered(hidden, mask, out, out_mask, indices, kept)
    for row in range(hidden.shape[0]):
        others = np.ones(hidden.shape[1], bool)
        others[0] = False
        chosen = np.zeros_like(others)
        chosen[indices[row, 1:]] = True
        if chosen.any() and (others & ~chosen).any():  # padding may tie at 0
            assert scores[row][chosen].min() >= scores[row][others & ~chosen].max()
        assert out_mask[row].sum() == min(kept, mask[row].sum()), "real tokens first"


@settings(max_examples=25, deadline=None)
@given(batches(), st.integers(1, 14))
def test_head_keeps_the_first_positions(batch, retain):
    hidden, mask, _ = batch
    out, out_mask, indices = (np.asarray(x)
                              for x in HardExtract(retain, "head")(hidden, mask))
    kept = min(retain, hidden.shape[1])
    _check_gathered(hidden, mask, out, out_mask, indices, kept)
    np.testing.assert_array_equal(indices, np.broadcast_to(np.arange(kept), indices.shape))


@settings(max_examples=25, deadline=None)
@given(batches(), st.integers(1, 14), st.integers(0, 1000))
def test_random_keeps_cls_and_real_tokens_first(batch, retain, seed):
    hidden, mask, _ = batch
    layer = HardExtract(retain, "random", seed=seed)
    out, out_mask, indices = (np.asarray(x) for x in layer(hidden, mask))
    kept = min(retain, hidden.shape[1])
    _check_gathered(hidden, mask, out, out_mask, indices, kept)
    np.testing.assert_array_equal(out_mask.sum(axis=1), np.minimum(kept, mask.sum(axis=1)))


@settings(max_examples=40, deadline=None)
@given(batches(), st.data())
def test_soft_extract_scales_each_vector_by_r_at_its_rank(batch, data):
    hidden, _, scores = batch
    length = hidden.shape[1]
    size = data.draw(st.integers(length, length + 4), label="N")
    # Subnormals are left out: TensorFlow's CPU kernels flush them to 0.
    r_values = st.floats(0.0, 1.0, width=32, allow_subnormal=False)
    retention = np.array(data.draw(st.lists(r_values, min_size=size, max_size=size),
                                   label="r"), "float32")
    layer = SoftExtract(size)
    layer(hidden, scores)  # builds r
    layer.retention_parameters.assign(retention)
    out = np.asarray(layer(hidden, scores))
    for row in range(hidden.shape[0]):
        # Padding ties at 0: a stable descending sort ranks it in position order.
        rank = np.empty(length, int)
        rank[np.argsort(-scores[row], kind="stable")] = np.arange(length)
        np.testing.assert_allclose(out[row], hidden[row] * retention[rank][:, None], rtol=1e-6)
