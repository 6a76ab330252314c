"""BertClassifier: a head on [CLS], saved and reloaded whole."""
import keras
import numpy as np

from conftest import TINY, random_inputs
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.encoder import BertEncoder


def test_classifier_and_regression_heads(tmp_path):
    inputs = random_inputs(3, 16, lengths=[16, 8, 2])
    for num_classes in (3, 1):
        encoder = BertEncoder(**TINY, extract="hard", retention=[8, 4, 2], sequence_length=16)
        model = BertClassifier(encoder, num_classes)
        logits = model(inputs)
        assert logits.shape == (3, num_classes)
        model.save(tmp_path / "model.keras")
        reloaded = keras.saving.load_model(tmp_path / "model.keras")
        assert reloaded.encoder.retention == [8, 4, 2]
        np.testing.assert_allclose(reloaded(inputs), logits, atol=1e-6)


def test_classifier_trains_with_fit():
    keras.utils.set_random_seed(0)
    encoder = BertEncoder(**{**TINY, "dropout": 0.0, "attention_dropout": 0.0},
                          extract="hard", retention=[8, 4, 2], sequence_length=16)
    model = BertClassifier(encoder, 2, dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    inputs = random_inputs(8, 16)
    labels = np.array([0, 1] * 4)
    history = model.fit(inputs, labels, epochs=30, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
