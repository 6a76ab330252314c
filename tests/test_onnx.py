"""ONNX export: equality to TF, int8 sanity, the pure-Python tokenizer, loading without
power_bert_tf or TensorFlow."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

pytest.importorskip("tf2onnx")
ort = pytest.importorskip("onnxruntime")

from conftest import random_inputs  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402
from power_bert_tf.serving.inference import valid_utf8  # noqa: E402
from power_bert_tf.serving.onnx import INT8_FILE, MODEL_FILE, RUNTIME_FILE, export_onnx  # noqa: E402
from power_bert_tf.serving.onnx_runtime import OnnxClassifier, WordPieceTokenizer  # noqa: E402
from serving_models import N, RETENTION, tiny_classifier, tiny_tokenizer  # noqa: E402
from tiny_task import VOCAB  # noqa: E402

LABELS = ("neg", "pos")
TEXTS = ["the film was good .", "a boring , dull plot and a weak story", "",
         "GOOD Film!", " ".join(["the very fine film"] * 20)]  # the last > N
# Text the embedded vocabulary's tokenizers must agree on: accents, casing, CJK, control
# and zero-width characters, special tokens typed in, long words, punctuation, emoji.
TRICKY = ["Hello, World!", "naïve café RÉSUMÉ", "ΣΊΣΥΦΟΣ", "北京欢迎你 ok", "[CLS] x [SEP] [cls]",
          "tab\there\nnew\u00a0nbsp\u200bzw", "a" * 150, "don't stop—believing…", "emoji 😀 🤖",
          "\x00\x01ctrl\x7f", "", "   ", "İstanbul straße ǅ", "$100 @home #tag ~t `b` {c}",
          "mixed[MASK]token", "ﬁne ﬂow", "unaffable antidisestablishmentarianism"]


@pytest.fixture(scope="module")
def model():
    return tiny_classifier()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    tokenizer = tiny_tokenizer(root / "vocab")
    path = export_onnx(model, root / "export", "sst2", vocab_file=root / "vocab" / "vocab.txt",
                       lower_case=True, max_seq_length=N, labels=LABELS, task_name="SST-2",
                       is_pair=False)
    return {"path": path, "root": root, "tokenizer": tokenizer}


def test_layout_and_metadata(exported):
    path = exported["path"]
    assert path == exported["root"] / "export" / "sst2" / "1"
    assert sorted(p.name for p in path.parent.iterdir()) == ["1"]  # no partial folder left
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [MODEL_FILE, INT8_FILE, RUNTIME_FILE, "vocab.txt", "power_bert.json"])
    assert path.stat().st_mode & 0o777 == 0o755  # readable by a server running as another user
    assert {p.stat().st_mode & 0o777 for p in path.iterdir()} == {0o644}
    meta = json.loads((path / "power_bert.json").read_text())
    assert (meta["retention"], meta["max_seq_length"], meta["labels"]) == (RETENTION, N,
                                                                          list(LABELS))
    assert meta["outputs"] == ["logits", "kept_positions_1", "kept_positions_2",
                               "kept_positions_3"]
    import onnx

    graph = onnx.load(str(path / MODEL_FILE)).graph
    ops = {node.op_type for node in graph.node}
    assert "Gelu" in ops and "TopK" in ops  # exact GELU, fused; static top-k


def test_loading_runs_the_session_once_unless_told_not_to(exported):
    shapes = []

    class Counting(OnnxClassifier):
        def run(self, features):
            shapes.append(np.shape(features["input_word_ids"]))
            return super().run(features)

    Counting(exported["path"])
    assert shapes == [(1, N)]  # the graph's one input length: every request's shape
    Counting(exported["path"], warm=False)
    assert shapes == [(1, N)]


def test_float32_equals_tf_with_identical_kept_positions(exported, model):
    inputs = random_inputs(12, N, lengths=[32, 20, 5, 3, 32, 10, 2, 17, 31, 7, 12, 25], seed=1,
                           vocabulary_size=len(VOCAB))
    outputs = OnnxClassifier(exported["path"]).run(inputs)
    np.testing.assert_allclose(outputs["logits"], model(inputs, training=False).numpy(),
                               atol=1e-5)
    kept = model.encoder(inputs, training=False)["kept_positions"]
    for j, positions in enumerate(kept, start=1):
        np.testing.assert_array_equal(outputs[f"kept_positions_{j}"], positions.numpy())
    assert [outputs[f"kept_positions_{j}"].shape[1] for j in (1, 2, 3)] == RETENTION


def test_int8_is_close_and_mostly_keeps_the_same_positions(exported, model):
    inputs = random_inputs(32, N, lengths=list(range(1, N + 1)), seed=2,
                           vocabulary_size=len(VOCAB))
    path = exported["path"]
    import onnx

    graph = onnx.load(str(path / INT8_FILE)).graph
    ops = {node.op_type for node in graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops
    # Per-channel weights (a scale per output column); the embedding tables stay float32.
    scales = {tensor.name: tensor for tensor in graph.initializer
              if tensor.name.endswith("_scale")}
    assert scales and all(len(tensor.dims) == 1 and tensor.dims[0] > 1
                          for tensor in scales.values())
    gathered = {node.input[0] for node in graph.node if node.op_type == "Gather"}
    floats = {tensor.name for tensor in graph.initializer
              if tensor.data_type == onnx.TensorProto.FLOAT}
    assert any(name in floats for name in gathered) and "DequantizeLinear" not in ops
    int8 = OnnxClassifier(path, INT8_FILE).run(inputs)
    fp32 = OnnxClassifier(path).run(inputs)
    scale = np.abs(fp32["logits"]).max()
    assert 0 < np.abs(int8["logits"] - fp32["logits"]).max() < 0.1 * scale
    assert (int8["logits"].argmax(1) == fp32["logits"].argmax(1)).mean() >= 0.9
    # Quantisation noise re-ranks near-ties in the significance score: most kept positions
    # stay (as sets per row), a few change, more in deeper layers.
    for j in (1, 2, 3):
        a, b = int8[f"kept_positions_{j}"], fp32[f"kept_positions_{j}"]
        overlap = np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b)])
        assert overlap > 0.8, (j, overlap)


def test_a_fixed_batch_size_folds_the_shapes_and_runs_any_number_of_rows(exported, model):
    import onnx

    path = export_onnx(model, exported["root"] / "export", "sst2-b4",
                       vocab_file=exported["root"] / "vocab" / "vocab.txt", lower_case=True,
                       max_seq_length=N, labels=LABELS, task_name="SST-2", is_pair=False,
                       int8=False, batch_size=4)
    assert json.loads((path / "power_bert.json").read_text())["batch_size"] == 4
    fixed, dynamic = (onnx.load(str(folder / MODEL_FILE)).graph
                      for folder in (path, exported["path"]))
    assert [dim.dim_value for dim in fixed.input[0].type.tensor_type.shape.dim] == [4, N]
    assert not any(node.op_type == "Shape" for node in fixed.node)
    assert len(fixed.node) < len(dynamic.node)
    # 10 rows: chunks of 4, 4 and 2 (padded to 4, the padding rows dropped).
    inputs = random_inputs(10, N, lengths=[32, 20, 5, 3, 32, 10, 2, 17, 31, 7], seed=3,
                           vocabulary_size=len(VOCAB))
    outputs = OnnxClassifier(path).run(inputs)
    np.testing.assert_allclose(outputs["logits"], model(inputs, training=False).numpy(),
                               atol=1e-5)
    kept = model.encoder(inputs, training=False)["kept_positions"]
    for j, positions in enumerate(kept, start=1):
        np.testing.assert_array_equal(outputs[f"kept_positions_{j}"], positions.numpy())
    assert OnnxClassifier(path).predict([]) == {"probabilities": [], "label": []}


def test_python_tokenizer_matches_the_in_graph_one(pretrained):
    graph = pretrained.tokenizer(24)
    python = WordPieceTokenizer(pretrained.vocab_file, lower_case=pretrained.lower_case,
                                max_seq_length=24)
    texts = TRICKY + [t.encode() for t in TRICKY[:3]] + [b"good \xff\xfe film", b"\xc3("]
    encoded = [t if isinstance(t, bytes) else t.encode() for t in texts]
    expected = graph(valid_utf8(tf.constant(encoded)))
    for name, values in python(texts).items():
        np.testing.assert_array_equal(values, expected[name].numpy(), err_msg=name)
    # Pairs: longest-first truncation of both segments, type ids 0 then 1.
    firsts, seconds = TRICKY[:8], TRICKY[8:16]
    expected = graph(valid_utf8(tf.constant([t.encode() for t in firsts])),
                     valid_utf8(tf.constant([t.encode() for t in seconds])))
    for name, values in python(firsts, seconds).items():
        np.testing.assert_array_equal(values, expected[name].numpy(), err_msg=name)


LOAD_SCRIPT = textwrap.dedent("""
    import importlib.abc, json, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.partition(".")[0] in ("power_bert_tf", "tensorflow", "keras"):
                raise ModuleNotFoundError(name)

    sys.meta_path.insert(0, Block())
    sys.path.insert(0, sys.argv[1])
    import power_bert_onnx

    texts = json.load(open(sys.argv[2]))
    results = {name: power_bert_onnx.OnnxClassifier(sys.argv[1], name).predict(texts)
               for name in ("model.onnx", "model_int8.onnx")}
    results["loaded"] = sorted({m.partition(".")[0] for m in sys.modules} &
                               {"power_bert_tf", "tensorflow", "keras"})
    print(json.dumps(results))
""")


def test_loads_with_onnxruntime_alone(exported, model, tmp_path):
    (tmp_path / "load.py").write_text(LOAD_SCRIPT)
    (tmp_path / "texts.json").write_text(json.dumps(TEXTS))
    run = subprocess.run([sys.executable, "-I", "load.py", str(exported["path"]), "texts.json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    features = exported["tokenizer"](valid_utf8(tf.constant([t.encode() for t in TEXTS])))
    logits = model(features, training=False).numpy()
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(out["model.onnx"]["probabilities"], expected, atol=1e-5)
    assert out["model.onnx"]["label"] == [LABELS[i] for i in expected.argmax(1)]
    np.testing.assert_allclose(out["model_int8.onnx"]["probabilities"], expected, atol=0.1)


def test_versions_are_never_overwritten_and_albert_is_refused(exported, model):
    options = dict(vocab_file=exported["root"] / "vocab" / "vocab.txt", lower_case=True,
                   max_seq_length=N, labels=LABELS, task_name="SST-2", is_pair=False)
    with pytest.raises(PowerBertError, match="exists and is never overwritten"):
        export_onnx(model, exported["root"] / "export", "sst2", 1, **options)
    with pytest.raises(PowerBertError, match="the labels need 3"):
        export_onnx(model, exported["root"] / "export", "sst2", **{**options,
                                                                  "labels": ("a", "b", "c")})


def test_the_standalone_runtime_names_the_inputs_as_the_package_does():
    from power_bert_tf.data.tokenizer import INPUT_NAMES
    from power_bert_tf.serving import onnx_runtime

    assert onnx_runtime.INPUT_NAMES == INPUT_NAMES


def test_int8_recipes_leave_the_named_matmuls_in_float32(exported, tmp_path):
    """experiments/int8_recipes.py: each recipe's float32 parts exist in an exported graph
    (names would otherwise drift silently) and are left out of quantisation."""
    import onnx

    from experiments.int8_recipes import RECIPES, quantize

    source = exported["path"] / MODEL_FILE

    def integer_matmuls(path):
        return sum(node.op_type == "MatMulInteger" for node in onnx.load(str(path)).graph.node)

    project = integer_matmuls(quantize(source, tmp_path / "project.onnx", None, ()))
    assert project == integer_matmuls(exported["path"] / INT8_FILE)
    for index, (options, keep) in enumerate(RECIPES.values()):
        if keep:
            assert integer_matmuls(quantize(source, tmp_path / f"{index}.onnx", options,
                                            keep)) < project, keep
    with pytest.raises(PowerBertError, match="no MatMul named like"):
        quantize(source, tmp_path / "none.onnx", None, ("no_such_layer",))


def test_static_int8_recipe_calibrates_activation_scales(exported, tmp_path):
    import onnx

    from experiments.int8_recipes import quantize_static

    calibration = random_inputs(40, N, lengths=list(range(1, 41)), seed=3,
                                vocabulary_size=len(VOCAB))
    calibration = {name: np.asarray(values, np.int32) for name, values in calibration.items()}
    path = quantize_static(exported["path"] / MODEL_FILE, tmp_path / "static.onnx", "MinMax",
                           calibration)
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert "QuantizeLinear" in ops and "DynamicQuantizeLinear" not in ops
    logits = ort.InferenceSession(str(path)).run(["logits"], calibration)[0]
    reference = OnnxClassifier(exported["path"]).run(calibration)["logits"]
    assert (logits.argmax(1) == reference.argmax(1)).mean() >= 0.8


FUSED_LAYERS = 3  # tiny_config's num_layers


@pytest.fixture(scope="module")
def plain_model(model):
    """The tiny classifier's weights without Hard-Extract (a plain BERT classifier)."""
    from power_bert_tf.model.classifier import BertClassifier
    from power_bert_tf.model.encoder import BertEncoder
    from tiny_task import tiny_config

    plain = BertClassifier(BertEncoder(**tiny_config().to_dict(), sequence_length=N), 2,
                           dropout=0.0)
    plain(random_inputs(2, N, lengths=[N, 3], seed=0, vocabulary_size=len(VOCAB)))
    plain.set_weights(model.get_weights())
    return plain


def _op_counts(path):
    import collections

    import onnx

    return collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def test_the_export_is_fused_and_reports_its_fused_operators(exported):
    ops = _op_counts(exported["path"] / MODEL_FILE)
    # The embeddings' LayerNorm, then per layer two Add + LayerNorm -> SkipLayerNormalization
    # and one exact GELU -> Gelu; no decomposed LayerNorm or GELU is left.
    assert ops["LayerNormalization"] == 1
    assert ops["SkipLayerNormalization"] == 2 * FUSED_LAYERS
    assert ops["Gelu"] == FUSED_LAYERS and ops["BiasGelu"] == 0
    assert ops["Erf"] == 0 and ops["Sqrt"] == 0 and ops["Reciprocal"] == 0
    assert ops["Gemm"] == 2  # the pooler and the logits; every 3-D dense is a MatMul
    meta = json.loads((exported["path"] / "power_bert.json").read_text())
    counts = meta["fused_operators"][MODEL_FILE]
    assert counts["SkipLayerNormalization"] == 2 * FUSED_LAYERS
    assert counts["Gelu"] == FUSED_LAYERS and counts["nodes"] == sum(ops.values())
    assert meta["fused_operators"][INT8_FILE]["SkipLayerNormalization"] == 2 * FUSED_LAYERS


def _passes_applied(path) -> dict[str, int]:
    """What the graph passes (serving.onnx_passes) left behind in the file at `path`."""
    import onnx

    nodes = list(onnx.load(str(path)).graph.node)
    producer = {name: node for node in nodes for name in node.output}
    op = lambda name: producer[name].op_type if name in producer else None  # noqa: E731
    return {
        # a head's bias Add after its Reshape (the pass moves it before, into the MatMul)
        "bias_after_reshape": sum(n.op_type == "Add" and op(n.input[0]) == "Reshape"
                                  and op(producer[n.input[0]].input[0]) == "MatMul"
                                  for n in nodes),
        # softmax inputs written x * m + c * (1 - m) (the pass leaves x + c * (1 - m))
        "selects_before_softmax": sum(n.op_type == "Softmax" and op(n.input[0]) == "Add"
                                      and all(op(i) == "Mul" for i in producer[n.input[0]].input)
                                      for n in nodes),
        # Hard-Extract gathering the attention block's LayerNorm (the pass gathers its inputs)
        # (the attention block's: its MatMul reads the heads' context, not a GELU)
        "gathers_after_norm": sum(n.op_type == "GatherND"
                                  and op(n.input[0]) == "SkipLayerNormalization"
                                  and any(op(i) == "MatMul"
                                          and op(producer[i].input[0]) == "Reshape"
                                          for i in producer[n.input[0]].input) for n in nodes),
        "gathered_contexts": sum(n.op_type == "GatherND" and n.name.endswith("/context")
                                 for n in nodes),
        "softmaxes": sum(n.op_type == "Softmax" for n in nodes)}


def test_the_graph_passes_leave_fewer_and_smaller_operators(exported, plain_model, tmp_path):
    from power_bert_tf.serving.onnx import convert

    power = _passes_applied(exported["path"] / MODEL_FILE)
    assert power["softmaxes"] == FUSED_LAYERS
    assert power["bias_after_reshape"] == power["selects_before_softmax"] == 0
    assert power["gathers_after_norm"] == 0
    assert power["gathered_contexts"] == FUSED_LAYERS  # each layer's LayerNorm on l_j rows
    plain = _passes_applied(convert(plain_model, tmp_path / "plain.onnx", N, 4))
    assert plain["bias_after_reshape"] == plain["selects_before_softmax"] == 0
    assert plain["gathered_contexts"] == 0 and plain["softmaxes"] == FUSED_LAYERS


@pytest.mark.parametrize("batch_size", [None, 4])
def test_fused_plain_export_equals_tf_and_the_unfused_graph(plain_model, tmp_path, batch_size):
    from power_bert_tf.serving.onnx import convert
    from power_bert_tf.serving.onnx_fusion import fused_counts

    fused = convert(plain_model, tmp_path / "fused.onnx", N, batch_size)
    unfused = convert(plain_model, tmp_path / "unfused.onnx", N, batch_size, fused=False)
    ops, before = _op_counts(fused), _op_counts(unfused)
    assert before["LayerNormalization"] == before["SkipLayerNormalization"] == 0
    assert before["Neg"] >= 2 * FUSED_LAYERS + 1  # Keras's x*inv + (-mean*inv + beta)
    assert ops["SkipLayerNormalization"] == 2 * FUSED_LAYERS and ops["Gelu"] == FUSED_LAYERS
    assert ops["Neg"] == 0 and sum(ops.values()) < sum(before.values())
    import onnx

    assert fused_counts(onnx.load(str(fused)))["nodes"] == sum(ops.values())
    inputs = random_inputs(4, N, lengths=[32, 20, 5, 1], seed=4, vocabulary_size=len(VOCAB))
    feeds = {name: np.asarray(value, np.int32) for name, value in inputs.items()}
    expected = plain_model(inputs, training=False).numpy()
    for path in (fused, unfused):
        logits = ort.InferenceSession(str(path)).run(["logits"], feeds)[0]
        np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_rewrite_leaves_a_graph_without_the_patterns_alone(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from power_bert_tf.serving.onnx_fusion import rewrite

    # mean without the rest of a LayerNorm; an Erf that is not a GELU.
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1], keepdims=1),
         helper.make_node("Sub", ["x", "m"], ["d"]), helper.make_node("Erf", ["d"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    before = model.SerializeToString()
    assert rewrite(model) == {"layer_norm": 0, "gelu": 0, "dense_reshapes": 0,
                              "score_transposes": 0}
    assert model.SerializeToString() == before
    onnx.checker.check_model(model)


def test_quantizing_logs_no_line_per_tensor(exported, tmp_path, caplog):
    """ONNX Runtime's quantiser logs every tensor at INFO on the root logger; under an
    absl driver (root at INFO) that is hundreds of lines: the export keeps them out, and
    gives the root logger its level back."""
    import logging

    from power_bert_tf.serving.onnx import quantize_int8

    root = logging.getLogger()
    with caplog.at_level(logging.INFO):
        quantize_int8(exported["path"] / "model.onnx", tmp_path / "int8.onnx", "ort-default")
        assert root.level == logging.INFO
    assert (tmp_path / "int8.onnx").is_file()
    assert not [r for r in caplog.records if "Quantization parameters" in r.getMessage()]
