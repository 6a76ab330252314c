"""Inference precision: the bfloat16 copy, its execution path and the CPU features."""
import numpy as np
import pytest

from conftest import random_inputs
from power_bert_tf.pipeline.config import RunConfig
from power_bert_tf.errors import PowerBertError
from power_bert_tf.serving.inference import BucketedPredictor
from power_bert_tf.serving import precision as precision_module
from power_bert_tf.serving.precision import (cpu_features, default_jit_compile, resolve_precision,
                                             with_precision)
from serving_models import N, tiny_classifier
from tiny_task import VOCAB


@pytest.fixture(scope="module")
def model():
    return tiny_classifier()


@pytest.fixture(scope="module")
def inputs():
    return random_inputs(16, N, lengths=list(range(3, N + 1, 2)), seed=4,
                         vocabulary_size=len(VOCAB))


def test_fp32_is_the_model_itself(model):
    assert with_precision(model, "fp32") is model


def test_bf16_copy_computes_in_bfloat16_and_returns_float32(model, inputs):
    low = with_precision(model, "bf16")
    assert low is not model and low.encoder.retention == model.encoder.retention
    kernels = [v for v in low.encoder.weights if v.path.endswith("kernel")]
    assert kernels and all(v.dtype == "bfloat16" for v in kernels)
    assert low.get_layer("logits").dtype_policy.compute_dtype == "float32"
    expected = model(inputs, training=False).numpy()
    logits = low(inputs, training=False).numpy()
    assert logits.dtype == np.float32
    # bfloat16 keeps 8 significant bits: logits agree to about 1e-2 of their scale.
    assert np.abs(logits - expected).max() < 0.05 * np.abs(expected).max()
    assert (logits.argmax(1) == expected.argmax(1)).mean() >= 0.9
    kept = model.encoder(inputs, training=False)["kept_positions"][-1].numpy()
    kept_low = low.encoder(inputs, training=False)["kept_positions"][-1].numpy()
    # Near-tied scores of the random tiny model may swap a kept position or two (how
    # often depends on the CPU's bfloat16 path): the kept sets overlap, row by row.
    overlap = np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(kept, kept_low)])
    assert kept_low.shape == kept.shape and overlap > 0.8
    # The float32 model is left as it was.
    assert all(v.dtype == "float32" for v in model.weights)


def test_predictor_in_bf16_takes_the_graph_path_on_cpu(model, inputs):
    fp32 = BucketedPredictor(model)
    bf16 = BucketedPredictor(model, precision="bf16")
    assert (fp32.jit_compile, bf16.jit_compile) == (True, False)  # no GPU in the tests
    assert (default_jit_compile("fp32"), default_jit_compile("bf16")) == (True, False)
    expected, logits = fp32(inputs), bf16(inputs)
    assert logits.dtype == np.float32 and logits.shape == expected.shape
    assert np.abs(logits - expected).max() < 0.05 * np.abs(expected).max()


def test_unknown_precision_is_a_one_line_error(model):
    with pytest.raises(PowerBertError, match="--precision='fp16' is not one of fp32, bf16"):
        with_precision(model, "fp16")
    with pytest.raises(PowerBertError, match="--precision='int4'"):
        RunConfig(task="SST-2", phase="evaluate", output_dir="out", precision="int4")


def test_cpu_features_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni amx_tile "
                       "amx_bf16\nprocessor\t: 1\n")
    assert cpu_features(cpuinfo) == {
        "flags": ["amx_bf16", "amx_tile", "avx512_vnni", "avx512f", "avx2"],
        "bf16_matmul": True, "int8_matmul": True}
    assert cpu_features(tmp_path / "missing") == {"flags": [], "bf16_matmul": False,
                                                  "int8_matmul": False}


@pytest.mark.parametrize("accelerator, bf16_unit, expected", [
    (False, False, "fp32"), (False, True, "bf16"), (True, False, "bf16")])
def test_auto_precision_is_bf16_only_where_the_hardware_has_it(model, monkeypatch,
                                                               accelerator, bf16_unit,
                                                               expected):
    monkeypatch.setattr(precision_module, "is_accelerator", lambda: accelerator)
    monkeypatch.setattr(precision_module, "cpu_features",
                        lambda: {"flags": [], "bf16_matmul": bf16_unit, "int8_matmul": False})
    assert resolve_precision("auto") == expected
    assert resolve_precision("bf16") == "bf16" and resolve_precision("fp32") == "fp32"
    assert BucketedPredictor(model, precision="auto").precision == expected
    with pytest.raises(PowerBertError, match="is not one of fp32, bf16, auto"):
        resolve_precision("fp16")
    RunConfig(task="SST-2", phase="evaluate", output_dir="out", precision="auto")
