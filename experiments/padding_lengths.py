"""How much dynamic padding and length grouping save: the word-pieces a training epoch
is padded to, per task.

    python experiments/padding_lengths.py --tasks=CoLA,RTE,MRPC,STS-B,SST-2,WNLI

Batches each task's training set as a training epoch does (`data.batching.make_dataset`:
the embedded model's WordPiece at the task's --max_seq_length N, the task's default batch
size, shuffled with --seed, each batch trimmed to its longest row rounded up to a multiple
of 16), once as it is and once grouped by length (run_glue --length_grouping, windows of
--length_window batches), and reports per epoch: the mean batch length against N and the
padded word-pieces (what a step's cost follows; attention grows with the square of the
length). Prints a table; writes JSON under experiments/results/ (never overwritten).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from power_bert_tf.cli import quiet_native_logs  # light: TensorFlow is not loaded

if __name__ == "__main__":  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL or -v shows all
    quiet_native_logs()

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments.runner import git_commit  # noqa: E402
from power_bert_tf.cli import exit_on_user_error  # noqa: E402
from power_bert_tf.data.batching import make_dataset  # noqa: E402
from power_bert_tf.pipeline.config import PADDING_MULTIPLE  # noqa: E402
from power_bert_tf.data.tasks import canonical_task_name, get_task  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402
from power_bert_tf.pipeline.config import TASK_DEFAULTS  # noqa: E402
from power_bert_tf.training.checkpoints import write_json_atomic  # noqa: E402
from power_bert_tf.weights import load_pretrained  # noqa: E402

flags.DEFINE_list("tasks", ["CoLA", "RTE", "MRPC", "STS-B", "SST-2", "WNLI"], "GLUE tasks.")
flags.DEFINE_string("data_dir", None, "GLUE data root. Default: $GLUE_DIR, else ../shared/glue.")
flags.DEFINE_integer("seed", 42, "Shuffle seed.")
flags.DEFINE_integer("length_window", 50, "Batches per length-grouping window "
                     "(run_glue --length_grouping).")
flags.DEFINE_string("output", str(Path(__file__).resolve().parent / "results" /
                                  "padding_lengths_grouping.json"), "JSON path; never overwritten.")
FLAGS = flags.FLAGS


def epoch_lengths(task, tokenizer, batch_size: int, seed: int,
                  length_window: int) -> tuple[np.ndarray, np.ndarray]:
    """(real lengths of every row, (batches, 2) rows and padded length of each batch)."""
    dataset = make_dataset(task.read("train"), tokenizer, batch_size=batch_size,
                           is_pair=task.is_pair, regression=task.labels is None, shuffle=True,
                           seed=seed, trim_to_multiple=PADDING_MULTIPLE,
                           length_window=length_window)
    masks = [features["input_mask"].numpy() for features, _ in dataset]
    return (np.concatenate([mask.sum(axis=1) for mask in masks]),
            np.array([mask.shape for mask in masks]))


@exit_on_user_error
def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    output = Path(FLAGS.output)
    if output.exists():
        raise PowerBertError(f"{output} exists; pass another --output")
    started, pretrained, rows = time.perf_counter(), load_pretrained("embedded"), []
    print(f"{'task':6s} {'N':>4s} {'batch':>5s} {'mean len':>8s} {'batch len':>9s} "
          f"{'grouped':>8s} {'padded M':>8s} {'grouped M':>9s} {'saving':>7s}")
    for name in FLAGS.tasks:
        name = canonical_task_name(name)
        defaults = TASK_DEFAULTS[name]
        task = get_task(name, FLAGS.data_dir)
        tokenizer = pretrained.tokenizer(defaults.max_seq_length)
        lengths, plain = epoch_lengths(task, tokenizer, defaults.batch_size, FLAGS.seed, 0)
        _, grouped = epoch_lengths(task, tokenizer, defaults.batch_size, FLAGS.seed,
                                   FLAGS.length_window)
        tokens = {kind: int(np.prod(batches, axis=1).sum())
                  for kind, batches in (("plain", plain), ("grouped", grouped))}
        row = {"task": name, "max_seq_length": defaults.max_seq_length,
               "batch_size": defaults.batch_size, "examples": len(lengths),
               "mean_length": round(float(lengths.mean()), 1),
               "mean_trimmed_batch_length": round(float(plain[:, 1].mean()), 1),
               "mean_grouped_batch_length": round(float(grouped[:, 1].mean()), 1),
               "padded_tokens": tokens["plain"], "grouped_padded_tokens": tokens["grouped"],
               "full_length_tokens": len(lengths) * defaults.max_seq_length,
               "saving": round(defaults.max_seq_length / float(plain[:, 1].mean()), 2),
               "grouping_saving": round(tokens["plain"] / tokens["grouped"], 2)}
        rows.append(row)
        print(f"{name:6s} {defaults.max_seq_length:4d} {defaults.batch_size:5d} "
              f"{row['mean_length']:8.1f} {row['mean_trimmed_batch_length']:9.1f} "
              f"{row['mean_grouped_batch_length']:8.1f} {tokens['plain'] / 1e6:8.2f} "
              f"{tokens['grouped'] / 1e6:9.2f} {row['grouping_saving']:6.2f}x")
    write_json_atomic(output, {"command": "python experiments/padding_lengths.py --tasks="
                               + ",".join(FLAGS.tasks) + f" --seed={FLAGS.seed}"
                               f" --length_window={FLAGS.length_window}",
                               "git_commit": git_commit(),
                               "wall_seconds": round(time.perf_counter() - started, 1),
                               "rows": rows})
    print(f"wrote {output}")


if __name__ == "__main__":
    app.run(main)
