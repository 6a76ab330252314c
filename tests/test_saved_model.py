"""export_saved_model: a TF Serving folder that loads without power_bert_tf."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import random_inputs
from power_bert_tf.errors import PowerBertError
from power_bert_tf.serving.saved_model import export_saved_model
from power_bert_tf.serving.inference import BucketedPredictor, valid_utf8
from serving_models import N, NO_PACKAGE, RETENTION, tiny_classifier, tiny_tokenizer
from tiny_task import VOCAB

LABELS = ("neg", "pos")
TEXTS = [b"the film was good .", b"a boring , dull plot and a weak story", b"",
         b"good \xff\xfe film", b" ".join([b"the very fine film"] * 20)]  # the last > N
IDS = random_inputs(3, 20, lengths=[20, 7, 2], seed=3, vocabulary_size=len(VOCAB))

# Runs in a fresh interpreter (-I: no PYTHONPATH, no script folder on sys.path) that
# cannot import power_bert_tf even if it is installed.
LOAD_SCRIPT = NO_PACKAGE + textwrap.dedent("""
    import json
    try:
        import power_bert_tf
        sys.exit("power_bert_tf is importable")
    except ModuleNotFoundError:
        pass
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)

    inputs = json.load(open(sys.argv[2]))
    model = tf.saved_model.load(sys.argv[1])

    def plain(outputs):
        return {k: [x.decode() if isinstance(x, bytes) else x for x in v.numpy().tolist()]
                if v.shape.rank else (v.numpy().decode() if v.dtype == tf.string
                                      else v.numpy().item())
                for k, v in outputs.items()}

    texts = tf.constant([bytes.fromhex(t) for t in inputs["texts_hex"]])
    ids = {k: tf.constant(v, tf.int32) for k, v in inputs["ids"].items()}
    print(json.dumps({
        "signatures": sorted(model.signatures),
        "text": plain(model.signatures["serving_default"](text=texts)),
        "ids": plain(model.signatures["predict_ids"](**ids)),
        "metadata": plain(model.signatures["metadata"]()),
        "power_bert_tf_loaded": any(m.startswith("power_bert_tf") for m in sys.modules),
    }))
""")


@pytest.fixture(scope="module")
def model():
    return tiny_classifier()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    tokenizer = tiny_tokenizer(root / "vocab")
    path = export_saved_model(model, tokenizer, root / "export", "sst2", labels=LABELS,
                              retention=RETENTION, task_name="SST-2", is_pair=False)
    return {"path": path, "root": root, "tokenizer": tokenizer}


def padded_to_n_logits(model, tokenizer, a, b) -> np.ndarray:
    """The model's logits on texts padded to N: what any bucket must give (tested in
    test_inference), without compiling the buckets."""
    return model(tokenizer(tf.constant(a), tf.constant(b)), training=False).numpy()


def softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_layout_assets_and_saved_model_cli(exported):
    path = exported["path"]
    assert path == exported["root"] / "export" / "sst2" / "1"
    assert sorted(p.name for p in path.parent.iterdir()) == ["1"]  # no partial folder left
    assert (path / "assets" / "labels.txt").read_text() == "neg\npos\n"
    meta = json.loads((path / "assets" / "power_bert.json").read_text())
    assert meta["retention"] == RETENTION and meta["max_seq_length"] == N
    assert meta["labels"] == list(LABELS) and meta["inputs"] == ["text"]
    assert "truncated" in meta["truncation"]
    cli = Path(sys.executable).parent / "saved_model_cli"
    shown = subprocess.run([str(cli), "show", "--all", "--dir", str(path)], check=True,
                           capture_output=True, text=True).stdout
    for name in ("serving_default", "predict_ids", "metadata"):
        assert f"signature_def['{name}']" in shown
    for tensor in ("inputs['text']", "inputs['input_word_ids']", "outputs['probabilities']",
                   "outputs['label']", "outputs['retention']"):
        assert tensor in shown


def test_loads_in_a_fresh_process_without_power_bert_tf(exported, model, tmp_path):
    (tmp_path / "load.py").write_text(LOAD_SCRIPT)
    (tmp_path / "inputs.json").write_text(json.dumps({
        "texts_hex": [t.hex() for t in TEXTS],
        "ids": {k: v.tolist() for k, v in IDS.items()}}))
    run = subprocess.run([sys.executable, "-I", "load.py", str(exported["path"]), "inputs.json"],
                         cwd=tmp_path, capture_output=True, text=True,
                         env={"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["signatures"] == ["metadata", "predict_ids", "serving_default"]
    assert not out["power_bert_tf_loaded"]

    predictor = BucketedPredictor(model, tokenizer=exported["tokenizer"])
    expected = softmax(predictor.predict_texts(TEXTS))
    np.testing.assert_allclose(out["text"]["probabilities"], expected, atol=1e-5)
    assert out["text"]["label"] == [LABELS[i] for i in expected.argmax(-1)]
    # The text path equals the Keras model on the tokenizer's output padded to N.
    features = exported["tokenizer"](valid_utf8(tf.constant(TEXTS)))
    np.testing.assert_allclose(out["text"]["probabilities"],
                               softmax(model(features, training=False).numpy()), atol=1e-5)
    ids_expected = softmax(model({k: np.pad(v, [(0, 0), (0, N - 20)]) for k, v in IDS.items()},
                                 training=False).numpy())
    np.testing.assert_allclose(out["ids"]["probabilities"], ids_expected, atol=1e-5)

    meta = out["metadata"]
    assert meta["labels"] == list(LABELS) and meta["retention"] == RETENTION
    assert meta["max_seq_length"] == N and meta["task"] == "SST-2"
    assert json.loads(meta["config"])["buckets"] == [16, 32]


def warmup_requests(path: Path) -> list:
    """The PredictLog requests of a version folder's TF Serving warm-up file."""
    from tensorflow_serving.apis import prediction_log_pb2

    records = tf.data.TFRecordDataset(str(path / "assets.extra" / "tf_serving_warmup_requests"))
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in records]
    assert all(log.WhichOneof("log_type") == "predict_log" for log in logs)
    return [log.predict_log.request for log in logs]


def check_warmup_requests(path: Path, tokenizer, model_name: str, inputs: set[str]):
    """One request per length bucket, each filling its bucket, and each runs through the
    exported serving_default signature (as TF Serving runs them at load)."""
    buckets = json.loads((path / "assets" / "power_bert.json").read_text())["buckets"]
    requests = warmup_requests(path)
    assert len(requests) == len(buckets) > 1
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    hit = []
    for request in requests:
        assert (request.model_spec.name, request.model_spec.signature_name) == (
            model_name, "serving_default")
        texts = {name: tf.constant(tf.make_ndarray(proto))
                 for name, proto in request.inputs.items()}
        assert set(texts) == inputs and all(t.shape == (1,) for t in texts.values())
        out = serve(**texts)
        assert out["probabilities"].shape[0] == 1
        length = int(tf.reduce_sum(tokenizer(*(texts[name] for name in sorted(inputs)))
                                   ["input_mask"]))
        hit.append(min(bucket for bucket in buckets if bucket >= length))
    assert hit == buckets


def test_warmup_requests_cover_every_bucket(exported):
    check_warmup_requests(exported["path"], exported["tokenizer"], "sst2", {"text"})


def test_the_version_folder_is_readable_by_other_users(exported):
    path = exported["path"]
    modes = {item.relative_to(path).as_posix(): item.stat().st_mode & 0o777
             for item in [path, *path.rglob("*")]}
    assert "assets.extra/tf_serving_warmup_requests" in modes and "saved_model.pb" in modes
    wrong = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o755 if (path / name).is_dir() else 0o644)}
    assert not wrong


def test_versions_are_never_overwritten(exported, model):
    export_dir = exported["root"] / "export"
    options = dict(labels=LABELS, retention=RETENTION, task_name="SST-2", is_pair=False)
    with pytest.raises(PowerBertError, match=r"sst2/1 exists and is never overwritten.*"
                                             r"next free: 2"):
        export_saved_model(model, exported["tokenizer"], export_dir, "sst2", 1, **options)
    assert export_saved_model(model, exported["tokenizer"], export_dir, "sst2",
                              **options).name == "2"
    assert sorted(p.name for p in (export_dir / "sst2").iterdir()) == ["1", "2"]


def test_pair_task(tmp_path):
    model = tiny_classifier(num_classes=3, seed=1)
    tokenizer = tiny_tokenizer(tmp_path / "vocab")
    path = export_saved_model(model, tokenizer, tmp_path / "export", "mnli", 7,
                              labels=("contradiction", "entailment", "neutral"),
                              retention=RETENTION, task_name="MNLI-m", is_pair=True)
    assert path.name == "7"
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    assert set(serve.structured_input_signature[1]) == {"text_a", "text_b"}
    a, b = ["the film was good .", "a dull plot"], ["it is nice", ""]
    out = serve(text_a=tf.constant(a), text_b=tf.constant(b))
    expected = softmax(padded_to_n_logits(model, tokenizer, a, b))
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    check_warmup_requests(path, tokenizer, "mnli", {"text_a", "text_b"})


def test_regression_task(tmp_path):
    model = tiny_classifier(num_classes=1, seed=2)
    tokenizer = tiny_tokenizer(tmp_path / "vocab")
    path = export_saved_model(model, tokenizer, tmp_path / "export", "stsb", labels=None,
                              retention=RETENTION, task_name="STS-B", is_pair=True)
    assert not (path / "assets" / "labels.txt").exists()
    loaded = tf.saved_model.load(str(path))
    a, b = ["the film was good .", "a dull plot"], ["a good film", "fine"]
    out = loaded.signatures["serving_default"](text_a=tf.constant(a), text_b=tf.constant(b))
    assert set(out) == {"score"} and out["score"].shape == (2,)
    expected = padded_to_n_logits(model, tokenizer, a, b)[:, 0]
    np.testing.assert_allclose(out["score"], expected, atol=1e-5)
    assert loaded.signatures["metadata"]()["labels"].shape == (0,)


def test_mismatched_head_or_retention(exported, model):
    options = dict(task_name="SST-2", is_pair=False)
    with pytest.raises(PowerBertError, match="2 outputs but the labels a, b, c need 3"):
        export_saved_model(model, exported["tokenizer"], exported["root"] / "bad", "x",
                           labels=("a", "b", "c"), retention=RETENTION, **options)
    with pytest.raises(PowerBertError, match=r"retention \[8, 4, 2\] is not the model's"):
        export_saved_model(model, exported["tokenizer"], exported["root"] / "bad", "x",
                           labels=LABELS, retention=[8, 4, 2], **options)
    assert not (exported["root"] / "bad").exists()


def test_bf16_export_keeps_float32_signatures(exported, model):
    path = export_saved_model(model, exported["tokenizer"], exported["root"] / "bf16", "sst2",
                              labels=LABELS, retention=RETENTION, task_name="SST-2",
                              is_pair=False, precision="bf16")
    meta = json.loads((path / "assets" / "power_bert.json").read_text())
    assert (meta["precision"], meta["jit_compile"]) == ("bf16", False)  # CPU: graph path
    outputs = tf.saved_model.load(str(path)).signatures["serving_default"](
        text=tf.constant(TEXTS))
    assert outputs["probabilities"].dtype == tf.float32
    expected = softmax(BucketedPredictor(model, tokenizer=exported["tokenizer"])
                       .predict_texts(TEXTS))
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=0.03)
