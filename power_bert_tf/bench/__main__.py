"""PoWER-BERT inference benchmark: plain BERT vs. Hard-Extract, measured in one process.

    python -m power_bert_tf.bench
    python -m power_bert_tf.bench --cases=bert-base-rte --batch_sizes=1,32,128 --modes=xla
    python -m power_bert_tf.bench --device=k80 --output=experiments/results/bench_k80.json

Prints a table (case, batch, mode, ms full and pruned as median [min-max], speed-up,
word-vector and FLOP bounds, efficiency, peak memory) and the SST-2 padding table, and
writes them to a new JSON file and a markdown file next to it (never overwritten).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from power_bert_tf.bench.benchmark import (CASES, DEFAULT_CASES, MODES,  # noqa: E402
                                           BenchConfig, run)
from power_bert_tf.cli import exit_on_user_error  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402
from power_bert_tf.serving.xla_cpu import use_onednn_dots  # noqa: E402

_DEFAULTS = BenchConfig()

flags.DEFINE_list("cases", list(DEFAULT_CASES), f"Benchmark cases, from {', '.join(CASES)}. "
                  "minilm: the embedded MiniLM (6 layers, hidden 384) with every retrained "
                  "configuration in --checkpoints_dir/*/retrain/run.json, one case per task; "
                  "bert-base-rte: BERT-base shape (random weights) with the paper's RTE "
                  "configuration at N=256; bert-base-sst2: BERT-base with the SST-2 anecdote "
                  "configuration (7,7,7,7,4,4,4,4,2,2,2,2) at N=64; albert-base-rte, "
                  "albert-base-sst2: the same for the ALBERT-base shape (12 layers sharing one "
                  "set of weights, hidden 768, embedding 128, 12 heads, vocabulary 30000); "
                  "tiny, tiny-albert: 2-layer, hidden-32 encoders at N=16 keeping (8,4), for "
                  "tests.")
flags.DEFINE_list("batch_sizes", [str(b) for b in _DEFAULTS.batch_sizes], "Batch sizes of every "
                  "case: 1 measures latency, 32 throughput; add 128 (the paper's) if time allows.")
flags.DEFINE_list("modes", list(MODES), "Execution modes: eager (model(inputs, training=False)), "
                  "graph (tf.function), xla (tf.function(jit_compile=True)), saved_model (an "
                  "XLA tf.function with a (None, N) int32 signature, saved and loaded back).")
flags.DEFINE_integer("warmup", _DEFAULTS.warmup, "Untimed calls per model before the timed "
                     "ones (tracing and compilation); at least 2.")
flags.DEFINE_integer("repeats", _DEFAULTS.repeats, "Timed calls per model in a row; the row "
                     "reports their median, minimum and maximum.")
flags.DEFINE_float("heavy_gflops", _DEFAULTS.heavy_gflops, "A row whose plain forward pass "
                   "costs more than this many GFLOP per batch is heavy: it runs only "
                   "--heavy_modes with --heavy_repeats timed calls. With the defaults BERT-base "
                   "and ALBERT-base batch 32 (352 GFLOP at N=64; 1469 at N=256, 8-10 s per "
                   "plain pass on 2 CPU cores) skip eager, and each base shape takes about 8 "
                   "minutes there. Set it "
                   "to inf to run every row in full.")
flags.DEFINE_integer("heavy_repeats", _DEFAULTS.heavy_repeats, "Timed calls per model in a "
                     "heavy row.")
flags.DEFINE_list("heavy_modes", list(_DEFAULTS.heavy_modes), "The only modes a heavy row runs.")
flags.DEFINE_bool("padding", _DEFAULTS.padding, "Also time the SST-2 dev set (872 sentences, "
                  "MiniLM, XLA) padded to N vs. sorted into length buckets, without and with "
                  "elimination (the SST-2 retrained configuration from --checkpoints_dir, else "
                  "40,32,24,16,12,8).")
flags.DEFINE_list("padding_buckets", [str(b) for b in _DEFAULTS.padding_buckets], "Bucket "
                  "lengths, ascending; the last is the padded length N of the padding "
                  "measurement.")
flags.DEFINE_integer("padding_batch_size", _DEFAULTS.padding_batch_size, "Batch size within a "
                     "bucket in the padding measurement.")
flags.DEFINE_integer("padding_repeats", _DEFAULTS.padding_repeats, "Timed passes over the dev "
                     "set per padding setting; the median pass is reported.")
flags.DEFINE_string("checkpoints_dir", str(_DEFAULTS.checkpoints_dir), "run_glue.py output "
                    "folder searched for <task>/retrain/run.json (retention and max_seq_length).")
flags.DEFINE_string("data_dir", None, "GLUE data root for the SST-2 dev set. Default: $GLUE_DIR, "
                    "else ../shared/glue when it exists.")
flags.DEFINE_string("output", None, "JSON output path; the markdown table goes next to it with "
                    "suffix .md. An existing file is an error. Default: "
                    "experiments/results/bench_<device>_<YYYYmmdd-HHMMSS>.json.")
flags.DEFINE_string("device", None, "Device label for the JSON and the default file name. "
                    "Default: the GPU's name, else cpu<usable cores>.")
flags.DEFINE_bool("xla_cpu_onednn", False, "Without a GPU, route XLA's matrix multiplies "
                  "through oneDNN, as the plain graph's are (power_bert_tf/serving/xla_cpu.py). "
                  "Experimental in XLA: it closes XLA's gap to the plain graph at BERT-base "
                  "batch 32, but aborts the process on a layer that keeps 1 word-vector (the "
                  "minilm CoLA case). The XLA_FLAGS used are in the output.")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of the random weights and inputs.")
FLAGS = flags.FLAGS


def config_from_flags() -> BenchConfig:
    return BenchConfig(
        cases=tuple(FLAGS.cases), batch_sizes=tuple(_integers("batch_sizes")),
        modes=tuple(FLAGS.modes), warmup=FLAGS.warmup, repeats=FLAGS.repeats,
        heavy_gflops=FLAGS.heavy_gflops, heavy_repeats=FLAGS.heavy_repeats,
        heavy_modes=tuple(FLAGS.heavy_modes), padding=FLAGS.padding,
        padding_buckets=tuple(_integers("padding_buckets")),
        padding_batch_size=FLAGS.padding_batch_size, padding_repeats=FLAGS.padding_repeats,
        checkpoints_dir=FLAGS.checkpoints_dir, data_dir=FLAGS.data_dir, output=FLAGS.output,
        device=FLAGS.device, seed=FLAGS.seed)


def _integers(name: str) -> list[int]:
    try:
        return [int(value) for value in FLAGS[name].value]
    except ValueError:
        raise PowerBertError(f"--{name} must be comma-separated integers, "
                             f"got {','.join(FLAGS[name].value)}") from None


@exit_on_user_error
def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.xla_cpu_onednn and not tf.config.list_physical_devices("GPU"):
        use_onednn_dots()
    tf.get_logger().setLevel("WARNING")  # SavedModel writing logs every asset at INFO
    run(config_from_flags())


if __name__ == "__main__":
    app.run(main)
