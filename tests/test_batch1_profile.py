"""experiments/batch1_profile.py on the tiny runtime case: per-op times and the fit."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_profile_writes_op_times_and_the_fixed_cost_fit(tmp_path):
    output = tmp_path / "profile.json"
    result = subprocess.run(
        [sys.executable, "experiments/batch1_profile.py", "--case=tiny-b2", "--precision=fp32",
         "--repeats=2", "--traces=1", f"--output={output}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(output.read_text())
    plain, power = report["models"]["plain"], report["models"]["power-bert"]
    assert plain["feed_forward_vectors"] == [16, 16] and power["feed_forward_vectors"] == [8, 4]
    assert all(ms > 0 for ms in plain["feed_forward_matmul_ms"] + power["feed_forward_matmul_ms"])
    assert power["ops"] > plain["ops"]  # the extract layers' own ops
    assert any("MatMul" in op for op in power["ms_by_op_type"])
    assert report["fit"]["points"] == 4 and report["provenance"]["wall_seconds"] > 0
    assert "fixed" in result.stdout and report["machine"]
    again = subprocess.run([sys.executable, "experiments/batch1_profile.py", "--case=tiny-b2",
                            "--repeats=1", "--traces=1", f"--output={output}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "exists" in again.stderr + again.stdout
