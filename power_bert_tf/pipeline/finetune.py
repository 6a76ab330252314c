"""Phase 1: the pre-trained encoder + pooler + classifier, best dev epoch kept; or the
user's own fine-tuned classifier imported (--finetuned_model)."""
from __future__ import annotations

import time

import numpy as np

from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.policy import TRAINING_POLICIES, dtype_policy
from power_bert_tf.pipeline.context import Context
from power_bert_tf.pipeline.fitting import fit_phase, total_steps
from power_bert_tf.training.checkpoints import save_model_atomic, write_json_atomic
from power_bert_tf.training.metrics import compute_metrics
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


def import_finetuned(ctx: Context) -> dict:
    """--finetuned_model's encoder, pooler and classifier as the fine-tuned model: writes
    `finetune/` as `finetune` does (model.keras, settings.json, run.json with the dev
    metric and the folder's SHA-256), so the later phases run on it unchanged."""
    config, started = ctx.config, time.time()
    head, order = ctx.imported.head, list(ctx.imported.order)
    folder = ctx.prepare_output("finetune")
    with ctx.strategy.scope():
        with dtype_policy(TRAINING_POLICIES[config.train_precision]):
            encoder = ctx.pretrained.build_encoder(sequence_length=config.max_seq_length)
        model = BertClassifier(encoder, ctx.task.num_classes, dropout=head.dropout)
        logits = model.get_layer("logits")
        logits.kernel.assign(head.kernel[:, order])
        logits.bias.assign(head.bias[order])
    outputs = np.concatenate([np.asarray(model(features, training=False), np.float32)
                              for features, _ in ctx.dataset("dev")])
    labels = np.array([example.label for example in ctx.examples("dev")])
    dev = compute_metrics(ctx.task, labels, outputs)
    print(f"imported {head.architecture} from {head.source}: dev "
          + ", ".join(f"{name} {value:.4f}" for name, value in dev.items()))
    save_model_atomic(model, folder.model)
    imported = {"source": head.source, "sha256": head.sha256,
                "architecture": head.architecture,
                "labels": list(ctx.task.labels) if ctx.task.labels else None,
                "source_labels": list(head.labels) if head.labels else None}
    write_json_atomic(folder.settings, {
        "finetuned_model": head.source, "imported_sha256": head.sha256,
        "max_seq_length": config.max_seq_length, "train_precision": config.train_precision})
    ctx.record_run(folder, "import", started, dev=dev, history=[], imported=imported)
    return {"dev": dev, "imported": imported}
