"""One entry point for pre-trained weights: the embedded model or a folder.

`load_pretrained(model)` takes "embedded" (the packaged MiniLM, the offline
default) or a folder, and returns the encoder shape, canonical tensors and vocabulary:

    Hugging Face BERT    config.json, model.safetensors, vocab.txt
    Google BERT          bert_config.json, bert_model.ckpt.*, vocab.txt
    Hugging Face ALBERT  config.json with "model_type": "albert", model.safetensors,
                         spiece.model
    Google ALBERT        albert_config.json, model.ckpt-*.{index,data-*}, 30k-clean.model
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Mapping

import numpy as np
from absl import logging

from power_bert_tf.config import MODEL_TYPES, EncoderConfig
from power_bert_tf.errors import PowerBertError
from power_bert_tf.weights.albert import assign_albert_weights, hf_albert_to_canonical
from power_bert_tf.weights.bert import assign_bert_weights, is_ignored
from power_bert_tf.weights.embedded import EMBEDDED_NAME, embedded_model_folder
from power_bert_tf.weights.google import read_google_tensors
from power_bert_tf.weights.huggingface import (hf_to_canonical, read_hf_lower_case,
                                               read_hf_tensors)

_ASSIGN = {"bert": assign_bert_weights, "albert": assign_albert_weights}
_HF_NAMES = {"bert": hf_to_canonical, "albert": hf_albert_to_canonical}
# SentencePiece model file names: Hugging Face's, then Google's ALBERT release's.
_SENTENCEPIECE_FILES = ("spiece.model", "30k-clean.model")


@dataclasses.dataclass(frozen=True)
class PretrainedBert:
    """A pre-trained BERT or ALBERT: shape (with its `model_type`), canonical tensors
    (see `weights.bert`, `weights.albert`) and vocabulary: `vocab_file` is BERT's
    vocab.txt or ALBERT's SentencePiece model."""

    config: EncoderConfig
    tensors: Mapping[str, np.ndarray]
    vocab_file: Path
    lower_case: bool
    source: str

    def build_encoder(self, **extract_options):
        """A `BertEncoder` or `AlbertEncoder` with these weights; `extract_options` go to
        its constructor."""
        from power_bert_tf.model.factory import build_encoder

        encoder = build_encoder(self.config, **extract_options)
        _ASSIGN[self.config.model_type](encoder, self.tensors, self.source)
        return encoder

    def tokenizer(self, max_seq_length: int):
        """The in-graph tokenizer: WordPiece for BERT, SentencePiece for ALBERT."""
        if self.config.model_type == "albert":
            from power_bert_tf.data.sentencepiece_tokenizer import SentencePieceTokenizer

            return SentencePieceTokenizer(self.vocab_file, lower_case=self.lower_case,
                                          max_seq_length=max_seq_length)
        from power_bert_tf.data.tokenizer import BertTokenizer

        return BertTokenizer(self.vocab_file, lower_case=self.lower_case,
                             max_seq_length=max_seq_length)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PowerBertError(f"{path}: invalid JSON ({error})") from None


def _read_vocab(folder: Path, config: EncoderConfig) -> tuple[Path, list[str]]:
    path = folder / "vocab.txt"
    if not path.is_file():
        raise PowerBertError(f"{folder}: no vocab.txt")
    tokens = path.read_text(encoding="utf-8").splitlines()
    if len(tokens) != config.vocabulary_size:
        raise PowerBertError(f"{path} has {len(tokens)} tokens but the model's vocab_size "
                             f"(embedding rows) is {config.vocabulary_size}")
    return path, tokens


def _vocab_is_uncased(tokens: list[str]) -> bool:
    """An uncased vocabulary has no upper-case word-pieces outside [SPECIAL] tokens."""
    return not any(token != token.lower() for token in tokens
                   if not (token.startswith("[") and token.endswith("]")))


def _read_sentencepiece(folder: Path, config: EncoderConfig) -> tuple[Path, list[str]]:
    import sentencepiece

    candidates = [folder / name for name in _SENTENCEPIECE_FILES if (folder / name).is_file()]
    candidates = candidates or sorted(folder.glob("*.model"))
    if len(candidates) != 1:
        raise PowerBertError(f"{folder}: expected one SentencePiece model (spiece.model, "
                             f"30k-clean.model or one *.model), found {len(candidates)}")
    path = candidates[0]
    try:
        processor = sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError) as error:
        raise PowerBertError(f"{path}: not a SentencePiece model ({error})") from None
    pieces = [processor.id_to_piece(index) for index in range(processor.get_piece_size())]
    if len(pieces) != config.vocabulary_size:
        raise PowerBertError(f"{path} has {len(pieces)} pieces but the model's vocab_size "
                             f"(embedding rows) is {config.vocabulary_size}")
    return path, pieces


def _model_type(folder: Path) -> tuple[str, str]:
    """("bert" | "albert", "huggingface" | "google") of a model folder."""
    if (folder / "albert_config.json").is_file():
        return "albert", "google"
    if (folder / "config.json").is_file():
        declared = _read_json(folder / "config.json").get("model_type")
        return ("albert" if declared == "albert" else "bert"), "huggingface"
    if (folder / "bert_config.json").is_file():
        return "bert", "google"
    raise PowerBertError(f"{folder} is neither a Hugging Face folder (config.json) nor a "
                         f"Google BERT (bert_config.json) or ALBERT (albert_config.json) folder")


def load_pretrained(model: str | Path = EMBEDDED_NAME, lower_case: bool | None = None,
                    model_type: str | None = None) -> PretrainedBert:
    """Reads pre-trained BERT or ALBERT weights, offline.

    Args:
        model: "embedded", or the path of a Hugging Face or Google BERT or ALBERT folder.
        lower_case: overrides the folder's casing (read from `tokenizer_config.json`,
            else inferred from the vocabulary).
        model_type: "bert" or "albert" to insist on one; None takes the folder's.
    """
    if model_type is not None and model_type not in MODEL_TYPES:
        raise PowerBertError(f"model type {model_type!r} is not one of {', '.join(MODEL_TYPES)}")
    folder = embedded_model_folder() if str(model) == EMBEDDED_NAME else Path(model)
    if not folder.is_dir():
        raise PowerBertError(f"model folder {folder} does not exist")
    found, layout = _model_type(folder)
    if model_type is not None and model_type != found:
        raise PowerBertError(f"model type {model_type} was asked for, but {folder} holds a "
                             f"{layout} {found.upper()} model")
    if found == "albert":
        config_file = folder / ("albert_config.json" if layout == "google" else "config.json")
        config = EncoderConfig.from_albert_json(_read_json(config_file), str(config_file),
                                                google=layout == "google")
    else:
        config_file = folder / ("bert_config.json" if layout == "google" else "config.json")
        config = EncoderConfig.from_bert_json(_read_json(config_file), str(config_file))
    if layout == "google":
        tensors, folder_lower_case = read_google_tensors(folder), None
    else:
        tensors = read_hf_tensors(folder, _HF_NAMES[found])
        folder_lower_case = read_hf_lower_case(folder)
    vocab_file, tokens = (_read_sentencepiece(folder, config) if found == "albert"
                          else _read_vocab(folder, config))
    if lower_case is None:
        lower_case = folder_lower_case if folder_lower_case is not None else _vocab_is_uncased(tokens)
    skipped = sorted(name for name in tensors if is_ignored(name))
    if skipped:
        logging.info("%s: skipping %d pre-training/optimiser tensors (%s, ...)",
                     folder, len(skipped), skipped[0])
    return PretrainedBert(config, tensors, vocab_file, lower_case, str(folder))
