"""power-bert-tf: PoWER-BERT (Goyal et al., ICML 2020) in TensorFlow 2 / Keras 3.

The public API, following the data path:
    text -> `BertTokenizer` (ALBERT: `SentencePieceTokenizer`) -> `BertEncoder`
    (ALBERT: `AlbertEncoder`; with `SignificanceScore`, `SoftExtract`, `HardExtract`
    between attention and feed-forward) -> `BertClassifier`;
    `load_pretrained` reads weights; `RetentionConfig` holds (l_1, ..., l_L).
"""
from power_bert_tf.config import EncoderConfig
from power_bert_tf.data.sentencepiece_tokenizer import SentencePieceTokenizer
from power_bert_tf.data.tokenizer import BertTokenizer
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.albert import AlbertEncoder
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.encoder import BertEncoder
from power_bert_tf.model.extract import HardExtract, SoftExtract
from power_bert_tf.model.retention import RetentionConfig, flop_bound
from power_bert_tf.model.significance import SignificanceScore
from power_bert_tf.weights import PretrainedBert, load_pretrained

__all__ = [
    "AlbertEncoder", "BertClassifier", "BertEncoder", "BertTokenizer", "EncoderConfig",
    "HardExtract", "PowerBertError", "PretrainedBert", "RetentionConfig",
    "SentencePieceTokenizer", "SignificanceScore", "SoftExtract", "flop_bound",
    "load_pretrained",
]
__version__ = "0.1.0"
