"""SentencePieceTokenizer: in-graph ids equal ALBERT's Python tokenization over
`sentencepiece.SentencePieceProcessor`, on a tiny model trained on SST-2 text."""
import unicodedata

import keras
import numpy as np
import pytest
import sentencepiece
import tensorflow as tf

from albert_writers import EXTRA_LINES, sst2_lines, train_sentencepiece
from power_bert_tf.data.sentencepiece_tokenizer import SentencePieceTokenizer
from power_bert_tf.errors import PowerBertError

EDGE_CASES = [
    "", "   ", "a", "Hello  World\t\tagain\n", "\u3000leading and trailing\u00a0 ",
    "in 1990, 2,000 people saw it", "1993,1994, and 5,", "x1,y2, 3,",
    "``quoted'' and ''twice``", "Café Noël naïve façade", "ÀÉÎÕÜ", "ΑΣ and σς",
    "CAPITALS and MiXeD", "emoji 🙂 and 漢字", "tab\there, newline\nthere",
]


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    return train_sentencepiece(tmp_path_factory.mktemp("spm"), sst2_lines(400) + EXTRA_LINES)


@pytest.fixture(scope="module")
def processor(spm_model):
    return sentencepiece.SentencePieceProcessor(model_file=str(spm_model))


def albert_pieces(processor, text: str, lower_case: bool) -> list[str]:
    """Hugging Face's AlbertTokenizer (preprocess_text, then _tokenize), in Python."""
    text = " ".join(text.strip().split()).replace("``", '"').replace("''", '"')
    text = unicodedata.normalize("NFKD", text)
    text = "".join(char for char in text if not unicodedata.combining(char))
    if lower_case:
        text = text.lower()
    pieces = []
    for piece in processor.encode(text, out_type=str):
        if len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit():
            sub = processor.encode(piece[:-1].replace("▁", ""), out_type=str)
            if piece[0] != "▁" and sub[0][0] == "▁":
                sub = sub[1:] if len(sub[0]) == 1 else [sub[0][1:]] + sub[1:]
            pieces += sub + [piece[-1]]
        else:
            pieces.append(piece)
    return pieces


def albert_ids(processor, text: str, lower_case: bool) -> list[int]:
    return [processor.piece_to_id(piece) for piece in albert_pieces(processor, text, lower_case)]


@pytest.mark.parametrize("lower_case", [True, False])
def test_ids_equal_sentencepiece_processor(spm_model, processor, lower_case):
    texts = EDGE_CASES + sst2_lines(600)[400:]  # lines the model was not trained on, too
    tokenizer = SentencePieceTokenizer(spm_model, lower_case=lower_case, max_seq_length=8)
    ids = tokenizer.tokenize(tf.constant(texts)).to_list()
    for text, row in zip(texts, ids):
        assert row == albert_ids(processor, text, lower_case), text


def test_digit_comma_pieces_are_split(spm_model, processor):
    # The model has pieces such as "▁1990,"; ALBERT re-encodes them as "▁1990" + ",".
    text = "in 1990, 2,000 people"
    def digit_comma(piece: str) -> bool:
        return len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit()

    assert any(digit_comma(piece) for piece in processor.encode(text, out_type=str))
    tokenizer = SentencePieceTokenizer(spm_model, lower_case=True, max_seq_length=32)
    pieces = tokenizer.ids_to_tokens(tokenizer.tokenize(tf.constant([text])).flat_values)
    assert pieces == albert_pieces(processor, text, True)
    assert not any(digit_comma(piece) for piece in pieces)


def test_packing_and_longest_first_truncation(spm_model, processor):
    tokenizer = SentencePieceTokenizer(spm_model, lower_case=True, max_seq_length=12)
    cls, sep, pad = (processor.piece_to_id(piece) for piece in ("[CLS]", "[SEP]", "<pad>"))
    a, b = "a long first sentence about a dull film", "good"
    out = {name: value.numpy()[0] for name, value in
           tokenizer(tf.constant([a]), tf.constant([b])).items()}
    ids_a, ids_b = albert_ids(processor, a, True), albert_ids(processor, b, True)
    kept_b = min(len(ids_b), (12 - 3) // 2)
    kept_a = 12 - 3 - kept_b
    expected = [cls] + ids_a[:kept_a] + [sep] + ids_b[:kept_b] + [sep]
    assert len(ids_a) > kept_a  # the first segment was cut
    assert out["input_word_ids"][:len(expected)].tolist() == expected
    assert out["input_type_ids"].tolist() == [0] * (kept_a + 2) + [1] * (kept_b + 1) + [0] * (
        12 - len(expected))
    single = {name: value.numpy()[0] for name, value in tokenizer(tf.constant(["good"])).items()}
    n = len(ids_b) + 2
    assert single["input_word_ids"].tolist() == [cls] + ids_b + [sep] + [pad] * (12 - n)
    assert single["input_mask"].tolist() == [1] * n + [0] * (12 - n)
    assert not single["input_type_ids"].any()


def test_graph_mode_with_a_string_signature(spm_model):
    tokenizer = SentencePieceTokenizer(spm_model, lower_case=True, max_seq_length=16)
    traced = tf.function(tokenizer, input_signature=[tf.TensorSpec([None], tf.string)])
    texts = tf.constant(["in 1990, a fine film", "dull"])
    for name, value in traced(texts).items():
        np.testing.assert_array_equal(value, tokenizer(texts)[name])
        assert value.dtype == tf.int32 and value.shape == (2, 16)


def test_vocabulary(spm_model, processor):
    tokenizer = SentencePieceTokenizer(spm_model, lower_case=True, max_seq_length=8)
    assert tokenizer.vocab_size == processor.get_piece_size() == 300
    assert tokenizer.ids_to_tokens([0, 2, 3]) == ["<pad>", "[CLS]", "[SEP]"]
    assert (tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id) == (0, 2, 3)


def test_errors(spm_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.model"):
        SentencePieceTokenizer(tmp_path / "nope.model", lower_case=True, max_seq_length=8)
    with pytest.raises(PowerBertError, match="got 1$"):
        SentencePieceTokenizer(spm_model, lower_case=True, max_seq_length=1)
    (tmp_path / "bad.model").write_bytes(b"not a model")
    with pytest.raises(PowerBertError, match="bad.model: not a SentencePiece model"):
        SentencePieceTokenizer(tmp_path / "bad.model", lower_case=True, max_seq_length=8)
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "text.txt").write_text("\n".join(sst2_lines(200)) + "\n")
    sentencepiece.SentencePieceTrainer.train(
        input=str(folder / "text.txt"), model_prefix=str(folder / "plain"), vocab_size=200,
        minloglevel=2)
    with pytest.raises(PowerBertError, match=r"lacks the piece\(s\) \[CLS\], \[SEP\], <pad>$"):
        SentencePieceTokenizer(folder / "plain.model", lower_case=True, max_seq_length=8)


def test_tf_data_after_a_random_seed_reset(spm_model):
    # tf.random.set_seed clears the eager kernel cache, which holds eagerly made
    # SentencePiece resources; the tokenizer must not depend on one.
    tokenizer = SentencePieceTokenizer(spm_model, lower_case=True, max_seq_length=16)
    texts = ["in 1990, a fine film", "dull"]
    expected = tokenizer(tf.constant(texts))["input_word_ids"].numpy()
    keras.utils.set_random_seed(0)
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(
        tokenizer, num_parallel_calls=tf.data.AUTOTUNE)
    np.testing.assert_array_equal(next(iter(dataset))["input_word_ids"], expected)
