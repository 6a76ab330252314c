"""Graph passes run after ONNX Runtime's transformer optimizer (`serving.onnx_fusion.fuse`):
each computes the same function with fewer or smaller operators.

    head biases    MatMul -> Reshape (B, N, H, dh) -> Add(bias (H, dh))
                   -> MatMul -> Add(bias (H*dh,)) -> Reshape, so that the int8 MatMul
                   takes the bias (ONNX Runtime fuses MatMul + Add, not across a Reshape)
    query scale    Reshape(Add(MatMul(x, W), b)) -> Mul(1/sqrt(dh)) -> the scale folded
                   into W and b (exact where 1/sqrt(dh) is a power of two, as for dh = 64)
    mask selects   Keras's masked softmax, where(m, x, c) and where(m, p, 0), written by
                   tf2onnx as x * m + c * (1 - m): -> x + c * (1 - m) before the softmax
                   (the masked scores become c + x, which the softmax sends to 0 as it
                   sends c, c being -1e9) and p * m after it
    extract gather Hard-Extract's GatherND of the attention block's output
                   SkipLayerNorm(MatMul(context, W_o), residual) -> SkipLayerNorm(MatMul(
                   GatherND(context), W_o), GatherND(residual)): LayerNorm and the output
                   projection are row-wise, so they run on the l_j kept word-vectors
                   instead of the n_{j-1} received ones. The significance score still
                   reads every query's attention probabilities.

The last pass does less work than `model.retention.layer_flops` counts (output
projections on the received vectors), so an export's measured speed-up can exceed the
FLOP bound of its configuration.
"""
from __future__ import annotations

import numpy as np

from power_bert_tf.serving.onnx_patterns import Graph, attribute

PASSES = ("head_biases", "query_scales", "mask_selects", "extract_gathers")


def run_passes(model) -> dict[str, int]:
    """Applies every pass of `PASSES` to `model` (an onnx ModelProto) in place; returns
    how many subgraphs each rewrote."""
    counts = {}
    for name, apply in (("head_biases", _head_biases), ("query_scales", _query_scales),
                        ("mask_selects", _mask_selects), ("extract_gathers", _extract_gathers)):
        counts[name] = apply(model.graph)
        _topological_sort(model.graph)
    _drop_dead(model.graph)
    used = {name for node in model.graph.node for name in node.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    # The passes change the row count of some tensors and add others: the value infos
    # keep their element types (the quantiser reads them) and lose their shapes, which
    # ONNX Runtime infers again when a session loads the graph.
    from onnx import TensorProto, helper

    produced = [name for node in model.graph.node for name in node.output]
    types = {entry.name: entry.type.tensor_type.elem_type for entry in model.graph.value_info}
    del model.graph.value_info[:]
    outputs = {output.name for output in model.graph.output}
    model.graph.value_info.extend(
        helper.make_tensor_value_info(name, types.get(name, TensorProto.FLOAT), None)
        for name in produced if name not in outputs and (name in types or _added(name)))
    return counts


def _added(name: str) -> bool:
    """Whether `name` is a float tensor the passes added."""
    return name.endswith(("/before_reshape", "/context:0", "/residual:0"))


def _initializer(graph, name: str):
    return next((t for t in graph.initializer if t.name == name), None)


def _set_initializer(graph, name: str, value: np.ndarray) -> None:
    from onnx import numpy_helper

    tensor = _initializer(graph, name)
    tensor.CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))


def _head_biases(graph) -> int:
    g, count = Graph(graph), 0
    for reshape in [n for n in g.nodes if n.op_type == "Reshape"]:
        matmul = g.producer.get(reshape.input[0])
        add = g.only_consumer(reshape.output[0], "Add")
        if matmul is None or matmul.op_type != "MatMul" or add is None:
            continue
        bias_name = g.other_input(add, reshape.output[0])
        bias = g.constant(bias_name or "")
        if (bias is None or bias.ndim != 2 or _initializer(graph, bias_name) is None
                or len(g.consumers[bias_name]) != 1 or len(g.consumers[matmul.output[0]]) != 1):
            continue
        _set_initializer(graph, bias_name, bias.reshape(-1))
        summed = f"{add.output[0]}/before_reshape"
        add.input[:] = [matmul.output[0], bias_name]
        reshaped = add.output[0]
        add.output[0] = summed
        reshape.input[0] = summed
        reshape.output[0] = reshaped
        count += 1
    return count


def _query_scales(graph) -> int:
    g, count = Graph(graph), 0
    for mul in [n for n in g.nodes if n.op_type == "Mul"]:
        reshape = next((g.producer.get(i) for i in mul.input
                        if g.producer.get(i) is not None
                        and g.producer[i].op_type == "Reshape"), None)
        scale = g.constant(g.other_input(mul, reshape.output[0]) or "") if reshape else None
        if scale is None or scale.size != 1 or len(g.consumers[reshape.output[0]]) != 1:
            continue
        add = g.producer.get(reshape.input[0])
        matmul = g.producer.get(add.input[0]) if add is not None and add.op_type == "Add" else None
        if matmul is None or matmul.op_type != "MatMul" or len(g.consumers[add.output[0]]) != 1:
            continue
        weight, bias = matmul.input[1], add.input[1]
        if any(_initializer(graph, name) is None or len(g.consumers[name]) != 1
               for name in (weight, bias)):
            continue
        factor = float(scale.reshape(()))
        _set_initializer(graph, weight, g.constant(weight) * factor)
        _set_initializer(graph, bias, g.constant(bias) * factor)
        _rewire(graph, mul.output[0], reshape.output[0])
        graph.node.remove(next(n for n in graph.node if n.name == mul.name
                               and list(n.output) == list(mul.output)))
        count += 1
    return count


def _mask_casts(g: Graph, add):
    """(x, mask Mul, cast(m), cast(not m), constant) of Add(x * cast(m), c * cast(not m)),
    else None."""
    muls = [g.producer.get(name) for name in add.input]
    if len(muls) != 2 or any(m is None or m.op_type != "Mul" for m in muls):
        return None
    for select, fill in (muls, muls[::-1]):
        constant_name = next((i for i in fill.input if g.constant(i) is not None), None)
        if constant_name is None or g.constant(constant_name).size != 1:
            continue
        negated = g.producer.get(g.other_input(fill, constant_name) or "")
        inverted = negated and g.producer.get(negated.input[0])
        if negated is None or negated.op_type != "Cast" or inverted is None \
                or inverted.op_type != "Not":
            continue
        mask = inverted.input[0]
        kept = next((g.producer.get(i) for i in select.input if g.producer.get(i) is not None
                     and g.producer[i].op_type == "Cast" and g.producer[i].input[0] == mask),
                    None)
        if kept is None:
            continue
        x = g.other_input(select, kept.output[0])
        return x, select, fill, float(g.constant(constant_name).reshape(()))
    return None


def _mask_selects(graph) -> int:
    g, count = Graph(graph), 0
    for add in [n for n in g.nodes if n.op_type == "Add"]:
        match = _mask_casts(g, add)
        if match is None:
            continue
        x, select, fill, constant = match
        if constant == 0.0:  # p * m + 0 * (1 - m) -> p * m
            _rewire(graph, add.output[0], select.output[0])
            graph.node.remove(add)
        elif constant <= -1e9 and len(g.consumers[select.output[0]]) == 1:
            add.input[:] = [x, fill.output[0]]  # x * m + c (1 - m) -> x + c (1 - m)
            graph.node.remove(select)
        else:
            continue
        count += 1
    _drop_dead(graph)
    return count


def _extract_gathers(graph) -> int:
    from onnx import helper

    g, count = Graph(graph), 0
    for gather in [n for n in g.nodes if n.op_type == "GatherND"]:
        norm = g.producer.get(gather.input[0])
        if (norm is None or norm.op_type != "SkipLayerNormalization"
                or len(g.consumers[norm.output[0]]) != 1
                or any(name for name in norm.output[1:])):
            continue
        matmul = next((g.producer.get(i) for i in norm.input[:2] if g.producer.get(i) is not None
                       and g.producer[i].op_type == "MatMul"), None)
        weight = None if matmul is None else g.constant(matmul.input[1])
        if (weight is None or weight.ndim != 2 or len(g.consumers[matmul.output[0]]) != 1
                or _rank(g, matmul.input[0]) != 3):
            continue
        first, second = norm.input[:2]
        residual = second if first == matmul.output[0] else first
        indices, dims = gather.input[1], attribute(gather, "batch_dims", 0)
        base = gather.name
        gathered = {}
        for label, name in (("context", matmul.input[0]), ("residual", residual)):
            gathered[label] = f"{base}/{label}:0"
            graph.node.append(helper.make_node("GatherND", [name, indices], [gathered[label]],
                                               name=f"{base}/{label}", batch_dims=dims))
        matmul.input[0] = gathered["context"]
        norm.input[:2] = [matmul.output[0] if i == matmul.output[0] else gathered["residual"]
                          for i in norm.input[:2]]
        _rewire(graph, gather.output[0], norm.output[0])
        graph.node.remove(gather)
        count += 1
    return count


def _rank(g: Graph, name: str) -> int | None:
    """The rank of tensor `name`: from the inferred shapes, or a Reshape's constant shape."""
    if name in g.shapes:
        return len(g.shapes[name])
    producer = g.producer.get(name)
    shape = g.constant(producer.input[1]) if producer is not None and \
        producer.op_type == "Reshape" else None
    return None if shape is None else int(shape.size)


def _rewire(graph, old: str, new: str) -> None:
    """Every reader of `old` (graph outputs included) reads `new` instead."""
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name == old:
                node.input[index] = new
    for output in graph.output:
        if output.name == old:  # keep the graph's output name: rename the producer's
            for node in graph.node:
                for index, name in enumerate(node.output):
                    if name == new:
                        node.output[index] = old
            for node in graph.node:
                for index, name in enumerate(node.input):
                    if name == new:
                        node.input[index] = old


def _drop_dead(graph) -> None:
    needed = {output.name for output in graph.output}
    for node in reversed(list(graph.node)):
        if any(name in needed for name in node.output):
            needed.update(node.input)
        else:
            graph.node.remove(node)


def _topological_sort(graph) -> None:
    """Orders `graph.node` so that each node follows the producers of its inputs."""
    import copy

    available = {t.name for t in graph.initializer} | {i.name for i in graph.input} | {""}
    pending, ordered = [copy.deepcopy(n) for n in graph.node], []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError("the rewritten ONNX graph has a cycle or an unproduced input")
        for node in ready:
            available.update(node.output)
        ordered += ready
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    del graph.node[:]
    graph.node.extend(ordered)
