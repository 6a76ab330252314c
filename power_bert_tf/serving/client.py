"""A tiny REST client for an exported PoWER-BERT model on TF Serving: standard library only
(urllib, json, argparse), so it runs where neither TensorFlow nor NumPy is installed.

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

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any, Mapping, Sequence

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m power_bert_tf.serving.client", allow_abbrev=False,
        description="Classify texts with a PoWER-BERT model on TF Serving, or read its "
                    "metadata.")
    parser.add_argument("--url", required=True, help="TF Serving predict URL, e.g. "
                        "http://localhost:8501/v1/models/sst2:predict")
    parser.add_argument("--text", action="append",
                        help="A text to classify (repeat for a batch).")
    parser.add_argument("--text_a", action="append",
                        help="First text of a pair (repeat for a batch).")
    parser.add_argument("--text_b", action="append",
                        help="Second text of a pair, one per --text_a.")
    parser.add_argument("--signature_name", default="serving_default",
                        choices=("serving_default", "metadata"),
                        help="serving_default classifies the texts; metadata reads labels "
                             "and retention.")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="Seconds to wait for the server.")
    return parser


@exit_on_user_error
def main(argv: list[str]) -> None:
    """Runs the command line `argv` (without the program name); prints the outputs as JSON."""
    args = _parser().parse_args(argv)
    if args.signature_name == "metadata":
        outputs = metadata(args.url, args.timeout)
    elif args.text and not (args.text_a or args.text_b):
        outputs = classify(args.url, args.text, timeout=args.timeout)
    elif args.text_a and args.text_b and not args.text:
        if len(args.text_a) != len(args.text_b):
            raise PowerBertError(f"{len(args.text_a)} --text_a but {len(args.text_b)} "
                                 f"--text_b")
        outputs = classify(args.url, args.text_a, args.text_b, args.timeout)
    else:
        raise PowerBertError("pass --text (single-sentence tasks) or --text_a and --text_b "
                             "(pair tasks)")
    print(json.dumps(outputs, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1:])
