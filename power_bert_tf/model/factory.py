"""The encoder class of a model type, and an encoder with random weights from an
`EncoderConfig`: the model layer's part of a family. The whole family (config reader,
weight assigner, tokenizer) is in `weights.families`, which checks it names these classes."""
from __future__ import annotations

from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.model.albert import AlbertEncoder
from power_bert_tf.model.encoder import BertEncoder

ENCODER_CLASSES: dict[str, type[BertEncoder]] = {
    cls.model_type: cls for cls in (BertEncoder, AlbertEncoder)}


def build_encoder(config: EncoderConfig, **extract_options) -> BertEncoder:
    """A `BertEncoder` or `AlbertEncoder` of `config`'s shape with random weights;
    `extract_options` (extract, sequence_length, retention, ...) go to its constructor."""
    return ENCODER_CLASSES[config.model_type](**config.to_dict(), **extract_options)
