"""How much dynamic padding saves: the length a training batch is trimmed to, per task.

    python experiments/padding_lengths.py --tasks=CoLA,RTE,MRPC,STS-B,SST-2,WNLI

Tokenizes each task's training set with the embedded model's WordPiece at the task's
--max_seq_length N, shuffles it once (seeded), cuts it into batches of the task's default
size, and reports the mean trimmed batch length (run_glue --dynamic_padding: the longest
row rounded up to a multiple of 16, at most N) against N. Prints a table; writes JSON
under experiments/results/ (never overwritten).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from power_bert_tf.cli import exit_on_user_error  # noqa: E402
from power_bert_tf.pipeline.config import TASK_DEFAULTS  # noqa: E402
from power_bert_tf.data.pipeline import PADDING_MULTIPLE, tokenize  # noqa: E402
from power_bert_tf.data.tasks import canonical_task_name, get_task  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402
from power_bert_tf.training.checkpoints import write_json_atomic  # noqa: E402
from power_bert_tf.weights import load_pretrained  # noqa: E402

flags.DEFINE_list("tasks", ["CoLA", "RTE", "MRPC", "STS-B", "SST-2", "WNLI"], "GLUE tasks.")
flags.DEFINE_string("data_dir", None, "GLUE data root. Default: $GLUE_DIR, else ../shared/glue.")
flags.DEFINE_integer("seed", 42, "Shuffle seed.")
flags.DEFINE_string("output", str(Path(__file__).resolve().parent / "results" /
                                  "padding_lengths.json"), "JSON path; never overwritten.")
FLAGS = flags.FLAGS


def token_lengths(task, tokenizer, chunk: int = 2048) -> np.ndarray:
    """Real tokens ([CLS] and [SEP] included, truncated to N) of every training example."""
    mask = tokenize(task.read("train"), tokenizer, is_pair=task.is_pair, chunk=chunk)
    return mask["input_mask"].sum(axis=1)


def mean_trimmed_length(lengths: np.ndarray, batch_size: int, padded: int, seed: int) -> float:
    order = np.random.default_rng(seed).permutation(len(lengths))
    batches = [lengths[order[i:i + batch_size]] for i in range(0, len(lengths), batch_size)]
    return float(np.mean([min(-(-int(b.max()) // PADDING_MULTIPLE) * PADDING_MULTIPLE, padded)
                          for b in batches]))


@exit_on_user_error
def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    output = Path(FLAGS.output)
    if output.exists():
        raise PowerBertError(f"{output} exists; pass another --output")
    started, pretrained, rows = time.perf_counter(), load_pretrained("embedded"), []
    print(f"{'task':6s} {'N':>4s} {'batch':>5s} {'mean len':>8s} {'trimmed':>8s} {'saving':>7s}")
    for name in FLAGS.tasks:
        name = canonical_task_name(name)
        defaults = TASK_DEFAULTS[name]
        task = get_task(name, FLAGS.data_dir)
        lengths = token_lengths(task, pretrained.tokenizer(defaults.max_seq_length))
        trimmed = mean_trimmed_length(lengths, defaults.batch_size, defaults.max_seq_length,
                                      FLAGS.seed)
        rows.append({"task": name, "max_seq_length": defaults.max_seq_length,
                     "batch_size": defaults.batch_size, "examples": len(lengths),
                     "mean_length": round(float(lengths.mean()), 1),
                     "mean_trimmed_batch_length": round(trimmed, 1),
                     "saving": round(defaults.max_seq_length / trimmed, 2)})
        print(f"{name:6s} {defaults.max_seq_length:4d} {defaults.batch_size:5d} "
              f"{lengths.mean():8.1f} {trimmed:8.1f} {defaults.max_seq_length / trimmed:6.2f}x")
    write_json_atomic(output, {"command": "python experiments/padding_lengths.py --tasks="
                               + ",".join(FLAGS.tasks) + f" --seed={FLAGS.seed}",
                               "wall_seconds": round(time.perf_counter() - started, 1),
                               "rows": rows})
    print(f"wrote {output}")


if __name__ == "__main__":
    app.run(main)
