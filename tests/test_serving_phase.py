"""The export phase on a tiny retrained model: versioned folders and serving commands."""
import json
from pathlib import Path

import pytest
import tensorflow as tf

from power_bert_tf.pipeline.config import RunConfig
from power_bert_tf.errors import PowerBertError
from power_bert_tf.pipeline.export import export
from power_bert_tf.pipeline import phases
from tiny_task import tiny_run_config, write_tiny_model, write_tiny_task


def make_config(root, **overrides) -> RunConfig:
    options = dict(phase="retrain", finetune_epochs=1, retrain_epochs=1,
                   retention_config="8,6,4")
    return tiny_run_config(root / "model", root / "data" / "train.tsv", root / "data" / "dev.tsv",
                           root / "out", **{**options, **overrides})


@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("phase")
    write_tiny_model(root / "model")
    write_tiny_task(root / "data", train=32, dev=8)
    phases.run(make_config(root, phase="finetune"))
    phases.run(make_config(root, phase="retrain"))
    return root


def test_export_phase(retrained, capsys):
    result = export(phases.make_context(make_config(retrained)))
    path = retrained / "out" / "export" / "custom" / "1"
    assert result == {"export": str(path.resolve()), "version": 1, "model_name": "custom"}
    printed = capsys.readouterr().out
    assert f"saved_model_cli show --all --dir {path.resolve()}" in printed
    assert (f"tensorflow_model_server --rest_api_port=8501 --model_name=custom "
            f"--model_base_path={path.parent.resolve()}") in printed
    assert f"-v {path.parent.resolve()}:/models/custom -e MODEL_NAME=custom" in printed
    outputs = tf.saved_model.load(str(path)).signatures["serving_default"](
        text=tf.constant(["a good film .", "a dull plot ."]))
    assert set(outputs["label"].numpy().tolist()) <= {b"neg", b"pos"}

    # The next free version (2, 3, ...) is export_saved_model's, tested in test_export.
    with pytest.raises(PowerBertError, match="exists and is never overwritten"):
        export(phases.make_context(make_config(retrained, export_version=1)))
    other = retrained / "elsewhere"
    result = export(phases.make_context(make_config(retrained, export_dir=str(other),
                                                    export_version=5)))
    assert result["export"] == str((other / "custom" / "5").resolve())


def test_export_needs_a_retrained_model(tmp_path):
    write_tiny_model(tmp_path / "model")
    write_tiny_task(tmp_path / "data", train=8, dev=4)
    with pytest.raises(PowerBertError, match="no retrain model at .*run --phase=retrain first"):
        export(phases.make_context(make_config(tmp_path)))


def test_onnx_export_phase(retrained, capsys):
    pytest.importorskip("tf2onnx")
    result = export(phases.make_context(make_config(retrained, export_format="onnx")))
    path = (retrained / "out" / "export" / "custom-onnx" / "1").resolve()
    assert result == {"export": str(path), "version": 1, "format": "onnx"}
    assert (path / "model.onnx").is_file() and (path / "model_int8.onnx").is_file()
    assert "needs only onnxruntime and numpy" in capsys.readouterr().out
    fixed = export(phases.make_context(make_config(retrained, export_format="onnx",
                                                   onnx_batch_size=2)))
    metadata = json.loads((Path(fixed["export"]) / "power_bert.json").read_text())
    assert (fixed["version"], metadata["batch_size"]) == (2, 2)
    with pytest.raises(PowerBertError, match="--export_format=onnx writes float32 and int8 models"):
        export(phases.make_context(make_config(retrained, export_format="onnx",
                                               precision="bf16")))


def test_evaluate_in_bf16(retrained):
    config = make_config(retrained, phase="evaluate", precision="bf16", timing_repeats=1,
                         overwrite=True)
    summary = phases.evaluate(phases.make_context(config))
    assert (summary["precision"], summary["jit_compile"]) == ("bf16", False)  # CPU: graph
    fp32 = phases.evaluate(phases.make_context(make_config(
        retrained, phase="evaluate", timing_repeats=1, overwrite=True)))
    assert (fp32["precision"], fp32["jit_compile"]) == ("fp32", True)
    # 8 dev examples: bfloat16 may flip a near-tie, not more.
    assert abs(summary["power_bert"]["dev"]["accuracy"]
               - fp32["power_bert"]["dev"]["accuracy"]) <= 0.125
