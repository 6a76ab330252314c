"""XLA on CPU: matrix multiplies through oneDNN, as TensorFlow's graph executor does.

XLA:CPU emits its own matrix multiplies by default; TensorFlow's graph mode calls oneDNN's.
Whether routing XLA's through oneDNN helps depends on the shapes, so `make bench` measures
it (the onednn section: the same model in this process and in a child process with these
flags, passes interleaved). In two runs on a shared 2-core Xeon with AMX
(experiments/results/bench_cpu2_20261129-072853.json and -075105.json) it made PoWER-BERT
1.14x and 1.31x faster at BERT-base batch 32, N=256, 0.85x and 0.96x (slower) at BERT-base
batch 1, N=128, and changed MiniLM at batch 32, N=64 by 0.99x-1.05x in one run and
1.08x-1.11x in the other. Use it only for large batches, after measuring on your CPU
(`python -m power_bert_tf.bench --sections=onednn`).

XLA reads `XLA_FLAGS` once, at the first compilation in the process: call `use_onednn_dots`
before anything runs with `jit_compile=True`. For TF Serving, set the same variable in the
server's environment.

The fusion is experimental in XLA, so nothing here turns it on by default: it aborts the
process ("partition compile failed") on a dot whose result feeds another dot with only a bias
add or nothing in between. Attention over a single word-vector is one (its softmax folds to
1, so the value projection feeds the output projection): a PoWER-BERT layer keeping
l_j = 1 vector, as CoLA's retention configurations do, aborts.
"""
from __future__ import annotations

import os

ONEDNN_DOT_FLAGS = ("--xla_cpu_use_onednn=true", "--xla_cpu_experimental_onednn_fusion_type=dot")


def use_onednn_dots() -> str:
    """Adds `ONEDNN_DOT_FLAGS` to `XLA_FLAGS`, keeping any the user set; returns the value."""
    current = os.environ.get("XLA_FLAGS", "").split()
    names = {flag.split("=", 1)[0] for flag in current}
    added = [flag for flag in ONEDNN_DOT_FLAGS if flag.split("=", 1)[0] not in names]
    os.environ["XLA_FLAGS"] = " ".join(current + added)
    return os.environ["XLA_FLAGS"]
