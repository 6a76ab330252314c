"""experiments/padding_lengths.py: trimmed batch lengths per task, JSON never overwritten.

Run as a subprocess: the experiments' absl flags are global and would collide in-process.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT.parent / "shared" / "glue" / "WNLI").is_dir(),
                    reason="needs ../shared/glue")
def test_command_line(tmp_path):
    output = tmp_path / "lengths.json"
    command = [sys.executable, "experiments/padding_lengths.py", "--tasks=WNLI",
               f"--output={output}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    [row] = json.loads(output.read_text())["rows"]
    assert row["task"] == "WNLI" and row["examples"] == 635
    trimmed = row["mean_trimmed_batch_length"]
    assert 16 <= trimmed <= 128 and row["mean_length"] < trimmed
    assert row["saving"] == pytest.approx(128 / trimmed, abs=0.01)
    # Grouped by length, the same rows are padded to fewer word-pieces.
    assert row["mean_grouped_batch_length"] < trimmed
    assert row["grouped_padded_tokens"] < row["padded_tokens"] < row["full_length_tokens"]
    assert row["grouping_saving"] == pytest.approx(
        row["padded_tokens"] / row["grouped_padded_tokens"], abs=0.01)
    assert "--length_window=50" in json.loads(output.read_text())["command"]
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 1 and "exists" in again.stderr and "Traceback" not in again.stderr
