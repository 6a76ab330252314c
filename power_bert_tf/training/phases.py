"""The PoWER-BERT phases: fine-tune, search, retrain, then evaluate / predict.

Each phase writes `<output_dir>/<task>/<phase>/` (model.keras, history.json,
run.json, TensorBoard logs, resumable state) and reads the previous phase's
folder by default (SPEC "The three phases").
"""
from __future__ import annotations

import atexit
import csv
import dataclasses
import itertools
import json
import os
import platform
import random
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from power_bert_tf.config import RunConfig
from power_bert_tf.data.pipeline import PADDING_MULTIPLE, count_batches, make_dataset
from power_bert_tf.data.tasks import Example, Task, get_task
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.factory import build_encoder
from power_bert_tf.model.retention import RetentionConfig, flop_bound
from power_bert_tf.serving.phase import export
from power_bert_tf.serving.timing import Timing, compiled_pass, paired_speedup, time_interleaved
from power_bert_tf.training.checkpoints import (MODEL_FILE, RUN_FILE, load_model,
                                                prepare_phase_dir, save_model_atomic,
                                                write_json_atomic)
from power_bert_tf.training.distribution import is_chief, make_strategy, sync_workers
from power_bert_tf.training.metrics import compute_metrics
from power_bert_tf.model.transfer import is_retention_variable, transfer_weights
from power_bert_tf.training.optimization import adam
from power_bert_tf.training.trainer import EpochLog, OptimizerGroup, Trainer
from power_bert_tf.weights import PretrainedBert, load_pretrained

SHAPE_FIELDS = ("vocabulary_size", "num_layers", "hidden_size", "num_heads", "intermediate_size",
                "embedding_size", "num_hidden_groups")
RETENTION_FILE = "retention.json"
HISTORY_FILE = "history.json"


@dataclasses.dataclass
class Context:
    """What every phase shares: the run's config, task, weights, tokenizer, data."""

    config: RunConfig
    task: Task
    pretrained: PretrainedBert
    strategy: tf.distribute.Strategy
    task_dir: Path
    shadow_root: Path | None = None  # a non-chief worker's temporary output folder
    _examples: dict[str, list[Example]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.tokenizer = self.pretrained.tokenizer(self.config.max_seq_length)

    def output_dir(self, phase: str) -> Path:
        """Where this process writes `phase`: `<task_dir>/<phase>`, or on a non-chief
        worker of a multi-worker run its temporary shadow (the chief's folder is read)."""
        return (self.shadow_root or self.task_dir) / phase

    def prepare_output(self, phase: str, resume: bool | None = None) -> Path:
        """`prepare_phase_dir` for `phase`'s output folder (resuming per --resume unless
        `resume` says); returns it."""
        path = self.output_dir(phase)
        resume = self.config.resume if resume is None else resume
        prepare_phase_dir(path, resume=resume, overwrite=self.config.overwrite,
                          chief_dir=self.task_dir / phase if self.shadow_root else None)
        return path

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
                full_length: bool = False) -> tf.data.Dataset:
        """Batches of `split`; padded to --max_seq_length when `full_length` or without
        --dynamic_padding, else to each batch's longest sequence."""
        config = self.config
        trim = None if full_length or not config.dynamic_padding else PADDING_MULTIPLE
        return make_dataset(
            self.examples(split), self.tokenizer,
            batch_size=config.batch_size if training else config.eval_batch_size,
            is_pair=self.task.is_pair, regression=self.task.labels is None,
            shuffle=training, seed=config.seed + epoch, trim_to_multiple=trim)


def make_context(config: RunConfig) -> Context:
    strategy = make_strategy(config.distribution, config.tpu)  # multi-worker: before any op
    task = get_task(config.task, config.data_dir, source=config.data_source, custom=config.custom)
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
                   shadow_root)


# -- helpers -------------------------------------------------------------------------

def _versions() -> dict[str, str]:
    import tensorflow_text

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "tensorflow_text": tensorflow_text.__version__,
            "numpy": np.__version__}


def _write_run(phase_dir: Path, ctx: Context, phase: str, started: float, **results) -> None:
    write_json_atomic(phase_dir / RUN_FILE, {
        "phase": phase, "task": ctx.task.name, "command": shlex.join(["python", *sys.argv]),
        "config": ctx.config.to_dict(),
        "model_source": ctx.pretrained.source, "versions": _versions(),
        "seed": ctx.config.seed, "wall_seconds": round(time.time() - started, 1), **results})


def _check_same_shape(model: keras.Model, ctx: Context, path: Path) -> None:
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
    if model.num_classes != ctx.task.num_classes:
        raise PowerBertError(f"checkpoint {path} has {model.num_classes} outputs but task "
                             f"{ctx.task.name} needs {ctx.task.num_classes}")


def _load_phase_model(ctx: Context, phase: str) -> keras.Model:
    path = ctx.task_dir / phase / MODEL_FILE
    model = load_model(path, phase)
    _check_same_shape(model, ctx, path)
    return model


def _build(ctx: Context, **extract) -> BertClassifier:
    with ctx.strategy.scope():
        encoder = build_encoder(ctx.pretrained.config,
                                sequence_length=ctx.config.max_seq_length, **extract)
        return BertClassifier(encoder, ctx.task.num_classes,
                              dropout=ctx.pretrained.config.dropout)


def _dev_evaluator(ctx: Context, trainer: Trainer) -> Callable[[], dict[str, float]]:
    dataset = ctx.dataset("dev").cache()
    labels = np.array([example.label for example in ctx.examples("dev")])
    return lambda: compute_metrics(ctx.task, labels, trainer.predict(dataset))


def _train(ctx: Context, phase: str, model: BertClassifier, groups: list[OptimizerGroup],
           epochs: int, keep_best: bool, on_epoch: Callable[[EpochLog], dict] | None = None):
    """Trains and records one phase; returns (history, best dev metrics)."""
    config, phase_dir = ctx.config, ctx.output_dir(phase)
    metric = ctx.task.metric
    trainer = Trainer(model, ctx.strategy, groups, regression=ctx.task.labels is None,
                      jit_compile=config.jit_compile)
    history_path = phase_dir / HISTORY_FILE
    history = _read_history(history_path) if config.resume else []

    def on_epoch_end(log: EpochLog, improved: bool) -> None:
        entry = {"epoch": log.epoch, "train_loss": round(log.train_loss, 6),
                 "seconds": round(log.seconds, 1), "dev": log.dev}
        if on_epoch:
            entry.update(on_epoch(log))
        shown = ", ".join(f"{name} {value:.4f}" for name, value in log.dev.items())
        print(f"epoch {log.epoch}: train loss {log.train_loss:.4f}, dev {shown}"
              + (" (best so far)" if improved and keep_best else ""))
        history[:] = [h for h in history if h["epoch"] < log.epoch] + [entry]
        if (improved and keep_best) or not keep_best:
            save_model_atomic(model, phase_dir / MODEL_FILE)
        write_json_atomic(history_path, history)

    masses = model.encoder.masses if model.encoder.extract == "soft" else None
    trainer.fit(lambda epoch: ctx.dataset("train", training=True, epoch=epoch),
                count_batches(len(ctx.examples("train")), config.batch_size, False), epochs,
                _dev_evaluator(ctx, trainer), metric, phase_dir / "state", on_epoch_end,
                config.resume, masses=masses, log_dir=phase_dir / "logs", seed=config.seed)
    best = (max(history, key=lambda h: h["dev"][metric]) if keep_best else history[-1])["dev"]
    return history, best


def _read_history(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def _total_steps(ctx: Context, epochs: int) -> int:
    return epochs * count_batches(len(ctx.examples("train")), ctx.config.batch_size, False)


# -- phases --------------------------------------------------------------------------

def finetune(ctx: Context) -> dict:
    """Phase 1: the pre-trained encoder + pooler + classifier, best dev epoch kept."""
    config, started, phase_dir = ctx.config, time.time(), ctx.output_dir("finetune")
    ctx.prepare_output("finetune")
    with ctx.strategy.scope():
        encoder = ctx.pretrained.build_encoder(sequence_length=config.max_seq_length)
        model = BertClassifier(encoder, ctx.task.num_classes,
                               dropout=ctx.pretrained.config.dropout)  # as Hugging Face's
        optimizer = adam(config.learning_rate, _total_steps(ctx, config.finetune_epochs),
                         config.warmup_proportion, "adam")
    history, best = _train(ctx, "finetune", model, [OptimizerGroup(optimizer, lambda v: True)],
                           config.finetune_epochs, keep_best=True)
    _write_run(phase_dir, ctx, "finetune", started, dev=best, history=history)
    return {"dev": best}


def _read_out(ctx: Context, masses: list[float]) -> dict:
    retention = RetentionConfig.from_masses(masses, ctx.config.max_seq_length)
    return {"masses": [round(m, 4) for m in masses], "retention": list(retention.kept),
            "total": retention.total, "word_vector_bound": round(retention.word_vector_bound, 3),
            "flop_bound": round(flop_bound(ctx.pretrained.config, retention), 3)}


def search(ctx: Context) -> dict:
    """Phase 2: Soft-Extract on the fine-tuned model, trained with the mass loss."""
    config, started, phase_dir = ctx.config, time.time(), ctx.output_dir("search")
    source = _load_phase_model(ctx, "finetune")
    ctx.prepare_output("search")
    model = _build(ctx, extract="soft", mass_lambda=config.mass_lambda,
                   include_padded_queries=config.include_padded_queries)
    transfer_weights(source, model, str(ctx.task_dir / "finetune" / MODEL_FILE))
    steps = _total_steps(ctx, config.search_epochs)
    with ctx.strategy.scope():
        groups = [
            OptimizerGroup(adam(config.learning_rate, steps, config.warmup_proportion, "adam"),
                           lambda v: not is_retention_variable(v)),
            OptimizerGroup(adam(config.soft_extract_learning_rate, steps,
                                config.warmup_proportion, "adam_retention"),
                           is_retention_variable),
        ]

    def read_out(log: EpochLog) -> dict:
        out = _read_out(ctx, log.masses)
        print("  mass(j): " + ", ".join(f"{m:.2f}" for m in out["masses"]))
        print(f"  retention configuration {','.join(map(str, out['retention']))} "
              f"(sum {out['total']} of {config.max_seq_length * len(out['retention'])}), "
              f"word-vector bound {out['word_vector_bound']:.2f}x")
        return out

    history, last = _train(ctx, "search", model, groups, config.search_epochs,
                           keep_best=False, on_epoch=read_out)
    result = {**_read_out(ctx, model.encoder.masses()), "sequence_length": config.max_seq_length,
              "lambda": config.mass_lambda}
    write_json_atomic(phase_dir / RETENTION_FILE, result)
    _write_run(phase_dir, ctx, "search", started, dev=last, history=history, **result)
    _check_not_collapsed(result["masses"], config, phase_dir / RETENTION_FILE)
    return {"dev": last, **result}


def search_collapsed(masses: list[float]) -> bool:
    """True when every mass(j) < 1, so every layer would keep only [CLS] (the trap of a
    too large lambda or r step)."""
    return all(mass < 1.0 for mass in masses)


def _check_not_collapsed(masses: list[float], config: RunConfig, path: Path) -> None:
    if search_collapsed(masses):
        raise PowerBertError(
            f"{path}: the search collapsed, every mass(j) < 1 ({max(masses):.3f} at most), so "
            f"every layer would keep only [CLS]; rerun --phase=search --overwrite with a "
            f"smaller --lambda (now {config.mass_lambda:g}) or --soft_extract_learning_rate "
            f"(now {config.soft_extract_learning_rate:g})")


def retention_for_retrain(ctx: Context) -> RetentionConfig:
    """--retention_config if given, else the search phase's read-out."""
    config = ctx.config
    if config.retention_config:
        retention = RetentionConfig.parse(config.retention_config, config.max_seq_length)
    else:
        path = ctx.task_dir / "search" / RETENTION_FILE
        if not path.is_file():
            raise PowerBertError(f"no retention configuration at {path}: run --phase=search "
                                 f"first or pass --retention_config")
        saved = json.loads(path.read_text())
        _check_not_collapsed(saved["masses"], config, path)
        retention = RetentionConfig(tuple(saved["retention"]), config.max_seq_length)
    retention.check_layers(ctx.pretrained.config.num_layers)
    return retention


def retrain(ctx: Context) -> dict:
    """Phase 3: Hard-Extract with the retention configuration, best dev epoch kept."""
    config, started, phase_dir = ctx.config, time.time(), ctx.output_dir("retrain")
    retention = retention_for_retrain(ctx)
    source_phase = "search" if (ctx.task_dir / "search" / MODEL_FILE).is_file() else "finetune"
    if source_phase == "finetune" and not config.retention_config:
        raise PowerBertError(f"no search model in {ctx.task_dir / 'search'}: run "
                             f"--phase=search first")
    source = _load_phase_model(ctx, source_phase)
    ctx.prepare_output("retrain")
    model = _build(ctx, extract="hard", retention=list(retention.kept),
                   strategy=config.selection, seed=config.seed,
                   include_padded_queries=config.include_padded_queries)
    transfer_weights(source, model, str(ctx.task_dir / source_phase / MODEL_FILE))
    with ctx.strategy.scope():
        optimizer = adam(config.learning_rate, _total_steps(ctx, config.retrain_epochs),
                         config.warmup_proportion, "adam")
    print(f"retention configuration {retention} (from {source_phase}), word-vector bound "
          f"{retention.word_vector_bound:.2f}x, FLOP bound "
          f"{flop_bound(ctx.pretrained.config, retention):.2f}x")
    history, best = _train(ctx, "retrain", model, [OptimizerGroup(optimizer, lambda v: True)],
                           config.retrain_epochs, keep_best=True)
    result = {"retention": list(retention.kept), "selection": config.selection,
              "word_vector_bound": round(retention.word_vector_bound, 3),
              "flop_bound": round(flop_bound(ctx.pretrained.config, retention), 3)}
    if config.phase == "retrain":  # with --phase=all, the evaluate phase reports this
        result["comparison"] = compare_with_baseline(ctx, load_model(phase_dir / MODEL_FILE,
                                                                     "retrain"))
    _write_run(phase_dir, ctx, "retrain", started, dev=best, history=history, **result)
    return {"dev": best, **result}


def time_models(models: dict[str, keras.Model], batches: list[dict],
                repeats: int) -> dict[str, Timing]:
    """XLA-compiled passes over `batches`, interleaved, `repeats` timed rounds after one
    warm-up round (compilation excluded)."""
    return time_interleaved({name: compiled_pass(model, batches)
                             for name, model in models.items()}, repeats=repeats)


def compare_with_baseline(ctx: Context, power: keras.Model) -> dict:
    """Dev metric of `power` beside the fine-tuned baseline's, and the measured
    inference speed-up over it (same dev data, batch size and process; passes
    interleaved, the median of the per-round ratios)."""
    config = ctx.config
    baseline = _load_phase_model(ctx, "finetune")
    labels = np.array([example.label for example in ctx.examples("dev")])
    batches = [features for features, _ in ctx.dataset("dev", full_length=True)]
    models = {"baseline": baseline, "power_bert": power}
    timings = time_models(models, batches, config.timing_repeats)
    results = {}
    for name, model in models.items():
        outputs = np.concatenate([model(batch, training=False).numpy() for batch in batches])
        seconds = timings[name].median
        results[name] = {"dev": compute_metrics(ctx.task, labels, outputs),
                         "seconds": round(seconds, 3),
                         "ms_per_batch": round(1000 * seconds / len(batches), 2),
                         "timing": timings[name].to_dict()}
    speedup = paired_speedup(timings["baseline"], timings["power_bert"])
    retention = RetentionConfig(tuple(power.encoder.retention), config.max_seq_length)
    metric = ctx.task.metric
    summary = {
        "metric": metric, "baseline": results["baseline"], "power_bert": results["power_bert"],
        "metric_change": round(results["power_bert"]["dev"][metric]
                               - results["baseline"]["dev"][metric], 4),
        "speedup": speedup["median"], "speedup_spread": speedup,
        "retention": list(retention.kept),
        "word_vector_bound": round(retention.word_vector_bound, 3),
        "flop_bound": round(flop_bound(ctx.pretrained.config, retention), 3),
        "dev_examples": len(labels), "eval_batch_size": config.eval_batch_size,
        "model_type": power.encoder.model_type,
    }
    print(format_summary(ctx.task.name, summary))
    return summary


def evaluate(ctx: Context) -> dict:
    """Phase 4: `compare_with_baseline` on the retrained model, written to evaluate/."""
    config, started, phase_dir = ctx.config, time.time(), ctx.output_dir("evaluate")
    power = _load_phase_model(ctx, "retrain")
    ctx.prepare_output("evaluate", resume=False)
    summary = compare_with_baseline(ctx, power)
    _write_run(phase_dir, ctx, "evaluate", started, **summary)
    return summary


def format_summary(task: str, s: dict) -> str:
    metric, model = s["metric"], s["model_type"].upper()
    rows = [("", f"dev {metric}", "ms/batch"),
            (f"{model} (fine-tuned)", f"{s['baseline']['dev'][metric]:.4f}",
             f"{s['baseline']['ms_per_batch']:.1f}"),
            (f"PoWER-{model}", f"{s['power_bert']['dev'][metric]:.4f}",
             f"{s['power_bert']['ms_per_batch']:.1f}")]
    lines = [f"{task}: {s['dev_examples']} dev examples, batch {s['eval_batch_size']}"]
    lines += [f"  {a:<18} {b:>12} {c:>10}" for a, b, c in rows]
    lines.append(f"  retention {','.join(map(str, s['retention']))}: measured speed-up "
                 f"{s['speedup']:.2f}x [{s['speedup_spread']['min']:.2f}-"
                 f"{s['speedup_spread']['max']:.2f}] over {s['speedup_spread']['rounds']} "
                 f"interleaved passes (word-vector bound {s['word_vector_bound']:.2f}x, "
                 f"FLOP bound {s['flop_bound']:.2f}x), metric change {s['metric_change']:+.4f}")
    return "\n".join(lines)


PROGRESS_ROWS = 50_000  # --phase=predict reports progress every this many rows


def predict(ctx: Context) -> dict:
    """Writes the retrained model's predictions for --predict_split as TSV.

    The split is streamed: rows are read, tokenized and predicted batch by batch (memory
    does not grow with the file), progress is printed every `PROGRESS_ROWS` rows, and the
    file appears only when complete (written as `.partial`, then renamed).
    """
    config, started, phase_dir = ctx.config, time.time(), ctx.output_dir("predict")
    model = _load_phase_model(ctx, "retrain")
    ctx.prepare_output("predict", resume=False)
    split = config.predict_split
    examples = (ctx.task.stream(split) if config.max_eval_examples is None
                else iter(ctx.examples(split)))
    path = phase_dir / f"{split}_predictions.tsv"
    count = write_predictions(model, ctx, examples, path)
    _write_run(phase_dir, ctx, "predict", started, predictions=str(path), count=count)
    print(f"wrote {count} predictions to {path}")
    return {"predictions": str(path), "count": count}


def write_predictions(model: keras.Model, ctx: Context, examples, path: Path) -> int:
    """Predicts `examples` (an iterator) in batches of --eval_batch_size padded to
    --max_seq_length and writes `index<TAB>prediction` rows to `path` atomically;
    returns the number of rows."""
    config, task = ctx.config, ctx.task
    texts = tf.TensorSpec([None], tf.string)
    failures: list[PowerBertError] = []  # a bad row, raised here rather than inside tf.data

    def batches():
        """(B,) text_a and text_b ("" for single texts) per batch, from the iterator."""
        try:
            while batch := list(itertools.islice(examples, config.eval_batch_size)):
                yield ([example.text_a for example in batch],
                       [example.text_b or "" for example in batch])
        except PowerBertError as error:
            failures.append(error)

    dataset = (tf.data.Dataset.from_generator(batches, output_signature=(texts, texts))
               .map(lambda a, b: ctx.tokenizer(a, b if task.is_pair else None),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
               .prefetch(2))
    outputs_of = tf.function(lambda features: model(features, training=False))
    partial = path.with_name(path.name + ".partial")
    count, started = 0, time.perf_counter()
    try:
        with partial.open("w", newline="") as file:
            writer = csv.writer(file, delimiter="\t", lineterminator="\n")
            writer.writerow(["index", "prediction"])
            for features in dataset:
                outputs = outputs_of(features).numpy()
                if task.labels is None:
                    values = [f"{output[0]:.4f}" for output in outputs]
                else:
                    values = [task.labels[index] for index in outputs.argmax(-1)]
                writer.writerows(enumerate(values, start=count))
                previous, count = count, count + len(values)
                if count // PROGRESS_ROWS > previous // PROGRESS_ROWS:
                    print(f"  predicted {count} rows ({time.perf_counter() - started:.0f} s)",
                          flush=True)
        if failures:
            raise failures[0]
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return count


PHASE_FUNCTIONS = {"finetune": finetune, "search": search, "retrain": retrain,
                   "evaluate": evaluate, "predict": predict, "export": export}


def run(config: RunConfig) -> dict:
    """Runs `config.phase`; "all" runs fine-tune, search, retrain and evaluate in turn,
    skipping finished phases when resuming."""
    ctx = make_context(config)
    if config.phase != "all":
        keras.utils.set_random_seed(config.seed)  # head initialisation, subsets, dropout
        result = PHASE_FUNCTIONS[config.phase](ctx)
        sync_workers(ctx.strategy, f"the end of {config.phase}")
        return result
    results = {}
    for phase in ("finetune", "search", "retrain", "evaluate"):
        if config.resume and (ctx.task_dir / phase / RUN_FILE).is_file():
            print(f"{phase}: finished earlier in {ctx.task_dir / phase}, skipped")
            continue
        print(f"== {ctx.task.name}: {phase}")
        keras.utils.set_random_seed(config.seed)
        results[phase] = PHASE_FUNCTIONS[phase](ctx)
        sync_workers(ctx.strategy, f"the end of {phase}")  # the chief's files are complete
    return results
