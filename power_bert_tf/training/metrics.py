"""GLUE evaluation metrics, computed on the host with scikit-learn and SciPy.

Classification reports accuracy, plus F1 (positive class 1) or Matthews correlation where
that is the task's metric; regression reports Pearson and Spearman correlations.
Undefined values (a constant prediction or label vector) are 0.0, without warnings.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats
from sklearn import metrics

from power_bert_tf.data.tasks import Task
from power_bert_tf.errors import PowerBertError


def primary_metric(task: Task) -> str:
    """The key of `compute_metrics`' result that ranks checkpoints (higher is better)."""
    return task.metric


def compute_metrics(task: Task, labels: ArrayLike, predictions: ArrayLike) -> dict[str, float]:
    """Task metrics of `predictions` against `labels`.

    Args:
        task: gives the metric and whether this is regression.
        labels: (N,) class indices, or scores for regression.
        predictions: (N, C) logits (or probabilities), or (N,) / (N, 1) regression scores.

    Returns:
        {task.metric: value, ...extras}: "accuracy" for every classification task, "f1" or
        "matthews" where that is the metric; "pearson" and "spearman" for regression.
    """
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if task.is_regression:
        predictions = predictions.reshape(len(predictions), -1)
        if predictions.shape[1] != 1:
            raise PowerBertError(f"{task.name}: regression predictions must be (N,) or (N, 1), "
                                 f"got {predictions.shape}")
    elif predictions.ndim != 2 or predictions.shape[1] != task.num_classes:
        raise PowerBertError(f"{task.name}: predictions must be (N, {task.num_classes}) "
                             f"logits, got {predictions.shape}")
    if labels.shape != (len(predictions),):
        raise PowerBertError(f"{task.name}: {len(predictions)} predictions but labels of "
                             f"shape {labels.shape}")

    if task.is_regression:
        scores = predictions[:, 0].astype(np.float64)
        labels = labels.astype(np.float64)
        results = {"pearson": _correlation(stats.pearsonr, labels, scores),
                   "spearman": _correlation(stats.spearmanr, labels, scores)}
        return {task.metric: results.pop(task.metric), **results}

    predicted = predictions.argmax(axis=-1)
    results = {"accuracy": float(metrics.accuracy_score(labels, predicted))}
    if task.metric == "f1":
        results["f1"] = float(metrics.f1_score(labels, predicted, labels=[0, 1], pos_label=1,
                                               zero_division=0.0))
    elif task.metric == "matthews":
        # Undefined when labels and predictions hold one class together (sklearn warns).
        one_class = len(np.union1d(labels, predicted)) < 2
        results["matthews"] = 0.0 if one_class else float(
            metrics.matthews_corrcoef(labels, predicted))
    return {task.metric: results.pop(task.metric), **results}


def _correlation(correlate: Callable, x: np.ndarray, y: np.ndarray) -> float:
    """`correlate(x, y)`'s statistic; 0.0 where it is undefined (< 2 points or constant)."""
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(correlate(x, y).statistic)
