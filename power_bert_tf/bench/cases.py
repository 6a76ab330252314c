"""What the benchmark measures: encoder shapes, weights and retention configurations.

A *case* is an encoder shape (BERT or ALBERT), its weights and a retention configuration
(l_1, ..., l_L) for inputs of N tokens. The mode table builds each case twice with the
same weights, plain (`extract="none"`) and with Hard-Extract, both as a two-class
`BertClassifier` on random ids with a full-length mask. The runtime table adds a batch
size to a case (`RuntimeCase`).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.factory import build_encoder
from power_bert_tf.model.retention import RetentionConfig, encoder_flops, make_retention
from power_bert_tf.model.transfer import transfer_weights
from power_bert_tf.weights.pretrained import PretrainedBert

Inputs = dict[str, tf.Tensor]

BERT_BASE = EncoderConfig(vocabulary_size=30522, num_layers=12, hidden_size=768,
                          num_heads=12, intermediate_size=3072)
# ALBERT-base (albert-base-v2): BERT-base's layers, embeddings of width 128, one set of
# layer weights shared by all 12 layers.
ALBERT_BASE = EncoderConfig(vocabulary_size=30000, num_layers=12, hidden_size=768,
                            num_heads=12, intermediate_size=3072,
                            activation="gelu_approximate", model_type="albert",
                            embedding_size=128)
TINY = EncoderConfig(vocabulary_size=100, num_layers=2, hidden_size=32, num_heads=4,
                     intermediate_size=64, max_sequence_length=64)
TINY_ALBERT = EncoderConfig(vocabulary_size=100, num_layers=2, hidden_size=32, num_heads=4,
                            intermediate_size=64, max_sequence_length=64,
                            model_type="albert", embedding_size=16)
# The paper's quoted configurations (docs/method.md): RTE, 868 of 3072 vectors; the SST-2
# anecdote.
RTE_RETENTION = RetentionConfig((153, 125, 111, 105, 85, 80, 72, 48, 35, 27, 22, 5), 256)
SST2_RETENTION = RetentionConfig((7, 7, 7, 7, 4, 4, 4, 4, 2, 2, 2, 2), 64)
TINY_RETENTION = RetentionConfig((8, 4), 16)
# The MiniLM SST-2 retrain run of experiments/results/table2.md (N=64).
MINILM_SST2_RETENTION = RetentionConfig((49, 42, 31, 20, 12, 2), 64)


def model_name(pretrained: PretrainedBert) -> str:
    """The embedded model's name, else the name of the model's folder."""
    from power_bert_tf.weights.embedded import EMBEDDED_NAME, embedded_model_folder

    try:
        if Path(pretrained.source) == embedded_model_folder():
            return f"all-MiniLM-L6-v2 ({EMBEDDED_NAME})"
    except PowerBertError:  # the embedded model is not installed
        pass
    return Path(pretrained.source).name


def scale_retention(retention: RetentionConfig, sequence_length: int) -> RetentionConfig:
    """`retention` for inputs of another length: each l_j * N' / N, rounded half up (>= 1)."""
    ratio = sequence_length / retention.sequence_length
    return RetentionConfig(tuple(max(1, int(count * ratio + 0.5)) for count in retention.kept),
                           sequence_length)


@dataclasses.dataclass(frozen=True)
class Case:
    """An encoder shape, its weights and one retention configuration.

    Attributes:
        name: table label, e.g. "bert-base/RTE".
        shape: "minilm", "bert-base", "albert-base", "tiny" or "tiny-albert"; cases
            of one shape and N share the plain model.
        config: the encoder shape.
        retention: the configuration and its N.
        pretrained: the weights; None for random ones (speed does not depend on them).
    """

    name: str
    shape: str
    config: EncoderConfig
    retention: RetentionConfig
    pretrained: PretrainedBert | None = dataclasses.field(default=None, compare=False,
                                                           repr=False)

    @property
    def weights(self) -> str:
        """"random", or the pre-trained model's name (never a local path)."""
        return "random" if self.pretrained is None else model_name(self.pretrained)

    def full_gflops(self, batch_size: int) -> float:
        """GFLOP of the plain encoder on one batch."""
        return encoder_flops(self.config, self.retention.sequence_length) * batch_size / 1e9


# Every mode-table case but "minilm", whose cases come from retrained runs: random weights.
FIXED_CASES = {
    "bert-base-rte": Case("bert-base/RTE", "bert-base", BERT_BASE, RTE_RETENTION),
    "bert-base-sst2": Case("bert-base/SST-2", "bert-base", BERT_BASE, SST2_RETENTION),
    "albert-base-rte": Case("albert-base/RTE", "albert-base", ALBERT_BASE, RTE_RETENTION),
    "albert-base-sst2": Case("albert-base/SST-2", "albert-base", ALBERT_BASE, SST2_RETENTION),
    "tiny": Case("tiny", "tiny", TINY, TINY_RETENTION),
    "tiny-albert": Case("tiny-albert", "tiny-albert", TINY_ALBERT, TINY_RETENTION),
}
CASES = ("minilm", *FIXED_CASES)


@dataclasses.dataclass(frozen=True)
class RuntimeCase:
    """A case at one batch size, for the side-by-side runtime table."""

    name: str
    case: Case
    batch_size: int


def runtime_case(name: str, pretrained: PretrainedBert | None) -> RuntimeCase:
    """The runtime table's cases (`RUNTIME_CASES`); "minilm-*" needs the embedded model."""
    if name == "bert-base-b32-n256":
        return RuntimeCase(name, Case("bert-base/RTE", "bert-base", BERT_BASE, RTE_RETENTION), 32)
    if name == "bert-base-b1-n128":
        return RuntimeCase(name, Case("bert-base/RTE@128", "bert-base", BERT_BASE,
                                      scale_retention(RTE_RETENTION, 128)), 1)
    if name == "minilm-b32-n64":
        return RuntimeCase(name, Case("minilm/SST-2", "minilm", pretrained.config,
                                      MINILM_SST2_RETENTION, pretrained), 32)
    if name == "tiny-b2":
        return RuntimeCase(name, FIXED_CASES["tiny"], 2)
    raise ValueError(f"unknown runtime case {name!r}")


RUNTIME_CASES = ("bert-base-b32-n256", "bert-base-b1-n128", "minilm-b32-n64", "tiny-b2")


def retrained_configurations(checkpoints_dir: Path) -> tuple[dict[str, RetentionConfig],
                                                             list[str]]:
    """{task: retention} of every `<checkpoints_dir>/<task>/retrain/run.json` trained on
    the embedded model, and a note for each run.json left out."""
    found, notes = {}, []
    for path in sorted(Path(checkpoints_dir).glob("*/retrain/run.json")):
        try:
            run = json.loads(path.read_text())
            model = run["config"].get("model", "embedded")
            if model != "embedded":
                notes.append(f"{path}: trained on {model}, not the embedded MiniLM; skipped")
                continue
            retention = make_retention(run["retention"], int(run["config"]["max_seq_length"]),
                                       run.get("retention_mode", "absolute"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            notes.append(f"{path}: unreadable ({error}); skipped")
            continue
        found[run.get("task", path.parts[-3])] = retention
    return found, notes


def resolve_cases(names: Sequence[str], checkpoints_dir: Path,
                  pretrained: PretrainedBert | None) -> tuple[list[Case], list[str]]:
    """The cases `names` stand for, and notes on what "minilm" could not use."""
    cases, notes = [], []
    for name in names:
        if name in FIXED_CASES:
            cases.append(FIXED_CASES[name])
        elif name == "minilm":
            found, skipped = retrained_configurations(checkpoints_dir)
            notes += skipped
            if not found:
                notes.append(f"minilm: no retrained run in {checkpoints_dir}/*/retrain/run.json")
            for task, retention in found.items():
                if retention.num_layers != pretrained.config.num_layers:
                    notes.append(f"minilm/{task}: retention has {retention.num_layers} layers, "
                                 f"the model {pretrained.config.num_layers}; skipped")
                    continue
                cases.append(Case(f"minilm/{task}", "minilm", pretrained.config, retention,
                                  pretrained))
    return cases, notes


def build_classifier(case: Case, *, eliminate: bool, sequence_length: int | None) -> BertClassifier:
    """The case's two-class classifier, plain or with Hard-Extract (random head)."""
    options = {"sequence_length": sequence_length, "name": "encoder"}
    if eliminate:
        options.update(extract="hard", retention=case.retention.to_dict()["retention"],
                       retention_mode=case.retention.mode)
    if case.pretrained is not None and not eliminate:
        encoder = case.pretrained.build_encoder(**options)
    else:
        encoder = build_encoder(case.config, **options)
    return BertClassifier(encoder, 2, name="classifier")


def random_inputs(config: EncoderConfig, batch_size: int, sequence_length: int,
                  seed: int) -> Inputs:
    """Random word ids, a full-length mask and segment 0, int32 (batch, N)."""
    ids = np.random.default_rng(seed).integers(0, config.vocabulary_size,
                                               (batch_size, sequence_length), dtype=np.int32)
    shape = (batch_size, sequence_length)
    return {"input_word_ids": tf.constant(ids), "input_mask": tf.ones(shape, tf.int32),
            "input_type_ids": tf.zeros(shape, tf.int32)}


def build_pair(case: Case, *, sequence_length: int | None,
               seed: int) -> tuple[BertClassifier, BertClassifier]:
    """(plain, Hard-Extract) classifiers of `case` with the same weights, the same in
    every process for one seed."""
    keras.utils.set_random_seed(seed)
    full = build_classifier(case, eliminate=False, sequence_length=sequence_length)
    pruned = build_classifier(case, eliminate=True, sequence_length=sequence_length)
    transfer_weights(full, pruned, "the plain model")
    return full, pruned
