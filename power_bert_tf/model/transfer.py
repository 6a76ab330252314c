"""Copying weights between models of one architecture, by variable path."""
from __future__ import annotations

import keras

from power_bert_tf.errors import PowerBertError


def is_retention_variable(variable) -> bool:
    """True for Soft-Extract retention parameters r_j."""
    return variable.path.endswith("soft_extract/retention_parameters")


def transfer_weights(source: keras.Model, target: keras.Model, source_name: str) -> None:
    """Copies weights by variable path; retention parameters r_j are never carried over.

    Every other variable of `target` must exist in `source` with the same shape, and
    `source` may have no variable that `target` lacks: no silent partial copies.
    """
    values = {v.path: v for v in source.weights if not is_retention_variable(v)}
    for variable in target.weights:
        if is_retention_variable(variable):
            continue
        if variable.path not in values:
            raise PowerBertError(f"{source_name} lacks variable {variable.path!r}")
        value = values.pop(variable.path)
        if tuple(value.shape) != tuple(variable.shape):
            raise PowerBertError(f"{source_name}: variable {variable.path!r} has shape "
                                 f"{tuple(value.shape)}, expected {tuple(variable.shape)}")
        variable.assign(value)
    if values:
        raise PowerBertError(f"{source_name} has unexpected variable {next(iter(values))!r}")
