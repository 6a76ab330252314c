"""In-graph ALBERT tokenizer: ALBERT's text preprocessing, SentencePiece, [CLS] a [SEP] b [SEP].

Raw strings go to ``input_word_ids`` / ``input_mask`` / ``input_type_ids`` in TensorFlow
ops (``tensorflow_text.SentencepieceTokenizer`` over the model's ``.model`` file), so an
ALBERT SavedModel takes text. The steps are those of Google's ALBERT ``FullTokenizer``
with an spm model and of Hugging Face's ``AlbertTokenizer``:

1. whitespace runs become one space, leading and trailing whitespace goes, and ````` and
   ``''`` become ``"``;
2. NFKD, then combining marks (``\\p{Mn}``) are removed (ALBERT's ``keep_accents=False``);
3. lower-casing, for uncased models;
4. SentencePiece, whose own normalizer (e.g. ``nmt_nfkc``) runs inside the op;
5. a piece ending in a digit and a comma, such as ``▁1990,``, is encoded again without
   its comma and ``▁``, then the comma follows as its own piece (ALBERT's ``encode_pieces``).

Known difference from Hugging Face's ``AlbertTokenizer``: special tokens typed in the text
("[SEP]") are ordinary text here, as in Google's tokenizer.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
import sentencepiece
import tensorflow as tf
import tensorflow_text as tf_text

from power_bert_tf.data.tokenizer import PackingTokenizer, check_max_seq_length
from power_bert_tf.errors import PowerBertError

_SPECIAL_PIECES = ("[CLS]", "[SEP]", "<pad>")
_SPIECE_UNDERLINE = "▁"
# What Python's str.split() splits on (ALBERT joins the words with one space).
_WHITESPACE = (r"[\t\n\x0B\x0C\r\x1C-\x1F \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}"
               r"\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+")


class SentencePieceTokenizer(PackingTokenizer):
    """In-graph SentencePiece tokenizer and [CLS] a [SEP] (b [SEP]) packer for ALBERT.

    Args:
        model_file: the SentencePiece model (`30k-clean.model`, `spiece.model`); it must
            hold the pieces [CLS], [SEP] and <pad>, whose ids are used.
        lower_case: lower-case before SentencePiece, as for uncased models.
        max_seq_length: padded output length, special tokens included.
        name: module name.
    """

    def __init__(self, model_file: str | Path, *, lower_case: bool, max_seq_length: int,
                 name: str = "sentencepiece_tokenizer"):
        super().__init__(name=name)
        path = Path(model_file)
        if not path.is_file():
            raise FileNotFoundError(f"SentencePiece model not found: {path}")
        check_max_seq_length(max_seq_length)
        proto = path.read_bytes()
        try:
            processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
        except RuntimeError as error:
            raise PowerBertError(f"{path}: not a SentencePiece model ({error})") from None
        self._pieces = np.array([processor.id_to_piece(index)
                                 for index in range(processor.get_piece_size())], dtype=object)
        ids = {piece: processor.piece_to_id(piece) for piece in _SPECIAL_PIECES}
        missing = [piece for piece, index in ids.items() if self._pieces[index] != piece]
        if missing:
            raise PowerBertError(f"SentencePiece model {path} lacks the piece(s) "
                                 f"{', '.join(missing)}")
        self.lower_case = lower_case
        self.max_seq_length = max_seq_length
        self.cls_id, self.sep_id, self.pad_id = (ids[piece] for piece in _SPECIAL_PIECES)
        self._model_proto = proto

    @property
    def vocab_size(self) -> int:
        """Number of SentencePiece pieces."""
        return len(self._pieces)

    def _preprocess(self, texts: tf.Tensor) -> tf.Tensor:
        """(B,) string -> (B,) string, steps 1-3 of the module docstring."""
        texts = tf.strings.regex_replace(texts, _WHITESPACE, " ")
        texts = tf.strings.regex_replace(texts, r"^ | $", "")
        texts = tf.strings.regex_replace(texts, r"``|''", '"')
        texts = tf_text.normalize_utf8(texts, "NFKD")
        texts = tf.strings.regex_replace(texts, r"\p{Mn}", "")
        if self.lower_case:
            texts = tf.strings.lower(texts, encoding="utf-8")
        return texts

    def _sentencepiece(self) -> tf_text.SentencepieceTokenizer:
        """A SentencePiece op resource for this call. Made per call, not once: a resource
        made eagerly dies when the eager kernel cache is cleared (`tf.random.set_seed`
        does that), and tf.data functions using it then fail; one made while tracing
        lives with its function (and its SavedModel)."""
        return tf_text.SentencepieceTokenizer(model=self._model_proto, out_type=tf.string)

    @staticmethod
    def _split_digit_commas(sentencepiece: tf_text.SentencepieceTokenizer,
                            pieces: tf.Tensor) -> tf.RaggedTensor:
        """(N,) pieces -> (N, None) pieces: each one unchanged, or, for a piece ending in
        a digit and a comma, its re-encoded stem and then ","."""
        flagged = tf.strings.regex_full_match(pieces, r".*\p{Nd},")
        stems = tf.strings.regex_replace(tf.strings.regex_replace(pieces, ",$", ""),
                                         _SPIECE_UNDERLINE, "")
        sub = sentencepiece.tokenize(tf.where(flagged, stems, ""))  # empty if unflagged
        # A stem's first piece loses its "▁" when the original piece had none.
        values, rows = sub.flat_values, sub.value_rowids()
        is_first = tf.range(tf.shape(values, out_type=tf.int64)[0]) == tf.gather(
            sub.row_starts(), rows)
        starts_with_underline = tf.strings.regex_full_match(
            tf.gather(pieces, rows), f"{_SPIECE_UNDERLINE}.*")
        strip = (is_first & ~starts_with_underline
                 & tf.strings.regex_full_match(values, f"{_SPIECE_UNDERLINE}.*"))
        values = tf.where(strip, tf.strings.regex_replace(values, f"^{_SPIECE_UNDERLINE}", ""),
                          values)
        sub = tf.ragged.boolean_mask(sub.with_flat_values(values),
                                     sub.with_flat_values(values != ""))
        tail = tf.RaggedTensor.from_tensor(tf.where(flagged, ",", pieces)[:, tf.newaxis])
        return tf.concat([sub, tail], axis=1)

    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """(B,) string -> (B, None) int32 piece ids, without special tokens or truncation."""
        sentencepiece = self._sentencepiece()
        texts = self._preprocess(tf.convert_to_tensor(texts, tf.string))
        pieces = sentencepiece.tokenize(texts)
        pieces = pieces.with_flat_values(
            self._split_digit_commas(sentencepiece, pieces.flat_values)).merge_dims(-2, -1)
        return tf.cast(sentencepiece.string_to_id(pieces), tf.int32)

    def ids_to_tokens(self, ids: ArrayLike) -> list[str]:
        """(T,) ids (array, list or eager tensor) -> their T pieces, on the host."""
        return self._pieces[np.asarray(ids, dtype=np.int64).reshape(-1)].tolist()
