"""A tiny SentencePiece model and tiny ALBERT folders (Google and Hugging Face), for tests.

The canonical -> Hugging Face name mapping here is written independently of
`power_bert_tf.weights.albert` (the inverse direction), so a mistake in either shows.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Iterable

import numpy as np
import sentencepiece
import tensorflow as tf

from checkpoint_writers import write_safetensors
from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.weights.albert import albert_encoder_variables
from power_bert_tf.weights.bert import canonical_shape

GLUE_SST2 = Path(__file__).parents[2] / "shared" / "glue" / "SST-2" / "train.tsv"
# Extra lines so that pieces such as "▁1990," exist (ALBERT's digit-comma rule) and so
# that upper case and accents reach the model.
EXTRA_LINES = ["in 1990, 2,000 people saw it , and 3,500 more in 1991, 1992, 1993,"] * 30


def sst2_lines(count: int) -> list[str]:
    with GLUE_SST2.open(newline="") as file:
        rows = csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row["sentence"] for _, row in zip(range(count), rows)]


def train_sentencepiece(folder: Path, lines: Iterable[str], vocab_size: int = 300,
                        name: str = "spiece") -> Path:
    """An ALBERT-style unigram model: <pad>=0, <unk>=1, [CLS]=2, [SEP]=3, [MASK]=4."""
    folder.mkdir(parents=True, exist_ok=True)
    text = folder / f"{name}.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sentencepiece.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(folder / name), vocab_size=vocab_size,
        model_type="unigram", pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
        control_symbols="[CLS],[SEP],[MASK]", character_coverage=1.0,
        minloglevel=2)
    return folder / f"{name}.model"


def canonical_from_albert(encoder) -> dict[str, np.ndarray]:
    return {name: np.asarray(variable).reshape(canonical_shape(name, tuple(variable.shape)))
            for name, variable in albert_encoder_variables(encoder).items()}


_HF_LAYER_PARTS = {
    "attention_1/self/query": "attention.query", "attention_1/self/key": "attention.key",
    "attention_1/self/value": "attention.value", "attention_1/output/dense": "attention.dense",
    "LayerNorm": "attention.LayerNorm", "ffn_1/intermediate/dense": "ffn",
    "ffn_1/intermediate/output/dense": "ffn_output", "LayerNorm_1": "full_layer_layer_norm",
}


def canonical_to_hf(name: str) -> tuple[str, bool]:
    path, leaf = name.rsplit("/", 1)
    if leaf.endswith("_embeddings"):
        return f"embeddings.{leaf}.weight", False
    hf_leaf = {"gamma": "weight", "beta": "bias", "kernel": "weight"}.get(leaf, leaf)
    layer = re.fullmatch(r"bert/encoder/transformer/group_(\d+)/inner_group_(\d+)/(.+)", path)
    if layer:
        group, inner, part = layer.groups()
        hf_path = (f"encoder.albert_layer_groups.{group}.albert_layers.{inner}."
                   f"{_HF_LAYER_PARTS[part]}")
    else:
        hf_path = {"bert/embeddings/LayerNorm": "embeddings.LayerNorm",
                   "bert/encoder/embedding_hidden_mapping_in":
                       "encoder.embedding_hidden_mapping_in",
                   "bert/pooler/dense": "pooler"}[path]
    return f"{hf_path}.{hf_leaf}", leaf == "kernel"


def albert_json(config: EncoderConfig, hidden_act: str) -> dict:
    return {"vocab_size": config.vocabulary_size, "embedding_size": config.embedding_size,
            "hidden_size": config.hidden_size, "num_hidden_layers": config.num_layers,
            "num_hidden_groups": config.num_hidden_groups, "inner_group_num": 1,
            "num_attention_heads": config.num_heads,
            "intermediate_size": config.intermediate_size, "hidden_act": hidden_act,
            "max_position_embeddings": config.max_sequence_length,
            "type_vocab_size": config.type_vocabulary_size,
            "hidden_dropout_prob": config.dropout,
            "attention_probs_dropout_prob": config.attention_dropout}


def write_hf_albert(folder: Path, tensors: dict[str, np.ndarray], config: EncoderConfig,
                    spm_model: Path, prefix: str = "") -> Path:
    """config.json (gelu_new), model.safetensors, spiece.model, as `AlbertModel` saves them."""
    write_safetensors(folder, tensors, config, canonical_to_hf, prefix)
    (folder / "config.json").write_text(json.dumps(
        {**albert_json(config, "gelu_new"), "model_type": "albert", "layer_norm_eps": 1e-12}))
    (folder / "spiece.model").write_bytes(spm_model.read_bytes())
    return folder


def write_google_albert(folder: Path, tensors: dict[str, np.ndarray], config: EncoderConfig,
                        spm_model: Path) -> Path:
    """albert_config.json ("gelu": Google's tanh approximation), model.ckpt-best.*,
    30k-clean.model, as Google's ALBERT release has them."""
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors) + ["global_step"]
    values = {**tensors, "global_step": np.array(1000, np.int64)}
    tf.raw_ops.SaveV2(prefix=str(folder / "model.ckpt-best"), tensor_names=names,
                      shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(values[name]) for name in names])
    (folder / "albert_config.json").write_text(json.dumps(albert_json(config, "gelu")))
    (folder / "30k-clean.model").write_bytes(spm_model.read_bytes())
    return folder
