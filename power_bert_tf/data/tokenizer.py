"""In-graph BERT WordPiece tokenizer and input packer, matching Hugging Face's fast BertTokenizer.

Raw strings go to ``input_word_ids`` / ``input_mask`` / ``input_type_ids`` entirely in
TensorFlow ops, so a SavedModel can take text. The pipeline reproduces the Hugging Face
``tokenizers`` BERT pipeline (BertNormalizer, BertPreTokenizer, WordPiece, longest-first
truncation, [CLS] a [SEP] b [SEP] template) token for token.

``tensorflow_text.BertTokenizer`` is not used as a whole because its BasicTokenizer
differs from Hugging Face's: it lower-cases with NFKC case folding ("…" -> "...",
"𝔘" -> "u", "ß" -> "ss"), replaces control characters by spaces instead of deleting them,
splits only on ASCII whitespace, uses a slightly different CJK range, limits words in bytes
rather than characters, and splits "[SEP]"-like special tokens typed in the text. The same
tf_text building blocks (regex_split, normalize_utf8, WordpieceTokenizer, Trimmer,
combine_segments, pad_model_inputs) are assembled here with Hugging Face's rules instead.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
import tensorflow as tf
import tensorflow_text as tf_text

from power_bert_tf.errors import PowerBertError

# The encoder's inputs, each (B, L) int32, as every tokenizer and model here names them.
INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")
_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_MAX_CHARS_PER_WORD = 100
# Raw text is cut to this many characters per position of N before tokenising, which
# bounds the work of one request: English averages 4-5 characters a word-piece (space
# included), so the cut keeps the first N word-pieces of any text but one of rare long
# words, whitespace runs or deleted characters (see `PackingTokenizer.max_chars`).
CHARS_PER_POSITION = 16
_TEXTS = tf.TensorSpec([None], tf.string)  # (B,) raw texts

# BertNormalizer clean_text: delete NUL, U+FFFD and control/format/private-use characters
# (Cc except \t \n \r, Cf, Co), then map the remaining Unicode whitespace to " ".
_DELETED_CHARS = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\p{Cf}\p{Co}\x{FFFD}]"
_WHITESPACE = r"[\t\n\r\p{Z}]"
# BertNormalizer handle_chinese_chars: the CJK ideograph blocks that become single words.
_CHINESE_CHAR = (r"[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}"
                 r"\x{2B740}-\x{2B81F}\x{2B920}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]")
# BertPreTokenizer: split on whitespace and isolate ASCII punctuation and Unicode P*.
_PUNCTUATION = r"[!-/:-@\[-`{-~\p{P}]"


class _LongestFirstTrimmer(tf_text.Trimmer):
    """Hugging Face ``longest_first`` truncation of one or two segments to `budget` tokens.

    For pairs the shorter segment (a on ties) keeps min(length, budget // 2) tokens and the
    longer one fills the rest, as ``tokenizers``' ``truncate_encodings`` does. This differs
    from ``tf_text.ShrinkLongestTrimmer``, which breaks ties towards a and so gives the odd
    token to b when a was longer.
    """

    def __init__(self, budget: int):
        self._budget = budget

    def generate_mask(self, segments: list[tf.RaggedTensor]) -> list[tf.RaggedTensor]:
        """(B, None) segments -> (B, None) bool masks keeping each segment's first tokens."""
        lengths = [segment.row_lengths() for segment in segments]
        if len(lengths) == 1:
            kept = [tf.minimum(lengths[0], self._budget)]
        else:
            length_a, length_b = lengths
            kept_short = tf.minimum(tf.minimum(length_a, length_b), self._budget // 2)
            kept_long = tf.minimum(tf.maximum(length_a, length_b), self._budget - kept_short)
            a_longer = length_a > length_b
            kept = [tf.where(a_longer, kept_long, kept_short),
                    tf.where(a_longer, kept_short, kept_long)]
        return [tf.ragged.range(length) < n[:, tf.newaxis] for length, n in zip(lengths, kept)]


def check_max_seq_length(max_seq_length: int) -> None:
    """Raises PowerBertError unless [CLS] and [SEP] fit."""
    if max_seq_length < 2:
        raise PowerBertError(
            f"max_seq_length must be >= 2 for [CLS] and [SEP], got {max_seq_length}")


class PackingTokenizer(tf.Module):
    """Base of the in-graph tokenizers: [CLS] a [SEP] (b [SEP]) from a subclass's `tokenize`.

    Subclasses set `max_seq_length`, `cls_id`, `sep_id` and `pad_id` and implement
    `tokenize`, (B,) strings -> (B, None) int32 ids without special tokens.
    """

    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        raise NotImplementedError

    @property
    def max_chars(self) -> int:
        """Characters of each raw text that are tokenised: `CHARS_PER_POSITION` * N.

        A text up to this long is tokenised whole; a longer one (100,000 characters
        sent to a server) only up to here, so its cost is bounded. The packed result is
        the same whenever the kept characters hold at least N word-pieces, since
        truncation to N keeps only the first ones (for pairs, each segment keeps at
        least as many as longest-first truncation gives it).
        """
        return CHARS_PER_POSITION * self.max_seq_length

    def cut(self, texts: tf.Tensor) -> tf.Tensor:
        """(B,) strings -> (B,) strings of at most `max_chars` UTF-8 characters (an
        invalid byte counts as one)."""
        texts = tf.convert_to_tensor(texts, tf.string)
        return tf.strings.substr(texts, 0, self.max_chars, unit="UTF8_CHAR")

    def __call__(self, text_a: tf.Tensor, text_b: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """(B,) strings -> {"input_word_ids", "input_mask", "input_type_ids"}, each int32 (B, L).

        Each text is first cut to `max_chars` characters. Packs [CLS] a [SEP] (type id 0)
        and b [SEP] (type id 1) after longest-first truncation to L = max_seq_length; the
        mask is 1 on real tokens, and padding is the pad id in ids
        and 0 in mask and type ids.
        """
        if text_b is not None and self.max_seq_length < 3:
            raise PowerBertError(
                f"max_seq_length must be >= 3 for sentence pairs, got {self.max_seq_length}")
        texts = [text_a] if text_b is None else [text_a, text_b]
        if tf.executing_eagerly():
            return self._pack(texts)
        return self._graph_packers[len(texts)](*texts)

    # In a graph (a tf.data map, an exported signature) the packer of one or two texts is
    # traced once per tokenizer and then called: tracing the tokenizer's ops takes
    # seconds, and every new dataset (each epoch's, each split's) would otherwise
    # retrace them.
    @functools.cached_property
    def _graph_packers(self) -> dict[int, tf.types.experimental.PolymorphicFunction]:
        return {count: tf.function(lambda *texts: self._pack(list(texts)), autograph=False,
                                   input_signature=[_TEXTS] * count) for count in (1, 2)}

    def _pack(self, texts: list[tf.Tensor]) -> dict[str, tf.Tensor]:
        segments = [self.tokenize(self.cut(text)) for text in texts]
        budget = self.max_seq_length - 1 - len(segments)
        segments = _LongestFirstTrimmer(budget).trim(segments)
        word_ids, type_ids = tf_text.combine_segments(segments, self.cls_id, self.sep_id)
        word_ids, mask = tf_text.pad_model_inputs(word_ids, self.max_seq_length, self.pad_id)
        type_ids, _ = tf_text.pad_model_inputs(type_ids, self.max_seq_length)
        return {"input_word_ids": word_ids, "input_mask": tf.cast(mask, tf.int32),
                "input_type_ids": tf.cast(type_ids, tf.int32)}


class BertTokenizer(PackingTokenizer):
    """In-graph WordPiece tokenizer and [CLS] a [SEP] (b [SEP]) packer.

    Args:
        vocab_file: BERT vocab.txt, one token per line; the line number is the id.
        lower_case: NFD + accent stripping + lower-casing, as for uncased BERT models.
        max_seq_length: padded output length, special tokens included.
        name: module name.
    """

    def __init__(self, vocab_file: str | Path, *, lower_case: bool, max_seq_length: int,
                 name: str = "bert_tokenizer"):
        super().__init__(name=name)
        path = Path(vocab_file)
        if not path.is_file():
            raise FileNotFoundError(f"vocab file not found: {path}")
        check_max_seq_length(max_seq_length)
        # As ``tokenizers``' WordPiece.read_file: one token per "\n"-ended line, right-stripped.
        vocab = [line.rstrip() for line in path.read_text(encoding="utf-8").split("\n")]
        if vocab and not vocab[-1]:
            vocab.pop()
        token_to_id = {token: index for index, token in enumerate(vocab)}
        missing = [token for token in _SPECIAL_TOKENS[:4] if token not in token_to_id]
        if missing:
            raise PowerBertError(
                f"vocab file {path} lacks the special token(s) {', '.join(missing)}")

        self._vocab = np.array(vocab, dtype=object)
        self.lower_case = lower_case
        self.max_seq_length = max_seq_length
        self.pad_id, self.unk_id, self.cls_id, self.sep_id = (
            token_to_id[token] for token in _SPECIAL_TOKENS[:4])
        self._vocab_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(vocab, tf.string), tf.range(len(vocab), dtype=tf.int64)),
            default_value=-1)
        self._wordpiece = tf_text.WordpieceTokenizer(
            self._vocab_table, max_bytes_per_word=4 * _MAX_CHARS_PER_WORD,
            token_out_type=tf.int64, unknown_token="[UNK]")
        # Special tokens typed in the text stay whole and skip normalization (HF added tokens).
        self._special_pattern = "|".join(
            re.escape(token) for token in _SPECIAL_TOKENS if token in token_to_id)
        self._word_delimiters = rf"\s+|{self._special_pattern}|{_PUNCTUATION}"
        self._kept_delimiters = rf"{self._special_pattern}|{_PUNCTUATION}"

    @property
    def vocab_size(self) -> int:
        """Number of vocabulary entries."""
        return len(self._vocab)

    def _normalize(self, texts: tf.Tensor) -> tf.Tensor:
        """(N,) string -> (N,) string, Hugging Face's BertNormalizer."""
        texts = tf.strings.regex_replace(texts, _DELETED_CHARS, "")
        texts = tf.strings.regex_replace(texts, _WHITESPACE, " ")
        texts = tf.strings.regex_replace(texts, _CHINESE_CHAR, r" \0 ")
        if self.lower_case:
            texts = tf_text.normalize_utf8(texts, "NFD")
            texts = tf.strings.regex_replace(texts, r"\p{Mn}", "")
            # HF lower-cases char by char; ICU would turn a word-final capital sigma into "ς".
            texts = tf.strings.regex_replace(texts, "Σ", "σ")
            texts = tf.strings.lower(texts, encoding="utf-8")
        return texts

    def _normalize_unless_special(self, pieces: tf.Tensor) -> tf.Tensor:
        """(N,) string -> (N,) string, normalizing all but whole special tokens."""
        is_special = tf.strings.regex_full_match(pieces, self._special_pattern)
        return tf.where(is_special, pieces, self._normalize(pieces))

    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """(B,) string -> (B, None) int32 wordpiece ids, without special tokens or truncation."""
        texts = tf.convert_to_tensor(texts, tf.string)
        # regex_split stops at NUL; swap it for another control character that _normalize deletes.
        texts = tf.strings.regex_replace(texts, r"\x00", "\x01")
        pieces = tf_text.regex_split(texts, self._special_pattern, self._special_pattern)
        pieces = tf.ragged.map_flat_values(self._normalize_unless_special, pieces)
        words = tf_text.regex_split(pieces, self._word_delimiters, self._kept_delimiters)
        words = words.merge_dims(-2, -1)
        # Words over 100 characters become [UNK] (tf_text's own limit counts bytes).
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > _MAX_CHARS_PER_WORD
        words = words.with_flat_values(tf.where(too_long, "[UNK]", words.flat_values))
        ids = self._wordpiece.tokenize(words).merge_dims(-2, -1)
        return tf.cast(ids, tf.int32)

    def ids_to_tokens(self, ids: ArrayLike) -> list[str]:
        """(T,) ids (array, list or eager tensor) -> their T vocabulary strings, on the host."""
        return self._vocab[np.asarray(ids, dtype=np.int64).reshape(-1)].tolist()
