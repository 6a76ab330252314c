"""What every phase shares: the run's config, task, weights, tokenizer, data, the
distribution strategy and the phase folders; and the run record each phase writes."""
from __future__ import annotations

import atexit
import dataclasses
import platform
import random
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from power_bert_tf.data.batching import Rows, batch_rows, encode
from power_bert_tf.data.tasks import Example, Task, get_task
from power_bert_tf.errors import PowerBertError
from power_bert_tf.pipeline.config import PADDING_MULTIPLE, RunConfig
from power_bert_tf.pipeline.importing import ImportedModel, custom_spec_for, match_task
from power_bert_tf.pipeline.layout import PhaseFolder
from power_bert_tf.training.checkpoints import load_model, prepare_phase_dir, write_json_atomic
from power_bert_tf.training.distribution import is_chief, make_strategy
from power_bert_tf.weights import PretrainedBert, load_pretrained
from power_bert_tf.weights.finetuned import read_classifier_head

SHAPE_FIELDS = ("vocabulary_size", "num_layers", "hidden_size", "num_heads", "intermediate_size",
                "embedding_size", "num_hidden_groups")


@dataclasses.dataclass
class Context:
    """What every phase shares: the run's config, task, weights, tokenizer, data."""

    config: RunConfig
    task: Task
    pretrained: PretrainedBert
    strategy: tf.distribute.Strategy
    task_dir: Path
    shadow_root: Path | None = None  # a non-chief worker's temporary output folder
    imported: ImportedModel | None = None  # --finetuned_model's head, matched to the task
    _examples: dict[str, list[Example]] = dataclasses.field(default_factory=dict)
    _rows: dict[str, Rows] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.tokenizer = self.pretrained.tokenizer(self.config.max_seq_length)

    def reads(self, phase: str) -> PhaseFolder:
        """The folder `phase` is read from: `<task_dir>/<phase>` (the chief's)."""
        return PhaseFolder(self.task_dir / phase)

    def writes(self, phase: str) -> PhaseFolder:
        """The folder this process writes `phase` to: `<task_dir>/<phase>`, or on a
        non-chief worker of a multi-worker run its temporary shadow."""
        return PhaseFolder((self.shadow_root or self.task_dir) / phase)

    def prepare_output(self, phase: str, resume: bool | None = None) -> PhaseFolder:
        """`prepare_phase_dir` for `phase`'s output folder (resuming per --resume unless
        `resume` says); returns it."""
        folder = self.writes(phase)
        resume = self.config.resume if resume is None else resume
        prepare_phase_dir(folder.path, resume=resume, overwrite=self.config.overwrite,
                          chief_dir=self.reads(phase).path if self.shadow_root else None)
        return folder

    def examples(self, split: str) -> list[Example]:
        if split not in self._examples:
            examples = self.task.read(split)
            limit = (self.config.max_train_examples if split == "train"
                     else self.config.max_eval_examples)
            if limit is not None and limit < len(examples):
                examples = random.Random(self.config.seed).sample(examples, limit)
            self._examples[split] = examples
        return self._examples[split]

    def dataset(self, split: str, *, training: bool = False, epoch: int = 0,
                full_length: bool = False, rows: Rows | None = None) -> tf.data.Dataset:
        """Batches of `split`; padded to --max_seq_length when `full_length`, without
        --dynamic_padding, or with --include_padded_queries (whose scores count the
        attention padded rows pay, so padding to N is part of the reference's method),
        else to each batch's longest sequence; training batches grouped by length with
        --length_grouping; `rows` stand in for the split's (same count and order)."""
        config = self.config
        trim = (None if full_length or not config.dynamic_padding
                or config.include_padded_queries else PADDING_MULTIPLE)
        return batch_rows(
            self.rows(split) if rows is None else rows,
            batch_size=config.batch_size if training else config.eval_batch_size,
            shuffle=training, seed=config.seed + epoch, trim_to_multiple=trim,
            length_window=config.length_grouping if training and trim else 0)

    def rows(self, split: str) -> Rows:
        """`split` tokenized (`data.batching.encode`), once per run and held for it: 12
        bytes a position (SST-2's training set at N = 64: 49 MiB)."""
        if split not in self._rows:
            self._rows[split] = encode(self.examples(split), self.tokenizer,
                                       is_pair=self.task.is_pair,
                                       regression=self.task.labels is None,
                                       progress=f"{self.task.name} {split}")
        return self._rows[split]

    def load_phase_model(self, phase: str) -> keras.Model:
        """`phase`'s model, checked to be of --model's shape and the task's outputs."""
        path = self.reads(phase).model
        model = load_model(path, phase)
        _check_same_shape(model, self, path)
        return model

    def init_checkpoint_model(self) -> Path | None:
        """--init_checkpoint's model.keras (the flag names it or the folder holding it)."""
        if not self.config.init_checkpoint:
            return None
        path = Path(self.config.init_checkpoint)
        return path / "model.keras" if path.is_dir() else path

    def init_encoder_weights(self) -> list:
        """The encoder weights of --init_checkpoint (another task's fine-tuned model.keras,
        or the folder holding it), checked to be of --model's shape; its classifier is
        left out, so the number of classes may differ."""
        path = self.init_checkpoint_model()
        if not path.is_file():
            raise PowerBertError(f"--init_checkpoint: no model.keras at {path}")
        model = load_model(path, "finetune")
        _check_same_shape(model, self, path, outputs=False)
        if model.encoder.extract == "soft":
            raise PowerBertError(f"--init_checkpoint {path} is a search-phase (Soft-Extract) "
                                 "model; use a fine-tuned or retrained model.keras")
        return model.encoder.get_weights()

    def record_run(self, folder: PhaseFolder, phase: str, started: float, **results) -> None:
        """Writes the phase's run.json: command, config, versions, seed, wall time and
        `results`."""
        write_json_atomic(folder.run_record, {
            "phase": phase, "task": self.task.name,
            "command": shlex.join(["python", *sys.argv]), "config": self.config.to_dict(),
            "model_source": self.pretrained.source, "versions": _versions(),
            "seed": self.config.seed, "wall_seconds": round(time.time() - started, 1),
            **results})


def make_context(config: RunConfig) -> Context:
    strategy = make_strategy(config.distribution, config.tpu)  # multi-worker: before any op
    head = read_classifier_head(config.finetuned_model) if config.finetuned_model else None
    custom = custom_spec_for(config.custom, head) if head else config.custom
    task = get_task(config.task, config.data_dir, source=config.data_source, custom=custom)
    imported = None
    if head:
        task, imported = match_task(task, head)
    pretrained = load_pretrained(config.model, model_type=config.model_type)
    if config.max_seq_length > pretrained.config.max_sequence_length:
        raise PowerBertError(f"--max_seq_length={config.max_seq_length} exceeds the model's "
                             f"{pretrained.config.max_sequence_length} positions")
    if strategy.num_replicas_in_sync > 1:
        print(f"training on {strategy.num_replicas_in_sync} replicas ({config.distribution})")
    shadow_root = None
    if not is_chief(strategy):
        shadow_root = Path(tempfile.mkdtemp(prefix="power_bert_worker-"))
        atexit.register(shutil.rmtree, shadow_root, ignore_errors=True)
    return Context(config, task, pretrained, strategy, Path(config.output_dir) / task.name,
                   shadow_root, imported=imported)


def _versions() -> dict[str, str]:
    import tensorflow_text

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "tensorflow_text": tensorflow_text.__version__,
            "numpy": np.__version__}


def _check_same_shape(model: keras.Model, ctx: Context, path: Path,
                      outputs: bool = True) -> None:
    saved = model.encoder.get_config()
    expected = ctx.pretrained.config.to_dict()
    if model.encoder.model_type != ctx.pretrained.config.model_type:
        raise PowerBertError(f"checkpoint {path} is a {model.encoder.model_type.upper()} model "
                             f"but --model {ctx.config.model} is "
                             f"{ctx.pretrained.config.model_type.upper()}")
    for field in SHAPE_FIELDS:
        if saved.get(field) != expected.get(field):
            raise PowerBertError(f"checkpoint {path} has {field}={saved[field]} but --model "
                                 f"{ctx.config.model} has {field}={expected[field]}")
    if outputs and model.num_classes != ctx.task.num_classes:
        raise PowerBertError(f"checkpoint {path} has {model.num_classes} outputs but task "
                             f"{ctx.task.name} needs {ctx.task.num_classes}")
