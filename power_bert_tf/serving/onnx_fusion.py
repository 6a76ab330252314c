"""Fused ONNX graphs: Keras 3's decomposed LayerNorm and GELU rewritten into the forms
ONNX Runtime fuses, then ONNX Runtime's transformer optimizer.

tf2onnx translates Keras 3's LayerNormalization op by op, as

    mean = ReduceMean(x); var = ReduceMean((x - mean)^2); inv = gamma / Sqrt(var + eps)
    y = x * inv + (-mean * inv + beta)

which matches neither of ONNX Runtime's LayerNorm patterns, and its exact GELU as
0.5 x (1 - Erf(-x / sqrt 2)) (TensorFlow's Erfc, `serving.onnx._erfc_handler`), which
matches none of its GELU patterns; SkipLayerNormalization and Gelu fusion anchor on
them, so the optimizer fused nothing in these graphs. `fuse` rewrites

    the LayerNorm subgraph   -> one ONNX LayerNormalization (opset 17), axis -1
    the GELU subgraph        -> x * (1 + Erf(x / sqrt 2)) * 0.5, the PyTorch pattern
    MatMul(Transpose(k), Transpose(q)) -> Transpose  (Keras's einsum for the attention
                                scores: keys x queries, then the (B, H, N, N) scores
                                transposed) -> MatMul(Transpose(q), Transpose(k))
    Reshape -> (BN, D), MatMul or Gemm, Reshape -> (B, N, D')  (Keras's Dense and the
                                attention output's EinsumDense on 3-D inputs)
                             -> MatMul on the 3-D input (+ the bias Add), which the
                                project's int8 recipe quantises (it leaves Gemm float32)

and then runs `onnxruntime.transformers.optimizer` (model type "bert", its Python
fusions only), which turns Add + LayerNormalization into SkipLayerNormalization and the
GELU subgraph into one Gelu (its bias Add stays, for the int8 MatMul to take in), and
`serving.onnx_passes`. Attention stays unfused: PoWER-BERT's significance score
needs the attention probabilities, which a fused Attention op does not return, and the
optimizer's attention patterns (PyTorch's, TF1 BERT's) do not match Keras's
MultiHeadAttention in the plain graph either. Each rewrite is numerically the same
function up to float32 rounding (tests/test_onnx.py: logits within 1e-5 of TF's, kept
positions identical).
"""
from __future__ import annotations

import collections

import numpy as np

from power_bert_tf.serving.onnx_passes import run_passes
from power_bert_tf.serving.onnx_patterns import (SQRT2, Graph, match_dense_reshapes,
                                                 match_gelu, match_layer_norm,
                                                 match_transposed_product)
# Operators whose count `fused_counts` reports.
FUSED_OPS = ("LayerNormalization", "SkipLayerNormalization", "Gelu", "BiasGelu",
             "FastGelu", "Attention", "MultiHeadAttention", "EmbedLayerNormalization")


def rewrite(model) -> dict[str, int]:
    """Rewrites `model` (an onnx ModelProto, shapes inferred) in place: LayerNorm, GELU,
    the transposed attention scores and the Reshapes around 3-D dense layers (module
    docstring). Returns how many of each it rewrote."""
    import copy

    from onnx import helper, numpy_helper

    graph = model.graph
    counts = {"layer_norm": 0, "gelu": 0, "dense_reshapes": 0, "score_transposes": 0}
    g = Graph(graph)
    replaced, added = set(), []
    for node in g.nodes:
        if id(node) in replaced:
            continue
        if node.op_type == "ReduceMean":
            match = match_layer_norm(g, node)
            if match is None or any(id(n) in replaced for n in match[0]):
                continue
            nodes, (x, gamma, beta, epsilon, output) = match
            base = nodes[-1].name.rsplit("/", 1)[0] or output
            scale_name, bias_name = f"{base}/gamma_fused", f"{base}/beta_fused"
            graph.initializer.extend([
                numpy_helper.from_array(gamma.reshape(-1).astype(np.float32), scale_name),
                numpy_helper.from_array(beta.reshape(-1).astype(np.float32), bias_name)])
            added.append((nodes, helper.make_node(
                "LayerNormalization", [x, scale_name, bias_name], [output],
                name=f"{base}/LayerNormalization", axis=-1, epsilon=epsilon)))
            counts["layer_norm"] += 1
        elif node.op_type == "Erf":
            match = match_gelu(g, node)
            if match is None or any(id(n) in replaced for n in match[0]):
                continue
            nodes, (x, output) = match
            base = nodes[2].name.rsplit("/", 1)[0] or output
            names = {key: f"{base}/gelu_{key}" for key in ("sqrt2", "one", "half")}
            graph.initializer.extend([
                numpy_helper.from_array(np.array(SQRT2, np.float32), names["sqrt2"]),
                numpy_helper.from_array(np.array(1.0, np.float32), names["one"]),
                numpy_helper.from_array(np.array(0.5, np.float32), names["half"])])
            steps = [("Div", [x, names["sqrt2"]]), ("Erf", None), ("Add", [None, names["one"]]),
                     ("Mul", [x, None]), ("Mul", [None, names["half"]])]
            previous, new = None, []
            for index, (op, inputs) in enumerate(steps):
                inputs = [previous] if inputs is None else [previous if i is None else i
                                                            for i in inputs]
                result = output if index == len(steps) - 1 else f"{base}/gelu_{index}"
                new.append(helper.make_node(op, inputs, [result], name=f"{base}/gelu_{op}_{index}"))
                previous = result
            added.append((nodes, new))
            counts["gelu"] += 1
        elif node.op_type == "MatMul" and match_transposed_product(g, node) is not None:
            match = match_transposed_product(g, node)
            if any(id(n) in replaced for n in match[0]):
                continue
            nodes, (b, q, a, p, output) = match
            added.append((nodes, [
                helper.make_node("Transpose", [b], [f"{node.name}/lhs:0"], perm=q,
                                 name=f"{node.name}/lhs"),
                helper.make_node("Transpose", [a], [f"{node.name}/rhs:0"], perm=p,
                                 name=f"{node.name}/rhs"),
                helper.make_node("MatMul", [f"{node.name}/lhs:0", f"{node.name}/rhs:0"],
                                 [output], name=f"{node.name}/swapped")]))
            counts["score_transposes"] += 1
        elif node.op_type in ("MatMul", "Gemm"):
            match = match_dense_reshapes(g, node)
            if match is None or any(id(n) in replaced for n in match[0]):
                continue
            nodes, (x, weight, bias, output, needs_shape) = match
            new = []
            if needs_shape is not None:  # (B, N, H, dh) -> (B, N, D)
                shape_name = f"{node.name}/shape_3d"
                graph.initializer.append(numpy_helper.from_array(
                    np.array(needs_shape, np.int64), shape_name))
                new.append(helper.make_node("Reshape", [x, shape_name], [f"{shape_name}:0"],
                                            name=f"{node.name}/Reshape_3d"))
                x = f"{shape_name}:0"
            product = output if bias is None else f"{node.name}/MatMul:0"
            new.append(helper.make_node("MatMul", [x, weight], [product],
                                        name=f"{node.name}/MatMul"))
            if bias is not None:
                new.append(helper.make_node("Add", [product, bias], [output],
                                            name=f"{node.name}/BiasAdd"))
            added.append((nodes, new))
            counts["dense_reshapes"] += 1
        else:
            continue
        replaced.update(id(n) for n in added[-1][0])
    if not added:
        return counts
    replacement = {id(nodes[-1]): new if isinstance(new, list) else [new]
                   for nodes, new in added}
    kept = []
    for node in g.nodes:
        if id(node) in replacement:
            kept.extend(replacement[id(node)])
        elif id(node) not in replaced:
            kept.append(copy.deepcopy(node))
    del graph.node[:]
    graph.node.extend(kept)
    _drop_unused(graph)
    return counts


def _drop_unused(graph) -> None:
    """Removes the nodes (a Reshape's shape arithmetic, say), initializers and value_info
    that no graph output depends on."""
    import copy

    needed = {output.name for output in graph.output}
    live = []
    for node in reversed(list(graph.node)):  # topological order, read backwards
        if any(name in needed for name in node.output):
            live.append(copy.deepcopy(node))
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(live))
    kept = [tensor for tensor in graph.initializer if tensor.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    produced = {name for node in graph.node for name in node.output}
    info = [entry for entry in graph.value_info if entry.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(info)


def fuse(source, target, num_heads: int, hidden_size: int) -> dict[str, int]:
    """`source` (an ONNX file from tf2onnx + ONNX Runtime's pre-processing) rewritten
    (`rewrite`) and fused by ONNX Runtime's transformer optimizer, written to `target`.

    Returns:
        {"rewritten_<pattern>": count per rewrite, and per `FUSED_OPS` operator its
        count in the written graph}.
    """
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    model = onnx.load(str(source))
    counts = {f"rewritten_{key}": value for key, value in rewrite(model).items()}
    options = FusionOptions("bert")
    options.enable_attention = False  # the significance score needs the probabilities
    options.enable_embed_layer_norm = False  # keeps the three int32 inputs as they are
    options.enable_shape_inference = False  # needs sympy; the shapes are static here
    # Gelu, its bias Add left to ONNX Runtime's MatMul + Add fusion in the int8 graphs,
    # measured 2-4% faster than BiasGelu there (docs/benchmarks.md)
    options.enable_bias_gelu = False
    optimized = optimize_model(model, "bert", num_heads=num_heads, hidden_size=hidden_size,
                               optimization_options=options, opt_level=0)
    counts.update({f"rewritten_{key}": value
                   for key, value in run_passes(optimized.model).items()})
    rename_gemm_tensors(optimized.model)
    optimized.save_model_to_file(str(target))
    return {**counts, **fused_counts(onnx.load(str(target)))}


def rename_gemm_tensors(model) -> None:
    """Renames the graph's "gemm_*" tensors (tf2onnx's and ONNX Runtime's names for the
    reshapes around a Gemm): ONNX Runtime's MatMulAddFusion, run when a session loads
    the graph, adds initializers of those names and fails on a graph that has them
    ("Attempt to replace the existing tensor", ONNX Runtime 1.32)."""
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


def fused_counts(model) -> dict[str, int]:
    """Per `FUSED_OPS` operator, how many nodes of `model` (an onnx ModelProto) are one,
    and the node total."""
    ops = collections.Counter(node.op_type for node in model.graph.node)
    return {**{op: ops.get(op, 0) for op in FUSED_OPS}, "nodes": len(model.graph.node)}
