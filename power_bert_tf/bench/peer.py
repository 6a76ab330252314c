"""The peer rows of the runtime table: the same plain weights as a Hugging Face model,
exported and fused the way a CPU deployer does it (`bench/peer_export.py`).

The exporter runs in a child process of a Python that has torch and transformers: this
interpreter when it has them (`pip install '.[peer]'`), else `--peer_python`. The
classifier's weights travel as Hugging Face-named tensors in an .npz file; the ONNX files
come back and are timed here, with ONNX Runtime, like the other rows.
"""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.weights.bert import canonical_shape, encoder_variables

EXPORTER = Path(__file__).with_name("peer_export.py")


def peer_python(configured: str | None) -> str | None:
    """The interpreter that runs the exporter: `configured` if given, else this one when
    torch and transformers import here; None when neither."""
    if configured:
        return configured
    if all(importlib.util.find_spec(name) for name in ("torch", "transformers")):
        return sys.executable
    return None


def hf_name(canonical: str) -> tuple[str, bool]:
    """A canonical BERT name (`weights.bert`) -> (its `BertForSequenceClassification`
    name, whether the tensor is transposed: dense kernels are stored (out, in))."""
    path, _, leaf = canonical.rpartition("/")
    path = re.sub(r"layer_(\d+)", r"layer.\1", path).replace("/", ".")
    if leaf in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        return f"{path}.{leaf}.weight", False
    return f"{path}.{ {'gamma': 'weight', 'beta': 'bias', 'kernel': 'weight'}.get(leaf, leaf) }", \
        leaf == "kernel"


def hf_tensors(model: BertClassifier) -> dict[str, np.ndarray]:
    """The plain classifier's weights under Hugging Face's names."""
    tensors = {}
    for canonical, variable in encoder_variables(model.encoder).items():
        value = np.asarray(variable.numpy(), np.float32).reshape(
            canonical_shape(canonical, tuple(variable.shape)))
        name, transpose = hf_name(canonical)
        tensors[name] = np.ascontiguousarray(value.T if transpose else value)
    logits = model.get_layer("logits")
    tensors["classifier.weight"] = np.ascontiguousarray(logits.kernel.numpy().T)
    tensors["classifier.bias"] = logits.bias.numpy()
    return tensors


def hf_config(model: BertClassifier) -> dict:
    """`transformers.BertConfig` arguments of the plain classifier, dropout off."""
    config = model.encoder.get_config()
    get = config.__getitem__
    activation = {"gelu": "gelu", "gelu_approximate": "gelu_new", "relu": "relu"}[
        get("activation")]
    return {"vocab_size": get("vocabulary_size"), "hidden_size": get("hidden_size"),
            "num_hidden_layers": get("num_layers"), "num_attention_heads": get("num_heads"),
            "intermediate_size": get("intermediate_size"), "hidden_act": activation,
            "max_position_embeddings": get("max_sequence_length"),
            "type_vocab_size": get("type_vocabulary_size"),
            "layer_norm_eps": get("layer_norm_epsilon"), "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0, "num_labels": model.num_classes}


def export_peer(model: BertClassifier, python: str, workdir: Path, batch_size: int,
                sequence_length: int, timeout: float = 3600) -> tuple[Path, Path, dict]:
    """(fp32, int8) ONNX files of the peer deployment of the plain `model`, and the
    exporter's report (versions, fused operator counts). Raises RuntimeError when the
    exporter fails."""
    workdir.mkdir(parents=True, exist_ok=True)
    weights, config = workdir / "peer_weights.npz", workdir / "peer_config.json"
    np.savez(weights, **hf_tensors(model))
    config.write_text(json.dumps(hf_config(model)))
    command = [python, str(EXPORTER), str(weights), str(config), str(workdir),
               str(batch_size), str(sequence_length)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    finally:
        weights.unlink(missing_ok=True)
    if result.returncode != 0:
        raise RuntimeError(f"peer export failed (exit status {result.returncode}): "
                           f"{result.stderr.strip().splitlines()[-1:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return workdir / "peer.onnx", workdir / "peer_int8.onnx", report
