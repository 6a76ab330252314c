"""The learning-rate schedule (linear warm-up, then linear decay to 0) and the search's
two learning rates: r_j at its own, everything else at BERT's."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY, random_inputs
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.encoder import BertEncoder
from power_bert_tf.model.transfer import is_retention_variable
from power_bert_tf.training.optimization import WarmupLinearDecay, adam
from power_bert_tf.training.trainer import OptimizerGroup, Trainer

PEAK = 1e-3


@pytest.mark.parametrize("step, expected", [
    (0, PEAK / 10), (4, PEAK / 2), (9, PEAK),            # warm-up: (step + 1) / 10 of the peak
    (10, PEAK), (55, PEAK * 45 / 90), (99, PEAK / 90),   # decay: (100 - step) / 90 of it
    (100, 0.0), (150, 0.0),                              # 0 from the last step on
])
def test_warmup_then_linear_decay(step, expected):
    schedule = WarmupLinearDecay(PEAK, total_steps=100, warmup_steps=10)
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-12)


def test_schedule_rises_then_falls_and_peaks_once():
    schedule = WarmupLinearDecay(PEAK, total_steps=50, warmup_steps=5)
    rates = np.array([float(schedule(step)) for step in range(50)])
    assert rates.argmax() in (4, 5) and rates.max() == pytest.approx(PEAK)
    assert (np.diff(rates[:5]) > 0).all() and (np.diff(rates[5:]) < 0).all()


def test_no_warmup_starts_at_the_peak():
    assert float(WarmupLinearDecay(PEAK, total_steps=4, warmup_steps=0)(0)) == pytest.approx(PEAK)


def test_schedule_serialises():
    schedule = WarmupLinearDecay(PEAK, total_steps=100, warmup_steps=10)
    text = json.dumps(keras.saving.serialize_keras_object(schedule))
    revived = keras.saving.deserialize_keras_object(json.loads(text))
    assert revived.get_config() == schedule.get_config()
    assert float(revived(42)) == float(schedule(42))


def test_adam_follows_the_schedule_with_a_tenth_of_the_steps_warming_up():
    optimizer = adam(PEAK, total_steps=20, warmup_proportion=0.1, name="adam")
    assert (optimizer.beta_1, optimizer.beta_2) == (0.9, 0.999)
    variable = keras.Variable(np.zeros(3, "float32"))
    schedule = WarmupLinearDecay(PEAK, total_steps=20, warmup_steps=2)
    for step in range(20):
        assert float(optimizer.learning_rate) == pytest.approx(float(schedule(step))), step
        optimizer.apply_gradients([(tf.ones(3), variable)])


BERT_RATE, R_RATE = 1e-4, 0.05


@pytest.fixture(scope="module")
def search_step(tmp_path_factory):
    """A search model before and after one step of the search's two Adam groups."""
    model = BertClassifier(BertEncoder(**TINY, extract="soft", sequence_length=16,
                                       mass_lambda=1.0), num_classes=2)
    groups = [OptimizerGroup(adam(BERT_RATE, 1, 0.0, "adam"),
                             lambda v: not is_retention_variable(v)),
              OptimizerGroup(adam(R_RATE, 1, 0.0, "adam_retention"), is_retention_variable)]
    before = {v.path: np.asarray(v) for v in model.trainable_variables}
    features = random_inputs(4, 16, lengths=[16, 12, 9, 5])
    dataset = tf.data.Dataset.from_tensors((features, np.array([0, 1, 1, 0], "int32")))
    Trainer(model, tf.distribute.get_strategy(), groups, regression=False).fit(
        lambda epoch: dataset, steps_per_epoch=1, epochs=1,
        evaluate=lambda: {"accuracy": 0.0}, metric="accuracy",
        state_dir=tmp_path_factory.mktemp("state"), on_epoch_end=lambda log, best: None,
        resume=False)
    steps = {v.path: np.abs(np.asarray(v) - before[v.path]).max()
             for v in model.trainable_variables}
    return model, steps


def test_search_trains_r_at_its_own_learning_rate(search_step):
    """Adam's first step moves a parameter by its learning rate times sign(gradient). The
    mass loss (lambda * j * sum_i r_j[i], lambda = 1 here) outweighs the task gradient, so
    every r_j[i] falls from 1 by exactly the r learning rate, while no dense weight moves
    by more than BERT's."""
    model, steps = search_step
    retention = [v for v in model.trainable_variables if is_retention_variable(v)]
    assert len(retention) == TINY["num_layers"]
    for r in retention:
        np.testing.assert_allclose(np.asarray(r), 1.0 - R_RATE, atol=1e-6, err_msg=r.path)
    dense = [step for path, step in steps.items()
             if not path.endswith("soft_extract/retention_parameters") and "embeddings" not in path]
    assert max(dense) == pytest.approx(BERT_RATE, rel=1e-3)


def test_embedding_rows_step_at_most_the_learning_rate(search_step):
    """Keras 3's Adam applies an embedding's IndexedSlices gradient slice by slice (a row
    whose id repeats n times would step up to sqrt(n) x the rate); the trainer densifies
    it first, as the reference's Adam does."""
    _, steps = search_step
    embeddings = [step for path, step in steps.items() if path.startswith("embeddings/")
                  and path.endswith("_embeddings/embeddings")]
    assert len(embeddings) == 3
    assert max(embeddings) <= BERT_RATE * (1 + 1e-3)


def test_epochs_keep_the_traced_steps(tmp_path, monkeypatch):
    """Each epoch reseeds dropout and Rand-WS without `tf.random.set_seed`, which clears
    TF's kernel cache and so would set every traced step up again each epoch; each
    epoch still trains with its own random stream, a function of (seed, epoch)."""
    calls = []
    monkeypatch.setattr(tf.random, "set_seed", calls.append)
    model = BertClassifier(BertEncoder(**{**TINY, "dropout": 0.5}), num_classes=2)
    features = random_inputs(4, 16, lengths=[16, 12, 9, 5])
    dataset = tf.data.Dataset.from_tensors((features, np.array([0, 1, 1, 0], "int32")))
    trainer = Trainer(model, tf.distribute.get_strategy(),
                      [OptimizerGroup(adam(0.0, 1, 0.0, "adam"), lambda v: True)],
                      regression=False)
    losses = []
    trainer.fit(lambda epoch: dataset, steps_per_epoch=1, epochs=3,
                evaluate=lambda: {"accuracy": 0.0}, metric="accuracy", state_dir=tmp_path,
                on_epoch_end=lambda log, best: losses.append(log.train_loss), resume=False,
                seed=7)
    assert calls == []
    assert len(set(losses)) == 3  # the learning rate is 0: only the dropout masks differ
    (traced,) = trainer._traced.values()
    assert traced.experimental_get_tracing_count() == 1
