"""use_onednn_dots: XLA_FLAGS gains the oneDNN dot flags, and the user's own flags win;
the XLA-vs-graph profile script."""
import json
import subprocess
import sys
from pathlib import Path

from power_bert_tf.serving.xla_cpu import ONEDNN_DOT_FLAGS, use_onednn_dots

ROOT = Path(__file__).resolve().parents[1]


def test_adds_the_flags_to_an_empty_environment(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "")  # undone after the test, unlike delenv of an unset one
    assert use_onednn_dots().split() == list(ONEDNN_DOT_FLAGS)


def test_keeps_the_users_flags_and_their_values(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_onednn=false --xla_dump_to=/tmp/dump")
    assert use_onednn_dots().split() == [
        "--xla_cpu_use_onednn=false", "--xla_dump_to=/tmp/dump",
        "--xla_cpu_experimental_onednn_fusion_type=dot"]


def test_twice_adds_nothing(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "")  # undone after the test, unlike delenv of an unset one
    assert use_onednn_dots() == use_onednn_dots()


def test_xla_vs_graph_profile_prints_every_part(tmp_path):
    output = tmp_path / "profile.json"
    command = [sys.executable, "experiments/xla_vs_graph.py", "--batch_size=2", "--length=8",
               "--hidden_size=32", "--num_heads=4", "--repeats=1", f"--output={output}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(output.read_text())["rows"]
    assert [row["part"] for row in rows][-1] == "whole layer" and len(rows) == 6
    assert all(row["graph_ms"] > 0 and row["xla_ms"] > 0 for row in rows)
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 1 and f"error: {output} exists" in again.stderr
    assert "Traceback" not in again.stderr
