"""Phase 4: the retrained model's dev metric beside the fine-tuned baseline's, and its
measured inference speed-up over it (interleaved timing, serving/timing.py): with both
models padded to N, as the paper measures, and with both served in length buckets, as a
server runs plain BERT (docs/method.md, "Dynamic padding and length buckets")."""
from __future__ import annotations

import json
import time

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from power_bert_tf.data.buckets import served_batches
from power_bert_tf.model.retention import flop_bound, make_retention, served_flop_bound
from power_bert_tf.pipeline.context import Context
from power_bert_tf.serving.inference import BucketedPredictor
from power_bert_tf.serving.precision import (default_jit_compile, resolve_precision,
                                             with_precision)
from power_bert_tf.serving.timing import Timing, compiled_pass, paired_speedup, time_interleaved
from power_bert_tf.training.metrics import compute_metrics

# The served comparisons: both models through `BucketedPredictor`, the dev set batched in
# this order (data.buckets.served_batches).
SERVED_SETTINGS = {"bucketed": "file", "bucketed_sorted": "sorted"}


def time_models(models: dict[str, keras.Model], batches: list[dict],
                repeats: int, jit_compile: bool = True) -> dict[str, Timing]:
    """Compiled (XLA unless `jit_compile` is False) passes over `batches`, interleaved,
    `repeats` timed rounds after one warm-up round (compilation excluded)."""
    return time_interleaved({name: compiled_pass(model, batches, jit_compile)
                             for name, model in models.items()}, repeats=repeats)


def served_passes(models: dict[str, keras.Model], features: dict[str, np.ndarray],
                  batch_size: int, precision: str, jit_compile: bool
                  ) -> tuple[dict[str, Callable[[], None]], dict[str, dict]]:
    """Timed passes of each model served as a length-bucketing server serves it.

    Every model runs through its own `BucketedPredictor` (default buckets up to N) over
    the dev set batched in file order ("bucketed") and sorted by length
    ("bucketed_sorted"): each batch is padded only to the bucket of its longest row.

    Returns:
        ("<model>/<setting>" -> pass, setting -> {"order", "buckets", "batches"}).
    """
    predictors = {name: BucketedPredictor(model, precision=precision, jit_compile=jit_compile)
                  for name, model in models.items()}
    buckets = next(iter(predictors.values())).buckets
    lengths = features["input_mask"].sum(axis=1)
    passes, plans = {}, {}
    for setting, order in SERVED_SETTINGS.items():
        plan = served_batches(lengths, batch_size, buckets, order)
        batches = [{name: tf.constant(values[rows]) for name, values in features.items()}
                   for rows, _ in plan]
        plans[setting] = {"order": order, "buckets": list(buckets),
                          "batches": [(len(rows), bucket) for rows, bucket in plan]}
        for name, predictor in predictors.items():
            passes[f"{name}/{setting}"] = _predictor_pass(predictor, batches)
    return passes, plans


def _predictor_pass(predictor: BucketedPredictor, batches: list[dict]) -> Callable[[], None]:
    def run() -> None:
        for batch in batches:
            predictor.logits(batch).numpy()
    return run


def training_epochs(ctx: Context) -> dict:
    """The epochs each compared model trained, from the phases' history.json: the
    baseline its fine-tune's; PoWER-BERT the fine-tune's, the search's (where retrain
    started from it, as `retrain` does when a search model exists) and the retrain's."""
    def epochs(phase: str) -> int:
        path = ctx.reads(phase).history
        return len(json.loads(path.read_text())) if path.is_file() else 0

    searched = ctx.reads("search").model.is_file()
    power = {"finetune": epochs("finetune"), "search": epochs("search") if searched else 0,
             "retrain": epochs("retrain")}
    return {"baseline": power["finetune"], "power_bert": power}


def compare_with_baseline(ctx: Context, power: keras.Model) -> dict:
    """Dev metric of `power` beside the fine-tuned baseline's (the imported model's after
    --phase=import), and the measured inference speed-up over it (same dev data, batch
    size and process; passes interleaved, the median of the per-round ratios), three ways:
    both padded to N (the paper's comparison, "speedup"), and both served with the same
    length buckets, the dev set in file order and sorted by length ("served")."""
    config = ctx.config
    baseline = ctx.load_phase_model("finetune")
    record = ctx.reads("finetune").run_record
    imported = (json.loads(record.read_text()).get("imported") if record.is_file()
                else None)
    labels = np.array([example.label for example in ctx.examples("dev")])
    batches = [features for features, _ in ctx.dataset("dev", full_length=True)]
    features = {name: np.concatenate([batch[name].numpy() for batch in batches])
                for name in batches[0]}
    precision = resolve_precision(config.precision)
    jit_compile = default_jit_compile(precision)
    raw = {"baseline": baseline, "power_bert": power}
    models = {name: with_precision(model, precision) for name, model in raw.items()}
    passes = {f"{name}/padded": compiled_pass(model, batches, jit_compile)
              for name, model in models.items()}
    served, plans = served_passes(raw, features, config.eval_batch_size, precision, jit_compile)
    timings = time_interleaved({**passes, **served}, repeats=config.timing_repeats)
    results = {}
    for name, model in models.items():
        outputs = np.concatenate([model(batch, training=False).numpy() for batch in batches])
        seconds = timings[f"{name}/padded"].median
        results[name] = {"dev": compute_metrics(ctx.task, labels, outputs),
                         "seconds": round(seconds, 3),
                         "ms_per_batch": round(1000 * seconds / len(batches), 2),
                         "timing": timings[f"{name}/padded"].to_dict()}
    speedup = paired_speedup(timings["baseline/padded"], timings["power_bert/padded"])
    retention = make_retention(power.encoder.retention, config.max_seq_length,
                               power.encoder.retention_mode)
    encoder_config = ctx.pretrained.config
    metric = ctx.task.metric
    summary = {
        "metric": metric, "baseline": results["baseline"],
        "baseline_model": (f"imported from {imported['source']}" if imported
                           else "fine-tuned here"), "power_bert": results["power_bert"],
        "metric_change": round(results["power_bert"]["dev"][metric]
                               - results["baseline"]["dev"][metric], 4),
        "speedup": speedup["median"], "speedup_spread": speedup,
        "served": {setting: {
            **plan, "batches": len(plan["batches"]),
            "speedup": paired_speedup(timings[f"baseline/{setting}"],
                                      timings[f"power_bert/{setting}"]),
            "flop_bound": round(served_flop_bound(encoder_config, retention, plan["batches"]), 3),
            "baseline_timing": timings[f"baseline/{setting}"].to_dict(),
            "power_bert_timing": timings[f"power_bert/{setting}"].to_dict()}
            for setting, plan in plans.items()},
        "retention": retention.to_dict()["retention"], "retention_mode": retention.mode,
        "word_vector_bound": round(retention.word_vector_bound, 3),
        "flop_bound": round(flop_bound(encoder_config, retention), 3),
        "dev_examples": len(labels), "eval_batch_size": config.eval_batch_size,
        "sequence_length": config.max_seq_length,
        "model_type": power.encoder.model_type, "precision": precision,
        "requested_precision": config.precision,
        "jit_compile": jit_compile, "training_epochs": training_epochs(ctx),
    }
    print(format_summary(ctx.task.name, summary))
    return summary


def evaluate(ctx: Context) -> dict:
    """`compare_with_baseline` on `retrain/`'s model, written to `evaluate/`."""
    started = time.time()
    power = ctx.load_phase_model("retrain")
    folder = ctx.prepare_output("evaluate", resume=False)
    summary = compare_with_baseline(ctx, power)
    ctx.record_run(folder, "evaluate", started, **summary)
    return summary


def format_summary(task: str, s: dict) -> str:
    """The comparison as text: each model's dev metric, ms per batch and training
    epochs, then the speed-up and the metric change, with the epochs PoWER-BERT trained
    beyond the baseline (a gain may come from them, not from elimination)."""
    metric, model = s["metric"], s["model_type"].upper()
    imported = s.get("baseline_model", "").startswith("imported")
    epochs = s["training_epochs"]
    power_epochs = epochs["power_bert"]
    extra = power_epochs["search"] + power_epochs["retrain"]
    if imported:
        baseline_epochs = "imported"
        power_trained = (f"{extra} from it ({power_epochs['search']} search + "
                         f"{power_epochs['retrain']} retrain)")
    else:
        baseline_epochs = f"{epochs['baseline']} (fine-tune)"
        power_trained = (f"{sum(power_epochs.values())} ({power_epochs['finetune']} fine-tune"
                         f" + {power_epochs['search']} search + {power_epochs['retrain']} "
                         "retrain)")
    rows = [("", f"dev {metric}", "ms/batch", "epochs trained"),
            (f"{model} ({'imported' if imported else 'fine-tuned'})",
             f"{s['baseline']['dev'][metric]:.4f}",
             f"{s['baseline']['ms_per_batch']:.1f}", baseline_epochs),
            (f"PoWER-{model}", f"{s['power_bert']['dev'][metric]:.4f}",
             f"{s['power_bert']['ms_per_batch']:.1f}", power_trained)]
    lines = [f"{task}: {s['dev_examples']} dev examples, batch {s['eval_batch_size']} "
             f"(ms/batch with both padded to N={s['sequence_length']})"]
    lines += [f"  {a:<18} {b:>12} {c:>10}   {d}" for a, b, c, d in rows]
    if imported:
        lines.append(f"  baseline: the model {s['baseline_model']}")
    spread = s["speedup_spread"]
    lines.append(f"  retention {','.join(map(str, s['retention']))}: measured speed-up, "
                 f"median of {spread['rounds']} interleaved passes [min-max]:")
    lines.append(f"    {'both padded to N (the paper):':<40}{_ratio(s['speedup'], spread)}"
                 f"  FLOP bound {s['flop_bound']:.2f}x, word-vector bound "
                 f"{s['word_vector_bound']:.2f}x")
    for setting, label in (("bucketed", "both in length buckets, file order:"),
                           ("bucketed_sorted", "both in length buckets, sorted:")):
        served = s["served"][setting]
        lines.append(f"    {label:<40}{_ratio(served['speedup']['median'], served['speedup'])}"
                     f"  FLOP bound {served['flop_bound']:.2f}x")
    lines.append(f"  metric change {s['metric_change']:+.4f}, with {extra} more training "
                 f"epochs for PoWER-{model}: not a same-budget comparison, so a gain here "
                 "may come from training longer")
    return "\n".join(lines)


def _ratio(median: float, spread: dict) -> str:
    return f"{median:.2f}x [{spread['min']:.2f}-{spread['max']:.2f}]"
