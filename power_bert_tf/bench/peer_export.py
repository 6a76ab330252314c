"""The peer deployment of a plain BERT classifier: Hugging Face transformers ->
torch.onnx.export -> ONNX Runtime's transformer optimizer -> `quantize_dynamic` defaults.

Run by `bench.peer` as a script under a Python with torch and transformers (the
`[peer]` extra, or another interpreter), never imported by the package: it imports
only torch, transformers, onnxruntime and NumPy.

    PEER_PYTHON peer_export.py WEIGHTS.npz CONFIG.json OUT_DIR BATCH N

WEIGHTS.npz holds the classifier's tensors under Hugging Face's names
(`BertForSequenceClassification`), CONFIG.json its `BertConfig` arguments. Writes
OUT_DIR/peer.onnx (float32, optimised) and OUT_DIR/peer_int8.onnx, and prints one JSON
line: the versions, the optimizer's fused operator counts and the largest difference of
the PyTorch logits from the exported graph's.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def rename_gemm_tensors(model) -> None:
    """Renames the "gemm_*" tensors ONNX Runtime's MatMulAddFusion wrote into the saved
    graph: loading it runs that fusion again, which adds initializers of the same names
    and fails ("Attempt to replace the existing tensor", ONNX Runtime 1.32)."""
    renamed = {}
    for tensor in model.graph.initializer:
        if tensor.name.startswith("gemm_"):
            renamed[tensor.name] = f"saved_{tensor.name}"
            tensor.name = renamed[tensor.name]
    for node in model.graph.node:
        for index, name in enumerate(node.output):
            if name.startswith("gemm_"):
                renamed[name] = f"saved_{name}"
                node.output[index] = renamed[name]
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            if name in renamed:
                node.input[index] = renamed[name]


def export(weights: Path, config_file: Path, out: Path, batch_size: int,
           sequence_length: int) -> dict:
    import onnx
    import onnxruntime as ort
    import torch
    import transformers
    from onnxruntime.quantization import quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    arguments = json.loads(config_file.read_text())
    config = transformers.BertConfig(**arguments, attn_implementation="eager")
    model = transformers.BertForSequenceClassification(config).eval()
    state = {name: torch.from_numpy(value) for name, value in np.load(weights).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if not name.endswith("position_ids")]
    if missing or unexpected:
        raise SystemExit(f"weights do not fit: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}")
    rng = np.random.default_rng(0)
    ids = rng.integers(0, config.vocab_size, (batch_size, sequence_length))
    inputs = {"input_ids": torch.from_numpy(ids),
              "attention_mask": torch.ones(batch_size, sequence_length, dtype=torch.int64),
              "token_type_ids": torch.zeros(batch_size, sequence_length, dtype=torch.int64)}
    raw = out / "peer_raw.onnx"
    with torch.no_grad():
        expected = model(**inputs).logits.numpy()
        torch.onnx.export(model, (inputs["input_ids"], inputs["attention_mask"],
                                  inputs["token_type_ids"]), str(raw),
                          input_names=list(inputs), output_names=["logits"],
                          opset_version=17, do_constant_folding=True, dynamo=False)
    optimized = optimize_model(str(raw), "bert", num_heads=config.num_attention_heads,
                               hidden_size=config.hidden_size)
    fp32 = out / "peer.onnx"
    rename_gemm_tensors(optimized.model)
    optimized.save_model_to_file(str(fp32))
    raw.unlink()
    int8 = out / "peer_int8.onnx"
    # ONNX Runtime's defaults; its shape inference cannot type the contrib operators'
    # outputs, and its error message asks for this default type.
    quantize_dynamic(str(fp32), str(int8),
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    feeds = {name: value.numpy() for name, value in inputs.items()}
    logits = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(
        ["logits"], feeds)[0]
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "onnxruntime": ort.__version__,
            "fused_operators": {key: int(value) for key, value in
                                optimized.get_fused_operator_statistics().items() if value},
            "max_abs_logit_diff_torch_vs_onnx": float(np.abs(logits - expected).max())}


if __name__ == "__main__":
    weights_file, config_path, out_dir, batch, length = sys.argv[1:6]
    print(json.dumps(export(Path(weights_file), Path(config_path), Path(out_dir), int(batch),
                            int(length))))
