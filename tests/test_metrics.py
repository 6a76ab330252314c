"""power_bert_tf.training.metrics against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from power_bert_tf.data.tasks import Task
from power_bert_tf.errors import PowerBertError
from power_bert_tf.training.metrics import compute_metrics, primary_metric

pytestmark = pytest.mark.filterwarnings("error")  # undefined metrics must not warn


def task(metric: str, labels: tuple[str, ...] | None = ("0", "1"), name: str = "T") -> Task:
    return Task(name, labels, metric, is_pair=False, readers={})


def logits_for(classes: list[int], num_classes: int = 2) -> np.ndarray:
    """Logits whose argmax is `classes`."""
    logits = np.zeros((len(classes), num_classes), np.float32)
    logits[np.arange(len(classes)), classes] = 1.0
    return logits


def test_f1_and_accuracy() -> None:
    # tp=2 (rows 0, 1), fp=1 (row 2), fn=1 (row 3), tn=1 (row 4): P = R = 2/3, F1 = 2/3.
    labels = np.array([1, 1, 0, 1, 0])
    result = compute_metrics(task("f1"), labels, logits_for([1, 1, 1, 0, 0]))
    assert list(result) == ["f1", "accuracy"]
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["accuracy"] == pytest.approx(3 / 5)


def test_matthews() -> None:
    # tp=2, tn=1, fp=1, fn=0: (2*1 - 1*0) / sqrt(3 * 2 * 2 * 1) = 2 / sqrt(12).
    result = compute_metrics(task("matthews"), [1, 1, 0, 0], logits_for([1, 1, 1, 0]))
    assert result == pytest.approx({"matthews": 2 / math.sqrt(12), "accuracy": 0.75})


def test_multiclass_accuracy() -> None:
    mnli = task("accuracy", ("contradiction", "entailment", "neutral"))
    logits = np.array([[0.1, 2.0, 0.3], [5.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    assert compute_metrics(mnli, [1, 0, 2, 2], logits) == {"accuracy": 0.75}
    assert primary_metric(mnli) == "accuracy"


def test_regression_correlations() -> None:
    stsb = task("spearman", None)
    labels = np.array([0.0, 1.0, 2.0, 3.0])
    # Monotone, not linear: Spearman 1; Pearson = sum(dx*dy) / sqrt(sum dx^2 * sum dy^2)
    # with dx = (-1.5, -.5, .5, 1.5), dy = (-3.5, -2.5, .5, 5.5): 15 / sqrt(5 * 49).
    result = compute_metrics(stsb, labels, np.array([[0.0], [1.0], [4.0], [9.0]]))
    assert list(result) == ["spearman", "pearson"]
    assert result["spearman"] == pytest.approx(1.0)
    assert result["pearson"] == pytest.approx(15 / math.sqrt(245))
    reversed_scores = compute_metrics(stsb, labels, labels[::-1].copy())
    assert reversed_scores == pytest.approx({"spearman": -1.0, "pearson": -1.0})
    assert primary_metric(stsb) == "spearman"


def test_constant_predictions_do_not_crash() -> None:
    labels = np.array([0, 1, 0, 1])
    constant = logits_for([0, 0, 0, 0])
    assert compute_metrics(task("matthews"), labels, constant) == {"matthews": 0.0,
                                                                  "accuracy": 0.5}
    assert compute_metrics(task("matthews"), np.zeros(4, int), constant) == {
        "matthews": 0.0, "accuracy": 1.0}
    assert compute_metrics(task("f1"), labels, constant) == {"f1": 0.0, "accuracy": 0.5}
    assert compute_metrics(task("f1"), np.zeros(4, int), constant) == {"f1": 0.0,
                                                                      "accuracy": 1.0}
    stsb = task("spearman", None)
    assert compute_metrics(stsb, [0.0, 1.0, 2.0], np.full(3, 2.5)) == {"spearman": 0.0,
                                                                        "pearson": 0.0}
    assert compute_metrics(stsb, [1.0], [[1.0]]) == {"spearman": 0.0, "pearson": 0.0}


def test_shape_mismatches() -> None:
    with pytest.raises(PowerBertError, match=r"\(N, 2\) logits"):
        compute_metrics(task("accuracy"), [0, 1], np.zeros((2, 3)))
    with pytest.raises(PowerBertError, match="3 predictions"):
        compute_metrics(task("accuracy"), [0, 1], np.zeros((3, 2)))
    with pytest.raises(PowerBertError, match=r"\(N,\) or \(N, 1\)"):
        compute_metrics(task("spearman", None), [0.0, 1.0], np.zeros((2, 2)))
