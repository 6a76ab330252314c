"""Hugging Face BERT folders: `config.json`, `model.safetensors`, `vocab.txt`."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from power_bert_tf.errors import PowerBertError

# Buffers that are not weights.
_BUFFERS = ("embeddings.position_ids",)


def hf_to_canonical(name: str) -> tuple[str, bool] | None:
    """Maps a Hugging Face tensor name to (canonical name, needs transpose).

    Returns None for non-weight buffers. Pre-training and task heads (`cls.*`,
    `classifier.*`) map into the ignored `cls/` and `classifier/` namespaces.
    """
    name = name.removeprefix("bert.")
    if name in _BUFFERS:
        return None
    parts = name.split(".")
    leaf = parts.pop()
    path = "/".join(parts)
    path = re.sub(r"encoder/layer/(\d+)", r"encoder/layer_\1", path)
    if path.startswith(("cls", "classifier")):
        return f"{path}/{leaf}", False
    path = "bert/" + path
    if path.endswith("LayerNorm"):
        return f"{path}/{ {'weight': 'gamma', 'bias': 'beta'}.get(leaf, leaf) }", False
    if path.endswith("_embeddings"):
        return path, False
    if leaf == "weight":
        return f"{path}/kernel", True
    return f"{path}/{leaf}", False


def read_hf_tensors(folder: Path, to_canonical: Callable[[str], tuple[str, bool] | None]
                    = hf_to_canonical) -> dict[str, np.ndarray]:
    """`model.safetensors` -> canonical tensors (kernels transposed to (in, out)).

    `to_canonical` maps a name as `hf_to_canonical` does (BERT, the default).
    """
    path = folder / "model.safetensors"
    if not path.is_file():
        raise PowerBertError(f"{folder}: no model.safetensors (only the safetensors format "
                             f"is read)")
    try:
        raw = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise PowerBertError(f"{path}: cannot read safetensors file ({error})") from None
    tensors = {}
    for name, value in raw.items():
        mapped = to_canonical(name)
        if mapped is None:
            continue
        canonical, transpose = mapped
        tensors[canonical] = value.T if transpose else value
    return tensors


def read_hf_lower_case(folder: Path) -> bool | None:
    """`do_lower_case` from `tokenizer_config.json`, else the normalizer's `lowercase`
    in `tokenizer.json`, or None when neither says."""
    value = None
    path = folder / "tokenizer_config.json"
    if path.is_file():
        value = json.loads(path.read_text()).get("do_lower_case")
    path = folder / "tokenizer.json"
    if value is None and path.is_file():
        value = (json.loads(path.read_text(encoding="utf-8")).get("normalizer")
                 or {}).get("lowercase")
    return None if value is None else bool(value)
