"""Training step time in float32 against mixed bfloat16 (`run_glue.py --train_precision`).

    python experiments/train_precision.py                     # MiniLM, N = 64, 128, 256
    python experiments/train_precision.py --lengths=64 --repeats=9

For each padded length N and each training encoder (the fine-tune's plain one and the
search's Soft-Extract one), the embedded model is built twice with the same weights,
under float32 and under "mixed_bfloat16" (`model.policy.TRAINING_POLICIES`), each with
the package's `Trainer` and its Adam; a timed pass is --steps optimiser steps on the
same random (B, N) batches; the passes alternate (`serving.timing.time_interleaved`)
and the speed-up is the median of the paired per-round ratios, with its spread. Full
length N is the study's longest batch (dynamic padding trims shorter ones). Writes
experiments/results/train_precision_<YYYYmmdd-HHMMSS>.json with the CPU's features
(bfloat16 pays only where the hardware multiplies in it, e.g. AMX-BF16).
"""
from __future__ import annotations

import datetime
import os
import sys
import time
from pathlib import Path

from power_bert_tf.cli import quiet_native_logs  # light: TensorFlow is not loaded

if __name__ == "__main__":  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL or -v shows all
    quiet_native_logs()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from experiments import runner  # noqa: E402
from power_bert_tf.cli import exit_on_user_error  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402
from power_bert_tf.model.classifier import BertClassifier  # noqa: E402
from power_bert_tf.model.policy import TRAINING_POLICIES, dtype_policy  # noqa: E402
from power_bert_tf.serving.timing import paired_speedup, time_interleaved  # noqa: E402
from power_bert_tf.training.optimization import adam  # noqa: E402
from power_bert_tf.training.trainer import OptimizerGroup, Trainer  # noqa: E402
from power_bert_tf.weights.pretrained import load_pretrained  # noqa: E402

ENCODERS = ("finetune", "search")  # plain, Soft-Extract

flags.DEFINE_string("model", "embedded", "Pre-trained weights (as run_glue.py --model).")
flags.DEFINE_list("lengths", ["64", "128", "256"], "Padded lengths N (the study's tasks: "
                  "64 CoLA, SST-2, STS-B; 128 MRPC; 256 RTE).")
flags.DEFINE_list("encoders", list(ENCODERS), "finetune: the plain encoder; search: the "
                  "Soft-Extract encoder of the search phase.")
flags.DEFINE_integer("batch_size", 32, "Sequences per batch (the study's, except RTE's 16).")
flags.DEFINE_integer("steps", 4, "Optimiser steps per timed pass.")
flags.DEFINE_integer("repeats", 7, "Interleaved timed passes per precision (after one "
                     "untimed round).")
flags.DEFINE_integer("seed", 0, "Seed of the random batches.")
flags.DEFINE_string("output", None, "JSON path. Default: experiments/results/"
                    "train_precision_<YYYYmmdd-HHMMSS>.json; never overwritten.")
FLAGS = flags.FLAGS


def training_pass(pretrained, precision: str, encoder: str, batches: tf.data.Dataset):
    """A callable doing an optimiser step per batch of a fresh classifier whose encoder
    computes in `precision`, fetching the last loss to the host."""
    length = batches.element_spec[0]["input_word_ids"].shape[1]
    extract = {"extract": "soft", "mass_lambda": 1e-3} if encoder == "search" else {}
    with dtype_policy(TRAINING_POLICIES[precision]):
        bert = pretrained.build_encoder(sequence_length=length, **extract)
    model = BertClassifier(bert, 2)
    trainer = Trainer(model, tf.distribute.get_strategy(),
                      [OptimizerGroup(adam(1e-5, 10_000, 0.0, "adam"), lambda v: True)],
                      regression=False)
    dataset = tf.distribute.get_strategy().experimental_distribute_dataset(batches)
    step = trainer.train_step(dataset)

    def run() -> None:
        loss = None
        for features, labels in dataset:  # `steps` batches
            loss = step(features, labels)
        float(loss)

    return run


def random_batches(vocabulary: int, batch_size: int, length: int, steps: int,
                   seed: int) -> tf.data.Dataset:
    """`steps` batches of random ids with full-length masks and binary labels."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocabulary, (steps * batch_size, length)).astype(np.int32)
    features = {"input_word_ids": ids, "input_mask": np.ones_like(ids),
                "input_type_ids": np.zeros_like(ids)}
    labels = rng.integers(0, 2, steps * batch_size).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch_size)


@exit_on_user_error
def main(argv):
    if len(argv) > 1:
        raise PowerBertError(f"unexpected arguments: {' '.join(argv[1:])}")
    unknown = set(FLAGS.encoders) - set(ENCODERS)
    if unknown or not FLAGS.encoders:
        raise PowerBertError(f"--encoders: {','.join(sorted(unknown)) or 'empty'}; choose "
                             f"from {', '.join(ENCODERS)}")
    try:
        lengths = [int(n) for n in FLAGS.lengths]
    except ValueError:
        raise PowerBertError(f"--lengths must be integers, got {','.join(FLAGS.lengths)}") \
            from None
    for name in ("batch_size", "steps", "repeats"):
        if FLAGS[name].value < 1:
            raise PowerBertError(f"--{name} must be >= 1, got {FLAGS[name].value}")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    output = Path(FLAGS.output or ROOT / "experiments" / "results" /
                  f"train_precision_{stamp}.json")
    if output.exists():
        raise PowerBertError(f"{output} exists; choose another --output")
    started = time.time()
    pretrained = load_pretrained(FLAGS.model)
    if max(lengths) > pretrained.config.max_sequence_length:
        raise PowerBertError(f"--lengths: {max(lengths)} exceeds the model's "
                             f"{pretrained.config.max_sequence_length} positions")
    rows = []
    for length in lengths:
        batches = random_batches(pretrained.config.vocabulary_size, FLAGS.batch_size, length,
                                 FLAGS.steps, FLAGS.seed)
        for encoder in FLAGS.encoders:
            print(f"N={length} {encoder}: timing fp32 and bf16 steps", flush=True)
            passes = {p: training_pass(pretrained, p, encoder, batches)
                      for p in TRAINING_POLICIES}
            timings = time_interleaved(passes, repeats=FLAGS.repeats, warmup=1)
            rows.append({"length": length, "encoder": encoder,
                         "ms_per_step": {p: round(1000 * t.median / FLAGS.steps, 1)
                                         for p, t in timings.items()},
                         "timing": {p: t.to_dict() for p, t in timings.items()},
                         "speedup": paired_speedup(timings["fp32"], timings["bf16"])})
            row = rows[-1]
            print(f"  fp32 {row['ms_per_step']['fp32']} ms/step, bf16 "
                  f"{row['ms_per_step']['bf16']} ms/step: bf16 {row['speedup']['median']:.2f}x "
                  f"[{row['speedup']['min']:.2f}-{row['speedup']['max']:.2f}]", flush=True)
    runner.write_result(output, {
        "model": pretrained.source, "batch_size": FLAGS.batch_size, "steps": FLAGS.steps,
        "repeats": FLAGS.repeats, "load_average_at_end": list(os.getloadavg()),
        "rows": rows}, started=started, commands=[" ".join(["python", *sys.argv])])
    print(f"wrote {output}")


if __name__ == "__main__":
    app.run(main)
