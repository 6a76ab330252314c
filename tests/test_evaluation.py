"""pipeline.evaluation: the served comparisons time both models through length buckets."""
import numpy as np

from conftest import random_inputs
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.encoder import BertEncoder
from power_bert_tf.pipeline.evaluation import format_summary, served_passes
from serving_models import N, RETENTION, tiny_classifier
from tiny_task import VOCAB, tiny_config


def plain_classifier(power: BertClassifier) -> BertClassifier:
    encoder = BertEncoder(**tiny_config().to_dict(), sequence_length=N)
    model = BertClassifier(encoder, power.num_classes, dropout=0.0)
    model(random_inputs(1, N, vocabulary_size=len(VOCAB)))
    return model


def test_served_passes_batch_by_bucket_in_file_and_length_order():
    power = tiny_classifier()
    lengths = [30, 5, 6, 31, 7, 8]  # buckets (16, 32)
    features = random_inputs(len(lengths), N, lengths=lengths, seed=1,
                             vocabulary_size=len(VOCAB))
    features = {name: np.asarray(value) for name, value in features.items()}
    passes, plans = served_passes({"baseline": plain_classifier(power), "power_bert": power},
                                  features, batch_size=2, precision="fp32", jit_compile=False)
    assert set(passes) == {f"{model}/{setting}" for model in ("baseline", "power_bert")
                           for setting in ("bucketed", "bucketed_sorted")}
    assert plans["bucketed"] == {"order": "file", "buckets": [16, 32],
                                 "batches": [(2, 32), (2, 32), (2, 16)]}
    assert plans["bucketed_sorted"]["batches"] == [(2, 16), (2, 16), (2, 32)]
    for run in passes.values():
        run()


def test_format_summary_names_each_comparison():
    spread = {"median": 2.0, "min": 1.5, "max": 2.5, "rounds": 5}
    served = {"speedup": {**spread, "median": 1.2}, "flop_bound": 1.3}
    summary = {
        "metric": "accuracy", "model_type": "bert", "dev_examples": 6, "eval_batch_size": 2,
        "baseline": {"dev": {"accuracy": 0.9}, "ms_per_batch": 10.0},
        "power_bert": {"dev": {"accuracy": 0.89}, "ms_per_batch": 5.0},
        "retention": RETENTION, "metric_change": -0.01, "speedup": 2.0,
        "speedup_spread": spread, "flop_bound": 2.4, "word_vector_bound": 2.5,
        "served": {"bucketed": served, "bucketed_sorted": served}, "sequence_length": 32,
        "training_epochs": {"baseline": 1,
                            "power_bert": {"finetune": 1, "search": 1, "retrain": 1}}}
    text = format_summary("custom", summary)
    assert "both padded to N (the paper):" in text and "2.00x [1.50-2.50]" in text
    assert "both in length buckets, file order:" in text
    assert "both in length buckets, sorted:" in text and "1.20x [1.50-2.50]" in text
    assert "with 2 more training epochs" in text
