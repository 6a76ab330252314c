"""Phase 2, the configuration search: Soft-Extract on the fine-tuned model, trained
with the mass loss (--lambda) or projected onto a speed-up budget (--target_speedup);
and reading its retention configuration back for retrain (docs/method.md)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.retention import RetentionConfig, flop_bound
from power_bert_tf.model.transfer import is_retention_variable, transfer_weights
from power_bert_tf.pipeline.config import RunConfig
from power_bert_tf.pipeline.context import Context
from power_bert_tf.pipeline.distill import distilled_training
from power_bert_tf.pipeline.fitting import build_classifier, fit_phase, read_history, total_steps
from power_bert_tf.training.checkpoints import write_json_atomic
from power_bert_tf.training.optimization import adam
from power_bert_tf.training.speedup_target import SpeedupController
from power_bert_tf.training.trainer import EpochLog, OptimizerGroup


def read_out(ctx: Context, masses: list[float]) -> dict:
    """The retention configuration read out of mass(j), with its N and bounds."""
    retention = RetentionConfig.from_masses(masses, ctx.config.max_seq_length)
    return {"masses": [round(m, 4) for m in masses], **retention.to_dict(),
            "total": retention.total, "word_vector_bound": round(retention.word_vector_bound, 3),
            "flop_bound": round(flop_bound(ctx.pretrained.config, retention), 3)}


def _controller(ctx: Context, model: BertClassifier, steps: int) -> SpeedupController | None:
    """The speed-up controller of a --target_speedup search (None with --lambda); on
    --resume it takes back the trajectory of the epochs already done."""
    config = ctx.config
    if config.target_speedup is None:
        return None
    controller = SpeedupController(
        ctx.pretrained.config,
        [layer.retention_parameters for layer in model.encoder.soft_extract_layers()],
        config.max_seq_length, config.target_speedup, steps, config.target_ramp)
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
                             include_padded_queries=config.include_padded_queries)
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
                                               if controller else ""))
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


def retention_for_retrain(ctx: Context) -> RetentionConfig:
    """--retention_config if given, else the search's read-out (whose N must be
    --max_seq_length)."""
    config = ctx.config
    if config.retention_config:
        retention = RetentionConfig.parse(config.retention_config, config.max_seq_length)
    else:
        path = ctx.reads("search").retention
        if not path.is_file():
            raise PowerBertError(f"no retention configuration at {path}: run --phase=search "
                                 f"first or pass --retention_config")
        saved = json.loads(path.read_text())
        if saved.get("origin", "lambda") == "lambda":
            check_not_collapsed(saved["masses"], config, path)
        retention = RetentionConfig.from_dict(saved, str(path))
        if retention.sequence_length != config.max_seq_length:
            raise PowerBertError(
                f"{path} is for --max_seq_length={retention.sequence_length} but this run has "
                f"--max_seq_length={config.max_seq_length}; pass the search's length")
    retention.check_layers(ctx.pretrained.config.num_layers)
    return retention
