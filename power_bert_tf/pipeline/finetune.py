"""Phase 1: the pre-trained encoder + pooler + classifier, best dev epoch kept."""
from __future__ import annotations

import time

from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.policy import TRAINING_POLICIES, dtype_policy
from power_bert_tf.pipeline.context import Context
from power_bert_tf.pipeline.fitting import fit_phase, total_steps
from power_bert_tf.training.optimization import adam
from power_bert_tf.training.trainer import OptimizerGroup


def finetune(ctx: Context) -> dict:
    """Fine-tunes --model (or --init_checkpoint's encoder) on the task; writes `finetune/`."""
    config, started = ctx.config, time.time()
    folder = ctx.prepare_output("finetune")
    with ctx.strategy.scope():
        with dtype_policy(TRAINING_POLICIES[config.train_precision]):
            encoder = ctx.pretrained.build_encoder(sequence_length=config.max_seq_length)
        if config.init_checkpoint:  # intermediate-task transfer: another task's encoder
            encoder.set_weights(ctx.init_encoder_weights())
        model = BertClassifier(encoder, ctx.task.num_classes,
                               dropout=ctx.pretrained.config.dropout)  # as Hugging Face's
        optimizer = adam(config.learning_rate, total_steps(ctx, config.finetune_epochs),
                         config.warmup_proportion, "adam")
    history, best = fit_phase(ctx, "finetune", model, [OptimizerGroup(optimizer, lambda v: True)],
                              config.finetune_stop_epoch or config.finetune_epochs,
                              keep_best=True, start=ctx.init_checkpoint_model())
    ctx.record_run(folder, "finetune", started, dev=best, history=history)
    return {"dev": best}
