"""Inference precision: a bfloat16 copy of a classifier, and its execution path.

`with_precision(model, "bf16")` rebuilds the classifier under Keras's "bfloat16" dtype
policy and copies the weights into it, rounded to bfloat16: every matrix multiply,
the attention softmax and the significance score run in bfloat16 (Keras's
LayerNormalization computes its statistics in float32), while the inputs stay int32
ids and the logits layer stays float32, so a caller sees float32 (B, C) logits as
before. The weights are stored in bfloat16, so they are not cast again on every call
(as under Keras's "mixed_bfloat16" policy).

Which execution path is fastest depends on the device and the precision, so it is
measured (`python -m power_bert_tf.bench`, "runtimes" table: TF graph vs. XLA per
precision) and the measured choice is `default_jit_compile`:

- CPU, float32: XLA (as fast as TF's graph executor or faster).
- CPU, bfloat16: TF's graph executor, which sends bfloat16 matrix multiplies to oneDNN
  (AMX / AVX-512 BF16 where the CPU has them); XLA:CPU's bfloat16 programs are slower.
- GPU / TPU: XLA for both (not measured here).

bfloat16 pays only where the hardware multiplies in it, so `resolve_precision("auto")`
picks bfloat16 where a GPU / TPU or the CPU's AMX-BF16 / AVX512-BF16 is there, float32
elsewhere. The measurements behind these choices: docs/benchmarks.md, "Execution path
per precision".
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.config import PRECISIONS

if TYPE_CHECKING:  # Keras loads in `with_precision`: run_glue.py checks its flags without it
    from power_bert_tf.model.classifier import BertClassifier

REQUESTS = (*PRECISIONS, "auto")  # what a user may ask for (`resolve_precision`)
KERAS_POLICIES = {"fp32": "float32", "bf16": "bfloat16"}
CPU_FEATURES = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni",
                "avx512f", "avx_vnni", "avx2")


def check_precision(precision: str) -> None:
    """Raises PowerBertError unless `precision` is one of `PRECISIONS`."""
    if precision not in PRECISIONS:
        raise PowerBertError(f"--precision={precision!r} is not one of {', '.join(PRECISIONS)}")


def with_precision(model: BertClassifier, precision: str) -> BertClassifier:
    """`model` itself for "fp32"; for "bf16", a copy whose encoder computes in bfloat16.

    Args:
        model: a float32 `BertClassifier` (plain, Hard-Extract or Soft-Extract).
        precision: "fp32" or "bf16".

    Returns:
        A classifier with the same inputs, int32 (B, T), and float32 (B, C) logits.
    """
    from power_bert_tf.model.classifier import BertClassifier
    from power_bert_tf.model.policy import dtype_policy

    check_precision(precision)
    if precision == "fp32":
        return model
    encoder = model.encoder
    with dtype_policy(KERAS_POLICIES[precision]):
        low = type(encoder).from_config(encoder.get_config())
    copy = BertClassifier(low, model.num_classes, model.dropout, name=model.name)
    copy.set_weights(model.get_weights())
    return copy


def resolve_precision(request: str) -> str:
    """The precision a request computes in: "auto" is "bf16" on a GPU / TPU or a CPU with
    a bfloat16 matrix unit (`cpu_features()["bf16_matmul"]`), "fp32" elsewhere."""
    if request == "auto":
        return "bf16" if is_accelerator() or cpu_features()["bf16_matmul"] else "fp32"
    if request not in PRECISIONS:
        raise PowerBertError(f"--precision={request!r} is not one of {', '.join(REQUESTS)}")
    return request


def is_accelerator() -> bool:
    """Whether TensorFlow sees a GPU or TPU."""
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def default_jit_compile(precision: str) -> bool:
    """The measured fastest path (see the module docstring): XLA, except bfloat16 on CPU."""
    check_precision(precision)
    return precision == "fp32" or is_accelerator()


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """The CPU's matrix and vector extensions that bfloat16 / int8 speed depends on.

    Returns:
        {"flags": the `CPU_FEATURES` the CPU has, "bf16_matmul": AMX-BF16 or
        AVX512-BF16 present, "int8_matmul": AMX-INT8, AVX512-VNNI or AVX-VNNI present};
        empty flags where /proc/cpuinfo cannot be read.
    """
    try:
        text = cpuinfo.read_text()
    except OSError:
        text = ""
    present = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            present = set(line.partition(":")[2].split())
            break
    flags = [flag for flag in CPU_FEATURES if flag in present]
    return {"flags": flags,
            "bf16_matmul": bool({"amx_bf16", "avx512_bf16"} & present),
            "int8_matmul": bool({"amx_int8", "avx512_vnni", "avx_vnni"} & present)}
