"""XLA on CPU: matrix multiplies through oneDNN, as TensorFlow's graph executor does.

XLA:CPU emits its own matrix multiplies by default; TensorFlow's graph mode calls oneDNN's.
Whether routing XLA's through oneDNN helps depends on the shapes, so `make bench` measures
it (the onednn section: the same model in this process and in a child process with these
flags, passes interleaved). Measured, it helps PoWER-BERT at large batches (BERT-base
batch 32, N=256) and slows it at batch 1, so it is for large batches only, after measuring
on your CPU (`python -m power_bert_tf.bench --sections=onednn`); the runs: docs/serving.md,
"Length buckets and XLA".

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
