"""--phase=predict: the retrained model's predictions for --predict_split, as TSV,
streamed: rows are read, tokenized and predicted batch by batch (memory does not grow
with the file), progress is printed every `PROGRESS_ROWS` rows, and the file appears
only when complete (written as `.partial`, then renamed)."""
from __future__ import annotations

import csv
import itertools
import os
import time
from pathlib import Path
from typing import Iterator

import keras
import tensorflow as tf

from power_bert_tf.data.tasks import Example
from power_bert_tf.errors import PowerBertError
from power_bert_tf.pipeline.context import Context

PROGRESS_ROWS = 50_000  # --phase=predict reports progress every this many rows


def predict(ctx: Context) -> dict:
    """Writes `predict/<split>_predictions.tsv` (index, label or score)."""
    config, started = ctx.config, time.time()
    model = ctx.load_phase_model("retrain")
    folder = ctx.prepare_output("predict", resume=False)
    split = config.predict_split
    examples = (ctx.task.stream(split) if config.max_eval_examples is None
                else iter(ctx.examples(split)))
    path = folder.path / f"{split}_predictions.tsv"
    count = write_predictions(model, ctx, examples, path)
    ctx.record_run(folder, "predict", started, predictions=str(path), count=count)
    print(f"wrote {count} predictions to {path}")
    return {"predictions": str(path), "count": count}


def write_predictions(model: keras.Model, ctx: Context, examples: Iterator[Example],
                      path: Path) -> int:
    """Predicts `examples` in batches of --eval_batch_size padded to --max_seq_length and
    writes `index<TAB>prediction` rows to `path` atomically; returns the number of rows."""
    config, task = ctx.config, ctx.task
    texts = tf.TensorSpec([None], tf.string)
    failures: list[PowerBertError] = []  # a bad row, raised here rather than inside tf.data

    def batches():
        """(B,) text_a and text_b ("" for single texts) per batch, from the iterator."""
        try:
            while batch := list(itertools.islice(examples, config.eval_batch_size)):
                yield ([example.text_a for example in batch],
                       [example.text_b or "" for example in batch])
        except PowerBertError as error:
            failures.append(error)

    dataset = (tf.data.Dataset.from_generator(batches, output_signature=(texts, texts))
               .map(lambda a, b: ctx.tokenizer(a, b if task.is_pair else None),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
               .prefetch(2))
    outputs_of = tf.function(lambda features: model(features, training=False))
    partial = path.with_name(path.name + ".partial")
    count, started = 0, time.perf_counter()
    try:
        with partial.open("w", newline="") as file:
            writer = csv.writer(file, delimiter="\t", lineterminator="\n")
            writer.writerow(["index", "prediction"])
            for features in dataset:
                outputs = outputs_of(features).numpy()
                if task.labels is None:
                    values = [f"{output[0]:.4f}" for output in outputs]
                else:
                    values = [task.labels[index] for index in outputs.argmax(-1)]
                writer.writerows(enumerate(values, start=count))
                previous, count = count, count + len(values)
                if count // PROGRESS_ROWS > previous // PROGRESS_ROWS:
                    print(f"  predicted {count} rows ({time.perf_counter() - started:.0f} s)",
                          flush=True)
        if failures:
            raise failures[0]
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return count
