"""Canonical BERT tensor names and their assignment onto a `BertEncoder`.

Every loader converts its source into one canonical form, the Google BERT
checkpoint's names and layouts (dense kernels stored as (in, out)):

    bert/embeddings/{word,position,token_type}_embeddings
    bert/embeddings/LayerNorm/{gamma,beta}
    bert/encoder/layer_{i}/attention/self/{query,key,value}/{kernel,bias}
    bert/encoder/layer_{i}/attention/output/dense/{kernel,bias}
    bert/encoder/layer_{i}/attention/output/LayerNorm/{gamma,beta}
    bert/encoder/layer_{i}/intermediate/dense/{kernel,bias}
    bert/encoder/layer_{i}/output/dense/{kernel,bias}
    bert/encoder/layer_{i}/output/LayerNorm/{gamma,beta}
    bert/pooler/dense/{kernel,bias}

with i = 0..L-1. `assign_bert_weights` then loads all of them or fails naming
the missing, unused or misshapen tensors: no silent partial loads.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Mapping

import keras
import numpy as np

from power_bert_tf.errors import PowerBertError

# Tensors a pre-training checkpoint holds that a classifier does not use:
# the masked-LM / next-sentence heads, optimiser state and step counters; and the task
# heads of fine-tuned checkpoints (Hugging Face's classifier.*, Google run_classifier.py's
# output_weights / output_bias), which `weights.finetuned` reads.
IGNORED_PREFIXES = ("cls/", "classifier/")
IGNORED_SUFFIXES = ("/adam_m", "/adam_v")
IGNORED_NAMES = ("global_step", "output_weights", "output_bias")


def is_ignored(name: str) -> bool:
    return (name in IGNORED_NAMES or name.startswith(IGNORED_PREFIXES)
            or name.endswith(IGNORED_SUFFIXES))


def _layer_norm(prefix: str, layer) -> dict:
    return {f"{prefix}/gamma": layer.gamma, f"{prefix}/beta": layer.beta}


def _dense(prefix: str, layer) -> dict:
    return {f"{prefix}/kernel": layer.kernel, f"{prefix}/bias": layer.bias}


@dataclasses.dataclass(frozen=True)
class BlockNames:
    """Canonical names of one layer's tensors, relative to the layer's scope."""

    attention: str  # holds self/{query,key,value} and output/dense
    attention_norm: str
    intermediate: str
    output: str
    output_norm: str


BERT_BLOCK = BlockNames("attention", "attention/output/LayerNorm", "intermediate/dense",
                        "output/dense", "output/LayerNorm")


def block_variables(scope: str, attention, feed_forward, names: BlockNames) -> dict:
    """Canonical name -> variable of a `SelfAttentionBlock` and a `FeedForwardBlock`."""
    mha = attention.attention
    return {
        **_dense(f"{scope}/{names.attention}/self/query", mha.query_dense),
        **_dense(f"{scope}/{names.attention}/self/key", mha.key_dense),
        **_dense(f"{scope}/{names.attention}/self/value", mha.value_dense),
        **_dense(f"{scope}/{names.attention}/output/dense", mha.output_dense),
        **_layer_norm(f"{scope}/{names.attention_norm}", attention.layer_norm),
        **_dense(f"{scope}/{names.intermediate}", feed_forward.intermediate_dense),
        **_dense(f"{scope}/{names.output}", feed_forward.output_dense),
        **_layer_norm(f"{scope}/{names.output_norm}", feed_forward.layer_norm),
    }


def embedding_and_pooler_variables(encoder) -> dict[str, keras.Variable]:
    """Canonical name -> variable of the `embeddings` and `pooler` layers."""
    embedding = encoder.get_layer("embeddings")
    return {
        "bert/embeddings/word_embeddings": embedding.word_embeddings.embeddings,
        "bert/embeddings/position_embeddings": embedding.position_embeddings.embeddings,
        "bert/embeddings/token_type_embeddings": embedding.segment_embeddings.embeddings,
        **_layer_norm("bert/embeddings/LayerNorm", embedding.layer_norm),
        **_dense("bert/pooler/dense", encoder.get_layer("pooler")),
    }


def encoder_variables(encoder) -> dict[str, keras.Variable]:
    """Canonical name -> the encoder variable it loads into."""
    variables = embedding_and_pooler_variables(encoder)
    for j in range(1, encoder.num_layers + 1):
        variables.update(block_variables(
            f"bert/encoder/layer_{j - 1}", encoder.get_layer(f"layer_{j}_attention"),
            encoder.get_layer(f"layer_{j}_feed_forward"), BERT_BLOCK))
    return variables


# Attention projections: Keras keeps heads apart, checkpoints store them flat.
_ATTENTION_SELF = re.compile(r"/attention(_1)?/self/")
_ATTENTION_OUTPUT_KERNEL = re.compile(r"/attention(_1)?/output/dense/kernel$")


def canonical_shape(name: str, variable_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The 2-D/1-D checkpoint shape of a variable (attention keeps heads apart)."""
    if _ATTENTION_SELF.search(name):  # (D, H, dh) kernel or (H, dh) bias
        return ((variable_shape[0], variable_shape[1] * variable_shape[2])
                if name.endswith("kernel") else (variable_shape[0] * variable_shape[1],))
    if _ATTENTION_OUTPUT_KERNEL.search(name):  # (H, dh, D)
        return (variable_shape[0] * variable_shape[1], variable_shape[2])
    return tuple(variable_shape)


def _names(names: list[str], limit: int = 8) -> str:
    """'a', 'b' and 3 more."""
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def assign_weights(variables: Mapping[str, keras.Variable], tensors: Mapping[str, np.ndarray],
                   source: str, model: str) -> None:
    """Loads canonical `tensors` into `variables` (canonical name -> variable), all or
    nothing; `model` describes the model in errors, e.g. "3-layer BERT".

    Raises:
        PowerBertError: naming the missing, unused or first misshapen tensors.
    """
    used = {name for name in tensors if not is_ignored(name)}
    missing = sorted(set(variables) - used)
    if missing:
        raise PowerBertError(f"{source}: missing tensor{'s' * (len(missing) > 1)} "
                             f"{_names(missing)}")
    unused = sorted(used - set(variables))
    if unused:
        raise PowerBertError(f"{source}: unused tensor{'s' * (len(unused) > 1)} "
                             f"{_names(unused)} {'are' if len(unused) > 1 else 'is'} not "
                             f"part of a {model}")
    for name, variable in variables.items():
        value = np.asarray(tensors[name])
        expected = canonical_shape(name, tuple(variable.shape))
        if value.shape != expected:
            raise PowerBertError(f"{source}: tensor {name!r} has shape {value.shape}, "
                                 f"the model expects {expected}")
    for name, variable in variables.items():
        variable.assign(np.asarray(tensors[name], dtype=np.float32).reshape(variable.shape))


def assign_bert_weights(encoder, tensors: Mapping[str, np.ndarray], source: str) -> None:
    """Loads canonical BERT `tensors` into `encoder`, all or nothing (`assign_weights`)."""
    assign_weights(encoder_variables(encoder), tensors, source,
                   f"{encoder.num_layers}-layer BERT")
