"""Write BERT weights in the Hugging Face and Google formats, for loader tests.

The name mapping here is written independently of `power_bert_tf.weights`
(canonical -> source, the inverse direction), so a mistake in either shows.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import tensorflow as tf
from safetensors.numpy import save_file

from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.weights.bert import canonical_shape, encoder_variables


def canonical_from_encoder(encoder) -> dict[str, np.ndarray]:
    return {name: np.asarray(variable).reshape(canonical_shape(name, tuple(variable.shape)))
            for name, variable in encoder_variables(encoder).items()}


def canonical_to_hf(name: str) -> tuple[str, bool]:
    path, transpose = name.removeprefix("bert/"), False
    if path.endswith("/gamma"):
        path = path[: -len("gamma")] + "weight"
    elif path.endswith("/beta"):
        path = path[: -len("beta")] + "bias"
    elif path.endswith("/kernel"):
        path, transpose = path[: -len("kernel")] + "weight", True
    elif path.endswith("_embeddings"):
        path += "/weight"
    return re.sub(r"layer_(\d+)", r"layer/\1", path).replace("/", "."), transpose


def bert_json(config: EncoderConfig) -> dict:
    return {"vocab_size": config.vocabulary_size, "num_hidden_layers": config.num_layers,
            "hidden_size": config.hidden_size, "num_attention_heads": config.num_heads,
            "intermediate_size": config.intermediate_size,
            "max_position_embeddings": config.max_sequence_length,
            "type_vocab_size": config.type_vocabulary_size, "hidden_act": "gelu",
            "hidden_dropout_prob": config.dropout,
            "attention_probs_dropout_prob": config.attention_dropout}


def write_safetensors(folder: Path, tensors: dict[str, np.ndarray], config: EncoderConfig,
                      to_hf, prefix: str = "") -> None:
    """`model.safetensors` with Hugging Face names (`to_hf(name)` -> (name, transpose))."""
    folder.mkdir(parents=True, exist_ok=True)
    hf = {}
    for name, value in tensors.items():
        hf_name, transpose = to_hf(name)
        hf[prefix + hf_name] = np.ascontiguousarray(value.T if transpose else value)
    hf[prefix + "embeddings.position_ids"] = np.arange(config.max_sequence_length)[None]
    save_file(hf, str(folder / "model.safetensors"))


def write_hf_folder(folder: Path, tensors: dict[str, np.ndarray], config: EncoderConfig,
                    vocab: list[str], prefix: str = "") -> Path:
    write_safetensors(folder, tensors, config, canonical_to_hf, prefix)
    (folder / "config.json").write_text(json.dumps({**bert_json(config), "model_type": "bert"}))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return folder


def write_google_folder(folder: Path, tensors: dict[str, np.ndarray], config: EncoderConfig,
                        vocab: list[str]) -> Path:
    """A TF1 name-based checkpoint as Google's BERT release has it."""
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=str(folder / "bert_model.ckpt"), tensor_names=names,
                      shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[name]) for name in names])
    (folder / "bert_config.json").write_text(json.dumps(bert_json(config)))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return folder
