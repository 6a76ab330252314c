"""Phase 3: Hard-Extract with the retention configuration, best dev epoch kept."""
from __future__ import annotations

import time

from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.retention import flop_bound
from power_bert_tf.model.transfer import transfer_weights
from power_bert_tf.pipeline.context import Context
from power_bert_tf.pipeline.distill import distilled_training
from power_bert_tf.pipeline.evaluation import compare_with_baseline
from power_bert_tf.pipeline.fitting import build_classifier, fit_phase, total_steps
from power_bert_tf.pipeline.search import retention_for_retrain
from power_bert_tf.training.checkpoints import load_model
from power_bert_tf.training.optimization import adam
from power_bert_tf.training.trainer import OptimizerGroup


def retrain(ctx: Context) -> dict:
    """Retrains from `search/` (or `finetune/` with --retention_config); writes `retrain/`.
    Run alone, it ends with the dev metric beside the baseline's and the speed-up
    (unless `compare_after_retrain` is off)."""
    config, started = ctx.config, time.time()
    retention = retention_for_retrain(ctx)
    source_phase = "search" if ctx.reads("search").model.is_file() else "finetune"
    if source_phase == "finetune" and not config.retention_config:
        raise PowerBertError(f"no search model in {ctx.reads('search').path}: run "
                             f"--phase=search first")
    source = ctx.load_phase_model(source_phase)
    folder = ctx.prepare_output("retrain")
    model = build_classifier(ctx, extract="hard", retention=retention.to_dict()["retention"],
                             selection=config.selection, seed=config.seed,
                             include_padded_queries=config.include_padded_queries,
                             retention_mode=retention.mode)
    transfer_weights(source, model, str(ctx.reads(source_phase).model))
    with ctx.strategy.scope():
        optimizer = adam(config.learning_rate, total_steps(ctx, config.retrain_epochs),
                         config.warmup_proportion, "adam")
    bound = flop_bound(ctx.pretrained.config, retention)
    print(f"retention configuration {retention} (from {source_phase}), word-vector bound "
          f"{retention.word_vector_bound:.2f}x, FLOP bound {bound:.2f}x")
    distilled = distilled_training(ctx, model, "retrain")
    history, best = fit_phase(ctx, "retrain", model, [OptimizerGroup(optimizer, lambda v: True)],
                              config.retrain_epochs, keep_best=True,
                              start=ctx.reads(source_phase).model, distilled=distilled)
    result = {"retention": retention.to_dict()["retention"], "retention_mode": retention.mode,
              "selection": config.selection,
              "word_vector_bound": round(retention.word_vector_bound, 3),
              "flop_bound": round(bound, 3), "distill": config.distill}
    if distilled:
        result["teacher"] = {"cache": str(distilled.teacher.path),
                             "pass_seconds": round(distilled.teacher.seconds, 1)}
    if config.phase == "retrain" and config.compare_after_retrain:  # else: evaluate next
        result["comparison"] = compare_with_baseline(ctx, load_model(folder.model, "retrain"))
    ctx.record_run(folder, "retrain", started, dev=best, history=history, **result)
    return {"dev": best, **result}
