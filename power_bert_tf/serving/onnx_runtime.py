"""Running an ONNX export with ONNX Runtime alone: WordPiece pre-processing and a predictor.

This module imports only the standard library, NumPy and onnxruntime, never TensorFlow or
power_bert_tf: `export_onnx` copies it into the export folder as `power_bert_onnx.py`, so

    import power_bert_onnx
    model = power_bert_onnx.OnnxClassifier("export/SST-2-onnx/1")   # model.onnx
    model.predict(["a gripping film", "flat and lifeless"])         # probabilities, labels

runs on a machine with `pip install onnxruntime numpy` only.

`WordPieceTokenizer` is the pure-Python twin of the in-graph `BertTokenizer`
(power_bert_tf/data/tokenizer.py), rule for rule, so that both give the same ids (tested
against it): Hugging Face's BertNormalizer (delete control, format and private-use
characters and U+FFFD, map Unicode whitespace to spaces, isolate CJK ideographs, NFD,
strip accents (Mn), lower-case character by character), special tokens typed in the text
kept whole, split on spaces and isolate punctuation (ASCII and Unicode P*), words over 100
characters -> [UNK], greedy longest-match WordPiece with "##" continuations (a word with
an unknown piece -> [UNK]), longest-first truncation, [CLS] a [SEP] (b [SEP]) packing.
"""
from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Sequence

import numpy as np

# This file is copied next to an exported model and runs without the package, so it
# keeps its own copy of data.tokenizer.INPUT_NAMES (tests/test_onnx.py checks they agree).
INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")
METADATA_FILE = "power_bert.json"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_CHARS_PER_WORD = 100
_DELETED = frozenset([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0),
                      0xFFFD])
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _is_punctuation(char: str) -> bool:
    code = ord(char)
    return (0x21 <= code <= 0x2F or 0x3A <= code <= 0x40 or 0x5B <= code <= 0x60
            or 0x7B <= code <= 0x7E or unicodedata.category(char).startswith("P"))


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


class WordPieceTokenizer:
    """Text -> int32 (B, max_seq_length) ids, mask and type ids, as the in-graph tokenizer.

    Args:
        vocab_file: BERT vocab.txt, one token per line; the line number is the id.
        lower_case: NFD, accent stripping and lower-casing (uncased models).
        max_seq_length: padded length, [CLS] and [SEP] included.
    """

    def __init__(self, vocab_file: str | Path, *, lower_case: bool, max_seq_length: int):
        vocab = [line.rstrip() for line in
                 Path(vocab_file).read_text(encoding="utf-8").split("\n")]
        if vocab and not vocab[-1]:
            vocab.pop()
        self.vocab = {token: index for index, token in enumerate(vocab)}
        self.lower_case = lower_case
        self.max_seq_length = max_seq_length
        self.pad_id, self.unk_id, self.cls_id, self.sep_id = (
            self.vocab[token] for token in SPECIAL_TOKENS[:4])
        specials = [re.escape(token) for token in SPECIAL_TOKENS if token in self.vocab]
        self._special = re.compile("(" + "|".join(specials) + ")")

    def _normalize(self, text: str) -> str:
        chars = []
        for char in text:
            code = ord(char)
            if code in _DELETED or unicodedata.category(char) in ("Cf", "Co"):
                continue
            if char in "\t\n\r" or unicodedata.category(char).startswith("Z"):
                chars.append(" ")
            elif _is_cjk(char):
                chars.append(f" {char} ")
            else:
                chars.append(char)
        text = "".join(chars)
        if self.lower_case:
            text = "".join(char for char in unicodedata.normalize("NFD", text)
                           if unicodedata.category(char) != "Mn")
            text = "".join(char.lower() if len(char.lower()) == 1 else char for char in text)
        return text

    def _words(self, text: str) -> list[str]:
        words = []
        for index, piece in enumerate(self._special.split(text)):
            if index % 2:  # a special token typed in the text
                words.append(piece)
                continue
            for chunk in self._normalize(piece).split(" "):
                word = []
                for char in chunk:
                    if _is_punctuation(char):
                        words += ["".join(word)] if word else []
                        words.append(char)
                        word = []
                    else:
                        word.append(char)
                words += ["".join(word)] if word else []
        return words

    def _wordpiece(self, word: str) -> list[int]:
        if len(word) > MAX_CHARS_PER_WORD:
            return [self.unk_id]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            if end == start:
                return [self.unk_id]
            start = end
        return ids

    def tokenize(self, text: str | bytes) -> list[int]:
        """One text (bytes are decoded as UTF-8, invalid bytes dropped) -> wordpiece ids."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return [piece for word in self._words(text) for piece in self._wordpiece(word)]

    def __call__(self, texts_a: Sequence[str | bytes],
                 texts_b: Sequence[str | bytes] | None = None) -> dict[str, np.ndarray]:
        """B texts (or pairs) -> {"input_word_ids", "input_mask", "input_type_ids"}, int32
        (B, max_seq_length); longest-first truncation, right padding."""
        if texts_b is not None and len(texts_b) != len(texts_a):
            raise ValueError(f"{len(texts_a)} first texts but {len(texts_b)} second texts")
        length = self.max_seq_length
        out = {name: np.zeros((len(texts_a), length), np.int32) for name in INPUT_NAMES}
        out["input_word_ids"][:] = self.pad_id
        for row, text_a in enumerate(texts_a):
            a = self.tokenize(text_a)
            b = None if texts_b is None else self.tokenize(texts_b[row])
            if b is None:
                a = a[:length - 2]
                ids, types = [self.cls_id, *a, self.sep_id], [0] * (len(a) + 2)
            else:
                budget = length - 3
                short = min(len(a), len(b), budget // 2)
                long = min(max(len(a), len(b)), budget - short)
                a, b = (a[:long], b[:short]) if len(a) > len(b) else (a[:short], b[:long])
                ids = [self.cls_id, *a, self.sep_id, *b, self.sep_id]
                types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
            out["input_word_ids"][row, :len(ids)] = ids
            out["input_mask"][row, :len(ids)] = 1
            out["input_type_ids"][row, :len(ids)] = types
        return out


class OnnxClassifier:
    """An exported model folder (model.onnx or model_int8.onnx, vocab.txt, power_bert.json)
    in an ONNX Runtime session.

    Args:
        folder: the export version folder.
        model_file: "model.onnx" (float32) or "model_int8.onnx" (dynamic int8).
        threads: intra-op threads; None: ONNX Runtime's default (one per core).
        warm: run the session once now (`warm_up`), so that the first request does not
            pay for ONNX Runtime's first-run allocations; False skips it.
    """

    def __init__(self, folder: str | Path, model_file: str = "model.onnx",
                 threads: int | None = None, warm: bool = True):
        import onnxruntime as ort

        folder = Path(folder)
        self.metadata = json.loads((folder / METADATA_FILE).read_text())
        self.labels = self.metadata["labels"]
        self.tokenizer = WordPieceTokenizer(folder / "vocab.txt",
                                            lower_case=self.metadata["lower_case"],
                                            max_seq_length=self.metadata["max_seq_length"])
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(folder / model_file), options,
                                            providers=["CPUExecutionProvider"])
        if warm:
            self.warm_up()

    def warm_up(self) -> None:
        """Runs the session once on one empty text. The graph has one input length, N
        (the tokenizer pads to it), so this one run covers every request's shape."""
        self.run(self.tokenizer([""]))

    def run(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """int32 (B, N) features -> "logits" (B, C) and "kept_positions_j" (B, l_j).

        A graph exported at a fixed batch size b (power_bert.json "batch_size") is fed
        b rows at a time, the last chunk padded with empty rows that are dropped."""
        names = [output.name for output in self.session.get_outputs()]
        feeds = {name: np.asarray(features[name], np.int32) for name in INPUT_NAMES}
        rows = len(feeds[INPUT_NAMES[0]])
        size = self.metadata.get("batch_size") or max(rows, 1)  # any batch: one chunk
        chunks = []
        for start in range(0, max(rows, 1), size):
            chunk = {name: value[start:start + size] for name, value in feeds.items()}
            count = len(chunk[INPUT_NAMES[0]])
            chunk = {name: np.pad(value, ((0, size - count), (0, 0)))
                     for name, value in chunk.items()}
            chunks.append([value[:count] for value in self.session.run(names, chunk)])
        return {name: np.concatenate([chunk[i] for chunk in chunks])
                for i, name in enumerate(names)}

    def predict(self, texts_a: Sequence[str | bytes],
                texts_b: Sequence[str | bytes] | None = None) -> dict[str, list]:
        """B texts -> {"probabilities": (B, C), "label": B strings}, or {"score": B floats}."""
        logits = self.run(self.tokenizer(texts_a, texts_b))["logits"]
        if self.labels is None:
            return {"score": logits[:, 0].tolist()}
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        return {"probabilities": probabilities.tolist(),
                "label": [self.labels[index] for index in probabilities.argmax(axis=1)]}
