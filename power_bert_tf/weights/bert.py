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
the first missing, unused or misshapen tensor: no silent partial loads.
"""
from __future__ import annotations

from typing import Mapping

import keras
import numpy as np

from power_bert_tf.errors import PowerBertError

# Tensors a pre-training checkpoint holds that a classifier does not use:
# the masked-LM / next-sentence heads, optimiser state and step counters.
IGNORED_PREFIXES = ("cls/", "classifier/")
IGNORED_SUFFIXES = ("/adam_m", "/adam_v")
IGNORED_NAMES = ("global_step",)


def is_ignored(name: str) -> bool:
    return (name in IGNORED_NAMES or name.startswith(IGNORED_PREFIXES)
            or name.endswith(IGNORED_SUFFIXES))


def _layer_norm(prefix: str, layer) -> dict:
    return {f"{prefix}/gamma": layer.gamma, f"{prefix}/beta": layer.beta}


def _dense(prefix: str, layer) -> dict:
    return {f"{prefix}/kernel": layer.kernel, f"{prefix}/bias": layer.bias}


def encoder_variables(encoder) -> dict[str, keras.Variable]:
    """Canonical name -> the encoder variable it loads into."""
    embedding = encoder.get_layer("embeddings")
    variables = {
        "bert/embeddings/word_embeddings": embedding.word_embeddings.embeddings,
        "bert/embeddings/position_embeddings": embedding.position_embeddings.embeddings,
        "bert/embeddings/token_type_embeddings": embedding.segment_embeddings.embeddings,
        **_layer_norm("bert/embeddings/LayerNorm", embedding.layer_norm),
        **_dense("bert/pooler/dense", encoder.get_layer("pooler")),
    }
    for j in range(1, encoder.num_layers + 1):
        prefix = f"bert/encoder/layer_{j - 1}"
        attention = encoder.get_layer(f"layer_{j}_attention")
        mha = attention.attention
        feed_forward = encoder.get_layer(f"layer_{j}_feed_forward")
        variables.update({
            **_dense(f"{prefix}/attention/self/query", mha.query_dense),
            **_dense(f"{prefix}/attention/self/key", mha.key_dense),
            **_dense(f"{prefix}/attention/self/value", mha.value_dense),
            **_dense(f"{prefix}/attention/output/dense", mha.output_dense),
            **_layer_norm(f"{prefix}/attention/output/LayerNorm", attention.layer_norm),
            **_dense(f"{prefix}/intermediate/dense", feed_forward.intermediate_dense),
            **_dense(f"{prefix}/output/dense", feed_forward.output_dense),
            **_layer_norm(f"{prefix}/output/LayerNorm", feed_forward.layer_norm),
        })
    return variables


def canonical_shape(name: str, variable_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The 2-D/1-D checkpoint shape of a variable (attention keeps heads apart)."""
    if "/attention/self/" in name:  # (D, H, dh) kernel or (H, dh) bias
        return ((variable_shape[0], variable_shape[1] * variable_shape[2])
                if name.endswith("kernel") else (variable_shape[0] * variable_shape[1],))
    if "/attention/output/dense/kernel" in name:  # (H, dh, D)
        return (variable_shape[0] * variable_shape[1], variable_shape[2])
    return tuple(variable_shape)


def assign_bert_weights(encoder, tensors: Mapping[str, np.ndarray], source: str) -> None:
    """Loads canonical `tensors` into `encoder`, all or nothing.

    Raises:
        PowerBertError: naming the first missing, unused or misshapen tensor.
    """
    variables = encoder_variables(encoder)
    used = {name for name in tensors if not is_ignored(name)}
    missing = sorted(set(variables) - used)
    if missing:
        raise PowerBertError(f"{source}: missing tensor {missing[0]!r} "
                             f"({len(missing)} missing in all)")
    unused = sorted(used - set(variables))
    if unused:
        raise PowerBertError(f"{source}: unused tensor {unused[0]!r} is not part of a "
                             f"{encoder.num_layers}-layer BERT ({len(unused)} unused in all)")
    for name, variable in variables.items():
        value = np.asarray(tensors[name])
        expected = canonical_shape(name, tuple(variable.shape))
        if value.shape != expected:
            raise PowerBertError(f"{source}: tensor {name!r} has shape {value.shape}, "
                                 f"the model expects {expected}")
    for name, variable in variables.items():
        variable.assign(np.asarray(tensors[name], dtype=np.float32).reshape(variable.shape))
