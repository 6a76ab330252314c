"""Dev metric of a trained model in each precision and runtime, and its change from fp32.

    python -m power_bert_tf.bench.accuracy \\
        --checkpoint=SST-2=checkpoints/glue/SST-2/retrain/model.keras \\
        --checkpoint=RTE=checkpoints/glue/RTE/retrain/model.keras

For each checkpoint the task's dev set (tokenized by the model's in-graph tokenizer,
padded to the model's N) runs through TF fp32, TF bf16 (`serving.precision`) and, with
the `[onnx]` extra, ONNX Runtime fp32 and int8 (`serving.onnx`). Each variant reports
the task metric, its change from TF fp32 in points (x100), the share of predictions
equal to TF fp32's and, for a Hard-Extract model, the share of kept positions
(per row, as sets) equal to TF fp32's in the first and the last layer. Writes
experiments/results/precision_accuracy_<time>.json unless --output says otherwise.
"""
from __future__ import annotations

import datetime
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from power_bert_tf.errors import PowerBertError
from power_bert_tf.data.tokenizer import INPUT_NAMES
from power_bert_tf.serving.precision import with_precision

VARIANTS = ("tf fp32", "tf bf16", "ort fp32", "ort int8")


def tf_outputs(model, features: dict, batch_size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """(S, C) logits and, for Hard-Extract, each layer's (S, l_j) kept positions."""
    logits, kept = [], []
    for start in range(0, len(features["input_mask"]), batch_size):
        batch = {name: values[start:start + batch_size] for name, values in features.items()}
        logits.append(np.asarray(model(batch, training=False), np.float32))
        if model.encoder.extract == "hard":
            kept.append([p.numpy() for p in model.encoder(batch, training=False)["kept_positions"]])
    layers = [np.concatenate(layer) for layer in zip(*kept)] if kept else []
    return np.concatenate(logits), layers


def ort_outputs(path: Path, features: dict, batch_size: int, layers: int
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    logits, kept = [], []
    for start in range(0, len(features["input_mask"]), batch_size):
        outputs = dict(zip(names, session.run(names, {
            name: features[name][start:start + batch_size] for name in INPUT_NAMES})))
        logits.append(outputs["logits"])
        kept.append([outputs[f"kept_positions_{j}"] for j in range(1, layers + 1)
                     if f"kept_positions_{j}" in outputs])
    return np.concatenate(logits), [np.concatenate(layer) for layer in zip(*kept)]


def _overlap(kept: np.ndarray, reference: np.ndarray) -> float:
    """Mean over rows of |kept ∩ reference| / |reference| (the kept positions as sets)."""
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(kept, reference)]))


def precision_accuracy(model, features: dict[str, np.ndarray], labels: np.ndarray, task, *,
                       batch_size: int = 64, variants: Sequence[str] = VARIANTS) -> dict:
    """Metric of `model` on (`features`, `labels`) in each of `variants`, beside TF fp32's.

    Args:
        model: a float32 `BertClassifier` (Hard-Extract or plain).
        features: int32 (S, N) arrays, N the model's input length.
        labels: (S,) labels (class indices or scores).
        task: the `Task` (its metric).
    """
    from power_bert_tf.training.metrics import compute_metrics

    if "tf fp32" not in variants:
        raise PowerBertError("precision_accuracy compares with 'tf fp32'; include it")
    features = {name: np.asarray(features[name], np.int32) for name in INPUT_NAMES}
    metric = task.metric
    outputs, notes = {}, []
    for variant in variants:
        runtime, precision = variant.split()
        if runtime == "tf":
            outputs[variant] = tf_outputs(with_precision(model, precision), features, batch_size)
    onnx_variants = [variant for variant in variants if variant.startswith("ort")]
    if onnx_variants:
        from power_bert_tf.bench.runtimes import onnx_available

        if not onnx_available():
            notes.append("ONNX Runtime variants skipped: pip install '.[onnx]'")
        else:
            from power_bert_tf.serving.onnx import convert_in_subprocess, quantize_int8

            with tempfile.TemporaryDirectory(prefix="power_bert_accuracy_") as workdir:
                fp32 = convert_in_subprocess(model, Path(workdir) / "model.onnx",
                                             features["input_mask"].shape[1], Path(workdir))
                files = {"ort fp32": fp32,
                         "ort int8": quantize_int8(fp32, Path(workdir) / "model_int8.onnx")}
                for variant in onnx_variants:
                    outputs[variant] = ort_outputs(files[variant], features, batch_size,
                                                    model.encoder.num_layers)
    reference_logits, reference_kept = outputs["tf fp32"]
    reference = compute_metrics(task, labels, reference_logits)[metric]
    results = {}
    for variant, (logits, kept) in outputs.items():
        value = compute_metrics(task, labels, logits)[metric]
        result = {"metric": metric, "value": round(value, 6),
                  "change_points": round(100 * (value - reference), 3),
                  "max_abs_logit_diff": float(np.abs(logits - reference_logits).max())}
        if task.labels is not None:
            result["prediction_agreement"] = float(
                (logits.argmax(-1) == reference_logits.argmax(-1)).mean())
        if kept and reference_kept:
            result["kept_overlap_first_layer"] = _overlap(kept[0], reference_kept[0])
            result["kept_overlap_last_layer"] = _overlap(kept[-1], reference_kept[-1])
        results[variant] = result
    return {"examples": int(len(labels)), "sequence_length": int(features["input_mask"].shape[1]),
            "retention": model.encoder.retention, "variants": results, "notes": notes}


def main(argv: list[str]) -> None:
    from absl import flags

    from power_bert_tf.bench.report import git_commit, machine_info, provenance
    from power_bert_tf.data.batching import tokenize
    from power_bert_tf.data.tasks import get_task
    from power_bert_tf.training.checkpoints import load_model
    from power_bert_tf.weights.pretrained import load_pretrained

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise PowerBertError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.checkpoint:
        raise PowerBertError("--checkpoint=TASK=PATH is required (repeat it per model)")
    for entry in FLAGS.checkpoint:
        if not entry.partition("=")[2]:
            raise PowerBertError(f"--checkpoint={entry}: expected TASK=PATH")
    tasks = [entry.partition("=")[0] for entry in FLAGS.checkpoint]
    repeated = sorted({task for task in tasks if tasks.count(task) > 1})
    if repeated:
        raise PowerBertError(f"--checkpoint: {', '.join(repeated)} given twice; one model per "
                             "task in a run")
    started, load_at_start, commit = time.time(), os.getloadavg(), git_commit()
    pretrained = load_pretrained(FLAGS.model)
    report = {"created": datetime.datetime.now().isoformat(timespec="seconds"),
              "model": FLAGS.model, "machine": machine_info("cpu"), "runs": {}}
    for entry in FLAGS.checkpoint:
        task_name, _, path = entry.partition("=")
        model = load_model(Path(path), "retrain")
        task = get_task(task_name, FLAGS.data_dir)
        examples = task.read("dev")[:FLAGS.max_examples]
        n = model.encoder.sequence_length or FLAGS.max_seq_length
        tokenizer = pretrained.tokenizer(n)
        features = tokenize(examples, tokenizer, is_pair=task.is_pair)
        labels = np.array([example.label for example in examples])
        print(f"{task.name}: {len(labels)} dev examples, N={n}, {path}", flush=True)
        result = precision_accuracy(model, features, labels, task,
                                    batch_size=FLAGS.eval_batch_size)
        report["runs"][task.name] = {"checkpoint": path, **result}
        for variant, values in result["variants"].items():
            print(f"  {variant:<9} {values['metric']} {values['value']:.4f} "
                  f"({values['change_points']:+.2f} points)"
                  + (f", kept positions (last layer) {values['kept_overlap_last_layer']:.3f} "
                     "as fp32's" if "kept_overlap_last_layer" in values else ""), flush=True)
    report["provenance"] = provenance(started, load_at_start, commit, time.time(),
                                      "power_bert_tf.bench.accuracy")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    output = Path(FLAGS.output or f"experiments/results/precision_accuracy_{stamp}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("x") as file:
        json.dump(report, file, indent=2)
        file.write("\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    from absl import app, flags

    from power_bert_tf.cli import exit_on_user_error

    flags.DEFINE_multi_string("checkpoint", [], "TASK=PATH of a trained model.keras (the "
                              "retrain phase's, or the fine-tuned baseline's); repeat per model.")
    flags.DEFINE_string("model", "embedded", "The pre-trained model the checkpoints were "
                        "fine-tuned from (its tokenizer): embedded or a folder.")
    flags.DEFINE_string("data_dir", None, "GLUE data root (default: $GLUE_DIR, else "
                        "../shared/glue).")
    flags.DEFINE_integer("max_seq_length", 128, "N for models built without a fixed length.")
    flags.DEFINE_integer("eval_batch_size", 64, "Batch size.")
    flags.DEFINE_integer("max_examples", None, "Only the first this many dev examples.")
    flags.DEFINE_string("output", None, "JSON path (default: experiments/results/"
                        "precision_accuracy_<time>.json); an existing file is an error.")
    app.run(exit_on_user_error(main))
