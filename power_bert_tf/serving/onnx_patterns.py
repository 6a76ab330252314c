"""The subgraph patterns `serving.onnx_fusion` rewrites: matchers over an ONNX graph for
Keras 3's decomposed LayerNorm and exact GELU, the transposed attention scores and the
Reshapes around 3-D dense layers (see onnx_fusion's docstring for the forms)."""
from __future__ import annotations

import collections
import math

import numpy as np

SQRT2 = math.sqrt(2.0)


class Graph:
    """Producer and consumer indexes over an onnx GraphProto, and its constants."""

    def __init__(self, graph):
        from onnx import numpy_helper

        self.graph = graph
        self.nodes = list(graph.node)  # one Python object per node, for identity tests
        self.producer = {output: node for node in self.nodes for output in node.output}
        self.consumers = collections.defaultdict(list)
        for node in self.nodes:
            for name in dict.fromkeys(node.input):  # Mul(d, d) reads d once
                self.consumers[name].append(node)
        self.constants = {tensor.name: tensor for tensor in graph.initializer}
        for node in self.nodes:
            if node.op_type == "Constant" and node.attribute[0].name == "value":
                self.constants[node.output[0]] = node.attribute[0].t
        self._array = numpy_helper.to_array
        self.shapes = {}
        for info in [*graph.value_info, *graph.input, *graph.output]:
            dims = info.type.tensor_type.shape.dim
            if info.type.tensor_type.HasField("shape"):
                self.shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                               for d in dims)

    def constant(self, name: str) -> np.ndarray | None:
        tensor = self.constants.get(name)
        return None if tensor is None else self._array(tensor)

    def only_consumer(self, name: str, op_type: str):
        """The one node reading `name` if it is an `op_type`, else None."""
        nodes = self.consumers.get(name, [])
        return nodes[0] if len(nodes) == 1 and nodes[0].op_type == op_type else None

    def consumer_of_type(self, name: str, op_type: str, count: int):
        """The `op_type` nodes reading `name` when exactly `count` nodes read it."""
        nodes = self.consumers.get(name, [])
        if len(nodes) != count:
            return None
        return [node for node in nodes if node.op_type == op_type]

    def other_input(self, node, name: str) -> str | None:
        """The input of a two-input `node` that is not `name`."""
        if len(node.input) != 2 or name not in node.input:
            return None
        return node.input[1] if node.input[0] == name else node.input[0]


def attribute(node, name: str, default=None):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def match_layer_norm(g: Graph, mean):
    """The nodes of one decomposed LayerNorm starting at its first ReduceMean, with
    (x, gamma, beta, epsilon, output); None if `mean` starts none."""
    if attribute(mean, "keepdims", 1) != 1 or len(mean.input) != 1:
        return None
    axes = list(attribute(mean, "axes", []))
    x = mean.input[0]
    rank = len(g.shapes.get(x, ())) or None
    if axes != [-1] and (rank is None or axes != [rank - 1]):
        return None
    readers = g.consumers.get(mean.output[0], [])
    sub = next((n for n in readers if n.op_type == "Sub" and list(n.input) == [x, mean.output[0]]),
               None)
    neg = next((n for n in readers if n.op_type == "Neg"), None)
    if len(readers) != 2 or sub is None or neg is None:
        return None
    square = g.only_consumer(sub.output[0], "Mul")
    if square is None or list(square.input) != [sub.output[0]] * 2:
        return None
    variance = g.only_consumer(square.output[0], "ReduceMean")
    if variance is None or list(attribute(variance, "axes", [])) != axes:
        return None
    add_eps = g.only_consumer(variance.output[0], "Add")
    epsilon = g.constant(g.other_input(add_eps, variance.output[0]) or "") if add_eps else None
    if epsilon is None or epsilon.size != 1:
        return None
    sqrt = g.only_consumer(add_eps.output[0], "Sqrt")
    reciprocal = sqrt and g.only_consumer(sqrt.output[0], "Reciprocal")
    scale = reciprocal and g.only_consumer(reciprocal.output[0], "Mul")
    if scale is None:
        return None
    gamma_name = g.other_input(scale, reciprocal.output[0])
    gamma = g.constant(gamma_name or "")
    mul_mean = g.only_consumer(neg.output[0], "Mul")
    scaled = g.consumer_of_type(scale.output[0], "Mul", 2)
    if gamma is None or mul_mean is None or not scaled or len(scaled) != 2:
        return None
    mul_x = next((n for n in scaled if n is not mul_mean), None)
    if mul_x is None or g.other_input(mul_x, scale.output[0]) != x:
        return None
    if g.other_input(mul_mean, scale.output[0]) != neg.output[0]:
        return None
    add_beta = g.only_consumer(mul_mean.output[0], "Add")
    beta = g.constant(g.other_input(add_beta, mul_mean.output[0]) or "") if add_beta else None
    output = g.only_consumer(mul_x.output[0], "Add")
    if (beta is None or output is None
            or g.other_input(output, mul_x.output[0]) != add_beta.output[0]):
        return None
    width = gamma.size
    if beta.size != width or gamma.shape[-1:] != (width,) or beta.shape[-1:] != (width,):
        return None
    nodes = [mean, sub, square, variance, add_eps, sqrt, reciprocal, scale, neg, mul_mean,
             add_beta, mul_x, output]
    return nodes, (x, gamma, beta, float(epsilon.reshape(())), output.output[0])


def match_gelu(g: Graph, erf):
    """The nodes of 0.5 x (1 - Erf(-x c)), c = 1 / sqrt 2, ending at `erf`'s Sub, with
    (x, output); None otherwise."""
    scaled = g.producer.get(erf.input[0])
    if scaled is None or scaled.op_type != "Mul":
        return None
    neg = next((g.producer[name] for name in scaled.input
                if name in g.producer and g.producer[name].op_type == "Neg"), None)
    if neg is None:
        return None
    factor = g.constant(g.other_input(scaled, neg.output[0]) or "")
    if factor is None or factor.size != 1 or abs(float(factor.reshape(())) - 1 / SQRT2) > 1e-6:
        return None
    x = neg.input[0]
    one_minus = g.only_consumer(erf.output[0], "Sub")
    if one_minus is None or one_minus.input[1] != erf.output[0]:
        return None
    one = g.constant(one_minus.input[0])
    if one is None or one.size != 1 or float(one.reshape(())) != 1.0:
        return None
    output = g.only_consumer(one_minus.output[0], "Mul")
    if output is None:
        return None
    half_x = g.producer.get(g.other_input(output, one_minus.output[0]) or "")
    if half_x is None or half_x.op_type != "Mul" or x not in half_x.input:
        return None
    half = g.constant(g.other_input(half_x, x) or "")
    if half is None or half.size != 1 or float(half.reshape(())) != 0.5:
        return None
    if len(g.consumers[neg.output[0]]) != 1 or len(g.consumers[scaled.output[0]]) != 1:
        return None
    if len(g.consumers[half_x.output[0]]) != 1:
        return None
    return [neg, scaled, erf, one_minus, half_x, output], (x, output.output[0])


def is_leading_shape_of(g: Graph, name: str, x: str, last: int) -> bool:
    """Whether tensor `name` is Concat(Shape(x)[:-1], [last]) (Casts aside), the output
    shape tf.tensordot computes at run time when the batch size is unknown."""
    def source(tensor: str):
        node = g.producer.get(tensor)
        while node is not None and node.op_type == "Cast":
            node = g.producer.get(node.input[0])
        return node

    concat = source(name)
    if concat is None or concat.op_type != "Concat" or len(concat.input) != 2:
        return False
    gather, tail = source(concat.input[0]), g.constant(concat.input[1])
    if gather is None or gather.op_type != "Gather" or tail is None or tail.tolist() != [last]:
        return False
    shape, indices = source(gather.input[0]), g.constant(gather.input[1])
    rank = len(g.shapes.get(x, ()))
    return (shape is not None and shape.op_type == "Shape" and shape.input[0] == x
            and len(shape.attribute) <= 1 and attribute(shape, "start", 0) == 0
            and indices is not None and indices.tolist() == list(range(rank - 1)))


def match_dense_reshapes(g: Graph, matmul):
    """Reshape x -> (BN, D), `matmul` (a MatMul, or a Gemm with a bias) by a constant
    (D, D') weight, Reshape -> (B, N, D'): the nodes and (x, weight, bias or None,
    output, the 3-D shape x needs first or None); None otherwise."""
    before = g.producer.get(matmul.input[0])
    if before is None or before.op_type != "Reshape" or matmul.input[1] not in g.constants:
        return None
    bias = None
    if matmul.op_type == "Gemm":
        if (len(matmul.input) != 3 or matmul.input[2] not in g.constants
                or any(attribute(matmul, key, default) != default for key, default in
                       (("transA", 0), ("transB", 0), ("alpha", 1.0), ("beta", 1.0)))):
            return None
        bias = matmul.input[2]
    after = g.only_consumer(matmul.output[0], "Reshape")
    if after is None or len(g.consumers[before.output[0]]) != 1:
        return None
    x = before.input[0]
    transpose = g.producer.get(x)  # tf.tensordot transposes x by the identity first
    if (transpose is not None and transpose.op_type == "Transpose"
            and list(attribute(transpose, "perm", [])) == list(range(len(g.shapes.get(x, ()))))):
        x = transpose.input[0]
    shape_in, shape_out = g.shapes.get(x), g.shapes.get(after.output[0])
    weight = tuple(g.constants[matmul.input[1]].dims)
    if bias is not None and tuple(g.constants[bias].dims) not in ((weight[1],), (1, weight[1])):
        return None
    if len(weight) != 2 or not shape_in or len(shape_in) < 3 or shape_in[-1] is None:
        return None
    if (len(shape_in) == 3 and shape_in[-1] == weight[0]
            and is_leading_shape_of(g, after.input[1], x, weight[1])):
        needs_shape = None  # the output shape tf.tensordot computes: x.shape[:-1] + [D']
    # Else static shapes; the batch dimension may be unknown: with N, D and D' known,
    # the element counts make the output's first dimension the input's.
    elif (not shape_out or None in shape_in[1:] or None in shape_out[1:]
            or len(shape_out) != 3 or shape_out[-1] != weight[1] or shape_in[1] != shape_out[1]
            or int(np.prod(shape_in[2:])) != weight[0]):
        return None
    else:
        needs_shape = None if len(shape_in) == 3 else (0, shape_out[1], weight[0])  # 0: B
    return [before, matmul, after], (x, matmul.input[1], bias, after.output[0], needs_shape)


def match_transposed_product(g: Graph, matmul):
    """MatMul(Transpose(a, p), Transpose(b, q)) -> Transpose(swap the last two axes):
    Keras's attention scores, computed as keys x queries and transposed. Returns the
    nodes and (b, q with its last two axes swapped, a, p likewise, output), so that
    MatMul(Transpose(b, q'), Transpose(a, p')) gives the output without transposing the
    (B, H, N, N) scores; None otherwise."""
    after = g.only_consumer(matmul.output[0], "Transpose")
    rank = len(g.shapes.get(matmul.output[0], ())) or 4
    swap = [*range(rank - 2), rank - 1, rank - 2]
    if after is None or list(attribute(after, "perm", [])) != swap:
        return None
    first, second = (g.producer.get(name) for name in matmul.input)
    if (first is None or second is None or first.op_type != "Transpose"
            or second.op_type != "Transpose" or first is second):
        return None
    p, q = list(attribute(first, "perm", [])), list(attribute(second, "perm", []))
    if len(p) != rank or len(q) != rank:
        return None
    nodes = [matmul, after]
    nodes[:0] = [node for node in (first, second) if len(g.consumers[node.output[0]]) == 1]
    return nodes, (second.input[0], [*q[:-2], q[-1], q[-2]], first.input[0],
                   [*p[:-2], p[-1], p[-2]], after.output[0])
