"""Google BERT checkpoint folders: `bert_config.json`, `bert_model.ckpt.*`, `vocab.txt`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from power_bert_tf.errors import PowerBertError


def checkpoint_prefix(folder: Path) -> Path:
    """The checkpoint prefix in `folder` (`bert_model.ckpt` or the only other one)."""
    preferred = folder / "bert_model.ckpt"
    if preferred.with_suffix(".ckpt.index").is_file():
        return preferred
    indexes = sorted(folder.glob("*.index"))
    if len(indexes) != 1:
        raise PowerBertError(f"{folder}: expected one TF checkpoint (*.index), found "
                             f"{len(indexes)}")
    return indexes[0].with_suffix("")


def open_checkpoint(folder: Path):
    """The folder's checkpoint as a `tf.train.load_checkpoint` reader; one-line error
    when it cannot be read."""
    prefix = checkpoint_prefix(folder)
    try:
        return tf.train.load_checkpoint(str(prefix))
    except (tf.errors.OpError, ValueError) as error:
        raise PowerBertError(f"{prefix}: cannot read TF checkpoint "
                             f"({str(error).splitlines()[0]})") from None


def read_google_tensors(folder: Path) -> dict[str, np.ndarray]:
    """All variables of the folder's checkpoint."""
    reader = open_checkpoint(folder)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
