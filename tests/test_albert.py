"""AlbertEncoder (shared blocks, per-layer extract slots) and PoWER-ALBERT through every
phase: fine-tune, search, retrain, evaluate, predict and a raw-text SavedModel export."""
import json
import random
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from albert_writers import (canonical_from_albert, sst2_lines, train_sentencepiece,
                            write_google_albert)
from conftest import TINY, random_inputs
from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.pipeline.config import RunConfig
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.albert import AlbertEncoder
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.encoder import BertEncoder
from power_bert_tf.model.factory import build_encoder
from power_bert_tf.model.transfer import transfer_weights
from power_bert_tf.pipeline import phases
from tiny_task import sentence, tiny_run_config, write_tiny_model, write_tiny_task

ROOT = Path(__file__).parents[1]
ALBERT = {**TINY, "embedding_size": 16}
MODES = {
    "none": {},
    "soft": dict(extract="soft", sequence_length=16, mass_lambda=1e-3),
    "hard": dict(extract="hard", retention=[10, 6, 3]),
}
# embeddings (3 tables + LayerNorm) and projection, attention (Q, K, V, output, LayerNorm),
# feed-forward (2 dense, LayerNorm), pooler.
EMBEDDING_VARIABLES, BLOCK_VARIABLES, POOLER_VARIABLES = 7, 16, 2


@pytest.mark.parametrize("num_layers", [1, 3, 6])
def test_one_set_of_block_variables_for_all_layers(num_layers):
    encoder = AlbertEncoder(**{**ALBERT, "num_layers": num_layers})
    assert len(encoder.trainable_variables) == (EMBEDDING_VARIABLES + BLOCK_VARIABLES
                                                + POOLER_VARIABLES)
    paths = {v.path.split("/")[0] for v in encoder.trainable_variables}
    assert paths == {"embeddings", "embedding_projection", "group_0_attention",
                     "group_0_feed_forward", "pooler"}
    grouped = AlbertEncoder(**{**ALBERT, "num_layers": num_layers}, num_hidden_groups=num_layers)
    assert len(grouped.trainable_variables) == (EMBEDDING_VARIABLES + num_layers * BLOCK_VARIABLES
                                                + POOLER_VARIABLES)


@pytest.mark.parametrize("num_layers, groups, expected", [
    (3, 1, [0, 0, 0]), (4, 2, [0, 0, 1, 1]), (3, 2, [0, 0, 1]), (3, 3, [0, 1, 2])])
def test_layers_call_their_group_blocks(num_layers, groups, expected):
    """Each layer's output is its group's attention and feed-forward on the previous one:
    the same layer objects, so the same weights (ALBERT: group = layer * G // L)."""
    encoder = AlbertEncoder(**{**ALBERT, "num_layers": num_layers}, num_hidden_groups=groups)
    inputs = random_inputs(2, 10, lengths=[10, 4])
    outputs = encoder(inputs)
    hidden = encoder.get_layer("embedding_projection")(encoder.get_layer("embeddings")(
        inputs["input_word_ids"], inputs["input_type_ids"]))
    for j, group in enumerate(expected):
        hidden, _ = encoder.get_layer(f"group_{group}_attention")(hidden, inputs["input_mask"])
        hidden = encoder.get_layer(f"group_{group}_feed_forward")(hidden)
        np.testing.assert_allclose(outputs["encoder_outputs"][j], hidden, atol=1e-5)


def test_per_layer_retention_with_shared_weights():
    retention = [9, 5, 2]
    encoder = AlbertEncoder(**ALBERT, extract="hard", retention=retention, sequence_length=16)
    assert [encoder.get_layer(f"layer_{j}_hard_extract").retain for j in (1, 2, 3)] == retention
    outputs = encoder(random_inputs(2, 16, lengths=[16, 7]))
    assert [o.shape[1] for o in outputs["encoder_outputs"]] == retention  # physically smaller
    positions = [np.asarray(p) for p in outputs["kept_positions"]]
    assert all((p[:, 0] == 0).all() and (np.diff(p, axis=1) > 0).all() for p in positions)
    search = AlbertEncoder(**ALBERT, **MODES["soft"])
    r = [layer.retention_parameters for layer in search.soft_extract_layers()]
    assert len({id(v) for v in r}) == 3 and search.masses() == [16.0] * 3  # one r_j per layer
    assert len(search.trainable_variables) == (EMBEDDING_VARIABLES + BLOCK_VARIABLES
                                               + POOLER_VARIABLES + 3)


def test_weights_carry_between_plain_search_and_hard_encoders():
    plain = AlbertEncoder(**ALBERT)
    soft = AlbertEncoder(**ALBERT, **MODES["soft"])
    full = AlbertEncoder(**ALBERT, extract="hard", retention=[16, 16, 16])
    transfer_weights(plain, soft, "plain")
    transfer_weights(soft, full, "soft")
    inputs = random_inputs(3, 16, lengths=[16, 9, 4])
    expected = plain(inputs)["pooled_output"]
    np.testing.assert_allclose(soft(inputs)["pooled_output"], expected, atol=1e-6)
    np.testing.assert_allclose(full(inputs)["pooled_output"], expected, atol=1e-6)
    with pytest.raises(PowerBertError, match="^a BERT: variable 'embeddings/word_embeddings/"):
        transfer_weights(BertEncoder(**TINY), plain, "a BERT")


@pytest.mark.parametrize("mode", sorted(MODES))
def test_save_reload_and_config_round_trip(tmp_path, mode):
    encoder = AlbertEncoder(**ALBERT, num_hidden_groups=3, **MODES[mode])
    config = encoder.get_config()
    assert config["embedding_size"] == 16 and config["num_hidden_groups"] == 3
    assert AlbertEncoder.from_config(config).get_config() == config
    path = tmp_path / "encoder.keras"
    encoder.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded, AlbertEncoder) and reloaded.get_config() == config
    assert len(reloaded.weights) == len(encoder.weights)
    inputs = random_inputs(2, 16, lengths=[16, 11])
    np.testing.assert_allclose(reloaded(inputs)["pooled_output"],
                               encoder(inputs)["pooled_output"], atol=1e-6)


@pytest.mark.parametrize("mode", ["none", "hard"])
def test_variable_lengths_under_xla(mode):
    encoder = AlbertEncoder(**ALBERT, **MODES[mode])
    compiled = tf.function(lambda x: encoder(x)["pooled_output"], jit_compile=True)
    for length in (6, 16, 24):
        inputs = random_inputs(2, length, lengths=[length, 3])
        np.testing.assert_allclose(compiled(inputs), encoder(inputs)["pooled_output"], atol=1e-5)


def test_config_builds_the_encoder_of_its_type():
    albert = EncoderConfig(**TINY, model_type="albert", embedding_size=16, num_hidden_groups=3)
    assert type(build_encoder(albert)) is AlbertEncoder
    assert type(build_encoder(EncoderConfig(**TINY))) is BertEncoder
    assert "embedding_size" not in EncoderConfig(**TINY).to_dict()
    with pytest.raises(PowerBertError, match="embedding_size and num_hidden_groups are ALBERT's"):
        EncoderConfig(**TINY, embedding_size=16)
    with pytest.raises(PowerBertError, match="ALBERT needs a positive integer embedding_size"):
        EncoderConfig(**TINY, model_type="albert")
    with pytest.raises(PowerBertError, match=r"num_hidden_groups must be in \[1, 3\], got 0"):
        EncoderConfig(**TINY, model_type="albert", embedding_size=16, num_hidden_groups=0)
    with pytest.raises(ValueError, match=r"num_hidden_groups must be in \[1, num_layers=3\]"):
        AlbertEncoder(**ALBERT, num_hidden_groups=4)


# --- PoWER-ALBERT through every phase ---------------------------------------------------

ALBERT_CONFIG = EncoderConfig(vocabulary_size=300, num_layers=3, hidden_size=32, num_heads=4,
                              intermediate_size=64, max_sequence_length=64, dropout=0.0,
                              attention_dropout=0.0, activation="gelu_approximate",
                              model_type="albert", embedding_size=16)


@pytest.fixture(scope="module")
def tiny_albert(tmp_path_factory):
    """A Google ALBERT folder whose SentencePiece model knows the tiny task's words."""
    root = tmp_path_factory.mktemp("albert")
    rng = random.Random(1)
    spm = train_sentencepiece(root / "spm", sst2_lines(300) + [
        sentence(rng, index % 2) for index in range(300)], vocab_size=300)
    keras.utils.set_random_seed(0)
    encoder = AlbertEncoder(**ALBERT_CONFIG.to_dict())
    model = write_google_albert(root / "model", canonical_from_albert(encoder), ALBERT_CONFIG,
                                spm)
    train, dev = write_tiny_task(root / "data", train=64, dev=16)
    return {"model": str(model), "train": str(train), "dev": str(dev), "root": root}


def make_config(tiny, output_dir, **overrides) -> RunConfig:
    options = dict(model_type="albert", finetune_epochs=1, search_epochs=1, retrain_epochs=1)
    return tiny_run_config(tiny["model"], tiny["train"], tiny["dev"], output_dir,
                           **{**options, **overrides})


def test_search_retrain_evaluate_predict_and_export(tiny_albert, tmp_path):
    results = phases.run(make_config(tiny_albert, tmp_path))
    task_dir = tmp_path / "custom"
    search = json.loads((task_dir / "search" / "retention.json").read_text())
    assert len(search["masses"]) == 3 and all(mass >= 1 for mass in search["masses"])
    assert search["retention"] == sorted(search["retention"], reverse=True)

    retrained = keras.saving.load_model(task_dir / "retrain" / "model.keras")
    encoder = retrained.encoder
    assert isinstance(encoder, AlbertEncoder) and encoder.extract == "hard"
    assert encoder.retention == search["retention"]
    blocks = {v.path.split("/")[0] for v in retrained.weights if "group_" in v.path}
    assert blocks == {"group_0_attention", "group_0_feed_forward"}  # still one shared set
    assert results["evaluate"]["retention"] == search["retention"]

    phases.run(make_config(tiny_albert, tmp_path, phase="predict"))
    assert len((task_dir / "predict" / "dev_predictions.tsv").read_text().splitlines()) == 17

    phases.run(make_config(tiny_albert, tmp_path, phase="export"))
    loaded = tf.saved_model.load(str(tmp_path / "export" / "custom" / "1"))
    texts = ["the film was good and fun .", "a dull , boring plot"]
    served = loaded.signatures["serving_default"](text=tf.constant(texts))
    assert served["probabilities"].shape == (2, 2)
    # The SavedModel's SentencePiece tokenization is the library's.
    tokenizer = phases.make_context(make_config(tiny_albert, tmp_path)).tokenizer
    features = tokenizer(tf.constant(texts))
    by_ids = loaded.signatures["predict_ids"](**features)
    np.testing.assert_allclose(by_ids["probabilities"], served["probabilities"], atol=1e-6)
    np.testing.assert_allclose(
        tf.nn.softmax(retrained(features, training=False)), served["probabilities"], atol=1e-5)
    meta = json.loads(loaded.signatures["metadata"]()["config"].numpy())
    assert meta["model_type"] == "albert" and meta["retention"] == search["retention"]


def test_a_bert_checkpoint_is_not_read_as_albert(tiny_albert, tmp_path):
    bert = BertClassifier(BertEncoder(vocabulary_size=300, num_layers=3, hidden_size=32,
                                      num_heads=4, intermediate_size=64), 2)
    (tmp_path / "custom" / "finetune").mkdir(parents=True)
    bert.save(tmp_path / "custom" / "finetune" / "model.keras")
    with pytest.raises(PowerBertError, match="is a BERT model but --model .* is ALBERT"):
        phases.run(make_config(tiny_albert, tmp_path, phase="search"))


def test_model_type_flag_with_a_bert_folder_is_one_line(tmp_path):
    bert = write_tiny_model(tmp_path / "bert")
    train, dev = write_tiny_task(tmp_path / "data", train=8, dev=4)
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_glue.py"), "--task=custom", f"--model={bert}",
         "--model_type=albert", f"--train_file={train}", f"--dev_file={dev}",
         "--text_a_column=text", "--label_column=label", "--labels=neg,pos",
         f"--output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: model type albert was asked for, but {bert} holds a "
                      f"huggingface BERT model"], result.stderr[-2000:]


def test_public_accessors_run_the_layers_by_hand():
    """`embedded`, `blocks` and `extract_slot` reach every part of an ALBERT encoder
    (blocks shared by groups), so analyses that step through layers run on it too."""
    import numpy as np

    from conftest import random_inputs

    encoder = AlbertEncoder(**{**ALBERT, "num_layers": 4}, num_hidden_groups=2, extract="hard",
                            retention=[12, 8, 6, 4], sequence_length=16)
    features = random_inputs(2, 16, lengths=[16, 9])
    hidden, mask = encoder.embedded(features), features["input_mask"]
    for j in range(1, encoder.num_layers + 1):
        attention, feed_forward = encoder.blocks(j)
        hidden, probs = attention(hidden, mask)
        assert encoder.extract_slot(j).retain == [12, 8, 6, 4][j - 1]
    assert encoder.blocks(1)[0] is encoder.blocks(2)[0]  # a group's layers share blocks
    assert encoder.blocks(1)[0] is not encoder.blocks(3)[0]
    plain = AlbertEncoder(**ALBERT)
    full = plain(features)["encoder_outputs"][-1]
    hidden = plain.embedded(features)
    for j in range(1, plain.num_layers + 1):
        attention, feed_forward = plain.blocks(j)
        hidden = feed_forward(attention(hidden, mask)[0])
        assert plain.extract_slot(j) is None
    np.testing.assert_allclose(np.asarray(hidden), np.asarray(full), atol=1e-5)
