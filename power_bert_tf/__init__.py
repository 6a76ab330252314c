"""power-bert-tf: PoWER-BERT (Goyal et al., ICML 2020) in TensorFlow 2 / Keras 3.

The public API, following the data path:
    text -> `BertTokenizer` (ALBERT: `SentencePieceTokenizer`) -> `BertEncoder`
    (ALBERT: `AlbertEncoder`; with `SignificanceScore`, `SoftExtract`, `HardExtract`
    between attention and feed-forward) -> `BertClassifier`;
    `load_pretrained` reads weights; `RetentionConfig` holds (l_1, ..., l_L).
"""
from __future__ import annotations

import importlib

from power_bert_tf.errors import PowerBertError

# Imported on first use, so that `import power_bert_tf.cli` (and run_glue.py's log set-up)
# runs before TensorFlow loads.
_EXPORTS = {
    "EncoderConfig": "power_bert_tf.model.config",
    "SentencePieceTokenizer": "power_bert_tf.data.sentencepiece_tokenizer",
    "BertTokenizer": "power_bert_tf.data.tokenizer",
    "AlbertEncoder": "power_bert_tf.model.albert",
    "BertClassifier": "power_bert_tf.model.classifier",
    "BertEncoder": "power_bert_tf.model.encoder",
    "HardExtract": "power_bert_tf.model.extract",
    "SoftExtract": "power_bert_tf.model.extract",
    "RetentionConfig": "power_bert_tf.model.retention",
    "flop_bound": "power_bert_tf.model.retention",
    "SignificanceScore": "power_bert_tf.model.significance",
    "PretrainedBert": "power_bert_tf.weights",
    "load_pretrained": "power_bert_tf.weights",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'power_bert_tf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AlbertEncoder", "BertClassifier", "BertEncoder", "BertTokenizer", "EncoderConfig",
    "HardExtract", "PowerBertError", "PretrainedBert", "RetentionConfig",
    "SentencePieceTokenizer", "SignificanceScore", "SoftExtract", "flop_bound",
    "load_pretrained",
]
__version__ = "0.1.0"
