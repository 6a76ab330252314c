"""ALBERT loaders: a tiny ALBERT written as a Google checkpoint folder and as a Hugging
Face safetensors folder loads to the same outputs; every missing or extra tensor is named."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import load_file, save_file

from albert_writers import (EXTRA_LINES, canonical_from_albert, sst2_lines,
                            train_sentencepiece, write_google_albert, write_hf_albert)
from checkpoint_writers import canonical_from_encoder, write_hf_folder
from conftest import random_inputs
from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.data.sentencepiece_tokenizer import SentencePieceTokenizer
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.albert import AlbertEncoder
from power_bert_tf.model.encoder import BertEncoder
from power_bert_tf.weights import load_pretrained

VOCAB = 300


def albert_config(groups: int = 1) -> EncoderConfig:
    return EncoderConfig(vocabulary_size=VOCAB, num_layers=3, hidden_size=32, num_heads=4,
                         intermediate_size=64, max_sequence_length=64,
                         activation="gelu_approximate", model_type="albert",
                         embedding_size=16, num_hidden_groups=groups)


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    return train_sentencepiece(tmp_path_factory.mktemp("spm"), sst2_lines(400) + EXTRA_LINES,
                               vocab_size=VOCAB)


def original(groups: int = 1) -> AlbertEncoder:
    keras.utils.set_random_seed(groups)
    return AlbertEncoder(**albert_config(groups).to_dict())


@pytest.fixture
def hf_folder(tmp_path, spm_model):
    return write_hf_albert(tmp_path / "hf", canonical_from_albert(original()), albert_config(),
                           spm_model)


@pytest.mark.parametrize("groups", [1, 2])
def test_google_and_hugging_face_folders_give_the_same_outputs(tmp_path, spm_model, groups):
    encoder = original(groups)
    tensors = canonical_from_albert(encoder)
    assert len(tensors) == 7 + 16 * groups + 2  # embeddings, projection, blocks, pooler
    folders = {"google": write_google_albert(tmp_path / "google", tensors,
                                             albert_config(groups), spm_model),
               "hf": write_hf_albert(tmp_path / "hf", tensors, albert_config(groups), spm_model),
               "hf_prefixed": write_hf_albert(tmp_path / "hf_prefixed", tensors,
                                              albert_config(groups), spm_model,
                                              prefix="albert.")}
    inputs = random_inputs(2, 12, lengths=[12, 5], vocabulary_size=VOCAB)
    expected = encoder(inputs)
    texts = tf.constant(["in 1990, a Fine film", "dull"])
    token_ids = []
    for name, folder in folders.items():
        loaded = load_pretrained(folder)
        # Google's "gelu" and Hugging Face's "gelu_new" are both the tanh approximation.
        assert loaded.config == albert_config(groups), name
        assert loaded.lower_case, name
        outputs = loaded.build_encoder()(inputs)
        for key in ("pooled_output", "sequence_output"):
            np.testing.assert_array_equal(outputs[key], expected[key], err_msg=name)
        tokenizer = loaded.tokenizer(16)
        assert isinstance(tokenizer, SentencePieceTokenizer)
        token_ids.append(tokenizer(texts)["input_word_ids"].numpy())
    np.testing.assert_array_equal(token_ids[0], token_ids[1])
    np.testing.assert_array_equal(token_ids[0], token_ids[2])


def _edit_safetensors(folder, edit):
    tensors = load_file(str(folder / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(folder / "model.safetensors"))


def _load_error(folder, **options) -> str:
    with pytest.raises(PowerBertError) as error:
        load_pretrained(folder, **options).build_encoder()
    assert "\n" not in str(error.value)
    return str(error.value)


LAYER = "encoder.albert_layer_groups.0.albert_layers.0"
CANONICAL_LAYER = "bert/encoder/transformer/group_0/inner_group_0"


def test_every_missing_tensor_is_named(hf_folder):
    def drop(tensors):
        del tensors[f"{LAYER}.ffn_output.bias"]
        del tensors["encoder.embedding_hidden_mapping_in.weight"]
    _edit_safetensors(hf_folder, drop)
    message = _load_error(hf_folder)
    assert "missing tensors" in message
    assert "'bert/encoder/embedding_hidden_mapping_in/kernel'" in message
    assert f"'{CANONICAL_LAYER}/ffn_1/intermediate/output/dense/bias'" in message


def test_every_extra_tensor_is_named(hf_folder):
    def add(tensors):
        tensors["encoder.albert_layer_groups.1.albert_layers.0.ffn.bias"] = np.zeros(64, "float32")
        tensors["encoder.extra_projection.weight"] = np.zeros((4, 4), "float32")
    _edit_safetensors(hf_folder, add)
    message = _load_error(hf_folder)
    assert "unused tensors" in message and "are not part of a 3-layer ALBERT" in message
    assert "'bert/encoder/transformer/group_1/inner_group_0/ffn_1/intermediate/dense/bias'" \
        in message
    assert "'encoder.extra_projection.weight'" in message  # an unknown name, as it is


def test_missing_tensor_in_a_google_checkpoint_is_named(tmp_path, spm_model):
    tensors = canonical_from_albert(original())
    del tensors[f"{CANONICAL_LAYER}/LayerNorm_1/gamma"]
    folder = write_google_albert(tmp_path / "google", tensors, albert_config(), spm_model)
    assert f"missing tensor '{CANONICAL_LAYER}/LayerNorm_1/gamma'" in _load_error(folder)


def test_misshapen_tensor_is_named(hf_folder):
    def shrink(tensors):
        tensors["encoder.embedding_hidden_mapping_in.weight"] = np.zeros((32, 8), "float32")
    _edit_safetensors(hf_folder, shrink)
    message = _load_error(hf_folder)
    assert "'bert/encoder/embedding_hidden_mapping_in/kernel' has shape (8, 32)" in message
    assert "expects (16, 32)" in message


def test_pretraining_heads_and_optimiser_slots_are_skipped(tmp_path, spm_model):
    tensors = canonical_from_albert(original())
    extra = {"cls/predictions/output_bias": np.zeros(VOCAB, "float32"),
             "bert/pooler/dense/kernel/adam_m": np.zeros((32, 32), "float32")}
    google = write_google_albert(tmp_path / "google", {**tensors, **extra}, albert_config(),
                                 spm_model)
    hf = write_hf_albert(tmp_path / "hf", tensors, albert_config(), spm_model)
    _edit_safetensors(hf, lambda t: t.update({
        "predictions.bias": np.zeros(VOCAB, "float32"),
        "sop_classifier.classifier.weight": np.zeros((2, 32), "float32")}))
    inputs = random_inputs(1, 8, vocabulary_size=VOCAB)
    np.testing.assert_array_equal(load_pretrained(google).build_encoder()(inputs)["pooled_output"],
                                  load_pretrained(hf).build_encoder()(inputs)["pooled_output"])


def test_model_type_is_detected_and_checked(tmp_path, hf_folder):
    assert load_pretrained(hf_folder, model_type="albert").config.model_type == "albert"
    message = _load_error(hf_folder, model_type="bert")
    assert message == (f"model type bert was asked for, but {hf_folder} holds a huggingface "
                       f"ALBERT model")
    bert_config = EncoderConfig(vocabulary_size=8, num_layers=1, hidden_size=8, num_heads=2,
                                intermediate_size=16, max_sequence_length=16)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c"]
    bert = write_hf_folder(tmp_path / "bert", canonical_from_encoder(
        BertEncoder(**bert_config.to_dict())), bert_config, vocab)
    assert "holds a huggingface BERT model" in _load_error(bert, model_type="albert")
    assert "is not one of bert, albert" in _load_error(bert, model_type="roberta")


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_config_and_vocabulary_errors(hf_folder):
    _edit_config(hf_folder, inner_group_num=2)
    assert "inner_group_num 2 is not supported" in _load_error(hf_folder)
    _edit_config(hf_folder, inner_group_num=1, num_hidden_groups=4)
    assert _load_error(hf_folder) == (f"{hf_folder / 'config.json'}: encoder config: "
                                      f"num_hidden_groups must be in [1, 3], got 4")
    config = json.loads((hf_folder / "config.json").read_text())
    del config["embedding_size"]
    (hf_folder / "config.json").write_text(json.dumps({**config, "num_hidden_groups": 1}))
    assert "missing key 'embedding_size'" in _load_error(hf_folder)
    _edit_config(hf_folder, embedding_size=16, vocab_size=VOCAB + 1)
    assert f"has {VOCAB} pieces but the model's vocab_size (embedding rows) is {VOCAB + 1}" \
        in _load_error(hf_folder)
    _edit_config(hf_folder, vocab_size=VOCAB)
    (hf_folder / "spiece.model").unlink()
    assert "expected one SentencePiece model" in _load_error(hf_folder)


def test_casing_from_tokenizer_config(hf_folder):
    assert load_pretrained(hf_folder).lower_case  # the pieces have no upper case
    (hf_folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    assert not load_pretrained(hf_folder).lower_case
