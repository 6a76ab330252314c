"""Retention configuration read-out, validation and speed-up bounds."""
import pytest

from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.retention import RetentionConfig, encoder_flops, flop_bound

BERT_BASE = EncoderConfig(vocabulary_size=30522, num_layers=12, hidden_size=768, num_heads=12,
                          intermediate_size=3072)
PAPER_RTE = (153, 125, 111, 105, 85, 80, 72, 48, 35, 27, 22, 5)


def test_read_out_floors_clamps_and_makes_non_increasing():
    config = RetentionConfig.from_masses([10.9, 11.5, 7.2, 0.3, 2.7, 0.0], sequence_length=16)
    # floor: 10, 11, 7, 0, 2, 0 -> at least 1: 10, 11, 7, 1, 2, 1 -> non-increasing.
    assert config.kept == (10, 10, 7, 1, 1, 1)


def test_read_out_of_full_mass_keeps_everything():
    assert RetentionConfig.from_masses([64.0] * 3, 64).kept == (64, 64, 64)


def test_read_out_of_collapsed_masses_keeps_one_each():
    assert RetentionConfig.from_masses([0.0, 0.2, 0.9], 64).kept == (1, 1, 1)


def test_paper_rte_bounds():
    config = RetentionConfig(PAPER_RTE, 256)
    assert config.total == 868
    assert config.word_vector_bound == pytest.approx(3072 / 868)  # 3.54x, as quoted
    assert flop_bound(BERT_BASE, config) == pytest.approx(3.29, abs=0.01)


def test_flops_count_attention_on_received_and_ffn_on_kept():
    tiny = EncoderConfig(vocabulary_size=10, num_layers=2, hidden_size=4, num_heads=1,
                         intermediate_size=8)
    # layer 1: 8 received, 4 kept; layer 2: 4 received, 2 kept.
    expected = (8 * 8 * 4 * 4 + 4 * 8 * 8 * 4 + 4 * 4 * 4 * 8) + \
               (8 * 4 * 4 * 4 + 4 * 4 * 4 * 4 + 4 * 2 * 4 * 8)
    assert encoder_flops(tiny, 8, (4, 2)) == expected


def test_parse_and_str_round_trip():
    config = RetentionConfig.parse("7, 7,4,2", 64)
    assert config.kept == (7, 7, 4, 2) and str(config) == "7,7,4,2"


@pytest.mark.parametrize("kept, message", [
    ((4, 5, 2), "non-increasing: layer 2 keeps 5 > layer 1 keeps 4"),
    ((4, 0, 0), "layer 2 keeps 0"),
    ((70, 5, 2), "layer 1 keeps 70 > sequence length 64"),
    ((), "empty"),
])
def test_invalid_configurations_are_one_line_errors(kept, message):
    with pytest.raises(PowerBertError, match=message) as error:
        RetentionConfig(kept, 64)
    assert "\n" not in str(error.value)


def test_parse_rejects_garbage_and_wrong_length():
    with pytest.raises(PowerBertError, match="comma-separated"):
        RetentionConfig.parse("7,x,3", 64)
    with pytest.raises(PowerBertError, match="has 2 entries but the encoder has 12 layers"):
        flop_bound(BERT_BASE, RetentionConfig((7, 7), 64))
