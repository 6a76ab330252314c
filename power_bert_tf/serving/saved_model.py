"""SavedModel export for TF Serving: raw text (or ids) in, probabilities and labels out.

`export_saved_model` writes a TF Serving model base folder, one integer version per
export, never overwritten:

    <export_dir>/<model_name>/<version>/
        saved_model.pb, variables/
        assets/power_bert.json   task, model type, labels, retention, max_seq_length,
                                 buckets, notes
        assets/labels.txt        one label per line, in class-index order (classification)
        assets.extra/tf_serving_warmup_requests
                                 TF Serving's warm-up: one serving_default request per
                                 length bucket (PredictionLog records), which TF Serving
                                 runs at load, so no user request pays for compiling one

The version folder is readable by other users (folders 0755, files 0644), so a model
server running as another user can load it.

Signatures (B the batch, T any length, C the classes):
    serving_default  text (B,) string, or text_a and text_b for pair tasks
                     -> probabilities (B, C) float32 and label (B,) string,
                        or score (B,) float32 for regression;
    predict_ids      input_word_ids, input_mask, input_type_ids, int32 (B, T)
                     -> the same outputs;
    metadata         no inputs -> labels (C,), retention (L,) (int32 counts, or float32
                     fractions of a relative-mode model), max_seq_length (),
                     task (), config () (the JSON of power_bert.json).

The tokenizer (tensorflow-text WordPiece or SentencePiece ops, not XLA-compilable)
runs outside XLA; each length bucket's model program is XLA-compiled (see
`BucketedPredictor`). Loading needs only `tensorflow` and `tensorflow_text`.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import tensorflow as tf

from power_bert_tf.data.tokenizer import PackingTokenizer
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.data.tokenizer import INPUT_NAMES
from power_bert_tf.serving.inference import BucketedPredictor, valid_utf8

METADATA_FILE = "power_bert.json"
LABELS_FILE = "labels.txt"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
WARMUP_WORD = "a"  # one word-piece in BERT's and ALBERT's vocabularies ([UNK] elsewhere: one)
TRUNCATION_NOTE = (
    "serving_default: texts longer than max_seq_length word-pieces ([CLS] and [SEP] "
    "included) are truncated by the tokenizer, longest segment first for pairs; "
    "predict_ids: tokens after position max_seq_length are dropped. Invalid UTF-8 is "
    "replaced by U+FFFD, which normalization deletes.")


class ServingModule(tf.Module):
    """The tokenizer, the model and the three signatures' functions.

    Args:
        predictor: the model, bucketed (its programs are traced into the SavedModel).
        tokenizer: the in-graph tokenizer for raw text (`BertTokenizer` or
            `SentencePieceTokenizer`).
        labels: label strings in class-index order; None for regression.
        is_pair: whether raw text comes as `text_a`, `text_b` (else `text`).
        metadata: the contents of power_bert.json.
        asset_files: files to copy into the SavedModel's assets/.
    """

    def __init__(self, predictor: BucketedPredictor, tokenizer: PackingTokenizer,
                 labels: Sequence[str] | None, is_pair: bool, metadata: dict,
                 asset_files: Sequence[Path]):
        super().__init__(name="power_bert")
        self.tokenizer = tokenizer
        self.model = predictor.model
        self.assets = [tf.saved_model.Asset(str(path)) for path in asset_files]
        self._predictor = predictor
        self._labels = None if labels is None else tuple(labels)
        self._metadata_json = json.dumps(metadata, indent=2)

        def text_spec(name: str) -> tf.TensorSpec:
            return tf.TensorSpec([None], tf.string, name=name)

        self.serve_text = (
            tf.function(self._serve_text_pair,
                        input_signature=[text_spec("text_a"), text_spec("text_b")])
            if is_pair else tf.function(self._serve_text, input_signature=[text_spec("text")]))
        self.predict_ids = tf.function(self._predict_ids, input_signature=[
            tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES])
        self.metadata = tf.function(self._read_metadata, input_signature=[])

    def _outputs(self, logits: tf.Tensor) -> dict[str, tf.Tensor]:
        """(B, C) logits -> probabilities and label, or (B, 1) -> score."""
        if self._labels is None:
            return {"score": logits[:, 0]}
        probabilities = tf.nn.softmax(logits, axis=-1)
        return {"probabilities": probabilities,
                "label": tf.gather(tf.constant(self._labels, tf.string),
                                   tf.argmax(probabilities, axis=-1))}

    def _serve_text(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._outputs(self._predictor.logits(self.tokenizer(valid_utf8(text))))

    def _serve_text_pair(self, text_a: tf.Tensor, text_b: tf.Tensor) -> dict[str, tf.Tensor]:
        features = self.tokenizer(valid_utf8(text_a), valid_utf8(text_b))
        return self._outputs(self._predictor.logits(features))

    def _predict_ids(self, input_word_ids: tf.Tensor, input_mask: tf.Tensor,
                     input_type_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._outputs(self._predictor.logits({
            "input_word_ids": input_word_ids, "input_mask": input_mask,
            "input_type_ids": input_type_ids}))

    def _read_metadata(self) -> dict[str, tf.Tensor]:
        meta = json.loads(self._metadata_json)
        return {"labels": tf.constant(meta["labels"] or [], tf.string),
                "retention": tf.constant(meta["retention"] or [],
                                         tf.float32 if meta.get("retention_mode") == "relative"
                                         else tf.int32),
                "max_seq_length": tf.constant(meta["max_seq_length"], tf.int32),
                "task": tf.constant(meta["task"]),
                "config": tf.constant(self._metadata_json)}


def next_version(base: Path) -> int:
    """1 + the largest integer-named sub-folder of a model base folder (1 if none)."""
    if not base.is_dir():
        return 1
    return 1 + max((int(path.name) for path in base.iterdir()
                    if path.is_dir() and path.name.isdigit()), default=0)


def export_saved_model(model: BertClassifier, tokenizer: PackingTokenizer, export_dir: Path,
                       model_name: str, version: int | None = None, *,
                       labels: Sequence[str] | None, retention: Sequence[int] | None,
                       task_name: str, is_pair: bool, jit_compile: bool | None = None,
                       precision: str = "fp32") -> Path:
    """Writes `<export_dir>/<model_name>/<version>/`, a SavedModel TF Serving can load.

    Args:
        model: the classifier (Hard-Extract or plain); (B, C) logits, C = 1 for regression.
        tokenizer: its tokenizer (WordPiece for BERT, SentencePiece for ALBERT); its
            max_seq_length bounds raw-text inputs.
        export_dir: the folder holding one model base folder per model name.
        model_name: the model base folder's name (TF Serving's --model_name is separate).
        version: the version folder; default 1 + the largest existing one. An existing
            version is an error, never overwritten.
        labels: label strings in class-index order; None for regression.
        retention: (l_1, ..., l_L) as recorded in the metadata; must be the model's.
        task_name: recorded in the metadata.
        is_pair: raw text as `text_a`, `text_b` (else `text`).
        jit_compile: XLA-compile the model programs (TF Serving then needs
            --xla_cpu_compilation_enabled=true, or --xla_gpu_compilation_enabled=true);
            None: the measured fastest path for `precision` on this device (on CPU,
            XLA for fp32 and TF's graph executor for bf16).
        precision: "fp32", "bf16" (encoder in bfloat16; the signatures' inputs and
            outputs keep their dtypes) or "auto" (`BucketedPredictor`).

    Returns:
        The version folder.
    """
    expected = 1 if labels is None else len(labels)
    if model.num_classes != expected:
        raise PowerBertError(f"the model has {model.num_classes} outputs but "
                             + ("regression needs 1" if labels is None
                                else f"the labels {', '.join(labels)} need {expected}"))
    model_retention = model.encoder.retention
    if retention is not None and list(retention) != (model_retention or []):
        raise PowerBertError(f"retention {list(retention)} is not the model's "
                             f"{model_retention}")
    predictor = BucketedPredictor(model, jit_compile=jit_compile, precision=precision,
                                  warm=False)  # the SavedModel traces its own
    if tokenizer.max_seq_length > predictor.buckets[-1]:
        raise PowerBertError(f"the tokenizer's max_seq_length {tokenizer.max_seq_length} "
                             f"exceeds the model's {predictor.buckets[-1]}")

    base = Path(export_dir) / model_name
    version = next_version(base) if version is None else version
    if version < 0:
        raise PowerBertError(f"export version must be >= 0, got {version}")
    target = base / str(version)
    if target.exists():
        raise PowerBertError(f"{target} exists and is never overwritten: pass another "
                             f"version (next free: {next_version(base)})")
    metadata = {
        "task": task_name, "version": version, "model_type": model.encoder.model_type,
        "labels": None if labels is None else list(labels),
        "inputs": ["text_a", "text_b"] if is_pair else ["text"],
        "outputs": ["score"] if labels is None else ["probabilities", "label"],
        "retention": model_retention, "retention_mode": model.encoder.retention_mode,
        "max_seq_length": tokenizer.max_seq_length,
        "buckets": list(predictor.buckets), "jit_compile": predictor.jit_compile,
        "precision": predictor.precision,
        "truncation": TRUNCATION_NOTE,
    }
    base.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{version}.partial-", dir=base))
    try:
        with tempfile.TemporaryDirectory() as source:
            asset_files = [Path(source) / METADATA_FILE]
            asset_files[0].write_text(json.dumps(metadata, indent=2) + "\n")
            if labels is not None:
                asset_files.append(Path(source) / LABELS_FILE)
                asset_files[1].write_text("".join(f"{label}\n" for label in labels))
            module = ServingModule(predictor, tokenizer, labels, is_pair, metadata, asset_files)
            tf.saved_model.save(module, str(partial), signatures={
                "serving_default": module.serve_text, "predict_ids": module.predict_ids,
                "metadata": module.metadata})
        write_warmup_requests(partial / WARMUP_FILE, tokenizer, predictor.buckets,
                              model_name, is_pair)
        make_readable(partial)
        if target.exists():
            raise PowerBertError(f"{target} appeared while exporting; not overwritten")
        os.rename(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def warmup_texts(tokenizer: PackingTokenizer, buckets: Sequence[int],
                 is_pair: bool) -> list[dict[str, str]]:
    """One serving_default input per bucket: {"text": ...} (or "text_a", "text_b") whose
    tokenized length fills the bucket, so the request runs that bucket's program.

    Raises PowerBertError when no text of repeated `WARMUP_WORD` reaches a bucket.
    """
    def length(words: int) -> int:
        a = tf.constant([" ".join([WARMUP_WORD] * words)])
        features = tokenizer(a, tf.constant([WARMUP_WORD])) if is_pair else tokenizer(a)
        return int(tf.reduce_sum(features["input_mask"]))

    inputs, lower = [], 0
    for bucket in buckets:
        words = bucket
        while words > 0 and length(words) > bucket:
            words -= 1
        if words == 0 or length(words) <= lower:
            raise PowerBertError(f"no warm-up text of {WARMUP_WORD!r} repeated reaches the "
                                 f"length bucket {bucket}")
        text = " ".join([WARMUP_WORD] * words)
        inputs.append({"text_a": text, "text_b": WARMUP_WORD} if is_pair else {"text": text})
        lower = bucket
    return inputs


def write_warmup_requests(path: Path, tokenizer: PackingTokenizer, buckets: Sequence[int],
                          model_name: str, is_pair: bool) -> None:
    """TF Serving's warm-up file: a TFRecord of PredictionLog records, one serving_default
    request (batch 1) per length bucket (`warmup_texts`)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for inputs in warmup_texts(tokenizer, buckets, is_pair):
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
                name=model_name, signature_name="serving_default"))
            for name, text in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto([text.encode()], tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def make_readable(folder: Path) -> None:
    """Folders 0755 and files 0644 under `folder` (itself included)."""
    folder.chmod(0o755)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
