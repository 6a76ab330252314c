"""experiments/train_precision.py: fp32 against mixed-bfloat16 training steps, tiny model."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_task import write_tiny_model

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "experiments" / "train_precision.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_times_both_precisions_interleaved_and_records_the_cpu(tmp_path):
    model = write_tiny_model(tmp_path / "tiny")
    output = tmp_path / "steps.json"
    done = _run(f"--model={model}", "--lengths=8,16", "--encoders=search", "--batch_size=2",
                "--steps=2", "--repeats=3", f"--output={output}")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(output.read_text())
    assert [(r["length"], r["encoder"]) for r in result["rows"]] == [(8, "search"), (16, "search")]
    for row in result["rows"]:
        assert set(row["timing"]) == {"fp32", "bf16"}
        assert all(len(t["seconds"]) == 3 for t in row["timing"].values())
        fp32, bf16 = (row["timing"][p]["seconds"] for p in ("fp32", "bf16"))
        ratios = sorted(a / b for a, b in zip(fp32, bf16))
        assert row["speedup"]["median"] == pytest.approx(ratios[1], rel=1e-2)
        assert row["speedup"]["rounds"] == 3
    assert "features" in result["cpu"] and result["git_commit"]
    assert result["command"].startswith("python ") and result["wall_seconds"] > 0

    again = _run(f"--model={model}", "--lengths=8", f"--output={output}")
    assert again.returncode != 0 and "exists; choose another --output" in again.stderr
    assert "Traceback" not in again.stderr


def test_bad_flags_are_one_line_errors(tmp_path):
    for flag, message in (("--encoders=retrain", "--encoders: retrain; choose from"),
                          ("--lengths=sixty", "--lengths must be integers"),
                          ("--steps=0", "--steps must be >= 1")):
        done = _run(flag, f"--output={tmp_path / 'x.json'}")
        assert done.returncode != 0 and message in done.stderr, (flag, done.stderr[-500:])
        assert "Traceback" not in done.stderr
