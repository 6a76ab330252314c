"""Which int8 recipe keeps a trained model's predictions: ONNX Runtime dynamic
quantisation with its defaults, the project's (`serving.onnx.INT8_OPTIONS`), that
recipe with parts of the network left in float32, and static quantisation calibrated on
training examples.

    python experiments/int8_recipes.py \\
        --checkpoint=CoLA=checkpoints/table2/CoLA/power_lr5e-05_e5_seed1/CoLA/retrain/model.keras

Each checkpoint is converted to ONNX once (float32) and quantised once per recipe; every
recipe reports the dev metric, its change from float32 in points and the share of
predictions equal to float32's (the steadier signal on small dev sets). Writes
experiments/results/int8_recipes.json (--output), with its command, commit and wall time.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import runner  # noqa: E402
from power_bert_tf.cli import exit_on_user_error, quiet_native_logs  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402

FLAGS = flags.FLAGS

# Recipe -> (quantize_dynamic options, substrings of MatMul node names kept in float32).
RECIPES = {
    "onnxruntime defaults": ({}, ()),
    "project (per-channel MatMul)": (None, ()),
    "project, query/key in float32": (None, ("/query", "/key")),
    "project, layer 1 in float32": (None, ("layer_1_",)),
    "project, FFN output in float32": (None, ("output_dense",)),
}
# Static quantisation (QDQ, per-channel MatMul weights, int8 activations with scales
# calibrated on the first CALIBRATION_EXAMPLES training examples): recipe -> method.
STATIC_RECIPES = {"static, min-max calibration": "MinMax",
                  "static, percentile calibration": "Percentile"}
CALIBRATION_EXAMPLES = 256


def quantize_static(source: Path, target: Path, method: str, calibration: dict) -> Path:
    """`source` quantised statically, activation scales from `calibration` (int32 (S, N)
    features), fed in batches of 32."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod,
                                          QuantFormat, QuantType)
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{name: values[start:start + 32]
                                  for name, values in calibration.items()}
                                 for start in range(0, len(calibration["input_mask"]), 32)])

        def get_next(self):
            return next(self.batches, None)

    ort_quantize_static(str(source), str(target), Batches(), quant_format=QuantFormat.QDQ,
                        per_channel=True, op_types_to_quantize=["MatMul"],
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, method))
    return target


def quantize(source: Path, target: Path, options: dict | None, keep: tuple[str, ...]) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from power_bert_tf.serving.onnx import INT8_OPTIONS

    names = [node.name for node in onnx.load(str(source)).graph.node if node.op_type == "MatMul"]
    excluded = [name for name in names if any(part in name for part in keep)]
    if keep and not excluded:
        raise PowerBertError(f"no MatMul named like {keep} in {source}")
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                     **(INT8_OPTIONS if options is None else options),
                     nodes_to_exclude=excluded,  # the fused graph's contrib ops are untyped:
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return target


def evaluate(task_name: str, path: str, workdir: Path) -> dict:
    import numpy as np

    from power_bert_tf.bench.accuracy import ort_outputs
    from power_bert_tf.data.batching import tokenize
    from power_bert_tf.data.tasks import get_task
    from power_bert_tf.serving.onnx import convert_in_subprocess
    from power_bert_tf.training.checkpoints import load_model
    from power_bert_tf.training.metrics import compute_metrics
    from power_bert_tf.weights.pretrained import load_pretrained

    model = load_model(Path(path), "retrain")
    task = get_task(task_name, FLAGS.data_dir)
    examples = task.read("dev")
    n = model.encoder.sequence_length or 128
    tokenizer = load_pretrained(FLAGS.model).tokenizer(n)
    features = tokenize(examples, tokenizer, is_pair=task.is_pair)
    calibration = tokenize(task.read("train")[:CALIBRATION_EXAMPLES], tokenizer,
                           is_pair=task.is_pair)
    labels = np.array([example.label for example in examples])
    layers = model.encoder.num_layers
    fp32 = convert_in_subprocess(model, workdir / "model.onnx", n, workdir)
    reference, _ = ort_outputs(fp32, features, 64, layers)
    base = compute_metrics(task, labels, reference)[task.metric]
    result = {"checkpoint": path, "metric": task.metric, "float32": round(base, 6),
              "examples": len(labels), "recipes": {}}
    print(f"{task.name} {path}: float32 {task.metric} {base:.4f}", flush=True)
    files = {name: quantize(fp32, workdir / f"int8_{index}.onnx", options, keep)
             for index, (name, (options, keep)) in enumerate(RECIPES.items())}
    files.update({name: quantize_static(fp32, workdir / f"static_{index}.onnx", method,
                                        calibration)
                  for index, (name, method) in enumerate(STATIC_RECIPES.items())})
    for name, file in files.items():
        logits, _ = ort_outputs(file, features, 64, layers)
        value = compute_metrics(task, labels, logits)[task.metric]
        agreement = (float((logits.argmax(-1) == reference.argmax(-1)).mean())
                     if task.labels is not None else None)
        result["recipes"][name] = {"value": round(value, 6),
                                   "change_points": round(100 * (value - base), 3),
                                   "prediction_agreement": agreement}
        print(f"  {name:<32} {value:.4f} ({100 * (value - base):+.2f} points), agreement "
              f"{agreement}", flush=True)
    return result


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise PowerBertError(f"unexpected arguments: {' '.join(argv[1:])}")
    entries = [entry.partition("=") for entry in FLAGS.checkpoint]
    if not entries or any(not path for _, _, path in entries):
        raise PowerBertError("--checkpoint=TASK=PATH is required (repeat it per model)")
    output = Path(FLAGS.output)
    if output.exists() and not FLAGS.overwrite:
        raise PowerBertError(f"{output} exists; pass --overwrite to replace it")
    started, runs = time.time(), []
    for task_name, _, path in entries:
        with tempfile.TemporaryDirectory(prefix="int8_recipes_") as workdir:
            runs.append({"task": task_name, **evaluate(task_name, path, Path(workdir))})
    command = " ".join(["python", "experiments/int8_recipes.py", *sys.argv[1:]])
    runner.write_result(output, {"runs": runs}, started=started, commands=[command],
                        overwrite=FLAGS.overwrite)
    print(f"wrote {output}")


if __name__ == "__main__":
    quiet_native_logs()  # TensorFlow's C++ records, here and in the runs it starts
    flags.DEFINE_multi_string("checkpoint", [], "TASK=PATH of a trained model.keras; repeat.")
    flags.DEFINE_string("model", "embedded", "The pre-trained model (its tokenizer).")
    flags.DEFINE_string("data_dir", None, "GLUE data root (default: $GLUE_DIR, else "
                        "../shared/glue).")
    flags.DEFINE_string("output", "experiments/results/int8_recipes.json", "Result JSON.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing --output.")
    app.run(exit_on_user_error(main))
