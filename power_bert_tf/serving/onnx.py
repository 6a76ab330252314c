"""ONNX export for ONNX Runtime: float32 and dynamically quantised int8 models.

`export_onnx` writes a versioned folder that needs only `onnxruntime` and NumPy to run:

    <export_dir>/<model_name>/<version>/
        model.onnx          float32; inputs input_word_ids, input_mask, input_type_ids,
                            int32 (B, N); outputs logits float32 (B, C) and, per layer j,
                            kept_positions_j int32 (B, l_j), the input positions it kept;
                            fused (`serving.onnx_fusion`): LayerNormalization,
                            SkipLayerNormalization and Gelu (ONNX Runtime's contrib
                            operators, so it runs on ONNX Runtime)
        model_int8.onnx     the same with int8 weights and dynamically quantised
                            activations (ONNX Runtime `quantize_dynamic`), written when
                            asked for
        vocab.txt           the WordPiece vocabulary
        power_bert.json     task, labels, lower_case, max_seq_length N, retention, files,
                            fused_operators (per file: its fused operator counts)
        power_bert_onnx.py  WordPiece pre-processing and `OnnxClassifier`
                            (a copy of power_bert_tf/serving/onnx_runtime.py)

N is fixed: Hard-Extract's per-layer top-k sizes l_j are static ONNX TopK constants, so
inputs are padded to N (the pre-processing does). A relative-mode model gathers
K_j = ceil(f_j * N) and masks each input's extra ones (`RelativeHardExtract`); its
kept_positions_j are -1 where masked out. The conversion uses tf2onnx on the
model's tf.function. TensorFlow lowers the exact GELU to `Erfc`, which tf2onnx does not
map; `_erfc_handler` writes it as 1 - Erf(x).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf

from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.serving import onnx_runtime
from power_bert_tf.serving.onnx_fusion import fuse, fused_counts
from power_bert_tf.serving.saved_model import make_readable, next_version
from power_bert_tf.data.tokenizer import INPUT_NAMES

MODEL_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
RUNTIME_FILE = "power_bert_onnx.py"
OPSET = 17
# onnxruntime.quantization.quantize_dynamic options of `quantize_int8`.
INT8_OPTIONS = {"per_channel": True, "op_types_to_quantize": ["MatMul"]}
INT8_RECIPES = {"per-channel": INT8_OPTIONS, "ort-default": {}}


def _erfc_handler(ctx, node, name, args) -> None:
    """tf2onnx handler: Erfc(x) -> 1 - Erf(x), in x's dtype."""
    from tf2onnx import utils

    node.type = "Erf"
    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype))
    ctx.insert_new_node_on_output("Sub", node.output[0], name=utils.make_name(f"{node.name}_1m"),
                                  inputs=[one.output[0], node.output[0]])


def onnx_function(model: BertClassifier, sequence_length: int | None,
                  batch_size: int | None = None) -> tf.function:
    """int32 (B, N) features -> {"logits": (B, C), "kept_positions_j": (B, l_j) per layer}.

    N = `sequence_length`; None leaves the length dynamic (plain models). B =
    `batch_size`; None leaves it dynamic."""
    encoder = model.encoder
    logits_layer, dropout_layer = model.get_layer("logits"), model.get_layer("classifier_dropout")

    def forward(input_word_ids, input_mask, input_type_ids):
        outputs = encoder({"input_word_ids": input_word_ids, "input_mask": input_mask,
                           "input_type_ids": input_type_ids}, training=False)
        logits = logits_layer(dropout_layer(outputs["pooled_output"], training=False))
        result = {"logits": tf.cast(logits, tf.float32)}
        if encoder.extract == "hard":
            for j, positions in enumerate(outputs["kept_positions"], start=1):
                result[f"kept_positions_{j}"] = tf.cast(positions, tf.int32)
        return result

    return tf.function(forward, input_signature=[
        tf.TensorSpec((batch_size, sequence_length), tf.int32, name=name)
        for name in INPUT_NAMES])


def convert(model: BertClassifier, path: Path, sequence_length: int | None,
            batch_size: int | None = None, fused: bool = True) -> Path:
    """Writes `model` at input length N = `sequence_length` (None: any length, plain
    models only) and batch size `batch_size` (None: any) as one self-contained ONNX file
    at `path`.

    A fixed batch size makes every shape static, so the shape arithmetic of each layer
    (Shape, Gather, Concat, Reshape on the batch dimension) folds into constants: on
    BERT-base at N=128 and batch 1, Hard-Extract's graph shrinks from 2,766 to 1,429
    nodes (the plain model's from 1,165 to 853), which counts most at small batches,
    where ONNX Runtime's cost per node weighs against the shrinking matrix multiplies.

    tf2onnx translates the frozen `tf.function` op by op (its "large model" mode keeps the
    weights out of the graph meanwhile), without its own graph optimisers: on BERT-base
    they held copies of the weights past 19 GB, against 4.3 GB without. ONNX Runtime's
    pre-processing for quantisation (`quant_pre_process`: its basic graph optimisations
    and shape inference) then folds the constant reshapes and transposes of the weights,
    so each MatMul reads an initializer, as `quantize_int8` needs (on the MiniLM: the
    same 38 quantised MatMuls as after tf2onnx's optimisers, and no slower a graph).
    `fused` then rewrites LayerNorm, GELU and the dense layers' reshapes and runs ONNX
    Runtime's transformer optimizer (`serving.onnx_fusion.fuse`: SkipLayerNormalization,
    Gelu, `serving.onnx_passes`); False keeps tf2onnx's op-by-op graph.
    """
    import onnx
    import tf2onnx
    import tf2onnx.graph
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from tf2onnx import tf_loader, tf_utils, tfonnx

    if model.encoder.extract == "soft":
        raise PowerBertError("a search (Soft-Extract) model cannot be exported: export the "
                             "retrained (Hard-Extract) or the fine-tuned model")
    if sequence_length is None and model.encoder.extract == "hard":
        raise PowerBertError("a Hard-Extract model needs a fixed sequence_length for ONNX")
    concrete = onnx_function(model, sequence_length, batch_size).get_concrete_function()
    inputs = [tensor.name for tensor in concrete.inputs if tensor.dtype != tf.resource]
    outputs = [tensor.name for tensor in concrete.outputs if tensor.dtype != tf.resource]
    if not hasattr(np, "product"):  # tf2onnx 1.17's large-model path calls np.product,
        np.product = np.prod        # which NumPy 2 removed; np.prod is the same function
    frozen = tf_loader.from_function(concrete, inputs, outputs, large_model=True)
    storage = tf2onnx.graph.ExternalTensorStorage()
    with tf.Graph().as_default() as graph:
        constants = tf_utils.compress_graph_def(frozen)
        tf.import_graph_def(frozen, name="")
        converted = tfonnx.process_tf_graph(
            graph, opset=OPSET, custom_op_handlers={"Erfc": (_erfc_handler, [])},
            input_names=inputs, output_names=outputs, const_node_values=constants,
            tensors_to_rename=tf2onnx.convert.tensor_names_from_structed(concrete, inputs,
                                                                         outputs))
        proto = converted.make_model("PoWER-BERT", external_tensor_storage=storage)
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next(entry.value for entry in tensor.external_data
                            if entry.key == "location")
            tensor.raw_data = storage.name_to_tensor_data[location]
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
    raw = Path(path).with_suffix(".raw.onnx")
    folded = Path(path).with_suffix(".folded.onnx")
    onnx.save(proto, str(raw))
    try:
        quant_pre_process(str(raw), str(folded if fused else path), skip_symbolic_shape=True)
        if fused:
            fuse(folded, path, model.encoder.num_heads, model.encoder.hidden_size)
    finally:
        raw.unlink(missing_ok=True)
        folded.unlink(missing_ok=True)
    return path


def quantize_int8(source: Path, target: Path, recipe: str = "per-channel") -> Path:
    """ONNX Runtime dynamic quantisation: int8 weights, activations quantised per call (no
    calibration data). `recipe` (`INT8_RECIPES`): "per-channel", the MatMuls only with
    one weight scale per output channel, the embedding tables (Gather) left float32;
    "ort-default", `quantize_dynamic`'s defaults (one scale per tensor, Gather too).

    The per-channel recipe is the export's, chosen by `experiments/int8_recipes.py`
    (docs/serving.md): on trained MiniLM models it kept more dev predictions equal to
    float32's than ONNX Runtime's defaults.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if recipe not in INT8_RECIPES:
        raise PowerBertError(f"int8 recipe {recipe!r} is not one of {', '.join(INT8_RECIPES)}")
    # The quantiser logs a line per tensor at INFO on the root logger (hundreds for
    # BERT-base), which absl's drivers would print: warnings and errors only.
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:  # shape inference cannot type the fused graph's contrib operators' outputs
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                         **INT8_RECIPES[recipe])
    finally:
        root.setLevel(level)
    return target


def export_onnx(model: BertClassifier, export_dir: Path, model_name: str,
                version: int | None = None, *, vocab_file: Path, lower_case: bool,
                max_seq_length: int, labels: Sequence[str] | None, task_name: str,
                is_pair: bool, int8: bool = True, batch_size: int | None = None) -> Path:
    """Writes `<export_dir>/<model_name>/<version>/` (see the module docstring).

    Args:
        model: a float32 classifier (Hard-Extract or plain), (B, C) logits.
        export_dir, model_name, version: as `export_saved_model`; an existing version
            is an error, never overwritten.
        vocab_file, lower_case: the WordPiece vocabulary and casing (BERT models).
        max_seq_length: N, the input length of the ONNX graph.
        labels: label strings in class-index order; None for regression.
        task_name: recorded in the metadata.
        is_pair: whether the task takes sentence pairs (recorded).
        int8: also write the dynamically quantised `model_int8.onnx`.
        batch_size: a fixed batch size B of the graph (faster at small B, see
            `convert`); None: any. `OnnxClassifier` feeds a fixed-B graph B rows at a time.

    Returns:
        The version folder.
    """
    if model.encoder.model_type != "bert":
        raise PowerBertError(f"ONNX export supports BERT (WordPiece) models, not "
                             f"{model.encoder.model_type}")
    expected = 1 if labels is None else len(labels)
    if model.num_classes != expected:
        raise PowerBertError(f"the model has {model.num_classes} outputs but the labels need "
                             f"{expected}")
    base = Path(export_dir) / model_name
    version = next_version(base) if version is None else version
    target = base / str(version)
    if target.exists():
        raise PowerBertError(f"{target} exists and is never overwritten: pass another "
                             f"version (next free: {next_version(base)})")
    import onnx

    base.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{version}.partial-", dir=base))
    try:
        convert(model, partial / MODEL_FILE, max_seq_length, batch_size)
        files = [MODEL_FILE]
        if int8:
            quantize_int8(partial / MODEL_FILE, partial / INT8_FILE)
            files.append(INT8_FILE)
        shutil.copyfile(vocab_file, partial / "vocab.txt")
        shutil.copyfile(onnx_runtime.__file__, partial / RUNTIME_FILE)
        metadata = {
            "task": task_name, "version": version, "format": "onnx", "opset": OPSET,
            "labels": None if labels is None else list(labels), "is_pair": is_pair,
            "lower_case": lower_case, "max_seq_length": max_seq_length,
            "batch_size": batch_size,
            "retention": model.encoder.retention,
            "retention_mode": model.encoder.retention_mode, "files": files,
            "fused_operators": {file: fused_counts(onnx.load(str(partial / file)))
                                for file in files},
            "inputs": list(INPUT_NAMES),
            "outputs": ["logits"] + [f"kept_positions_{j}" for j in
                                     range(1, model.encoder.num_layers + 1)
                                     if model.encoder.extract == "hard"],
        }
        (partial / onnx_runtime.METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        make_readable(partial)  # 0755 / 0644: a server running as another user reads it
        os.rename(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def convert_in_subprocess(model: BertClassifier, path: Path, sequence_length: int | None,
                          workdir: Path, batch_size: int | None = None,
                          fused: bool = True) -> Path:
    """`convert` in a child process, so that the converter's peak memory (4.3 GB for
    BERT-base) is returned to the system when it ends; the model travels as a .keras file
    in `workdir`."""
    import subprocess
    import sys

    saved = Path(workdir) / f"{Path(path).stem}.keras"
    model.save(saved)
    command = [sys.executable, "-m", "power_bert_tf.serving.onnx", str(saved), str(path),
               str(sequence_length or 0), str(batch_size or 0), str(int(fused))]
    result = subprocess.run(command, capture_output=True, text=True)
    saved.unlink()
    if result.returncode != 0:
        raise PowerBertError(f"ONNX conversion failed (exit status {result.returncode}): "
                             f"{result.stderr.strip().splitlines()[-1:]}")
    return Path(path)


if __name__ == "__main__":  # python -m power_bert_tf.serving.onnx MODEL.keras OUT.onnx N B FUSED
    # (N, B: 0 for any; FUSED: 1 or 0)
    import sys

    import keras

    import power_bert_tf.model.classifier  # noqa: F401  (registers the Keras classes)

    convert(keras.saving.load_model(sys.argv[1], compile=False), Path(sys.argv[2]),
            int(sys.argv[3]) or None, int(sys.argv[4]) or None, sys.argv[5] == "1")
