"""One entry point for pre-trained weights: the embedded model or a folder.

`load_pretrained(model)` takes "embedded" (the packaged MiniLM, the offline
default) or a folder, and returns the encoder shape, canonical tensors and vocabulary:

    Hugging Face BERT    config.json, model.safetensors, vocab.txt
    Google BERT          bert_config.json, bert_model.ckpt.*, vocab.txt
    Hugging Face ALBERT  config.json with "model_type": "albert", model.safetensors,
                         spiece.model
    Google ALBERT        albert_config.json, model.ckpt-*.{index,data-*}, 30k-clean.model

What differs between BERT and ALBERT comes from their `ModelFamily` (`weights.families`).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Mapping

import numpy as np
from absl import logging

from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.data.tokenizer import PackingTokenizer
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.encoder import BertEncoder
from power_bert_tf.weights.bert import is_ignored
from power_bert_tf.weights.embedded import EMBEDDED_NAME, embedded_model_folder
from power_bert_tf.weights.families import BERT, FAMILIES, ModelFamily, get_family
from power_bert_tf.weights.google import read_google_tensors
from power_bert_tf.weights.huggingface import read_hf_lower_case, read_hf_tensors
from power_bert_tf.weights.vocabulary import vocabulary_is_uncased

HF_CONFIG_FILE = "config.json"


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

    @property
    def family(self) -> ModelFamily:
        return FAMILIES[self.config.model_type]

    def build_encoder(self, **extract_options) -> BertEncoder:
        """A `BertEncoder` or `AlbertEncoder` with these weights; `extract_options` go to
        its constructor."""
        encoder = self.family.build_encoder(self.config, **extract_options)
        self.family.assign_weights(encoder, self.tensors, self.source)
        return encoder

    def tokenizer(self, max_seq_length: int) -> PackingTokenizer:
        """The in-graph tokenizer: WordPiece for BERT, SentencePiece for ALBERT."""
        return self.family.tokenizer(self.vocab_file, lower_case=self.lower_case,
                                     max_seq_length=max_seq_length)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PowerBertError(f"{path}: invalid JSON ({error})") from None


def _detect(folder: Path) -> tuple[ModelFamily, str, Path]:
    """(family, "huggingface" | "google", config file) of a model folder: a Hugging Face
    `config.json` names its `model_type` (BERT when it names none we know), a Google
    folder is known by its family's config file."""
    if (folder / HF_CONFIG_FILE).is_file():
        declared = _read_json(folder / HF_CONFIG_FILE).get("model_type")
        return FAMILIES.get(declared, BERT), "huggingface", folder / HF_CONFIG_FILE
    for family in FAMILIES.values():
        if (folder / family.google_config_file).is_file():
            return family, "google", folder / family.google_config_file
    google = " or ".join(f"{family.name.upper()} ({family.google_config_file})"
                         for family in FAMILIES.values())
    raise PowerBertError(f"{folder} is neither a Hugging Face folder ({HF_CONFIG_FILE}) nor "
                         f"a Google {google} folder")


def load_pretrained(model: str | Path = EMBEDDED_NAME, lower_case: bool | None = None,
                    model_type: str | None = None) -> PretrainedBert:
    """Reads pre-trained BERT or ALBERT weights, offline.

    Args:
        model: "embedded", or the path of a Hugging Face or Google BERT or ALBERT folder.
        lower_case: overrides the folder's casing (read from `tokenizer_config.json`,
            else inferred from the vocabulary).
        model_type: "bert" or "albert" to insist on one; None takes the folder's.
    """
    if model_type is not None:
        get_family(model_type)
    folder = embedded_model_folder() if str(model) == EMBEDDED_NAME else Path(model)
    if not folder.is_dir():
        raise PowerBertError(f"model folder {folder} does not exist")
    family, layout, config_file = _detect(folder)
    if model_type is not None and model_type != family.name:
        raise PowerBertError(f"model type {model_type} was asked for, but {folder} holds a "
                             f"{layout} {family.name.upper()} model")
    config = family.read_config(_read_json(config_file), str(config_file), layout == "google")
    if layout == "google":
        tensors, folder_lower_case = read_google_tensors(folder), None
    else:
        tensors = read_hf_tensors(folder, family.hf_to_canonical)
        folder_lower_case = read_hf_lower_case(folder)
    vocab_file, tokens = family.read_vocabulary(folder, config)
    if lower_case is None:
        lower_case = (folder_lower_case if folder_lower_case is not None
                      else vocabulary_is_uncased(tokens))
    skipped = sorted(name for name in tensors if is_ignored(name))
    if skipped:
        logging.info("%s: skipping %d pre-training, optimiser or task-head tensors (%s, ...)",
                     folder, len(skipped), skipped[0])
    return PretrainedBert(config, tensors, vocab_file, lower_case, str(folder))
