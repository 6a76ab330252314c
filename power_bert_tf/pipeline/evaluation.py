"""Phase 4: the retrained model's dev metric beside the fine-tuned baseline's, and its
measured inference speed-up over it (interleaved timing, serving/timing.py)."""
from __future__ import annotations

import json
import time

import keras
import numpy as np

from power_bert_tf.model.retention import RetentionConfig, flop_bound
from power_bert_tf.pipeline.context import Context
from power_bert_tf.serving.precision import (default_jit_compile, resolve_precision,
                                             with_precision)
from power_bert_tf.serving.timing import Timing, compiled_pass, paired_speedup, time_interleaved
from power_bert_tf.training.metrics import compute_metrics


def time_models(models: dict[str, keras.Model], batches: list[dict],
                repeats: int, jit_compile: bool = True) -> dict[str, Timing]:
    """Compiled (XLA unless `jit_compile` is False) passes over `batches`, interleaved,
    `repeats` timed rounds after one warm-up round (compilation excluded)."""
    return time_interleaved({name: compiled_pass(model, batches, jit_compile)
                             for name, model in models.items()}, repeats=repeats)


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
    """Dev metric of `power` beside the fine-tuned baseline's, and the measured
    inference speed-up over it (same dev data, batch size and process; passes
    interleaved, the median of the per-round ratios)."""
    config = ctx.config
    baseline = ctx.load_phase_model("finetune")
    labels = np.array([example.label for example in ctx.examples("dev")])
    batches = [features for features, _ in ctx.dataset("dev", full_length=True)]
    precision = resolve_precision(config.precision)
    models = {name: with_precision(model, precision)
              for name, model in (("baseline", baseline), ("power_bert", power))}
    jit_compile = default_jit_compile(precision)
    timings = time_models(models, batches, config.timing_repeats, jit_compile)
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
    epochs = s["training_epochs"]
    power_epochs = epochs["power_bert"]
    extra = power_epochs["search"] + power_epochs["retrain"]
    rows = [("", f"dev {metric}", "ms/batch", "epochs trained"),
            (f"{model} (fine-tuned)", f"{s['baseline']['dev'][metric]:.4f}",
             f"{s['baseline']['ms_per_batch']:.1f}", f"{epochs['baseline']} (fine-tune)"),
            (f"PoWER-{model}", f"{s['power_bert']['dev'][metric]:.4f}",
             f"{s['power_bert']['ms_per_batch']:.1f}",
             f"{sum(power_epochs.values())} ({power_epochs['finetune']} fine-tune + "
             f"{power_epochs['search']} search + {power_epochs['retrain']} retrain)")]
    lines = [f"{task}: {s['dev_examples']} dev examples, batch {s['eval_batch_size']}, "
             f"both padded to N={s['sequence_length']}"]
    lines += [f"  {a:<18} {b:>12} {c:>10}   {d}" for a, b, c, d in rows]
    lines.append(f"  retention {','.join(map(str, s['retention']))}: measured speed-up "
                 f"{s['speedup']:.2f}x [{s['speedup_spread']['min']:.2f}-"
                 f"{s['speedup_spread']['max']:.2f}] over {s['speedup_spread']['rounds']} "
                 f"interleaved passes (word-vector bound {s['word_vector_bound']:.2f}x, "
                 f"FLOP bound {s['flop_bound']:.2f}x)")
    lines.append(f"  metric change {s['metric_change']:+.4f}, with {extra} more training "
                 f"epochs for PoWER-{model}: not a same-budget comparison, so a gain here "
                 "may come from training longer")
    return "\n".join(lines)
