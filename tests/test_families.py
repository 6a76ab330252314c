"""The model-family registry: one entry per `model_type`, consistent with the encoders."""
import pytest

from conftest import TINY
from power_bert_tf.model.config import MODEL_TYPES, EncoderConfig
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.factory import ENCODER_CLASSES
from power_bert_tf.weights.families import FAMILIES, get_family


def test_one_family_per_model_type_and_encoder_class():
    assert tuple(FAMILIES) == MODEL_TYPES
    for name, family in FAMILIES.items():
        assert family.name == name
        assert family.encoder_class is ENCODER_CLASSES[name]
        assert family.encoder_class.model_type == name


def test_family_builds_its_encoder_and_refuses_another_config():
    albert = EncoderConfig(**TINY, model_type="albert", embedding_size=16)
    encoder = get_family("albert").build_encoder(albert, sequence_length=16)
    assert type(encoder) is FAMILIES["albert"].encoder_class
    assert encoder.embedding_size == 16 and encoder.sequence_length == 16
    with pytest.raises(PowerBertError,
                       match="bert family cannot build an encoder of model_type 'albert'"):
        get_family("bert").build_encoder(albert)


def test_unknown_family_is_one_line():
    with pytest.raises(PowerBertError, match="model type 'roberta' is not one of bert, albert"):
        get_family("roberta")
