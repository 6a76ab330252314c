"""A tiny REST client for an exported PoWER-BERT model on TF Serving (urllib + JSON).

    python -m power_bert_tf.serving.client \\
        --url=http://localhost:8501/v1/models/sst2:predict --text="a fine film"
    python -m power_bert_tf.serving.client --url=... --text_a="..." --text_b="..."
    python -m power_bert_tf.serving.client --url=... --signature_name=metadata

Requests use TF Serving's columnar format, {"signature_name": ..., "inputs": {...}},
and the answer is its "outputs": for `serving_default`, `probabilities` (B, C) and
`label` (B,), or for regression the (B,) scores (TF Serving leaves a lone output unnamed;
`classify` names it `score`).
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Mapping, Sequence

from absl import app, flags

from power_bert_tf.cli import exit_on_user_error
from power_bert_tf.errors import PowerBertError


def predict(url: str, inputs: Mapping[str, Any], signature_name: str = "serving_default",
            timeout: float = 30.0) -> dict[str, Any] | list:
    """POSTs {"signature_name", "inputs"} to a TF Serving `:predict` URL; returns "outputs",
    an object of named outputs, or a bare list when the signature has one output.

    Raises `PowerBertError` with the server's error message, or the connection error.
    """
    body = json.dumps({"signature_name": signature_name, "inputs": dict(inputs)}).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise PowerBertError(f"{url}: HTTP {error.code}: {_server_error(error)}") from None
    except urllib.error.URLError as error:
        raise PowerBertError(f"cannot reach {url}: {error.reason}") from None
    if "outputs" not in answer:
        raise PowerBertError(f"{url}: no 'outputs' in the answer {str(answer)[:200]}")
    return answer["outputs"]


def _server_error(error: urllib.error.HTTPError) -> str:
    text = error.read().decode("utf-8", errors="replace")
    try:
        return json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        return text.strip()[:200] or error.reason


def classify(url: str, texts_a: Sequence[str], texts_b: Sequence[str] | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
    """B texts (or pairs) -> the `serving_default` outputs: `probabilities` and `label`,
    or `score` for regression (which TF Serving sends unnamed, as its only output)."""
    inputs = ({"text": list(texts_a)} if texts_b is None
              else {"text_a": list(texts_a), "text_b": list(texts_b)})
    outputs = predict(url, inputs, "serving_default", timeout)
    return {"score": outputs} if isinstance(outputs, list) else outputs


def metadata(url: str, timeout: float = 30.0) -> dict[str, Any]:
    """The `metadata` signature: labels, retention, max_seq_length, task, config (JSON)."""
    return predict(url, {}, "metadata", timeout)


flags.DEFINE_string("url", None, "TF Serving predict URL, e.g. "
                    "http://localhost:8501/v1/models/sst2:predict")
flags.DEFINE_multi_string("text", None, "A text to classify (repeat for a batch).")
flags.DEFINE_multi_string("text_a", None, "First text of a pair (repeat for a batch).")
flags.DEFINE_multi_string("text_b", None, "Second text of a pair, one per --text_a.")
flags.DEFINE_enum("signature_name", "serving_default", ["serving_default", "metadata"],
                  "serving_default classifies the texts; metadata reads labels and retention.")
flags.DEFINE_float("timeout", 30.0, "Seconds to wait for the server.")
FLAGS = flags.FLAGS


@exit_on_user_error
def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise PowerBertError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.url:
        raise PowerBertError("--url is required")
    if FLAGS.signature_name == "metadata":
        outputs = metadata(FLAGS.url, FLAGS.timeout)
    elif FLAGS.text and not (FLAGS.text_a or FLAGS.text_b):
        outputs = classify(FLAGS.url, FLAGS.text, timeout=FLAGS.timeout)
    elif FLAGS.text_a and FLAGS.text_b and not FLAGS.text:
        if len(FLAGS.text_a) != len(FLAGS.text_b):
            raise PowerBertError(f"{len(FLAGS.text_a)} --text_a but {len(FLAGS.text_b)} "
                                 f"--text_b")
        outputs = classify(FLAGS.url, FLAGS.text_a, FLAGS.text_b, FLAGS.timeout)
    else:
        raise PowerBertError("pass --text (single-sentence tasks) or --text_a and --text_b "
                             "(pair tasks)")
    print(json.dumps(outputs, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    app.run(main)
