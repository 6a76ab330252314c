"""One layer-dropping point of experiments/tradeoff.py: a fine-tuned model cut to its
first --keep_layers layers, re-fine-tuned, then its dev metric and measured time
next to the uncut model's (same dev batches, one process).

    python experiments/drop_layers.py --task=SST-2 --keep_layers=3 \
        --finetune_dir=checkpoints/tradeoff/SST-2/base/SST-2/finetune --output=point.json
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from power_bert_tf.cli import quiet_native_logs  # light: TensorFlow is not loaded

if __name__ == "__main__":  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL or -v shows all
    quiet_native_logs()

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from power_bert_tf.cli import exit_on_user_error  # noqa: E402
from power_bert_tf.pipeline.config import TASK_DEFAULTS, RunConfig  # noqa: E402
from power_bert_tf.data.batching import count_batches  # noqa: E402
from power_bert_tf.data.tasks import canonical_task_name  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402
from power_bert_tf.model.classifier import BertClassifier  # noqa: E402
from power_bert_tf.training.checkpoints import MODEL_FILE, load_model  # noqa: E402
from power_bert_tf.training.metrics import compute_metrics  # noqa: E402
from power_bert_tf.training.optimization import adam  # noqa: E402
from power_bert_tf.serving.timing import paired_speedup  # noqa: E402
from power_bert_tf.pipeline.context import make_context  # noqa: E402
from power_bert_tf.pipeline.evaluation import time_models  # noqa: E402

flags.DEFINE_string("task", None, "GLUE task.")
flags.DEFINE_integer("keep_layers", None, "How many bottom encoder layers to keep.")
flags.DEFINE_string("finetune_dir", None, "The fine-tuned run's folder (holds model.keras).")
flags.DEFINE_string("output", None, "Where the point's JSON goes.")
flags.DEFINE_integer("epochs", 1, "Re-fine-tuning epochs.")
flags.DEFINE_integer("max_train_examples", None, "Seeded random training subset.")
flags.DEFINE_integer("max_eval_examples", None, "Seeded random dev subset.")
flags.DEFINE_integer("max_seq_length", None, "Padded input length N. Default: per task.")
flags.DEFINE_float("learning_rate", None, "Learning rate. Default: per task.")
flags.DEFINE_string("model", "embedded", "Pre-trained weights (vocabulary, shape check).")
flags.DEFINE_string("data_dir", None, "GLUE data root.")
flags.DEFINE_integer("seed", 42, "Seed of shuffling, dropout and the subsets.")
flags.mark_flags_as_required(["task", "keep_layers", "finetune_dir", "output"])
FLAGS = flags.FLAGS


def cut(model: BertClassifier, keep: int) -> BertClassifier:
    """A copy of `model` with only its first `keep` encoder layers."""
    encoder = model.encoder
    if not 1 <= keep < encoder.num_layers:
        raise PowerBertError(f"--keep_layers={keep} must be in [1, {encoder.num_layers - 1}]")
    config = {**encoder.get_config(), "num_layers": keep}
    if config.get("retention"):
        config["retention"] = config["retention"][:keep]
    short = BertClassifier(type(encoder).from_config(config), model.num_classes)
    values = {variable.path: variable for variable in model.weights}
    for variable in short.weights:
        variable.assign(values[variable.path])
    return short


@exit_on_user_error
def main(argv):
    del argv
    task = canonical_task_name(FLAGS.task)
    defaults = TASK_DEFAULTS[task]
    config = RunConfig(
        task=task, phase="finetune", output_dir=str(Path(FLAGS.output).parent),
        model=FLAGS.model,
        data_dir=FLAGS.data_dir, max_seq_length=FLAGS.max_seq_length or defaults.max_seq_length,
        batch_size=defaults.batch_size, learning_rate=FLAGS.learning_rate or defaults.learning_rate,
        max_train_examples=FLAGS.max_train_examples, max_eval_examples=FLAGS.max_eval_examples,
        seed=FLAGS.seed)
    keras.utils.set_random_seed(config.seed)
    ctx = make_context(config)
    baseline = load_model(Path(FLAGS.finetune_dir) / MODEL_FILE, "finetune")
    model = cut(baseline, FLAGS.keep_layers)
    regression = ctx.task.is_regression
    steps = FLAGS.epochs * count_batches(len(ctx.examples("train")), config.batch_size)
    model.compile(optimizer=adam(config.learning_rate, steps, config.warmup_proportion, "adam"),
                  loss=(keras.losses.MeanSquaredError() if regression else
                        keras.losses.SparseCategoricalCrossentropy(from_logits=True)))
    for epoch in range(FLAGS.epochs):
        model.fit(ctx.dataset("train", training=True, epoch=epoch), epochs=1, verbose=2)
    labels = np.array([example.label for example in ctx.examples("dev")])
    batches = [features for features, _ in ctx.dataset("dev", full_length=True)]
    metric = ctx.task.metric
    models = {"baseline": baseline, "cut": model}
    timings = time_models(models, batches, config.timing_repeats)
    measured = {}
    for name, candidate in models.items():
        outputs = np.concatenate([candidate(b, training=False).numpy() for b in batches])
        measured[name] = (compute_metrics(ctx.task, labels, outputs)[metric],
                          timings[name].median)
    spread = paired_speedup(timings["baseline"], timings["cut"])
    speedup = spread["median"]
    point = {"kind": "drop top layers", "label": f"{FLAGS.keep_layers} layers", "metric": metric,
             "dev": measured["cut"][0], "baseline_dev": measured["baseline"][0],
             "relative_time": round(1 / speedup, 4), "speedup": round(speedup, 3),
             "speedup_spread": spread, "retention": None,
             "ms_per_batch": round(1000 * measured["cut"][1] / len(batches), 2),
             "baseline_ms_per_batch": round(1000 * measured["baseline"][1] / len(batches), 2)}
    output = Path(FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial")
    partial.write_text(json.dumps(point, indent=2) + "\n")
    os.replace(partial, output)
    print(json.dumps(point))


if __name__ == "__main__":
    app.run(main)
