"""--finetuned_model: a Hugging Face BertForSequenceClassification folder, saved as
Transformers 5 saves it, imported with its head, labels and tokenizer.json.

The fixtures (tests/fixtures/hf_*, hf_expected.json) come from
tests/fixtures/make_hf_classifier.py (torch + transformers); these tests need neither.
"""
import csv
import dataclasses
import json
import re
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from power_bert_tf.data.tasks import CustomTaskSpec, Task
from power_bert_tf.errors import PowerBertError
from power_bert_tf.pipeline import phases
from power_bert_tf.pipeline.config import RunConfig
from power_bert_tf.pipeline.importing import match_task
from albert_writers import (canonical_from_albert, sst2_lines, train_sentencepiece,
                            write_hf_albert)
from checkpoint_writers import canonical_from_encoder, write_google_folder
from conftest import random_inputs
from power_bert_tf.model.albert import AlbertEncoder
from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.model.encoder import BertEncoder
from power_bert_tf.weights import load_pretrained
from power_bert_tf.weights.finetuned import read_classifier_head
from tiny_task import VOCAB, tiny_config, tiny_run_config, write_tiny_task

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED = json.loads((FIXTURES / "hf_expected.json").read_text())
N = 32  # the fixtures' max_position_embeddings


def _padded(case: dict) -> dict[str, np.ndarray]:
    """The ids transformers saw, padded on to N (masked positions change nothing)."""
    def pad(rows):
        rows = np.asarray(rows, np.int32)
        return np.pad(rows, ((0, 0), (0, N - rows.shape[1])))
    return {"input_word_ids": pad(case["input_ids"]), "input_mask": pad(case["attention_mask"]),
            "input_type_ids": pad(case["token_type_ids"])}


def _write_rows(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file, delimiter="\t", lineterminator="\n")
        writer.writerows([header, *rows])
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The tiny sentiment task (neg/pos), a regression task and an NLI pair task."""
    root = tmp_path_factory.mktemp("data")
    train, dev = write_tiny_task(root / "sentiment", train=16, dev=8)
    scores = [[text, f"{index / 4:.2f}"] for index, text in enumerate(EXPECTED["hf_regressor"]
                                                                        ["texts"])]
    regression = _write_rows(root / "scores.tsv", ["text", "label"], scores)
    nli_labels = ("contradiction", "entailment", "neutral")
    pairs = [[a, b, nli_labels[index % 3]]
             for index, (a, b) in enumerate(EXPECTED["hf_nli"]["texts"])]
    nli = _write_rows(root / "nli.tsv", ["premise", "hypothesis", "label"], pairs)
    return {"train": train, "dev": dev, "regression": regression, "nli": nli}


def _config(data, output, model="hf_classifier", **overrides) -> RunConfig:
    custom = CustomTaskSpec(train_file=str(data["train"]), dev_file=str(data["dev"]),
                            text_a_column="text", label_column="label", labels=None)
    options = dict(phase="import", model="embedded", finetuned_model=str(FIXTURES / model),
                   max_seq_length=N, custom=custom)
    return tiny_run_config(FIXTURES / model, data["train"], data["dev"], output,
                           **{**options, **overrides})


def _imported_logits(output: Path, case: dict) -> np.ndarray:
    model = keras.saving.load_model(output / "custom" / "finetune" / "model.keras")
    return np.asarray(model(_padded(case), training=False))


def test_tokenizer_json_gives_transformers_ids():
    """No vocab.txt: the vocabulary and its casing come from tokenizer.json."""
    for name in ("hf_classifier", "hf_nli"):
        assert not (FIXTURES / name / "vocab.txt").exists()
        pretrained = load_pretrained(FIXTURES / name)
        assert pretrained.lower_case
        case = EXPECTED[name]
        texts = case["texts"]
        pair = not isinstance(texts[0], str)
        tokenizer = pretrained.tokenizer(N)
        packed = (tokenizer([a for a, _ in texts], [b for _, b in texts]) if pair
                  else tokenizer(texts))
        for key, ours in (("input_ids", "input_word_ids"), ("token_type_ids", "input_type_ids"),
                          ("attention_mask", "input_mask")):
            np.testing.assert_array_equal(packed[ours].numpy(), _padded(case)[ours], key)


def test_imported_classifier_equals_transformers(data, tmp_path, capsys):
    result = phases.run(_config(data, tmp_path))
    case = EXPECTED["hf_classifier"]
    np.testing.assert_allclose(_imported_logits(tmp_path, case), case["logits"], atol=1e-4)
    run = json.loads((tmp_path / "custom" / "finetune" / "run.json").read_text())
    assert run["phase"] == "import" and run["dev"] == result["dev"]
    assert run["imported"]["labels"] == ["neg", "pos"]  # id2label, in class-index order
    assert run["imported"]["architecture"] == "BertForSequenceClassification"
    assert run["imported"]["sha256"] == read_classifier_head(FIXTURES / "hf_classifier").sha256
    assert len(run["imported"]["sha256"]) == 64
    assert "imported BertForSequenceClassification from" in capsys.readouterr().out


def test_imported_regressor_equals_transformers(data, tmp_path):
    config = _config(data, tmp_path, "hf_regressor",
                     custom=CustomTaskSpec(train_file=str(data["regression"]),
                                           dev_file=str(data["regression"]),
                                           text_a_column="text", label_column="label",
                                           labels=None))
    result = phases.run(config)
    assert set(result["dev"]) == {"spearman", "pearson"}
    case = EXPECTED["hf_regressor"]
    np.testing.assert_allclose(_imported_logits(tmp_path, case), case["logits"], atol=1e-4)


def test_labels_matched_by_name_reorder_the_head(data, tmp_path):
    """The model's entailment, neutral, contradiction against the task's contradiction,
    entailment, neutral (MNLI's order): the head's rows follow the task's order."""
    labels = ("contradiction", "entailment", "neutral")
    config = _config(data, tmp_path, "hf_nli", custom=CustomTaskSpec(
        train_file=str(data["nli"]), dev_file=str(data["nli"]), text_a_column="premise",
        text_b_column="hypothesis", label_column="label", labels=labels))
    phases.run(config)
    case = EXPECTED["hf_nli"]
    theirs = np.asarray(case["logits"])
    order = [["entailment", "neutral", "contradiction"].index(label) for label in labels]
    np.testing.assert_allclose(_imported_logits(tmp_path, case), theirs[:, order], atol=1e-4)


def test_google_run_classifier_checkpoint(data, tmp_path):
    """A Google BERT checkpoint fine-tuned by run_classifier.py: its head is
    output_weights (C, D) and output_bias, on the pooled output; labels by index."""
    keras.utils.set_random_seed(1)
    config = tiny_config()
    encoder = BertEncoder(**config.to_dict())
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(2, 32)).astype(np.float32)
    bias = rng.normal(size=2).astype(np.float32)
    folder = write_google_folder(tmp_path / "google", {
        **canonical_from_encoder(encoder), "output_weights": weights, "output_bias": bias,
        "global_step": np.array(100, np.int64)}, config, VOCAB)
    custom = CustomTaskSpec(train_file=str(data["train"]), dev_file=str(data["dev"]),
                            text_a_column="text", label_column="label", labels=("neg", "pos"))
    phases.run(_config(data, tmp_path / "out", finetuned_model=str(folder), custom=custom))
    inputs = random_inputs(3, N, lengths=[N, 9, 4], vocabulary_size=len(VOCAB))
    expected = np.asarray(encoder(inputs)["pooled_output"]) @ weights.T + bias
    model = keras.saving.load_model(tmp_path / "out" / "custom" / "finetune" / "model.keras")
    np.testing.assert_allclose(model(inputs, training=False), expected, atol=1e-5)
    run = json.loads((tmp_path / "out" / "custom" / "finetune" / "run.json").read_text())
    assert run["imported"]["architecture"] == "BERT run_classifier.py checkpoint"


def test_albert_sequence_classifier(data, tmp_path):
    """An AlbertForSequenceClassification folder: albert.* and classifier.* tensors."""
    keras.utils.set_random_seed(2)
    config = EncoderConfig(vocabulary_size=120, num_layers=2, hidden_size=32, num_heads=4,
                           intermediate_size=64, max_sequence_length=64,
                           activation="gelu_approximate", model_type="albert",
                           embedding_size=16, num_hidden_groups=1)
    encoder = AlbertEncoder(**config.to_dict())
    spm = train_sentencepiece(tmp_path / "spm", sst2_lines(200), vocab_size=120)
    folder = write_hf_albert(tmp_path / "albert", canonical_from_albert(encoder), config, spm,
                             prefix="albert.")
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(2, 32)).astype(np.float32)
    bias = rng.normal(size=2).astype(np.float32)
    tensors = load_file(str(folder / "model.safetensors"))
    save_file({**tensors, "classifier.weight": weights, "classifier.bias": bias},
              str(folder / "model.safetensors"))
    hf_config = json.loads((folder / "config.json").read_text())
    hf_config.update(architectures=["AlbertForSequenceClassification"],
                     id2label={"0": "neg", "1": "pos"})
    (folder / "config.json").write_text(json.dumps(hf_config))
    phases.run(_config(data, tmp_path / "out", finetuned_model=str(folder)))
    inputs = random_inputs(2, N, lengths=[N, 7], vocabulary_size=120)
    expected = np.asarray(encoder(inputs)["pooled_output"]) @ weights.T + bias
    model = keras.saving.load_model(tmp_path / "out" / "custom" / "finetune" / "model.keras")
    assert model.encoder.model_type == "albert"
    np.testing.assert_allclose(model(inputs, training=False), expected, atol=1e-5)


def test_google_checkpoint_without_a_head(tmp_path):
    folder = write_google_folder(tmp_path / "google", canonical_from_encoder(
        BertEncoder(**tiny_config().to_dict())), tiny_config(), VOCAB)
    message = _head_error(folder)
    assert message.startswith(f"{folder} has no classifier weights (output_weights")
    assert f"--phase=finetune --model={folder}" in message


def _task(labels) -> Task:
    return Task("custom", labels, "accuracy" if labels else "spearman", False, {})


@pytest.fixture(scope="module")
def head():
    return read_classifier_head(FIXTURES / "hf_classifier")


def test_label_matching(head):
    task, imported = match_task(_task(("pos", "neg")), head)
    assert task.labels == ("pos", "neg") and imported.order == (1, 0)
    task, imported = match_task(_task(("0", "1")), head)  # class indices take the names
    assert task.labels == ("neg", "pos") and imported.order == (0, 1)
    unnamed = dataclasses.replace(head, labels=("LABEL_0", "LABEL_1"), named=False)
    task, imported = match_task(_task(("bad", "good")), unnamed)
    assert task.labels == ("bad", "good") and imported.order == (0, 1)


@pytest.mark.parametrize("labels, message", [
    (("neg", "pos", "mixed"), "has 2 labels (neg, pos) but task custom has 3 (neg, pos, mixed)"),
    (("negative", "positive"), "has labels neg, pos but task custom has negative, positive: "
                               "the names differ"),
    (None, "classifies into neg, pos but task custom is a regression task"),
])
def test_labels_that_disagree(head, labels, message):
    with pytest.raises(PowerBertError, match=re.escape(message)) as error:
        match_task(_task(labels), head)
    assert "\n" not in str(error.value)


def test_regression_model_on_a_classification_task(data, tmp_path):
    with pytest.raises(PowerBertError, match="is a regression model .one output. but task "
                                             "custom has labels neg, pos"):
        phases.make_context(_config(data, tmp_path, "hf_regressor", custom=CustomTaskSpec(
            train_file=str(data["train"]), dev_file=str(data["dev"]), text_a_column="text",
            label_column="label", labels=("neg", "pos"))))


def _copy(tmp_path: Path, edit_config=None, edit_tensors=None) -> Path:
    folder = shutil.copytree(FIXTURES / "hf_classifier", tmp_path / "model")
    if edit_config:
        config = json.loads((folder / "config.json").read_text())
        edit_config(config)
        (folder / "config.json").write_text(json.dumps(config))
    if edit_tensors:
        tensors = load_file(str(folder / "model.safetensors"))
        edit_tensors(tensors)
        save_file(tensors, str(folder / "model.safetensors"))
    return folder


def _head_error(folder: Path) -> str:
    with pytest.raises(PowerBertError) as error:
        read_classifier_head(folder)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_plain_bert_model_points_to_the_finetune_phase(tmp_path):
    def plain(config):
        config["architectures"] = ["BertModel"]

    def no_head(tensors):
        del tensors["classifier.weight"], tensors["classifier.bias"]
    folder = _copy(tmp_path, plain, no_head)
    message = _head_error(folder)
    assert message.startswith(f"{folder} has no classifier weights")
    assert "plain BertModel" in message and f"--phase=finetune --model={folder}" in message


@pytest.mark.parametrize("model_type, architecture", [
    ("roberta", "RobertaForSequenceClassification"),
    ("distilbert", "DistilBertForSequenceClassification")])
def test_another_architecture_is_named(tmp_path, model_type, architecture):
    def other(config):
        config["model_type"], config["architectures"] = model_type, [architecture]
    message = _head_error(_copy(tmp_path, other))
    assert f"holds a {architecture} model (model_type '{model_type}')" in message
    assert "only BertForSequenceClassification or AlbertForSequenceClassification" in message


def test_another_bert_head_is_named(tmp_path):
    def token_classifier(config):
        config["architectures"] = ["BertForTokenClassification"]
    assert "holds a BertForTokenClassification model" in _head_error(
        _copy(tmp_path, token_classifier))


def test_a_head_of_another_shape_names_both_shapes(tmp_path):
    def three_rows(tensors):
        tensors["classifier.weight"] = np.zeros((3, 32), np.float32)
        tensors["classifier.bias"] = np.zeros(3, np.float32)
    message = _head_error(_copy(tmp_path, edit_tensors=three_rows))
    assert ("the head has classifier.bias (3,), classifier.weight (3, 32); a "
            "BertForSequenceClassification of 2 label(s) on hidden size 32 has "
            "classifier.weight (2, 32), classifier.bias (2,)") in message


def test_a_two_layer_head_is_another_shape(tmp_path):
    def dense_head(tensors):
        tensors["classifier.dense.weight"] = np.zeros((32, 32), np.float32)
    message = _head_error(_copy(tmp_path, edit_tensors=dense_head))
    assert "classifier.dense.weight (32, 32)" in message and "classifier.weight (2, 32)" in message


def test_tokenizer_json_of_another_kind_is_named(tmp_path):
    folder = _copy(tmp_path)
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["model"]["type"] = "BPE"
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(PowerBertError, match="model.type is 'BPE'; only BERT WordPiece "
                                             "tokenizers"):
        load_pretrained(folder)


def test_casing_from_tokenizer_json(tmp_path):
    folder = _copy(tmp_path)
    (folder / "tokenizer_config.json").unlink()
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["normalizer"]["lowercase"] = False
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    assert not load_pretrained(folder).lower_case
    spec["normalizer"]["strip_accents"] = True
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(PowerBertError, match="strip_accents=True with lowercase=False is not "
                                             "supported"):
        load_pretrained(folder)


def test_import_flags():
    base = dict(task="custom", output_dir="out")
    with pytest.raises(PowerBertError, match="--phase=import needs --finetuned_model"):
        RunConfig(phase="import", **base)
    with pytest.raises(PowerBertError, match="not fine-tuned again"):
        RunConfig(phase="finetune", finetuned_model="m", **base)
    with pytest.raises(PowerBertError, match="drop --model=other"):
        RunConfig(phase="all", finetuned_model="m", model="other", **base)
    assert RunConfig(phase="search", finetuned_model="m", **base).model == "m"


@pytest.mark.slow
def test_import_search_retrain_evaluate_export(data, tmp_path, capsys):
    """--phase=all from the imported model with a speed-up target, then both exports:
    the evaluate report names the imported model as the baseline, and the exports carry
    its labels."""
    config = _config(data, tmp_path, phase="all", target_speedup=1.5, mass_lambda=None,
                     search_epochs=1, retrain_epochs=1, max_seq_length=16)
    results = phases.run(config)
    assert list(results) == ["import", "search", "retrain", "evaluate"]
    printed = capsys.readouterr().out
    source = str(FIXTURES / "hf_classifier")
    assert "BERT (imported)" in printed and f"baseline: the model imported from {source}" in printed
    summary = json.loads((tmp_path / "custom" / "evaluate" / "run.json").read_text())
    assert summary["baseline_model"] == f"imported from {source}"
    assert summary["baseline"]["dev"] == results["import"]["dev"]
    exported = Path(phases.run(dataclasses.replace(config, phase="export"))["export"])
    assert (exported / "assets" / "labels.txt").read_text().split() == ["neg", "pos"]
    exported = Path(phases.run(dataclasses.replace(config, phase="export",
                                                   export_format="onnx"))["export"])
    assert json.loads((exported / "power_bert.json").read_text())["labels"] == ["neg", "pos"]
