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


def compare_with_baseline(ctx: Context, power: keras.Model) -> dict:
    """Dev metric of `power` beside the fine-tuned baseline's (the imported model's after
    --phase=import), and the measured inference speed-up over it (same dev data, batch
    size and process; passes interleaved, the median of the per-round ratios)."""
    config = ctx.config
    baseline = ctx.load_phase_model("finetune")
    record = ctx.reads("finetune").run_record
    imported = (json.loads(record.read_text()).get("imported") if record.is_file()
                else None)
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
        "metric": metric, "baseline": results["baseline"],
        "baseline_model": (f"imported from {imported['source']}" if imported
                           else "fine-tuned here"), "power_bert": results["power_bert"],
        "metric_change": round(results["power_bert"]["dev"][metric]
                               - results["baseline"]["dev"][metric], 4),
        "speedup": speedup["median"], "speedup_spread": speedup,
        "retention": list(retention.kept),
        "word_vector_bound": round(retention.word_vector_bound, 3),
        "flop_bound": round(flop_bound(ctx.pretrained.config, retention), 3),
        "dev_examples": len(labels), "eval_batch_size": config.eval_batch_size,
        "model_type": power.encoder.model_type, "precision": precision,
        "requested_precision": config.precision,
        "jit_compile": jit_compile,
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
    metric, model = s["metric"], s["model_type"].upper()
    imported = s.get("baseline_model", "").startswith("imported")
    rows = [("", f"dev {metric}", "ms/batch"),
            (f"{model} ({'imported' if imported else 'fine-tuned'})",
             f"{s['baseline']['dev'][metric]:.4f}",
             f"{s['baseline']['ms_per_batch']:.1f}"),
            (f"PoWER-{model}", f"{s['power_bert']['dev'][metric]:.4f}",
             f"{s['power_bert']['ms_per_batch']:.1f}")]
    lines = [f"{task}: {s['dev_examples']} dev examples, batch {s['eval_batch_size']}"]
    lines += [f"  {a:<18} {b:>12} {c:>10}" for a, b, c in rows]
    if imported:
        lines.append(f"  baseline: the model {s['baseline_model']}")
    lines.append(f"  retention {','.join(map(str, s['retention']))}: measured speed-up "
                 f"{s['speedup']:.2f}x [{s['speedup_spread']['min']:.2f}-"
                 f"{s['speedup_spread']['max']:.2f}] over {s['speedup_spread']['rounds']} "
                 f"interleaved passes (word-vector bound {s['word_vector_bound']:.2f}x, "
                 f"FLOP bound {s['flop_bound']:.2f}x), metric change {s['metric_change']:+.4f}")
    return "\n".join(lines)
