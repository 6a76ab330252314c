"""experiments/show_elimination.py, on the embedded model."""
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).parents[1] / "experiments" / "show_elimination.py"


def _run(*flags):
    return subprocess.run([sys.executable, str(DEMO), *flags], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_demo_prints_elimination_per_layer():
    result = _run("--retention=12,9,6,4,3,2", "--max_seq_length=24")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "retention configuration (N=24): 12,9,6,4,3,2" in result.stdout
    assert result.stdout.count("layer 6:  2 vectors kept") == 4
    assert "[CLS]" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("flags, message", [
    (["--retention=6,7,5,4,3,2"], "non-increasing: layer 2 keeps 7 > layer 1 keeps 6"),
    (["--retention=6,5"], "has 2 entries but the encoder has 6 layers"),
    (["--model=/nonexistent"], "model folder /nonexistent does not exist"),
])
def test_demo_user_errors_are_one_line(flags, message):
    result = _run(*flags)
    assert result.returncode == 1
    assert "error: " in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr
