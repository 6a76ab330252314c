"""experiments/padding_lengths.py: trimmed batch lengths per task, JSON never overwritten."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from experiments.padding_lengths import mean_trimmed_length  # noqa: E402


def test_mean_trimmed_length_rounds_each_batch_up_to_16():
    lengths = np.array([3, 17, 5, 40, 9, 2])
    # one batch: its longest row (40) rounded up to 48, capped at padded=32
    trimmed = mean_trimmed_length(lengths, batch_size=6, padded=32, seed=0)
    assert trimmed == 32.0
    assert mean_trimmed_length(np.array([3, 5]), batch_size=1, padded=64, seed=0) == 16.0


@pytest.mark.skipif(not (ROOT.parent / "shared" / "glue" / "WNLI").is_dir(),
                    reason="needs ../shared/glue")
def test_command_line(tmp_path):
    output = tmp_path / "lengths.json"
    command = [sys.executable, "experiments/padding_lengths.py", "--tasks=WNLI",
               f"--output={output}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    [row] = json.loads(output.read_text())["rows"]
    assert row["task"] == "WNLI" and 16 <= row["mean_trimmed_batch_length"] <= 128
    assert row["saving"] == pytest.approx(128 / row["mean_trimmed_batch_length"], abs=0.01)
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 1 and "exists" in again.stderr and "Traceback" not in again.stderr
