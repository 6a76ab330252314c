"""What Table 2's configurations can gain over plain BERT served in length buckets.

    python experiments/served_bounds.py

For each task of `experiments/results/table2_summary.json`, its (first seed's) retention
configuration and the task's dev lengths (the embedded tokenizer, the task's N): the FLOP
bound padded to N (the paper's comparison) beside the FLOP bound over plain BERT served
with the same length buckets (`data.buckets.served_batches`, batches of
--eval_batch_size in file order and sorted by length). A bound, not a timing: the
measured speed-ups come from the evaluate phase (`served` in its run.json), but the
bound shows, without a model, how much of each padded speed-up is padding removed.
Writes experiments/results/served_flop_bounds.json.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from experiments import runner  # noqa: E402
from power_bert_tf.cli import exit_on_user_error  # noqa: E402
from power_bert_tf.data.buckets import BATCH_ORDERS, buckets_for, served_batches  # noqa: E402
from power_bert_tf.model.retention import (RetentionConfig, flop_bound,  # noqa: E402
                                           served_flop_bound)
from power_bert_tf.pipeline.config import TASK_DEFAULTS, RunConfig  # noqa: E402
from power_bert_tf.pipeline.context import make_context  # noqa: E402

flags.DEFINE_string("summary", "experiments/results/table2_summary.json",
                    "Table 2's summary: the tasks and their retention configurations.")
flags.DEFINE_string("data_dir", None, "GLUE data root. Default: $GLUE_DIR, else ../shared/glue.")
flags.DEFINE_integer("eval_batch_size", 64, "Rows per served batch (the evaluate phase's).")
flags.DEFINE_string("output", "experiments/results/served_flop_bounds.json",
                    "Where the bounds go (replaced: they are recomputed from the summary).")
FLAGS = flags.FLAGS


def task_bounds(task: str, kept: list[int], config: RunConfig) -> dict:
    """The padded and served FLOP bounds of `kept` on `task`'s dev lengths."""
    ctx = make_context(config)
    retention = RetentionConfig(tuple(kept), config.max_seq_length)
    lengths = ctx.rows("dev")["input_mask"].sum(axis=1)
    buckets = buckets_for(config.max_seq_length)
    served = {}
    for order in BATCH_ORDERS:
        plan = served_batches(lengths, config.eval_batch_size, buckets, order)
        served[order] = round(served_flop_bound(
            ctx.pretrained.config, retention, [(len(rows), bucket) for rows, bucket in plan]), 3)
    return {"task": task, "retention": kept, "sequence_length": config.max_seq_length,
            "dev_examples": int(len(lengths)), "mean_length": round(float(np.mean(lengths)), 1),
            "buckets": list(buckets),
            "flop_bound_padded": round(flop_bound(ctx.pretrained.config, retention), 3),
            "flop_bound_bucketed": served}


@exit_on_user_error
def main(argv: list[str]) -> None:
    started = time.time()
    summary = json.loads((ROOT / FLAGS.summary).read_text())
    rows = []
    for entry in summary["summaries"]:
        config = RunConfig(task=entry["task"], phase="evaluate", output_dir="checkpoints",
                           data_dir=FLAGS.data_dir, eval_batch_size=FLAGS.eval_batch_size,
                           max_seq_length=TASK_DEFAULTS[entry["task"]].max_seq_length)
        row = task_bounds(entry["task"], entry["retention"], config)
        rows.append(row)
        print(f"{row['task']}: mean dev length {row['mean_length']} of N="
              f"{row['sequence_length']}; FLOP bound padded {row['flop_bound_padded']:.2f}x, "
              f"over length-bucketed BERT {row['flop_bound_bucketed']['file']:.2f}x (file "
              f"order), {row['flop_bound_bucketed']['sorted']:.2f}x (sorted)", flush=True)
    runner.write_result(ROOT / FLAGS.output, {"bounds": rows}, started=started,
                        commands=[" ".join(["python", "experiments/served_bounds.py", *argv[1:]])],
                        overwrite=True)


if __name__ == "__main__":
    app.run(main)
