"""Phase 2, the configuration search: Soft-Extract on the fine-tuned model, trained
with the mass loss (--lambda) or projected onto a speed-up budget (--target_speedup);
and reading its retention configuration back for retrain (docs/method.md)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from power_bert_tf.data.buckets import BATCH_ORDERS, buckets_for, served_batches
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.retention import (Retention, flop_bound, parse_retention,
                                           retention_from_dict, served_flop_bound)
from power_bert_tf.model.retention import read_out as read_retention
from power_bert_tf.model.transfer import is_retention_variable, transfer_weights
from power_bert_tf.pipeline.config import RunConfig
from power_bert_tf.pipeline.context import Context
from power_bert_tf.pipeline.distill import distilled_training
from power_bert_tf.pipeline.fitting import build_classifier, fit_phase, read_history, total_steps
from power_bert_tf.training.checkpoints import write_json_atomic
from power_bert_tf.training.optimization import adam
from power_bert_tf.training.speedup_target import (RelativeSpeedupController,
                                                   SpeedupController, bucket_rows,
                                                   check_served_reachable)
from power_bert_tf.training.trainer import EpochLog, OptimizerGroup


def read_out(ctx: Context, masses: list[float]) -> dict:
    """The retention configuration read out of mass(j), with its N and bounds: padded to
    N (the paper's), and over plain BERT served in length buckets on the dev lengths
    (`served_flop_bound`, file order and sorted). In the relative mode `flop_bound` is the
    bound over length-bucketed plain BERT on the training lengths (what --target_speedup
    steers to) and `padded_flop_bound` the one at N."""
    retention = read_retention(masses, ctx.config.max_seq_length, ctx.config.retention_mode)
    out = {"masses": [round(m, 4) for m in masses], **retention.to_dict(),
           "total": retention.total, "word_vector_bound": round(retention.word_vector_bound, 3),
           "flop_bound": round(flop_bound(ctx.pretrained.config, retention), 3),
           "served_flop_bound": served_flop_bounds(ctx, retention)}
    if retention.mode == "relative":
        out["kept_at_max_seq_length"] = list(retention.kept)
        out["padded_flop_bound"] = out["flop_bound"]
        out["flop_bound"] = round(served_flop_bound(ctx.pretrained.config, retention,
                                                    training_buckets(ctx)), 3)
    return out


def served_flop_bounds(ctx: Context, retention: Retention) -> dict[str, float]:
    """The FLOP bound over plain BERT with the same length buckets (`buckets_for(N)`), the
    dev set batched in file order and sorted by length."""
    lengths = ctx.rows("dev")["input_mask"].sum(axis=1)
    buckets = buckets_for(ctx.config.max_seq_length)
    return {order: round(served_flop_bound(
        ctx.pretrained.config, retention,
        bucket_rows(served_batches(lengths, ctx.config.eval_batch_size, buckets, order))), 3)
        for order in BATCH_ORDERS}


def training_buckets(ctx: Context) -> list[tuple[int, int]]:
    """(rows, bucket) of the training set served in --eval_batch_size batches sorted by
    length, through the buckets of --max_seq_length (`data.buckets`)."""
    lengths = ctx.rows("train")["input_mask"].sum(axis=1)
    return bucket_rows(served_batches(lengths, ctx.config.eval_batch_size,
                                      buckets_for(ctx.config.max_seq_length), "sorted"))


def check_relative_target(ctx: Context) -> None:
    """A relative-mode --target_speedup above the served bound of keeping only [CLS] on
    the training lengths is a one-line error (before any training)."""
    config = ctx.config
    check_served_reachable(ctx.pretrained.config, config.max_seq_length,
                           config.target_speedup, training_buckets(ctx))


def _controller(ctx: Context, model: BertClassifier, steps: int) -> SpeedupController | None:
    """The speed-up controller of a --target_speedup search (None with --lambda); on
    --resume it takes back the trajectory of the epochs already done."""
    config = ctx.config
    if config.target_speedup is None:
        return None
    variables = [layer.retention_parameters for layer in model.encoder.soft_extract_layers()]
    if config.retention_mode == "relative":
        controller = RelativeSpeedupController(
            ctx.pretrained.config, variables, config.max_seq_length, config.target_speedup,
            steps, config.target_ramp, training_buckets(ctx))
    else:
        controller = SpeedupController(
            ctx.pretrained.config, variables, config.max_seq_length, config.target_speedup,
            steps, config.target_ramp)
    folder = ctx.writes("search")
    history = read_history(folder.history) if config.resume else []
    if history and folder.trajectory.is_file():
        controller.restore_trajectory(json.loads(folder.trajectory.read_text())["trajectory"],
                                      history[-1]["controller"]["step"])
    return controller


def search(ctx: Context) -> dict:
    """Trains Soft-Extract from `finetune/`; writes `search/` with retention.json."""
    config, started = ctx.config, time.time()
    source = ctx.load_phase_model("finetune")
    folder = ctx.prepare_output("search")
    model = build_classifier(ctx, extract="soft", mass_lambda=config.mass_lambda or 0.0,
                             include_padded_queries=config.include_padded_queries,
                             retention_mode=config.retention_mode)
    transfer_weights(source, model, str(ctx.reads("finetune").model))
    steps = total_steps(ctx, config.search_epochs)
    with ctx.strategy.scope():
        groups = [
            OptimizerGroup(adam(config.learning_rate, steps, config.warmup_proportion, "adam"),
                           lambda v: not is_retention_variable(v)),
            OptimizerGroup(adam(config.soft_extract_learning_rate, steps,
                                config.warmup_proportion, "adam_retention"),
                           is_retention_variable),
        ]
    controller = _controller(ctx, model, steps)

    def on_epoch(log: EpochLog) -> dict:
        out = read_out(ctx, log.masses)
        print("  mass(j): " + ", ".join(f"{m:.2f}" for m in out["masses"]))
        print(f"  retention configuration {','.join(map(str, out['retention']))} "
              f"(sum {out['total']} of {config.max_seq_length * len(out['retention'])}), "
              f"word-vector bound {out['word_vector_bound']:.2f}x, FLOP bound "
              f"{out['flop_bound']:.2f}x" + (f" (target {config.target_speedup:g}x)"
                                               if controller else "")
              + ", over length-bucketed BERT on the dev lengths {file:.2f}x (file order), "
              "{sorted:.2f}x (sorted)".format(**out["served_flop_bound"]))
        if controller:
            state = controller.trajectory[-1]
            print(f"  controller: step {state.step}, budget {state.budget:.2f}x, "
                  f"shrinkage tau {state.tau:.4g}")
            out["controller"] = state.to_dict()
            write_json_atomic(folder.trajectory, {
                "target_speedup": config.target_speedup, "ramp": config.target_ramp,
                "total_steps": steps,
                "trajectory": [s.to_dict() for s in controller.trajectory]})
        return out

    def after_step(step: int) -> dict[str, float]:
        state = controller.after_step(step)
        return {"budget": state.budget, "flop_bound": state.bound, "tau": state.tau}

    history, last = fit_phase(ctx, "search", model, groups, config.search_epochs,
                              keep_best=False, on_epoch=on_epoch,
                              after_step=after_step if controller else None,
                              start=ctx.reads("finetune").model,
                              distilled=distilled_training(ctx, model, "search"))
    result = {**read_out(ctx, model.encoder.masses()), "lambda": config.mass_lambda,
              "target_speedup": config.target_speedup,
              "origin": "target" if controller else "lambda"}
    write_json_atomic(folder.retention, result)
    ctx.record_run(folder, "search", started, dev=last, history=history, **result)
    if not controller:
        check_not_collapsed(result["masses"], config, folder.retention)
    return {"dev": last, **result}


def search_collapsed(masses: list[float]) -> bool:
    """True when every mass(j) < 1, so every layer would keep only [CLS] (the trap of a
    too large lambda or r step)."""
    return all(mass < 1.0 for mass in masses)


def check_not_collapsed(masses: list[float], config: RunConfig, path: Path) -> None:
    if search_collapsed(masses):
        raise PowerBertError(
            f"{path}: the search collapsed, every mass(j) < 1 ({max(masses):.3f} at most), so "
            f"every layer would keep only [CLS]; rerun --phase=search --overwrite with a "
            f"smaller --lambda (now {config.mass_lambda:g}) or --soft_extract_learning_rate "
            f"(now {config.soft_extract_learning_rate:g}), or ask for a speed-up with "
            f"--target_speedup")


def retention_for_retrain(ctx: Context) -> Retention:
    """--retention_config if given, else the search's read-out (whose N must be
    --max_seq_length)."""
    config = ctx.config
    if config.retention_config:
        retention = parse_retention(config.retention_config, config.max_seq_length,
                                    config.retention_mode)
    else:
        path = ctx.reads("search").retention
        if not path.is_file():
            raise PowerBertError(f"no retention configuration at {path}: run --phase=search "
                                 f"first or pass --retention_config")
        saved = json.loads(path.read_text())
        if saved.get("origin", "lambda") == "lambda":
            check_not_collapsed(saved["masses"], config, path)
        retention = retention_from_dict(saved, str(path), config.retention_mode)
        if retention.sequence_length != config.max_seq_length:
            raise PowerBertError(
                f"{path} is for --max_seq_length={retention.sequence_length} but this run has "
                f"--max_seq_length={config.max_seq_length}; pass the search's length")
    retention.check_layers(ctx.pretrained.config.num_layers)
    return retention
