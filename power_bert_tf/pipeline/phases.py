"""The phase table and the run: `run(config)` runs `config.phase`, or with "all" the
four training and evaluation phases in turn (with --finetuned_model, the import in place
of the fine-tune). A new phase is one entry in `PHASES`."""
from __future__ import annotations

from typing import Callable

import keras

from power_bert_tf.pipeline.config import RunConfig
from power_bert_tf.pipeline.context import Context, make_context
from power_bert_tf.pipeline.evaluation import evaluate
from power_bert_tf.pipeline.export import export
from power_bert_tf.pipeline.finetune import finetune, import_finetuned
from power_bert_tf.pipeline.predict import predict
from power_bert_tf.pipeline.retrain import retrain
from power_bert_tf.pipeline.search import check_relative_target, search
from power_bert_tf.training.distribution import sync_workers
from power_bert_tf.training.speedup_target import check_reachable

PHASES: dict[str, Callable[[Context], dict]] = {
    "finetune": finetune, "import": import_finetuned, "search": search, "retrain": retrain,
    "evaluate": evaluate, "predict": predict, "export": export}
ALL = ("finetune", "search", "retrain", "evaluate")  # what --phase=all runs
FOLDERS = {"import": "finetune"}  # a phase writing another phase's folder


def run(config: RunConfig) -> dict:
    """Runs `config.phase`; "all" runs fine-tune (or import), search, retrain and
    evaluate in turn, skipping finished phases when resuming. An unreachable --target_speedup is an
    error before any training."""
    ctx = make_context(config)
    if config.target_speedup is not None and config.phase in ("search", "all"):
        check_reachable(ctx.pretrained.config, config.max_seq_length, config.target_speedup)
        if config.retention_mode == "relative":
            check_relative_target(ctx)
    if config.phase != "all":
        keras.utils.set_random_seed(config.seed)  # head initialisation, subsets, dropout
        result = PHASES[config.phase](ctx)
        sync_workers(ctx.strategy, f"the end of {config.phase}")
        return result
    results = {}
    for phase in ("import", *ALL[1:]) if config.finetuned_model else ALL:
        if config.resume and ctx.reads(FOLDERS.get(phase, phase)).finished():
            print(f"{phase}: finished earlier in "
                  f"{ctx.reads(FOLDERS.get(phase, phase)).path}, skipped")
            continue
        print(f"== {ctx.task.name}: {phase}")
        keras.utils.set_random_seed(config.seed)
        results[phase] = PHASES[phase](ctx)
        sync_workers(ctx.strategy, f"the end of {phase}")  # the chief's files are complete
    return results
