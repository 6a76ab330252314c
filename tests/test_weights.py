"""Weight loaders: exact against transformers, Google == safetensors, loud on errors."""
import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from checkpoint_writers import (canonical_from_encoder, write_google_folder,
                                write_hf_folder)
from conftest import TINY, random_inputs
from pathlib import Path
from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.encoder import BertEncoder
from power_bert_tf.weights import load_pretrained

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.npz"
CASES = ("single_short", "single_long", "pair")
INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")
TINY_CONFIG = EncoderConfig(**TINY)
TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(45)]


@pytest.fixture(scope="module")
def reference():
    return np.load(FIXTURE)


@pytest.fixture(scope="module")
def minilm(pretrained):
    return pretrained.build_encoder()


def _all_hidden_states(encoder, inputs):
    embeddings = encoder.get_layer("embeddings")(inputs["input_word_ids"], inputs["input_type_ids"])
    outputs = encoder(inputs)
    return [np.asarray(embeddings)] + [np.asarray(o) for o in outputs["encoder_outputs"]], \
        np.asarray(outputs["pooled_output"])


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_embedded_model_matches_transformers(reference, minilm, case):
    inputs = {name: reference[f"{case}/{name}"] for name in INPUT_NAMES}
    hidden, pooled = _all_hidden_states(minilm, inputs)
    expected = reference[f"{case}/hidden_states"]
    assert len(hidden) == expected.shape[0] == 7
    for layer, (ours, theirs) in enumerate(zip(hidden, expected)):
        assert np.max(np.abs(ours[0] - theirs)) < 1e-4, f"layer {layer}"
    assert np.max(np.abs(pooled[0] - reference[f"{case}/pooled_output"])) < 1e-4


@pytest.mark.slow
def test_embedded_model_matches_transformers_in_a_padded_batch(reference, minilm):
    length = max(reference[f"{case}/input_word_ids"].shape[1] for case in CASES)
    inputs = {name: np.zeros((len(CASES), length), "int32") for name in INPUT_NAMES}
    for row, case in enumerate(CASES):
        for name in INPUT_NAMES:
            value = reference[f"{case}/{name}"][0]
            inputs[name][row, : len(value)] = value
    hidden, pooled = _all_hidden_states(minilm, inputs)
    for row, case in enumerate(CASES):
        real = reference[f"{case}/input_word_ids"].shape[1]
        expected = reference[f"{case}/hidden_states"]
        for layer in range(7):
            assert np.max(np.abs(hidden[layer][row, :real] - expected[layer])) < 1e-4
        assert np.max(np.abs(pooled[row] - reference[f"{case}/pooled_output"])) < 1e-4


@pytest.mark.slow
def test_google_checkpoint_loader_equals_safetensors_loader(tmp_path, pretrained, minilm):
    tensors = dict(pretrained.tensors)
    tensors["cls/predictions/output_bias"] = np.zeros(30522, "float32")  # pre-training head
    tensors["global_step"] = np.array(1000, "int64")
    tensors["bert/pooler/dense/kernel/adam_m"] = np.zeros((384, 384), "float32")
    vocab = pretrained.vocab_file.read_text(encoding="utf-8").splitlines()
    folder = write_google_folder(tmp_path / "uncased_L-6_H-384_A-12", tensors,
                                 pretrained.config, vocab)
    google = load_pretrained(folder)
    assert google.config == pretrained.config and google.lower_case
    inputs = random_inputs(2, 24, lengths=[24, 10], vocabulary_size=30522)
    np.testing.assert_array_equal(google.build_encoder()(inputs)["pooled_output"],
                                  minilm(inputs)["pooled_output"])


@pytest.mark.parametrize("fmt", ["huggingface", "huggingface_bert_prefix", "google"])
def test_tiny_round_trip_through_each_format(tmp_path, fmt):
    original = BertEncoder(**TINY)
    tensors = canonical_from_encoder(original)
    if fmt == "google":
        write_google_folder(tmp_path, tensors, TINY_CONFIG, TINY_VOCAB)
    else:
        write_hf_folder(tmp_path, tensors, TINY_CONFIG, TINY_VOCAB,
                        prefix="bert." if fmt.endswith("prefix") else "")
    loaded = load_pretrained(tmp_path)
    assert loaded.config == TINY_CONFIG and loaded.lower_case
    inputs = random_inputs(2, 12, lengths=[12, 5])
    np.testing.assert_array_equal(loaded.build_encoder()(inputs)["pooled_output"],
                                  original(inputs)["pooled_output"])


@pytest.fixture
def tiny_hf_folder(tmp_path):
    return write_hf_folder(tmp_path / "tiny", canonical_from_encoder(BertEncoder(**TINY)),
                           TINY_CONFIG, TINY_VOCAB)


def _edit_safetensors(folder, edit):
    tensors = load_file(str(folder / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(folder / "model.safetensors"))


def _load_error(folder) -> str:
    with pytest.raises(PowerBertError) as error:
        load_pretrained(folder).build_encoder()
    assert "\n" not in str(error.value)
    return str(error.value)


def test_missing_tensor_is_named(tiny_hf_folder):
    _edit_safetensors(tiny_hf_folder, lambda t: t.pop("encoder.layer.1.output.dense.bias"))
    assert "missing tensor 'bert/encoder/layer_1/output/dense/bias'" in _load_error(tiny_hf_folder)


def test_misshapen_tensor_is_named(tiny_hf_folder):
    def shrink(tensors):
        tensors["encoder.layer.0.attention.self.query.weight"] = np.zeros((32, 16), "float32")
    _edit_safetensors(tiny_hf_folder, shrink)
    message = _load_error(tiny_hf_folder)
    assert "'bert/encoder/layer_0/attention/self/query/kernel' has shape (16, 32)" in message
    assert "expects (32, 32)" in message


def test_unused_tensor_is_named(tiny_hf_folder):
    def add_layer(tensors):
        tensors["encoder.layer.3.output.dense.bias"] = np.zeros(32, "float32")
    _edit_safetensors(tiny_hf_folder, add_layer)
    assert "unused tensor 'bert/encoder/layer_3/output/dense/bias'" in _load_error(tiny_hf_folder)


def test_vocab_that_does_not_match_the_embeddings(tiny_hf_folder):
    (tiny_hf_folder / "vocab.txt").write_text("\n".join(TINY_VOCAB[:40]) + "\n")
    assert "has 40 tokens but the model's vocab_size (embedding rows) is 50" in \
        _load_error(tiny_hf_folder)


def test_folder_errors(tmp_path, tiny_hf_folder):
    assert "does not exist" in _load_error(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    assert "neither a Hugging Face folder" in _load_error(tmp_path / "empty")
    (tiny_hf_folder / "model.safetensors").unlink()
    assert "no model.safetensors" in _load_error(tiny_hf_folder)


def test_config_errors(tiny_hf_folder):
    config = json.loads((tiny_hf_folder / "config.json").read_text())
    del config["num_hidden_layers"]
    (tiny_hf_folder / "config.json").write_text(json.dumps(config))
    assert "missing key 'num_hidden_layers'" in _load_error(tiny_hf_folder)


def test_casing_comes_from_tokenizer_config_or_vocab(tiny_hf_folder):
    assert load_pretrained(tiny_hf_folder).lower_case
    (tiny_hf_folder / "vocab.txt").write_text("\n".join(TINY_VOCAB[:-1] + ["Word"]) + "\n")
    assert not load_pretrained(tiny_hf_folder).lower_case
    (tiny_hf_folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    assert load_pretrained(tiny_hf_folder).lower_case
