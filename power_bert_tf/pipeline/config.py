"""RunConfig: everything one run of the phases needs, and the reference's per-task
defaults. `run_glue.py` maps its flags onto it in one place; the library never reads
flags."""
from __future__ import annotations

import dataclasses
from typing import Any

from power_bert_tf.data.tasks import CustomTaskSpec
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.config import (DISTILL_MODES, MODEL_TYPES, PRECISIONS, RANK_DEPTH,
                                        SELECTIONS)
from power_bert_tf.model.retention import RETENTION_MODES
from power_bert_tf.serving.precision import REQUESTS

# --dynamic_padding rounds each batch's length up to a multiple of this.
PADDING_MULTIPLE = 16


@dataclasses.dataclass(frozen=True)
class TaskDefaults:
    """The reference's per-task hyper-parameters (the IBM README's table)."""

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

PHASES = ("finetune", "import", "search", "retrain", "evaluate", "predict", "export", "all")
# What a training phase's result depends on besides its start model (whose digest
# fitting.keep_settings adds): a phase is resumed only with the settings it was begun with
# (paths, timing, export and --finetune_stop_epoch may change between the calls).
SHARED_SETTINGS = ("model_type", "data_source", "max_seq_length", "batch_size",
                   "learning_rate", "warmup_proportion", "seed", "max_train_examples",
                   "max_eval_examples", "dynamic_padding", "length_grouping", "train_precision")
DISTILL_SETTINGS = ("distill", "distill_temperature", "distill_alpha", "ranking_weight",
                    "ranking_top_k")
PHASE_SETTINGS = {
    "finetune": ("finetune_epochs",),
    "search": ("search_epochs", "soft_extract_learning_rate", "mass_lambda", "target_speedup",
               "target_ramp", "include_padded_queries", "retention_mode", "distill_search",
               *DISTILL_SETTINGS),
    "retrain": ("retrain_epochs", "retention_config", "selection", "include_padded_queries",
                "retention_mode", *DISTILL_SETTINGS),
}
DISTRIBUTIONS = ("default", "mirrored", "multi_worker", "tpu")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything one `run_glue.py` invocation needs; the library never reads flags."""

    task: str
    phase: str
    output_dir: str
    model: str = "embedded"
    model_type: str | None = None  # None: the --model folder's
    init_checkpoint: str | None = None  # fine-tune from another task's fine-tuned encoder
    finetuned_model: str | None = None  # import this fine-tuned classifier folder instead
    data_dir: str | None = None
    data_source: str = "files"
    max_seq_length: int = 128
    batch_size: int = 32
    eval_batch_size: int = 64
    learning_rate: float = 3e-5
    soft_extract_learning_rate: float = 1e-3
    mass_lambda: float | None = None  # None: the task's default, unless target_speedup
    target_speedup: float | None = None  # steer the search to this FLOP bound instead
    target_ramp: float = 0.5  # fraction of the search over which the budget tightens
    finetune_epochs: int = 3
    finetune_stop_epoch: int = 0  # stop the fine-tune's schedule after this epoch; 0: never
    search_epochs: int = 3
    retrain_epochs: int = 3
    compare_after_retrain: bool = True  # --phase=retrain ends with the timed comparison
    warmup_proportion: float = 0.1
    seed: int = 42
    retention_config: str | None = None
    retention_mode: str = "absolute"  # l_j counts at N, or "relative": fractions of T
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
    length_grouping: int = 0  # training batches grouped by length in windows of this many
    export_dir: str | None = None  # None: <output_dir>/export
    export_version: int | None = None  # None: 1 + the largest existing version
    export_format: str = "saved_model"  # or "onnx"
    onnx_batch_size: int = 0  # --export_format=onnx: a fixed batch size of the graph; 0: any
    precision: str = "fp32"  # inference precision of evaluate / export: fp32, bf16 or auto
    train_precision: str = "fp32"  # what the encoder computes in while training: fp32, bf16
    custom: CustomTaskSpec | None = None
    # Distillation from the fine-tuned model (training/distillation.py): none, logits or
    # logits+ranking; in the retrain, and in the search too with distill_search.
    distill: str = "none"
    distill_temperature: float = 2.0
    distill_alpha: float = 0.5  # weight of the task loss; 1 - alpha the teacher's
    ranking_weight: float = 0.1
    ranking_top_k: int = 20
    distill_search: bool = False

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise PowerBertError(f"--phase={self.phase!r} is not one of {', '.join(PHASES)}")
        if self.model_type is not None and self.model_type not in MODEL_TYPES:
            raise PowerBertError(f"--model_type={self.model_type!r} is not one of "
                                 f"{', '.join(MODEL_TYPES)}")
        if self.selection not in SELECTIONS:
            raise PowerBertError(f"--selection={self.selection!r} is not one of "
                                 f"{', '.join(SELECTIONS)}")
        if self.retention_mode not in RETENTION_MODES:
            raise PowerBertError(f"--retention_mode={self.retention_mode!r} is not one of "
                                 f"{', '.join(RETENTION_MODES)}")
        if self.length_grouping < 0:
            raise PowerBertError(f"--length_grouping={self.length_grouping} must be >= 0 "
                                 "(0: off)")
        if self.distribution not in DISTRIBUTIONS:
            raise PowerBertError(f"--distribution={self.distribution!r} is not one of "
                                 f"{', '.join(DISTRIBUTIONS)}")
        for name in ("max_seq_length", "batch_size", "eval_batch_size", "timing_repeats"):
            if getattr(self, name) < 1:
                raise PowerBertError(f"--{name} must be >= 1, got {getattr(self, name)}")
        for name in ("finetune_epochs", "search_epochs", "retrain_epochs"):
            if getattr(self, name) < 1:
                raise PowerBertError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.finetune_stop_epoch <= self.finetune_epochs:
            raise PowerBertError(f"--finetune_stop_epoch={self.finetune_stop_epoch} must be "
                                 f"between 0 (off) and --finetune_epochs={self.finetune_epochs}")
        for name in ("learning_rate", "soft_extract_learning_rate"):
            if getattr(self, name) <= 0:
                raise PowerBertError(f"--{name} must be > 0, got {getattr(self, name)}")
        if self.precision not in REQUESTS:
            raise PowerBertError(f"--precision={self.precision!r} is not one of "
                                 f"{', '.join(REQUESTS)}")
        if self.train_precision not in PRECISIONS:
            raise PowerBertError(f"--train_precision={self.train_precision!r} is not one of "
                                 f"{', '.join(PRECISIONS)}")
        if self.export_format not in ("saved_model", "onnx"):
            raise PowerBertError(f"--export_format={self.export_format!r} is not one of "
                                 f"saved_model, onnx")
        if self.onnx_batch_size < 0:
            raise PowerBertError(f"--onnx_batch_size={self.onnx_batch_size} must be >= 0 "
                                 "(0: any batch size)")
        if self.onnx_batch_size and self.export_format != "onnx":
            raise PowerBertError("--onnx_batch_size applies to --export_format=onnx only")
        if self.init_checkpoint and self.phase not in ("finetune", "all"):
            raise PowerBertError(f"--init_checkpoint starts the fine-tune phase; it does "
                                 f"nothing with --phase={self.phase}")
        if self.finetuned_model is not None:
            self._check_finetuned_model()
        elif self.phase == "import":
            raise PowerBertError("--phase=import needs --finetuned_model=<folder>, a fine-tuned "
                                 "Hugging Face BertForSequenceClassification folder")
        if self.target_speedup is not None:
            if self.mass_lambda is not None:
                raise PowerBertError("--target_speedup and --lambda are exclusive: the target "
                                     "sets how far the search prunes; drop one of them")
            if self.target_speedup <= 1:
                raise PowerBertError(f"--target_speedup must be > 1, got {self.target_speedup:g}")
        elif self.mass_lambda is None:
            defaults = TASK_DEFAULTS.get(self.task, TASK_DEFAULTS["custom"])
            object.__setattr__(self, "mass_lambda", defaults.mass_lambda)
        if self.mass_lambda is not None and self.mass_lambda < 0:
            raise PowerBertError(f"--lambda must be >= 0, got {self.mass_lambda}")
        if not 0 < self.target_ramp <= 1:
            raise PowerBertError(f"--target_ramp must be in (0, 1], got {self.target_ramp}")
        self._check_distillation()
        if not 0 <= self.warmup_proportion < 1:
            raise PowerBertError(f"--warmup_proportion must be in [0, 1), got "
                                 f"{self.warmup_proportion}")

    def _check_finetuned_model(self) -> None:
        """--finetuned_model is also --model (its tokenizer and shape), and replaces the
        fine-tune phase."""
        if self.model not in ("embedded", self.finetuned_model):
            raise PowerBertError(f"--finetuned_model={self.finetuned_model} is also the "
                                 f"model; drop --model={self.model}")
        if self.phase == "finetune":
            raise PowerBertError("--finetuned_model is imported by --phase=import (or all), "
                                 "not fine-tuned again; use --model to fine-tune a new head")
        if self.init_checkpoint:
            raise PowerBertError("--finetuned_model and --init_checkpoint are exclusive: the "
                                 "imported model is the fine-tuned one")
        object.__setattr__(self, "model", self.finetuned_model)

    def _check_distillation(self) -> None:
        if self.distill not in DISTILL_MODES:
            raise PowerBertError(f"--distill={self.distill!r} is not one of "
                                 f"{', '.join(DISTILL_MODES)}")
        if self.distill_temperature <= 0:
            raise PowerBertError(f"--distill_temperature must be > 0, got "
                                 f"{self.distill_temperature:g}")
        if not 0 <= self.distill_alpha <= 1:
            raise PowerBertError(f"--distill_alpha must be in [0, 1], got {self.distill_alpha:g}")
        if self.ranking_weight < 0:
            raise PowerBertError(f"--ranking_weight must be >= 0, got {self.ranking_weight:g}")
        if not 1 <= self.ranking_top_k <= RANK_DEPTH:
            raise PowerBertError(f"--ranking_top_k must be in [1, {RANK_DEPTH}], got "
                                 f"{self.ranking_top_k}")
        if self.distill == "logits+ranking" and self.selection != "attention":
            raise PowerBertError(f"--distill=logits+ranking ranks the significance scores "
                                 f"that --selection=attention keeps by; --selection="
                                 f"{self.selection} has none: use --distill=logits")
        if self.distill_search and self.distill == "none":
            raise PowerBertError("--distill_search distils the search too: it needs "
                                 "--distill=logits or logits+ranking")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def training_settings(self, phase: str) -> dict[str, Any]:
        """{field: value} of what training `phase` depends on (PHASE_SETTINGS)."""
        return {name: getattr(self, name) for name in (*SHARED_SETTINGS, *PHASE_SETTINGS[phase])}
