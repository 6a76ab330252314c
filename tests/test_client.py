"""The REST client against a loopback stand-in for TF Serving's predict API."""
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from power_bert_tf.errors import PowerBertError
from power_bert_tf.serving import client

REPO = Path(__file__).resolve().parents[1]
METADATA = {"labels": ["negative", "positive"], "retention": [20, 12, 6],
            "max_seq_length": 32, "task": "SST-2", "config": "{}"}


class FakeServing(BaseHTTPRequestHandler):
    """Answers POST /v1/models/sst2:predict as TF Serving does for our signatures."""

    requests: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.path, self.headers["Content-Type"], body))
        if self.path != "/v1/models/sst2:predict":
            return self._answer(404, {"error": "Servable not found for request: Latest(x)"})
        inputs, signature = body["inputs"], body["signature_name"]
        if signature == "metadata" and inputs == {}:
            return self._answer(200, {"outputs": METADATA})
        if signature == "serving_default" and set(inputs) == {"text"}:  # classification
            positive = [0.9 if "good" in text else 0.2 for text in inputs["text"]]
            return self._answer(200, {"outputs": {
                "probabilities": [[1 - p, p] for p in positive],
                "label": ["positive" if p > 0.5 else "negative" for p in positive]}})
        if signature == "serving_default" and set(inputs) == {"text_a", "text_b"}:
            # A regression model: its lone output, `score`, goes unnamed.
            return self._answer(200, {"outputs": [4.5 if a == b else 1.0 for a, b in
                                                  zip(inputs["text_a"], inputs["text_b"])]})
        return self._answer(400, {"error": f"input size does not match signature: "
                                           f"{len(inputs)}!=2 len({{{','.join(inputs)}}})"})

    def _answer(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = HTTPServer(("127.0.0.1", 0), FakeServing)  # loopback only
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_classify_and_metadata(server):
    url = f"{server}/v1/models/sst2:predict"
    outputs = client.classify(url, ["a good film", "dull"])
    assert outputs["label"] == ["positive", "negative"]
    assert outputs["probabilities"][0] == pytest.approx([0.1, 0.9])
    path, content_type, body = FakeServing.requests[-1]
    assert path == "/v1/models/sst2:predict" and content_type == "application/json"
    assert body == {"signature_name": "serving_default",
                    "inputs": {"text": ["a good film", "dull"]}}
    assert client.metadata(url) == METADATA
    assert FakeServing.requests[-1][2] == {"signature_name": "metadata", "inputs": {}}


def test_regression_pairs_get_a_named_score(server):
    outputs = client.classify(f"{server}/v1/models/sst2:predict", ["a", "b"], ["a", "c"])
    assert outputs == {"score": [4.5, 1.0]}
    assert FakeServing.requests[-1][2]["inputs"] == {"text_a": ["a", "b"], "text_b": ["a", "c"]}


def test_server_errors_are_one_line(server):
    with pytest.raises(PowerBertError, match=r"HTTP 400: input size does not match signature: "
                                             r"1!=2 len\(\{text\}\)"):
        client.predict(f"{server}/v1/models/sst2:predict", {"text": ["a"]}, "predict_ids")
    with pytest.raises(PowerBertError, match="HTTP 404: Servable not found"):
        client.classify(f"{server}/v1/models/other:predict", ["a"])
    with pytest.raises(PowerBertError, match="cannot reach http://127.0.0.1:9/"):
        client.classify("http://127.0.0.1:9/v1/models/sst2:predict", ["a"], timeout=5)


def test_command_line(server):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "power_bert_tf.serving.client",
                               f"--url={server}/v1/models/sst2:predict", *args],
                              cwd=REPO, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})

    done = run("--text=a good film", "--text=a dull plot")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] == ["positive", "negative"]
    done = run("--signature_name=metadata")
    assert json.loads(done.stdout)["retention"] == [20, 12, 6]
    done = run("--text_a=a", "--text_a=b", "--text_b=a", "--text_b=c")
    assert json.loads(done.stdout) == {"score": [4.5, 1.0]}
    done = run("--text=a", f"--url={server}/v1/models/other:predict")
    assert done.returncode == 1
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line == (f"error: {server}/v1/models/other:predict: HTTP 404: Servable not "
                         f"found for request: Latest(x)")


# Runs the client's command line with `python -S` (no site-packages) and an import hook
# that refuses every module outside the standard library and this package.
_STDLIB_ONLY = """
import importlib.abc, runpy, sys
sys.path.insert(0, sys.argv.pop(1))

class StdlibOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top not in sys.stdlib_module_names and top != "power_bert_tf":
            raise ImportError(f"{name} is not in the standard library")

sys.meta_path.insert(0, StdlibOnly())
for name in ("tensorflow", "numpy", "absl"):
    try:
        __import__(name)
    except ImportError:
        continue
    sys.exit(f"{name} is importable")
runpy.run_module("power_bert_tf.serving.client", run_name="__main__", alter_sys=True)
"""


def test_command_line_needs_only_the_standard_library(server):
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    done = subprocess.run(
        [sys.executable, "-S", "-c", _STDLIB_ONLY, str(REPO),
         f"--url={server}/v1/models/sst2:predict", "--text=a good film"],
        cwd="/", capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] == ["positive"]
