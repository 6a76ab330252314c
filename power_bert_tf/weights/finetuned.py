"""A fine-tuned sequence classifier's head: the dense layer on the pooled output, and its
labels or regression (one output).

    Hugging Face   config.json ("architectures": ["BertForSequenceClassification"] or
                   ALBERT's, "id2label", "problem_type"), model.safetensors (bert.* or
                   albert.* encoder and pooler, classifier.weight (C, D), classifier.bias)
    Google         bert_config.json (or albert_config.json) and a TF checkpoint as BERT's
                   run_classifier.py writes it: output_weights (C, D), output_bias (C,);
                   no label names (the task's are used, by index)

The encoder and pooler come from `load_pretrained` on the same folder.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from power_bert_tf.errors import PowerBertError
from power_bert_tf.weights.google import open_checkpoint

ARCHITECTURES = {"bert": "BertForSequenceClassification",
                 "albert": "AlbertForSequenceClassification"}
_DEFAULT_LABEL = re.compile(r"LABEL_\d+")
GOOGLE_CONFIGS = {"bert_config.json": "bert", "albert_config.json": "albert"}
GOOGLE_HEAD = ("output_weights", "output_bias")  # run_classifier.py's names


@dataclasses.dataclass(frozen=True)
class ClassifierHead:
    """The dense layer on the pooled output of a fine-tuned classifier.

    Attributes:
        kernel: (D, C) float32, `classifier.weight` transposed.
        bias: (C,) float32.
        labels: `id2label` in class-index order; None for regression (C = 1).
        named: whether the labels are names (not Transformers' default LABEL_i).
        architecture: e.g. "BertForSequenceClassification".
        dropout: the head's dropout (`classifier_dropout`, else `hidden_dropout_prob`).
        source: the folder.
        sha256: digest of the folder's files (names and contents).
    """

    kernel: np.ndarray
    bias: np.ndarray
    labels: tuple[str, ...] | None
    named: bool
    architecture: str
    dropout: float
    source: str
    sha256: str

    @property
    def num_classes(self) -> int:
        return self.bias.shape[0]


def folder_sha256(folder: Path) -> str:
    """SHA-256 over the folder's files: each relative path and its contents, sorted."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with path.open("rb") as file:
            digest.update(hashlib.file_digest(file, "sha256").digest())
    return digest.hexdigest()


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise PowerBertError(f"{folder}: no config.json, so not a Hugging Face model folder "
                             "(a fine-tuned model is imported from one)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PowerBertError(f"{path}: invalid JSON ({error})") from None


def _classifier_tensors(folder: Path) -> dict[str, np.ndarray]:
    path = folder / "model.safetensors"
    if not path.is_file():
        raise PowerBertError(f"{folder}: no model.safetensors (only the safetensors format "
                             f"is read)")
    try:
        with safe_open(str(path), "np") as file:
            return {name: file.get_tensor(name) for name in file.keys()
                    if name.startswith("classifier.")}
    except (SafetensorError, OSError) as error:
        raise PowerBertError(f"{path}: cannot read safetensors file ({error})") from None


def _labels(config: dict, path: Path) -> tuple[str, ...]:
    id2label = config.get("id2label") or {}
    try:
        indexed = sorted((int(index), str(label)) for index, label in id2label.items())
    except ValueError:
        raise PowerBertError(f"{path}: id2label keys must be class indices, got "
                             f"{', '.join(map(str, id2label))}") from None
    if [index for index, _ in indexed] != list(range(len(indexed))):
        raise PowerBertError(f"{path}: id2label indices must be 0..{len(indexed) - 1}, got "
                             f"{', '.join(str(index) for index, _ in indexed)}")
    return tuple(label for _, label in indexed)


def read_classifier_head(folder: str | Path) -> ClassifierHead:
    """The head and labels of a fine-tuned `BertForSequenceClassification` or
    `AlbertForSequenceClassification` folder.

    Raises:
        PowerBertError: one line for another architecture, a folder without classifier
            weights (a plain `BertModel`), or a head of another shape.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PowerBertError(f"fine-tuned model folder {folder} does not exist")
    google = [name for name in GOOGLE_CONFIGS if (folder / name).is_file()]
    if google and not (folder / "config.json").is_file():
        return _read_google_head(folder, google[0])
    config = _read_config(folder)
    path = folder / "config.json"
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    found = ", ".join(architectures) or f"model_type {model_type!r}"
    supported = " or ".join(ARCHITECTURES.values())
    if model_type not in ARCHITECTURES:
        raise PowerBertError(f"{folder} holds a {found} model (model_type {model_type!r}); "
                             f"only {supported} can be imported")
    architecture = ARCHITECTURES[model_type]
    tensors = _classifier_tensors(folder)
    if not tensors:
        raise PowerBertError(f"{folder} has no classifier weights (classifier.weight): it is "
                             f"a plain {found} without a fine-tuned head; fine-tune it with "
                             f"--phase=finetune --model={folder}")
    if architectures and architectures != [architecture]:
        raise PowerBertError(f"{folder} holds a {found} model; only {supported} can be "
                             "imported")
    labels = _labels(config, path)
    problem = config.get("problem_type")
    if problem == "multi_label_classification":
        raise PowerBertError(f"{path}: problem_type multi_label_classification (one sigmoid "
                             "per label) is not supported; only single-label classification "
                             "and regression are")
    num_labels = len(labels) or config.get("num_labels", 2)
    labels = labels or tuple(f"LABEL_{index}" for index in range(num_labels))
    regression = num_labels == 1 or problem == "regression"
    hidden = config.get("hidden_size")
    expected = {"classifier.weight": (num_labels, hidden), "classifier.bias": (num_labels,)}
    shapes = {name: tuple(value.shape) for name, value in tensors.items()}
    if shapes != expected:
        found_shapes = ", ".join(f"{name} {shape}" for name, shape in sorted(shapes.items()))
        wanted = ", ".join(f"{name} {shape}" for name, shape in expected.items())
        raise PowerBertError(f"{folder}: the head has {found_shapes}; a {architecture} of "
                             f"{num_labels} label(s) on hidden size {hidden} has {wanted}")
    if regression and num_labels != 1:
        raise PowerBertError(f"{path}: problem_type regression with {num_labels} outputs; "
                             "only one regression output is supported")
    dropout = config.get("classifier_dropout")
    dropout = config.get("hidden_dropout_prob", 0.1) if dropout is None else dropout
    named = not regression and not all(_DEFAULT_LABEL.fullmatch(label) for label in labels)
    return ClassifierHead(
        np.asarray(tensors["classifier.weight"], np.float32).T,
        np.asarray(tensors["classifier.bias"], np.float32),
        None if regression else labels, named, architecture, float(dropout), str(folder),
        folder_sha256(folder))


def _read_google_head(folder: Path, config_file: str) -> ClassifierHead:
    """`output_weights` and `output_bias` of a Google BERT / ALBERT checkpoint fine-tuned
    by run_classifier.py (the names its `create_model` gives the head)."""
    reader = open_checkpoint(folder)
    shapes = reader.get_variable_to_shape_map()
    if not all(name in shapes for name in GOOGLE_HEAD):
        raise PowerBertError(f"{folder} has no classifier weights (output_weights, "
                             f"output_bias, as run_classifier.py names them): it is a "
                             f"pre-trained checkpoint; fine-tune it with --phase=finetune "
                             f"--model={folder}")
    config = json.loads((folder / config_file).read_text())
    hidden = config.get("hidden_size")
    num_labels = shapes["output_bias"][0] if shapes["output_bias"] else 0
    found = {name: tuple(shapes[name]) for name in GOOGLE_HEAD}
    expected = {"output_weights": (num_labels, hidden), "output_bias": (num_labels,)}
    if found != expected or num_labels < 1:
        raise PowerBertError(f"{folder}: the head has "
                             + ", ".join(f"{name} {shape}" for name, shape in found.items())
                             + f"; a run_classifier.py head on hidden size {hidden} has "
                             f"output_weights (labels, {hidden}), output_bias (labels,)")
    labels = None if num_labels == 1 else tuple(f"LABEL_{i}" for i in range(num_labels))
    return ClassifierHead(
        np.asarray(reader.get_tensor("output_weights"), np.float32).T,
        np.asarray(reader.get_tensor("output_bias"), np.float32), labels, False,
        f"{GOOGLE_CONFIGS[config_file].upper()} run_classifier.py checkpoint",
        float(config.get("hidden_dropout_prob", 0.1)), str(folder), folder_sha256(folder))
