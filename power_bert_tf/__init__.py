"""power-bert-tf: PoWER-BERT (Goyal et al., ICML 2020) in TensorFlow 2 / Keras 3.

The public API, following the data path:
    text -> `BertTokenizer` (ALBERT: `SentencePieceTokenizer`) -> `BertEncoder`
    (ALBERT: `AlbertEncoder`; with `SignificanceScore`, `SoftExtract`, `HardExtract`
    between attention and feed-forward) -> `BertClassifier`;
    `load_pretrained` reads weights; `RetentionConfig` holds (l_1, ..., l_L).

`import power_bert_tf` does not import TensorFlow: each name is imported from its
module when first used (PEP 562), so the standard-library REST client
(`power_bert_tf.serving.client`) and command-line help stay fast.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from power_bert_tf.errors import PowerBertError

# Public name -> the module that defines it.
_LAZY = {
    "AlbertEncoder": "power_bert_tf.model.albert",
    "BertClassifier": "power_bert_tf.model.classifier",
    "BertEncoder": "power_bert_tf.model.encoder",
    "BertTokenizer": "power_bert_tf.data.tokenizer",
    "EncoderConfig": "power_bert_tf.config",
    "HardExtract": "power_bert_tf.model.extract",
    "PretrainedBert": "power_bert_tf.weights.pretrained",
    "RetentionConfig": "power_bert_tf.model.retention",
    "SentencePieceTokenizer": "power_bert_tf.data.sentencepiece_tokenizer",
    "SignificanceScore": "power_bert_tf.model.significance",
    "SoftExtract": "power_bert_tf.model.extract",
    "flop_bound": "power_bert_tf.model.retention",
    "load_pretrained": "power_bert_tf.weights.pretrained",
}

if TYPE_CHECKING:
    from power_bert_tf.config import EncoderConfig
    from power_bert_tf.data.sentencepiece_tokenizer import SentencePieceTokenizer
    from power_bert_tf.data.tokenizer import BertTokenizer
    from power_bert_tf.model.albert import AlbertEncoder
    from power_bert_tf.model.classifier import BertClassifier
    from power_bert_tf.model.encoder import BertEncoder
    from power_bert_tf.model.extract import HardExtract, SoftExtract
    from power_bert_tf.model.retention import RetentionConfig, flop_bound
    from power_bert_tf.model.significance import SignificanceScore
    from power_bert_tf.weights.pretrained import PretrainedBert, load_pretrained

__all__ = [
    "AlbertEncoder", "BertClassifier", "BertEncoder", "BertTokenizer", "EncoderConfig",
    "HardExtract", "PowerBertError", "PretrainedBert", "RetentionConfig",
    "SentencePieceTokenizer", "SignificanceScore", "SoftExtract", "flop_bound",
    "load_pretrained",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Imports a public name's module on first access and caches the name."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
