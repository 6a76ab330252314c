"""PoWER-BERT inference benchmark: plain BERT vs. PoWER-BERT, measured in one process.

    python -m power_bert_tf.bench                        # runtimes, onednn, concurrency
    python -m power_bert_tf.bench --sections=runtimes --runtime_cases=minilm-b32-n64
    python -m power_bert_tf.bench --sections=modes,padding --batch_sizes=1,32,128

Prints the tables of each section (see power_bert_tf/bench/benchmark.py) and writes
them to a new JSON file and a markdown file next to it (never overwritten).
"""
from __future__ import annotations


from power_bert_tf.cli import quiet_native_logs  # light: TensorFlow is not loaded

if __name__ == "__main__":  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL or -v shows all
    quiet_native_logs()

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from power_bert_tf.bench.benchmark import (DEFAULT_CASES, SECTIONS,  # noqa: E402
                                           BenchConfig, run)
from power_bert_tf.bench.cases import CASES, RUNTIME_CASES  # noqa: E402
from power_bert_tf.bench.modes import MODES  # noqa: E402
from power_bert_tf.cli import exit_on_user_error  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402
from power_bert_tf.serving.xla_cpu import use_onednn_dots  # noqa: E402

_DEFAULTS = BenchConfig()

flags.DEFINE_list("sections", list(_DEFAULTS.sections), f"What to measure, from "
                  f"{', '.join(SECTIONS)}. runtimes: plain and PoWER-BERT in TF fp32/bf16 "
                  "(graph and XLA) and ONNX Runtime fp32/int8 side by side; onednn: XLA:CPU "
                  "with and without oneDNN dots, interleaved with a child process; "
                  "concurrency: exported SavedModels under --clients concurrent clients; "
                  "modes: eager/graph/XLA/SavedModel per --cases; padding: the SST-2 dev set "
                  "padded vs. length-bucketed.")
flags.DEFINE_list("runtime_cases", list(_DEFAULTS.runtime_cases), "Cases of the runtimes and "
                  f"onednn sections, from {', '.join(RUNTIME_CASES)}: BERT-base shape (random "
                  "weights) at batch 32, N=256 with the paper's RTE configuration and at batch "
                  "1, N=128 with it scaled to 128; the embedded MiniLM at batch 32, N=64 with "
                  "the SST-2 retrained configuration 49,42,31,20,12,2; tiny-b2 for tests.")
flags.DEFINE_bool("onnx", _DEFAULTS.onnx, "Include the ONNX Runtime rows (needs pip install "
                  "'.[onnx]'; skipped with a note without it).")
flags.DEFINE_string("onnx_cache", str(_DEFAULTS.onnx_cache), "Folder keeping the converted "
                    "ONNX files between runs, keyed by case, seed, tf2onnx and the model's and "
                    "converter's code (a BERT-base conversion takes minutes on 2 cores); "
                    "empty: convert every time.")
flags.DEFINE_integer("onnx_max_parameters", _DEFAULTS.onnx_max_parameters, "Models with more "
                     "weights are not converted to ONNX (the conversion's memory grows with "
                     "the weights: 8.3 GB for BERT-base); raise it on a machine with more "
                     "memory.")
flags.DEFINE_string("peer_python", None, "Python interpreter with torch and transformers "
                    "that exports the peer rows of the runtimes section (the same plain "
                    "weights in Hugging Face transformers, torch.onnx.export, ONNX Runtime's "
                    "transformer optimizer, quantize_dynamic). Default: this interpreter if "
                    "it has them (pip install '.[peer]'), else the peer rows are skipped "
                    "with a note.")
flags.DEFINE_integer("clients", _DEFAULTS.clients, "Concurrent clients (threads) of the "
                     "concurrency section.")
flags.DEFINE_integer("requests", _DEFAULTS.requests, "One-sentence requests per client per "
                     "round in the concurrency section.")
flags.DEFINE_enum("concurrency_precision", _DEFAULTS.concurrency_precision, ["fp32", "bf16"],
                  "Precision of the SavedModels of the concurrency section.")
flags.DEFINE_integer("concurrency_repeats", _DEFAULTS.concurrency_repeats, "Interleaved "
                     "rounds per model in the concurrency section.")
flags.DEFINE_list("cases", list(DEFAULT_CASES), "Cases of the modes section, from "
                  f"{', '.join(CASES)}. "
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
flags.DEFINE_integer("warmup", _DEFAULTS.warmup, "Untimed rounds before the timed ones in "
                     "the modes section (tracing and compilation); at least 1.")
flags.DEFINE_integer("repeats", _DEFAULTS.repeats, "Interleaved timed rounds (runtimes, "
                     "onednn, modes); medians and paired ratios with their spread.")
flags.DEFINE_float("heavy_gflops", _DEFAULTS.heavy_gflops, "A case or row whose plain "
                   "forward pass costs more than this many GFLOP per batch is heavy: it runs "
                   "--heavy_repeats rounds; in the runtimes section only the default TF path "
                   "of each precision, in the modes section only --heavy_modes. BERT-base at "
                   "batch 32, N=256 is 1469 GFLOP (about 8 s per plain pass on 2 CPU cores). "
                   "Set it to inf to run everything in full.")
flags.DEFINE_integer("heavy_repeats", _DEFAULTS.heavy_repeats, "Interleaved timed rounds of a "
                     "heavy case or row.")
flags.DEFINE_list("heavy_modes", list(_DEFAULTS.heavy_modes), "The only modes a heavy row runs.")
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
flags.DEFINE_bool("xla_cpu_onednn", False, "Without a GPU, route this process's XLA matrix "
                  "multiplies through oneDNN (power_bert_tf/serving/xla_cpu.py; the onednn "
                  "section measures whether that helps). Aborts the process on a layer that "
                  "keeps 1 word-vector. The XLA_FLAGS used are in the output.")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of the random weights and inputs.")
FLAGS = flags.FLAGS


def config_from_flags() -> BenchConfig:
    return BenchConfig(
        sections=tuple(FLAGS.sections), runtime_cases=tuple(FLAGS.runtime_cases),
        onnx=FLAGS.onnx, onnx_cache=FLAGS.onnx_cache or None,
        onnx_max_parameters=FLAGS.onnx_max_parameters, peer_python=FLAGS.peer_python,
        clients=FLAGS.clients,
        requests=FLAGS.requests,
        concurrency_precision=FLAGS.concurrency_precision,
        concurrency_repeats=FLAGS.concurrency_repeats,
        cases=tuple(FLAGS.cases), batch_sizes=tuple(_integers("batch_sizes")),
        modes=tuple(FLAGS.modes), warmup=FLAGS.warmup, repeats=FLAGS.repeats,
        heavy_gflops=FLAGS.heavy_gflops, heavy_repeats=FLAGS.heavy_repeats,
        heavy_modes=tuple(FLAGS.heavy_modes),
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
