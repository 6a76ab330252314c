"""Where XLA:CPU spends more time than the plain TF graph: one encoder layer, part by part.

    python experiments/xla_vs_graph.py                       # BERT-base layer, batch 32, N=256
    python experiments/xla_vs_graph.py --xla_cpu_onednn      # XLA's dots through oneDNN

Times each part of a BERT layer (our SelfAttentionBlock and FeedForwardBlock, random
weights) as a tf.function with and without jit_compile=True, in one process, and prints
ms and the XLA / graph ratio per part; writes JSON under experiments/results/.
"""
from __future__ import annotations

import datetime
import os
import statistics
import time
from pathlib import Path

from power_bert_tf.cli import quiet_native_logs  # light: TensorFlow is not loaded

if __name__ == "__main__":  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL or -v shows all
    quiet_native_logs()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from power_bert_tf.cli import exit_on_user_error  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402
from power_bert_tf.model.blocks import FeedForwardBlock, SelfAttentionBlock  # noqa: E402
from power_bert_tf.serving.xla_cpu import use_onednn_dots  # noqa: E402
from power_bert_tf.training.checkpoints import write_json_atomic  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"

flags.DEFINE_integer("batch_size", 32, "Sequences per batch.")
flags.DEFINE_integer("length", 256, "Word-vectors per sequence.")
flags.DEFINE_integer("hidden_size", 768, "Hidden size D; the FFN is 4D wide.")
flags.DEFINE_integer("num_heads", 12, "Attention heads.")
flags.DEFINE_integer("repeats", 7, "Timed calls per part and mode (after 2 untimed ones).")
flags.DEFINE_bool("xla_cpu_onednn", False, "Route XLA's matrix multiplies through oneDNN "
                  "(power_bert_tf/serving/xla_cpu.py).")
flags.DEFINE_string("output", None, "JSON path. Default: experiments/results/"
                    "xla_vs_graph_<onednn|eigen>_<YYYYmmdd-HHMMSS>.json; never overwritten.")
FLAGS = flags.FLAGS


def layer_parts(batch: int, length: int, hidden: int, heads: int) -> dict:
    """Part name -> a no-argument function computing it on fixed random inputs."""
    x = tf.random.normal((batch, length, hidden), seed=1)
    mask = tf.ones((batch, length), tf.int32)
    attention = SelfAttentionBlock(hidden, heads, name="attention")
    attention.build(x.shape, mask.shape)
    feed_forward = FeedForwardBlock(hidden, 4 * hidden, name="feed_forward")
    feed_forward.build(x.shape)
    kernel = feed_forward.intermediate_dense.kernel
    pre_activation = tf.random.normal((batch, length, 4 * hidden), seed=2)
    norm = feed_forward.layer_norm
    return {
        "attention block": lambda: attention(x, mask)[0],
        "feed-forward block": lambda: feed_forward(x),
        "FFN input matmul (B*N x D by D x 4D)": lambda: tf.matmul(
            tf.reshape(x, (-1, hidden)), kernel),
        "GELU (erf) on B x N x 4D": lambda: keras.activations.gelu(pre_activation,
                                                                  approximate=False),
        "LayerNorm on B x N x D": lambda: norm(x),
        "whole layer": lambda: feed_forward(attention(x, mask)[0]),
    }


def median_ms(function, repeats: int) -> float:
    function(), function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function().numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


@exit_on_user_error
def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.hidden_size % FLAGS.num_heads:
        raise PowerBertError(f"--hidden_size={FLAGS.hidden_size} is not a multiple of "
                             f"--num_heads={FLAGS.num_heads}")
    if FLAGS.xla_cpu_onednn:
        use_onednn_dots()
    dots = "onednn" if FLAGS.xla_cpu_onednn else "eigen"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    output = Path(FLAGS.output or RESULTS_DIR / f"xla_vs_graph_{dots}_{stamp}.json")
    if output.exists():
        raise PowerBertError(f"{output} exists; pass another --output")
    started = time.perf_counter()
    rows = []
    print(f"{'part':40s} {'graph ms':>9s} {'XLA ms':>9s} {'XLA/graph':>9s}")
    parts = layer_parts(FLAGS.batch_size, FLAGS.length, FLAGS.hidden_size, FLAGS.num_heads)
    for name, part in parts.items():
        graph = median_ms(tf.function(part), FLAGS.repeats)
        xla = median_ms(tf.function(part, jit_compile=True), FLAGS.repeats)
        rows.append({"part": name, "graph_ms": graph, "xla_ms": xla, "ratio": xla / graph})
        print(f"{name:40s} {graph:9.1f} {xla:9.1f} {xla / graph:9.2f}", flush=True)
    write_json_atomic(output, {
        "command": "python experiments/xla_vs_graph.py " + " ".join(
            f"--{name}={FLAGS[name].value}" for name in
            ("batch_size", "length", "hidden_size", "num_heads", "repeats", "xla_cpu_onednn")),
        "xla_flags": os.environ.get("XLA_FLAGS", ""), "tensorflow": tf.__version__,
        "wall_seconds": round(time.perf_counter() - started, 1), "rows": rows})
    print(f"wrote {output}")


if __name__ == "__main__":
    app.run(main)
