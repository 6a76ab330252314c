"""The peer rows' weight mapping and, where a Python with torch and transformers is at
hand ($PEER_PYTHON, or this one), the peer export itself."""
import os

import numpy as np
import pytest

from power_bert_tf.bench.cases import FIXED_CASES, build_pair, random_inputs
from power_bert_tf.bench.peer import hf_config, hf_name, hf_tensors, peer_python


def test_canonical_names_map_to_hugging_face_names():
    assert hf_name("bert/embeddings/word_embeddings") == (
        "bert.embeddings.word_embeddings.weight", False)
    assert hf_name("bert/embeddings/LayerNorm/gamma") == ("bert.embeddings.LayerNorm.weight",
                                                          False)
    assert hf_name("bert/encoder/layer_11/attention/self/query/kernel") == (
        "bert.encoder.layer.11.attention.self.query.weight", True)
    assert hf_name("bert/encoder/layer_0/output/LayerNorm/beta") == (
        "bert.encoder.layer.0.output.LayerNorm.bias", False)
    assert hf_name("bert/pooler/dense/bias") == ("bert.pooler.dense.bias", False)


def test_hf_tensors_are_the_classifiers_weights_in_torch_layout():
    full, _ = build_pair(FIXED_CASES["tiny"], sequence_length=16, seed=0)
    tensors = hf_tensors(full)
    config = hf_config(full)
    layers, hidden = config["num_hidden_layers"], config["hidden_size"]
    # 5 embedding tensors, 16 per layer, the pooler's 2 and the classifier's 2.
    assert len(tensors) == 5 + 16 * layers + 4
    assert tensors["bert.encoder.layer.0.attention.self.query.weight"].shape == (hidden, hidden)
    assert tensors["bert.encoder.layer.0.intermediate.dense.weight"].shape == (
        config["intermediate_size"], hidden)
    assert tensors["classifier.weight"].shape == (2, hidden)
    kernel = full.encoder.get_layer("layer_1_feed_forward").intermediate_dense.kernel.numpy()
    np.testing.assert_array_equal(tensors["bert.encoder.layer.0.intermediate.dense.weight"],
                                  kernel.T)


PEER = peer_python(os.environ.get("PEER_PYTHON"))


@pytest.mark.slow
@pytest.mark.skipif(PEER is None, reason="no Python with torch and transformers "
                                         "($PEER_PYTHON, or pip install '.[peer]')")
def test_the_peer_export_computes_the_same_logits(tmp_path):
    import onnxruntime as ort

    from power_bert_tf.bench.peer import export_peer
    from power_bert_tf.bench.runtimes import PEER_INPUTS

    case = FIXED_CASES["tiny"]
    full, _ = build_pair(case, sequence_length=16, seed=0)
    fp32, int8, report = export_peer(full, PEER, tmp_path, 2, 16)
    assert report["fused_operators"]["SkipLayerNormalization"] == 2 * case.config.num_layers
    inputs = random_inputs(case.config, 2, 16, seed=1)
    feeds = {hf: np.asarray(inputs[ours], np.int64) for ours, hf in PEER_INPUTS.items()}
    expected = full(inputs, training=False).numpy()
    logits = ort.InferenceSession(str(fp32)).run(["logits"], feeds)[0]
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    quantized = ort.InferenceSession(str(int8)).run(["logits"], feeds)[0]
    assert 0 < np.abs(quantized - expected).max() < 0.1 * np.abs(expected).max() + 0.05
