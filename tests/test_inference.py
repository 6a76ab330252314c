"""BucketedPredictor: a short bucket gives the logits of padding to N, compiled once."""
import numpy as np
import pytest

from conftest import random_inputs
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.encoder import BertEncoder
from power_bert_tf.serving.inference import BucketedPredictor
from serving_models import N, tiny_classifier, tiny_tokenizer
from tiny_task import VOCAB, tiny_config


@pytest.fixture(scope="module")
def model():
    return tiny_classifier()


def inputs(lengths, length=N, seed=0):
    return random_inputs(len(lengths), length, lengths=lengths, seed=seed,
                         vocabulary_size=len(VOCAB))


def test_short_bucket_gives_the_logits_of_padding_to_n(model):
    features = inputs([5, 6, 7, 8, 9, 10])
    reference = model(features, training=False).numpy()
    assert np.ptp(reference) > 0.1  # the logits are not all alike
    predictor = BucketedPredictor(model, warm=False)
    np.testing.assert_allclose(predictor(features), reference, atol=1e-5)
    unpadded = {name: value[:, :10] for name, value in features.items()}
    np.testing.assert_allclose(predictor(unpadded), reference, atol=1e-5)
    assert predictor.trace_counts == {16: 1, 32: 0}


def test_a_bucket_is_compiled_once_for_any_batch_size(model):
    predictor = BucketedPredictor(model, warm=False)
    for batch in (3, 3, 7, 1):
        predictor(inputs(list(range(4, 4 + batch)), seed=batch))
    assert predictor.trace_counts == {16: 1, 32: 0}


def test_loading_warms_every_bucket(model):
    """By default every bucket is compiled on construction, so no call compiles one."""
    predictor = BucketedPredictor(model)
    assert predictor.trace_counts == {16: 1, 32: 1}
    features = inputs([3, 20, 32, 12])
    np.testing.assert_allclose(predictor(features), model(features, training=False), atol=1e-5)
    predictor(inputs([5, 6]))
    assert predictor.trace_counts == {16: 1, 32: 1}


def test_mixed_lengths_use_the_bucket_of_the_longest(model):
    features = inputs([3, 20, 32, 12])
    predictor = BucketedPredictor(model, warm=False)
    logits = predictor(features)
    np.testing.assert_allclose(logits, model(features, training=False), atol=1e-5)
    assert predictor.trace_counts == {16: 0, 32: 1}
    alone = predictor({name: value[:1] for name, value in features.items()})
    np.testing.assert_allclose(alone, logits[:1], atol=1e-5)


def test_longer_inputs_are_truncated_to_the_largest_bucket(model):
    features = inputs([40, 9], length=40)
    predictor = BucketedPredictor(model)
    with pytest.warns(UserWarning, match=r"1 input\(s\) longer than the largest bucket "
                                         r"\(32 tokens\) were truncated"):
        logits = predictor(features)
    cut = {name: value[:, :N] for name, value in features.items()}
    np.testing.assert_allclose(logits, model(cut, training=False), atol=1e-5)


def test_predict_texts(model, tmp_path):
    tokenizer = tiny_tokenizer(tmp_path)
    predictor = BucketedPredictor(model, tokenizer=tokenizer, warm=False)
    texts = ["the film was good .", "a boring , dull plot", ""]
    logits = predictor.predict_texts(texts)
    np.testing.assert_allclose(logits, model(tokenizer(np.array(texts)), training=False),
                               atol=1e-5)
    empty = predictor.predict_texts([""])  # "[CLS] [SEP]": the model's logits for it
    np.testing.assert_allclose(empty, logits[2:], atol=1e-5)
    # Invalid UTF-8 becomes U+FFFD, which normalization deletes.
    np.testing.assert_allclose(predictor.predict_texts([b"the film \xff\xfe was good ."]),
                               logits[:1], atol=1e-5)
    pairs = predictor.predict_texts(["good film", ""], ["awful", "dull"])
    assert pairs.shape == (2, 2) and np.isfinite(pairs).all()
    assert predictor.trace_counts == {16: 1, 32: 0}


def test_user_errors(model):
    with pytest.raises(PowerBertError, match="predict_texts needs a tokenizer"):
        BucketedPredictor(model).predict_texts(["good"])
    with pytest.raises(PowerBertError, match="features lack input_type_ids"):
        BucketedPredictor(model)({"input_word_ids": np.ones((1, 4)),
                                  "input_mask": np.ones((1, 4))})
    with pytest.raises(PowerBertError, match=r"buckets \(16, 128\) must lie in \[1, 64\]"):
        BucketedPredictor(model, buckets=[128, 16])
    search = BertClassifier(BertEncoder(**tiny_config().to_dict(), extract="soft",
                                        sequence_length=N), 2)
    with pytest.raises(PowerBertError, match="search .* cannot be served"):
        BucketedPredictor(search)
