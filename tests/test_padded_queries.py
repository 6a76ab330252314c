"""--include_padded_queries (the reference's scoring) reproduces the reference: its
scores depend on how much padding follows a sentence, so its batches are padded to N."""
import numpy as np

from conftest import TINY, random_inputs
from power_bert_tf.model.encoder import BertEncoder
from power_bert_tf.model.significance import SignificanceScore
from power_bert_tf.pipeline import phases
from tiny_task import tiny_run_config, write_tiny_model, write_tiny_task


def _kept(encoder, inputs, length):
    trimmed = {name: value[:, :length] for name, value in inputs.items()}
    return [np.asarray(k) for k in encoder(trimmed)["kept_positions"]]


def test_padding_is_inert_in_our_scoring():
    inputs = random_inputs(4, 32, lengths=[5, 9, 12, 7], seed=3)
    encoder = BertEncoder(**TINY, extract="hard", retention=[6, 4, 2])
    for trimmed, full in zip(_kept(encoder, inputs, 16), _kept(encoder, inputs, 32)):
        np.testing.assert_array_equal(trimmed, full)


def test_padding_reorders_the_reference_scores():
    """Rows of padding pay attention too; counting it changes which tokens rank first."""
    real, padded = 4, 8
    probs = np.zeros((1, 1, padded, padded), "float32")
    probs[0, 0, :real, :real] = [[0.1, 0.6, 0.2, 0.1]] * real  # token 1 ranks first
    probs[0, 0, real:, 3] = 1.0  # padded rows attend to token 3 only
    mask = np.array([[1] * real + [0] * (padded - real)], "int32")
    reference = SignificanceScore(include_padded_queries=True)
    trimmed = np.asarray(reference(probs[:, :, :real, :real], mask[:, :real]))
    full = np.asarray(reference(probs, mask))
    assert trimmed[0].argmax() == 1 and full[0].argmax() == 3
    ours = SignificanceScore()
    np.testing.assert_allclose(np.asarray(ours(probs, mask))[0, :real],
                               np.asarray(ours(probs[:, :, :real, :real], mask[:, :real]))[0])


def test_reference_scoring_pads_every_batch_to_n(tmp_path):
    model = write_tiny_model(tmp_path / "model")
    train, dev = write_tiny_task(tmp_path / "data", train=16, dev=8)
    for include, width in ((False, 16), (True, 32)):
        ctx = phases.make_context(tiny_run_config(model, train, dev, tmp_path / "out",
                                                  max_seq_length=32,
                                                  include_padded_queries=include))
        for split, training in (("train", True), ("dev", False)):
            widths = {int(features["input_word_ids"].shape[1])
                      for features, _ in ctx.dataset(split, training=training)}
            assert widths == {width}, (include, split, widths)


def test_length_grouping_applies_to_training_batches_only(tmp_path):
    model = write_tiny_model(tmp_path / "model")
    train, dev = write_tiny_task(tmp_path / "data", train=48, dev=16)

    def batches(grouping: int, split: str, training: bool) -> list[tuple[int, ...]]:
        ctx = phases.make_context(tiny_run_config(model, train, dev, tmp_path / "out",
                                                  max_seq_length=32, batch_size=4,
                                                  length_grouping=grouping))
        return [tuple(features["input_mask"].numpy().sum(axis=1))
                for features, _ in ctx.dataset(split, training=training)]

    plain, grouped = batches(0, "train", True), batches(6, "train", True)
    assert len(grouped) == len(plain) == 12 and grouped != plain
    assert sorted(n for b in grouped for n in b) == sorted(n for b in plain for n in b)
    spread = [max(b) - min(b) for b in grouped]
    assert np.mean(spread) < np.mean([max(b) - min(b) for b in plain])  # like lengths
    assert batches(6, "dev", False) == batches(0, "dev", False)
