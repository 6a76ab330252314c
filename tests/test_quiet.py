"""Every entry point hides TensorFlow's C++ log records (errors included) by default;
TF_CPP_MIN_LOG_LEVEL or --verbosity brings them back."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# "E0000 00:00:1796684340.019700   10120 cuda_platform.cc:52] failed call to cuInit: ..."
NATIVE_RECORD = re.compile(r"^[IWEF]0000 00:00:\d+\.\d+\s+\d+ \S+:\d+\] ", re.M)

# Each loads TensorFlow (and runs an op), then stops at a user error: seconds.
ENTRY_POINTS = {
    "run_glue": ["run_glue.py", "--task=SST-2", "--phase=evaluate", "--output_dir={tmp}"],
    "bench": ["-m", "power_bert_tf.bench", "--sections=nope"],
    "show_elimination": ["experiments/show_elimination.py", "--checkpoint={tmp}/no.keras"],
}


def _run(name: str, tmp_path: Path, extra=(), **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    args = [a.format(tmp=tmp_path) for a in ENTRY_POINTS[name]]
    return subprocess.run([sys.executable, *args, *extra], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**environ, **env})


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_an_entry_point_prints_no_native_records(name, tmp_path):
    done = _run(name, tmp_path)
    assert done.returncode == 1 and "error: " in done.stderr, done.stderr[-2000:]
    assert not NATIVE_RECORD.search(done.stderr), done.stderr[-2000:]
    assert "All log messages before absl::InitializeLog" not in done.stderr


@pytest.mark.parametrize("extra, env", [((), {"TF_CPP_MIN_LOG_LEVEL": "0"}),
                                        (("--verbosity=0",), {})])
def test_asking_brings_the_records_back(extra, env, tmp_path):
    """The same run as above, asked to show them: the check above can see them."""
    done = _run("run_glue", tmp_path, extra, **env)
    assert done.returncode == 1 and NATIVE_RECORD.search(done.stderr), done.stderr[-2000:]


def test_the_makefile_leaves_the_log_level_to_the_drivers():
    """`make demo` and the others run the drivers' default unless the user sets it."""
    assert "TF_CPP_MIN_LOG_LEVEL ?=" not in (ROOT / "Makefile").read_text()
    assert "TF_CPP_MIN_LOG_LEVEL =" not in (ROOT / "Makefile").read_text()
