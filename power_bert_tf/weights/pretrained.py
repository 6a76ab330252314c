"""One entry point for pre-trained weights: the embedded model or a folder.

`load_pretrained(model)` takes "embedded" (the packaged MiniLM, the offline
default), a Hugging Face folder (`config.json`, `model.safetensors`,
`vocab.txt`) or a Google BERT folder (`bert_config.json`, `bert_model.ckpt.*`,
`vocab.txt`), and returns the encoder shape, canonical tensors and vocabulary.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Mapping

import numpy as np
from absl import logging

from power_bert_tf.config import EncoderConfig
from power_bert_tf.errors import PowerBertError
from power_bert_tf.weights.bert import assign_bert_weights, is_ignored
from power_bert_tf.weights.embedded import EMBEDDED_NAME, embedded_model_folder
from power_bert_tf.weights.google import read_google_tensors
from power_bert_tf.weights.huggingface import read_hf_lower_case, read_hf_tensors


@dataclasses.dataclass(frozen=True)
class PretrainedBert:
    """A pre-trained BERT: shape, canonical tensors (see `weights.bert`), vocabulary."""

    config: EncoderConfig
    tensors: Mapping[str, np.ndarray]
    vocab_file: Path
    lower_case: bool
    source: str

    def build_encoder(self, **extract_options):
        """A `BertEncoder` with these weights; `extract_options` go to its constructor."""
        from power_bert_tf.model.encoder import BertEncoder

        encoder = BertEncoder(**self.config.to_dict(), **extract_options)
        assign_bert_weights(encoder, self.tensors, self.source)
        return encoder

    def tokenizer(self, max_seq_length: int):
        """The in-graph WordPiece tokenizer for this vocabulary."""
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


def load_pretrained(model: str | Path = EMBEDDED_NAME,
                    lower_case: bool | None = None) -> PretrainedBert:
    """Reads pre-trained BERT weights, offline.

    Args:
        model: "embedded", or the path of a Hugging Face or Google BERT folder.
        lower_case: overrides the folder's casing (read from `tokenizer_config.json`,
            else inferred from the vocabulary).
    """
    folder = embedded_model_folder() if str(model) == EMBEDDED_NAME else Path(model)
    if not folder.is_dir():
        raise PowerBertError(f"model folder {folder} does not exist")
    if (folder / "config.json").is_file():
        config = EncoderConfig.from_bert_json(_read_json(folder / "config.json"),
                                              str(folder / "config.json"))
        tensors = read_hf_tensors(folder)
        folder_lower_case = read_hf_lower_case(folder)
    elif (folder / "bert_config.json").is_file():
        config = EncoderConfig.from_bert_json(_read_json(folder / "bert_config.json"),
                                              str(folder / "bert_config.json"))
        tensors = read_google_tensors(folder)
        folder_lower_case = None
    else:
        raise PowerBertError(f"{folder} is neither a Hugging Face folder (config.json) nor a "
                             f"Google BERT folder (bert_config.json)")
    vocab_file, tokens = _read_vocab(folder, config)
    if lower_case is None:
        lower_case = folder_lower_case if folder_lower_case is not None else _vocab_is_uncased(tokens)
    skipped = sorted(name for name in tensors if is_ignored(name))
    if skipped:
        logging.info("%s: skipping %d pre-training/optimiser tensors (%s, ...)",
                     folder, len(skipped), skipped[0])
    return PretrainedBert(config, tensors, vocab_file, lower_case, str(folder))
