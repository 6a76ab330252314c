"""Typed configuration shared by the library: the encoder's shape."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from power_bert_tf.data.tasks import CustomTaskSpec
from power_bert_tf.errors import PowerBertError

# Hugging Face `hidden_act` names -> our activation names (see model/encoder.py).
_HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_approximate",
                   "gelu_pytorch_tanh": "gelu_approximate", "relu": "relu"}
# Google's ALBERT code computes "gelu" with the tanh approximation.
_GOOGLE_ALBERT_ACTIVATIONS = {"gelu": "gelu_approximate", "relu": "relu"}
MODEL_TYPES = ("bert", "albert")
_ALBERT_FIELDS = ("embedding_size", "num_hidden_groups")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Shape of a BERT or ALBERT encoder.

    `model_type` picks the encoder class (`BertEncoder` or `AlbertEncoder`); every
    other field is an argument of it. `embedding_size` and `num_hidden_groups` are
    ALBERT's (None and 1 for BERT): the factorised embedding width E and the number
    of groups of layers that share weights.
    """

    vocabulary_size: int
    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    max_sequence_length: int = 512
    type_vocabulary_size: int = 2
    dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_epsilon: float = 1e-12
    activation: str = "gelu"
    model_type: str = "bert"
    embedding_size: int | None = None
    num_hidden_groups: int = 1

    def __post_init__(self) -> None:
        for name in ("vocabulary_size", "num_layers", "hidden_size", "num_heads",
                     "intermediate_size", "max_sequence_length", "type_vocabulary_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise PowerBertError(f"encoder config: {name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise PowerBertError(
                f"encoder config: hidden_size {self.hidden_size} is not divisible by "
                f"num_heads {self.num_heads}")
        if self.activation not in ("gelu", "gelu_approximate", "relu"):
            raise PowerBertError(f"encoder config: unsupported activation {self.activation!r}")
        if self.model_type not in MODEL_TYPES:
            raise PowerBertError(f"encoder config: model_type must be one of "
                                 f"{', '.join(MODEL_TYPES)}, got {self.model_type!r}")
        if self.model_type == "bert":
            if (self.embedding_size, self.num_hidden_groups) != (None, 1):
                raise PowerBertError("encoder config: embedding_size and num_hidden_groups "
                                     "are ALBERT's; set model_type='albert'")
            return
        if not isinstance(self.embedding_size, int) or self.embedding_size < 1:
            raise PowerBertError(f"encoder config: ALBERT needs a positive integer "
                                 f"embedding_size, got {self.embedding_size!r}")
        if not isinstance(self.num_hidden_groups, int) or not (
                1 <= self.num_hidden_groups <= self.num_layers):
            raise PowerBertError(f"encoder config: num_hidden_groups must be in [1, "
                                 f"{self.num_layers}], got {self.num_hidden_groups!r}")

    @classmethod
    def from_bert_json(cls, config: Mapping[str, Any], source: str = "config") -> "EncoderConfig":
        """Reads a Hugging Face `config.json` or a Google `bert_config.json`."""
        return cls._from_json(config, source, _HF_ACTIVATIONS)

    @classmethod
    def from_albert_json(cls, config: Mapping[str, Any], source: str = "config", *,
                         google: bool) -> "EncoderConfig":
        """Reads a Google `albert_config.json` (`google=True`, where "gelu" is the tanh
        approximation) or a Hugging Face ALBERT `config.json`."""
        inner_group_num = config.get("inner_group_num", 1)
        if inner_group_num != 1:
            raise PowerBertError(f"{source}: inner_group_num {inner_group_num!r} is not "
                                 f"supported (only 1, as in every released ALBERT)")
        try:
            extra = {"embedding_size": int(config["embedding_size"]),
                     "num_hidden_groups": int(config.get("num_hidden_groups", 1))}
        except KeyError as missing:
            raise PowerBertError(f"{source}: missing key {missing.args[0]!r}") from None
        activations = _GOOGLE_ALBERT_ACTIVATIONS if google else _HF_ACTIVATIONS
        return cls._from_json(config, source, activations, model_type="albert", **extra)

    @classmethod
    def _from_json(cls, config: Mapping[str, Any], source: str,
                   activations: Mapping[str, str], **extra) -> "EncoderConfig":
        activation = config.get("hidden_act", "gelu")
        if activation not in activations:
            raise PowerBertError(f"{source}: unsupported hidden_act {activation!r}")
        try:
            return cls(
                vocabulary_size=int(config["vocab_size"]),
                num_layers=int(config["num_hidden_layers"]),
                hidden_size=int(config["hidden_size"]),
                num_heads=int(config["num_attention_heads"]),
                intermediate_size=int(config["intermediate_size"]),
                max_sequence_length=int(config.get("max_position_embeddings", 512)),
                type_vocabulary_size=int(config.get("type_vocab_size", 2)),
                dropout=float(config.get("hidden_dropout_prob", 0.1)),
                attention_dropout=float(config.get("attention_probs_dropout_prob", 0.1)),
                layer_norm_epsilon=float(config.get("layer_norm_eps", 1e-12)),
                activation=activations[activation],
                **extra,
            )
        except KeyError as missing:
            raise PowerBertError(f"{source}: missing key {missing.args[0]!r}") from None
        except PowerBertError as error:
            raise PowerBertError(f"{source}: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        """The encoder class's constructor arguments: every field but `model_type`, and
        for BERT not ALBERT's `embedding_size` and `num_hidden_groups`."""
        fields = dataclasses.asdict(self)
        del fields["model_type"]
        if self.model_type == "bert":
            for name in _ALBERT_FIELDS:
                del fields[name]
        return fields


@dataclasses.dataclass(frozen=True)
class TaskDefaults:
    """The reference's per-task hyper-parameters (IBM README; SPEC table)."""

    max_seq_length: int
    learning_rate: float  # LR_BERT
    soft_extract_learning_rate: float  # LR_SOFT_EXTRACT
    mass_lambda: float  # LAMBDA
    batch_size: int


TASK_DEFAULTS: dict[str, TaskDefaults] = {
    "CoLA": TaskDefaults(64, 2e-5, 1.5e-3, 7e-3, 32),
    "RTE": TaskDefaults(256, 3e-5, 3e-3, 1e-3, 16),
    "QQP": TaskDefaults(128, 3e-5, 1e-4, 3e-4, 64),
    "MRPC": TaskDefaults(128, 6e-5, 3e-3, 3e-3, 64),
    "SST-2": TaskDefaults(64, 3e-5, 5e-4, 2e-4, 64),
    "MNLI-m": TaskDefaults(128, 3e-5, 2e-4, 1e-4, 64),
    "MNLI-mm": TaskDefaults(128, 3e-5, 1e-4, 1e-4, 64),
    "QNLI": TaskDefaults(128, 3e-5, 2e-4, 1.5e-4, 16),
    "STS-B": TaskDefaults(64, 3e-5, 3e-3, 1e-3, 64),
    # Not in the paper: WNLI reuses RTE's search settings at a shorter length; a custom
    # task starts from the middle of the table.
    "WNLI": TaskDefaults(128, 2e-5, 3e-3, 1e-3, 16),
    "custom": TaskDefaults(128, 3e-5, 1e-3, 1e-3, 32),
}

PHASES = ("finetune", "search", "retrain", "evaluate", "predict", "export", "all")
SELECTIONS = ("attention", "head", "random")
DISTRIBUTIONS = ("default", "mirrored", "multi_worker", "tpu")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything one `run_glue.py` invocation needs; the library never reads flags."""

    task: str
    phase: str
    output_dir: str
    model: str = "embedded"
    model_type: str | None = None  # None: the --model folder's
    data_dir: str | None = None
    data_source: str = "files"
    max_seq_length: int = 128
    batch_size: int = 32
    eval_batch_size: int = 64
    learning_rate: float = 3e-5
    soft_extract_learning_rate: float = 1e-3
    mass_lambda: float = 1e-3
    finetune_epochs: int = 3
    search_epochs: int = 3
    retrain_epochs: int = 3
    warmup_proportion: float = 0.1
    seed: int = 42
    retention_config: str | None = None
    selection: str = "attention"
    include_padded_queries: bool = False
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    predict_split: str = "dev"
    resume: bool = False
    overwrite: bool = False
    distribution: str = "default"
    tpu: str | None = None
    jit_compile: bool = False
    timing_repeats: int = 5
    dynamic_padding: bool = True
    export_dir: str | None = None  # None: <output_dir>/export
    export_version: int | None = None  # None: 1 + the largest existing version
    export_format: str = "saved_model"  # or "onnx"
    precision: str = "fp32"  # inference precision of evaluate / export: fp32 or bf16
    custom: CustomTaskSpec | None = None

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise PowerBertError(f"--phase={self.phase!r} is not one of {', '.join(PHASES)}")
        if self.model_type is not None and self.model_type not in MODEL_TYPES:
            raise PowerBertError(f"--model_type={self.model_type!r} is not one of "
                                 f"{', '.join(MODEL_TYPES)}")
        if self.selection not in SELECTIONS:
            raise PowerBertError(f"--selection={self.selection!r} is not one of "
                                 f"{', '.join(SELECTIONS)}")
        if self.distribution not in DISTRIBUTIONS:
            raise PowerBertError(f"--strategy={self.distribution!r} is not one of "
                                 f"{', '.join(DISTRIBUTIONS)}")
        for name in ("max_seq_length", "batch_size", "eval_batch_size", "timing_repeats"):
            if getattr(self, name) < 1:
                raise PowerBertError(f"--{name} must be >= 1, got {getattr(self, name)}")
        for name in ("finetune_epochs", "search_epochs", "retrain_epochs"):
            if getattr(self, name) < 1:
                raise PowerBertError(f"--{name} must be >= 1, got {getattr(self, name)}")
        for name in ("learning_rate", "soft_extract_learning_rate"):
            if getattr(self, name) <= 0:
                raise PowerBertError(f"--{name} must be > 0, got {getattr(self, name)}")
        if self.precision not in ("fp32", "bf16"):
            raise PowerBertError(f"--precision={self.precision!r} is not one of fp32, bf16")
        if self.export_format not in ("saved_model", "onnx"):
            raise PowerBertError(f"--format={self.export_format!r} is not one of "
                                 f"saved_model, onnx")
        if self.mass_lambda < 0:
            raise PowerBertError(f"--lambda must be >= 0, got {self.mass_lambda}")
        if not 0 <= self.warmup_proportion < 1:
            raise PowerBertError(f"--warmup_proportion must be in [0, 1), got "
                                 f"{self.warmup_proportion}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
