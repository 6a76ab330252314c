"""Canonical ALBERT tensor names, the Hugging Face mapping, and assignment onto an `AlbertEncoder`.

The canonical form is the Google ALBERT checkpoint's names and layouts (dense kernels
stored as (in, out)), with g = 0..G-1 the groups of shared weights:

    bert/embeddings/{word,position,token_type}_embeddings        (V | P | T, E)
    bert/embeddings/LayerNorm/{gamma,beta}                        (E,)
    bert/encoder/embedding_hidden_mapping_in/{kernel,bias}        (E, D), (D,)
    bert/encoder/transformer/group_{g}/inner_group_0/
        attention_1/self/{query,key,value}/{kernel,bias}
        attention_1/output/dense/{kernel,bias}
        LayerNorm/{gamma,beta}                                    after the attention
        ffn_1/intermediate/dense/{kernel,bias}
        ffn_1/intermediate/output/dense/{kernel,bias}
        LayerNorm_1/{gamma,beta}                                  after the feed-forward
    bert/pooler/dense/{kernel,bias}

A Hugging Face `AlbertModel` (optionally prefixed `albert.`) names the same tensors
`embeddings.*`, `encoder.embedding_hidden_mapping_in`, `encoder.albert_layer_groups.{g}.
albert_layers.0.{attention.{query,key,value,dense,LayerNorm}, ffn, ffn_output,
full_layer_layer_norm}` and `pooler`.
"""
from __future__ import annotations

import re
from typing import Mapping

import keras
import numpy as np

from power_bert_tf.weights.bert import (BlockNames, assign_weights, block_variables,
                                        embedding_and_pooler_variables)

ALBERT_BLOCK = BlockNames("attention_1", "LayerNorm", "ffn_1/intermediate/dense",
                          "ffn_1/intermediate/output/dense", "LayerNorm_1")
# Hugging Face names -> canonical ones.
_HF_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
_HF_HEADS = ("predictions.", "sop_classifier.", "classifier.")
_HF_LAYER = re.compile(r"encoder\.albert_layer_groups\.(\d+)\.albert_layers\.(\d+)\.(.+)")
_HF_LAYER_PARTS = {
    "attention.query": "attention_1/self/query", "attention.key": "attention_1/self/key",
    "attention.value": "attention_1/self/value", "attention.dense": "attention_1/output/dense",
    "attention.LayerNorm": "LayerNorm", "ffn": "ffn_1/intermediate/dense",
    "ffn_output": "ffn_1/intermediate/output/dense", "full_layer_layer_norm": "LayerNorm_1",
}
_HF_PARTS = {
    "embeddings.word_embeddings": "bert/embeddings/word_embeddings",
    "embeddings.position_embeddings": "bert/embeddings/position_embeddings",
    "embeddings.token_type_embeddings": "bert/embeddings/token_type_embeddings",
    "embeddings.LayerNorm": "bert/embeddings/LayerNorm",
    "encoder.embedding_hidden_mapping_in": "bert/encoder/embedding_hidden_mapping_in",
    "pooler": "bert/pooler/dense",
}


def group_scope(group: int) -> str:
    return f"bert/encoder/transformer/group_{group}/inner_group_0"


def albert_encoder_variables(encoder) -> dict[str, keras.Variable]:
    """Canonical name -> the `AlbertEncoder` variable it loads into (one set per group)."""
    projection = encoder.get_layer("embedding_projection")
    variables = {**embedding_and_pooler_variables(encoder),
                 "bert/encoder/embedding_hidden_mapping_in/kernel": projection.kernel,
                 "bert/encoder/embedding_hidden_mapping_in/bias": projection.bias}
    for group in range(encoder.num_hidden_groups):
        variables.update(block_variables(
            group_scope(group), encoder.get_layer(f"group_{group}_attention"),
            encoder.get_layer(f"group_{group}_feed_forward"), ALBERT_BLOCK))
    return variables


def hf_albert_to_canonical(name: str) -> tuple[str, bool] | None:
    """Maps a Hugging Face ALBERT tensor name to (canonical name, needs transpose).

    Returns None for non-weight buffers. Pre-training and task heads map into the
    ignored `cls/` namespace; a name of no known tensor is returned unchanged, so
    that the assignment names it as unused.
    """
    name = name.removeprefix("albert.")
    if name in _HF_BUFFERS:
        return None
    if name.startswith(_HF_HEADS):
        return "cls/" + name.replace(".", "/"), False
    path, _, leaf = name.rpartition(".")
    layer = _HF_LAYER.fullmatch(path)
    if layer and layer.group(3) in _HF_LAYER_PARTS:
        group, inner, part = layer.groups()
        canonical = (f"bert/encoder/transformer/group_{group}/inner_group_{inner}/"
                     f"{_HF_LAYER_PARTS[part]}")
    elif path in _HF_PARTS:
        canonical = _HF_PARTS[path]
    else:
        return name, False
    if canonical.endswith("_embeddings") and leaf == "weight":
        return canonical, False
    if canonical.rpartition("/")[2].startswith("LayerNorm"):
        return f"{canonical}/{ {'weight': 'gamma', 'bias': 'beta'}.get(leaf, leaf) }", False
    if leaf == "weight":
        return f"{canonical}/kernel", True
    return f"{canonical}/{leaf}", False


def assign_albert_weights(encoder, tensors: Mapping[str, np.ndarray], source: str) -> None:
    """Loads canonical ALBERT `tensors` into `encoder`, all or nothing (`assign_weights`)."""
    assign_weights(albert_encoder_variables(encoder), tensors, source,
                   f"{encoder.num_layers}-layer ALBERT with {encoder.num_hidden_groups} "
                   f"group(s) of shared weights")
