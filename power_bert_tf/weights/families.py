"""The model families, BERT and ALBERT: one entry each, naming everything that differs.

    read_config       a checkpoint's JSON -> `EncoderConfig`
    encoder_class     `BertEncoder` | `AlbertEncoder`
    hf_to_canonical   Hugging Face tensor name -> canonical name (`weights.bert`,
                      `weights.albert`)
    assign_weights    canonical tensors -> the encoder's variables, all or nothing
    read_vocabulary   `vocab.txt` | the SentencePiece model, checked against the embeddings
    tokenizer_class   `BertTokenizer` (WordPiece) | `SentencePieceTokenizer`

The registry sits in `weights`, above the tokenizers (`data`) and the encoders
(`model`) it names, so every import points down. A new family is one entry in
`FAMILIES` (and its name in `config.MODEL_TYPES`, which the encoder config checks).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.data.sentencepiece_tokenizer import SentencePieceTokenizer
from power_bert_tf.data.tokenizer import BertTokenizer, PackingTokenizer
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.albert import AlbertEncoder
from power_bert_tf.model.encoder import BertEncoder
from power_bert_tf.weights.albert import assign_albert_weights, hf_albert_to_canonical
from power_bert_tf.weights.bert import assign_bert_weights
from power_bert_tf.weights.huggingface import hf_to_canonical
from power_bert_tf.weights.vocabulary import (read_sentencepiece_vocabulary,
                                              read_wordpiece_vocabulary)


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """What a model family needs, from its checkpoint folder to its tokenizer.

    Attributes:
        name: the `model_type` ("bert", "albert"), as Hugging Face's `config.json` says it.
        google_config_file: the config file of a Google checkpoint folder.
        read_config: (JSON, source for errors, google layout?) -> `EncoderConfig`.
        encoder_class: the Keras encoder built for this family.
        hf_to_canonical: Hugging Face tensor name -> (canonical name, transpose?), or
            None for a buffer that is not a weight.
        assign_weights: (encoder, canonical tensors, source) -> None; raises
            `PowerBertError` naming missing, unused or misshapen tensors.
        read_vocabulary: (folder, config) -> (vocabulary file, tokens).
        tokenizer_class: the in-graph tokenizer reading that vocabulary file.
    """

    name: str
    google_config_file: str
    read_config: Callable[[Mapping[str, Any], str, bool], EncoderConfig]
    encoder_class: type[BertEncoder]
    hf_to_canonical: Callable[[str], tuple[str, bool] | None]
    assign_weights: Callable[[BertEncoder, Mapping[str, np.ndarray], str], None]
    read_vocabulary: Callable[[Path, EncoderConfig], tuple[Path, list[str]]]
    tokenizer_class: type[PackingTokenizer]

    def build_encoder(self, config: EncoderConfig, **extract_options) -> BertEncoder:
        """An encoder of `config`'s shape with random weights; `extract_options`
        (extract, sequence_length, retention, ...) go to its constructor."""
        if config.model_type != self.name:
            raise PowerBertError(f"the {self.name} family cannot build an encoder of "
                                 f"model_type {config.model_type!r}")
        return self.encoder_class(**config.to_dict(), **extract_options)

    def tokenizer(self, vocab_file: Path, *, lower_case: bool,
                  max_seq_length: int) -> PackingTokenizer:
        """The in-graph tokenizer of `vocab_file`, packing to `max_seq_length` ids."""
        return self.tokenizer_class(vocab_file, lower_case=lower_case,
                                    max_seq_length=max_seq_length)


def _read_bert_config(config: Mapping[str, Any], source: str, google: bool) -> EncoderConfig:
    del google  # Google's and Hugging Face's BERT configs name activations alike
    return EncoderConfig.from_bert_json(config, source)


def _read_albert_config(config: Mapping[str, Any], source: str,
                        google: bool) -> EncoderConfig:
    return EncoderConfig.from_albert_json(config, source, google=google)


BERT = ModelFamily("bert", "bert_config.json", _read_bert_config, BertEncoder,
                   hf_to_canonical, assign_bert_weights, read_wordpiece_vocabulary,
                   BertTokenizer)
ALBERT = ModelFamily("albert", "albert_config.json", _read_albert_config, AlbertEncoder,
                     hf_albert_to_canonical, assign_albert_weights,
                     read_sentencepiece_vocabulary, SentencePieceTokenizer)
FAMILIES: dict[str, ModelFamily] = {family.name: family for family in (BERT, ALBERT)}


def get_family(name: str) -> ModelFamily:
    """The family of a `model_type`; a `PowerBertError` for an unknown one."""
    if name not in FAMILIES:
        raise PowerBertError(f"model type {name!r} is not one of {', '.join(FAMILIES)}")
    return FAMILIES[name]
