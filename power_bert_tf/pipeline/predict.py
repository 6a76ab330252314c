"""--phase=predict: the retrained model's predictions for --predict_split, as TSV."""
from __future__ import annotations

import csv
import time

import numpy as np

from power_bert_tf.pipeline.context import Context


def predict(ctx: Context) -> dict:
    """Writes `predict/<split>_predictions.tsv` (index, label or score)."""
    config, started = ctx.config, time.time()
    model = ctx.load_phase_model("retrain")
    folder = ctx.prepare_output("predict", resume=False)
    examples = ctx.examples(config.predict_split)
    dataset = ctx.dataset(config.predict_split)
    outputs = np.concatenate([model(batch[0] if isinstance(batch, tuple) else batch,
                                    training=False).numpy() for batch in dataset])
    path = folder.path / f"{config.predict_split}_predictions.tsv"
    with path.open("w", newline="") as file:
        writer = csv.writer(file, delimiter="\t", lineterminator="\n")
        writer.writerow(["index", "prediction"])
        for index, output in enumerate(outputs):
            value = (f"{output[0]:.4f}" if ctx.task.labels is None
                     else ctx.task.labels[int(np.argmax(output))])
            writer.writerow([index, value])
    ctx.record_run(folder, "predict", started, predictions=str(path), count=len(examples))
    print(f"wrote {len(examples)} predictions to {path}")
    return {"predictions": str(path)}
