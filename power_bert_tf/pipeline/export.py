"""The export phase: the retrained model as a versioned TF Serving SavedModel, or as
ONNX (float32 and int8) for ONNX Runtime."""
from __future__ import annotations

from pathlib import Path

from power_bert_tf.errors import PowerBertError
from power_bert_tf.pipeline.context import Context
from power_bert_tf.serving.saved_model import export_saved_model
from power_bert_tf.serving.onnx import INT8_FILE, RUNTIME_FILE, export_onnx
from power_bert_tf.training.checkpoints import load_model


def export(ctx: Context) -> dict:
    """Exports `<task_dir>/retrain/model.keras` to `<export_dir>/<task>/<version>/`, or
    with `export_format` "onnx" to `<export_dir>/<task>-onnx/<version>/`.

    Reads `ctx.config.export_dir` (None: `<output_dir>/export`),
    `ctx.config.export_version` (None: 1 + the largest existing version) and
    `ctx.config.precision` (SavedModel only), then prints the folder and the commands
    that inspect, serve and query it.
    """
    config = ctx.config
    model = load_model(ctx.reads("retrain").model, "retrain")
    export_dir = Path(config.export_dir or Path(config.output_dir) / "export")
    if config.export_format == "onnx":
        return _export_onnx(ctx, model, export_dir)
    path = export_saved_model(
        model, ctx.pretrained.tokenizer(model.encoder.sequence_length), export_dir,
        ctx.task.name, config.export_version, labels=ctx.task.labels,
        retention=model.encoder.retention, task_name=ctx.task.name, is_pair=ctx.task.is_pair,
        precision=config.precision,
    ).resolve()
    name = "".join(c for c in ctx.task.name.lower() if c.isalnum())
    base = path.parent
    text_flags = '--text_a="..." --text_b="..."' if ctx.task.is_pair else '--text="..."'
    print(f"exported {ctx.task.name} (retention {','.join(map(str, model.encoder.retention))}) "
          f"to {path} (TF Serving warm-up: one request per length bucket)\n"
          f"  inspect: saved_model_cli show --all --dir {path}\n"
          f"  serve:   tensorflow_model_server --rest_api_port=8501 --model_name={name} "
          f"--model_base_path={base} --xla_cpu_compilation_enabled=true\n"
          f"  docker:  docker run -p 8501:8501 -v {base}:/models/{name} -e MODEL_NAME={name} "
          f"tensorflow/serving --xla_cpu_compilation_enabled=true\n"
          f"  query:   python -m power_bert_tf.serving.client "
          f"--url=http://localhost:8501/v1/models/{name}:predict {text_flags}")
    return {"export": str(path), "version": int(path.name), "model_name": name}


def _export_onnx(ctx: Context, model, export_dir: Path) -> dict:
    if ctx.config.precision not in ("fp32", "auto"):
        raise PowerBertError("--export_format=onnx writes float32 and int8 models; drop "
                             f"--precision={ctx.config.precision}")
    pretrained = ctx.pretrained
    path = export_onnx(
        model, export_dir, f"{ctx.task.name}-onnx", ctx.config.export_version,
        vocab_file=pretrained.vocab_file, lower_case=pretrained.lower_case,
        max_seq_length=model.encoder.sequence_length or ctx.config.max_seq_length,
        labels=ctx.task.labels,
        task_name=ctx.task.name, is_pair=ctx.task.is_pair,
        batch_size=ctx.config.onnx_batch_size or None).resolve()
    print(f"exported {ctx.task.name} (retention {','.join(map(str, model.encoder.retention))}) "
          f"to {path} (ONNX float32 and {INT8_FILE})\n"
          f"  run (needs only onnxruntime and numpy): sys.path.insert(0, \"{path}\"); "
          f"import {RUNTIME_FILE[:-3]}; {RUNTIME_FILE[:-3]}.OnnxClassifier(\"{path}\")"
          f".predict([...])")
    return {"export": str(path), "version": int(path.name), "format": "onnx"}
