"""run_glue.py's logs: no TensorFlow C++ start-up records or retracing warnings unless asked."""
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from power_bert_tf.cli import filter_native_lines, native_log_level, quiet_python_logs

ROOT = Path(__file__).parents[1]
NATIVE = (b"WARNING: All log messages before absl::InitializeLog() is called are written to "
          b"STDERR\n"
          b"I0000 00:00:1795934500.626458    5797 port.cc:153] oneDNN custom operations are on.\n"
          b"I0000 00:00:1795934500.748354    5797 cpu_feature_guard.cc:227] This TensorFlow "
          b"binary is optimized\nTo enable the following instructions: AVX2 FMA, in other ops.\n"
          b"E0000 00:00:1795934503.492448    5797 cuda_platform.cc:52] failed call to cuInit\n"
          b"W1129 06:51:10.989182 139790375238528 mirrored_run.py:87] a Python absl warning\n"
          b"error: a user mistake\n")


def test_native_records_are_filtered_by_severity():
    assert filter_native_lines(NATIVE, 3) == (
        b"W1129 06:51:10.989182 139790375238528 mirrored_run.py:87] a Python absl warning\n"
        b"error: a user mistake\n")
    kept = filter_native_lines(NATIVE, 2)
    assert b"cuInit" in kept and b"oneDNN" not in kept and b"To enable" not in kept
    assert filter_native_lines(NATIVE, 0) == NATIVE


def test_the_level_follows_the_environment_then_verbosity():
    assert native_log_level({}, ["run_glue.py", "--task=RTE"]) == 3
    assert native_log_level({}, ["run_glue.py", "--verbosity=0"]) == 0
    assert native_log_level({}, ["run_glue.py", "-v", "1"]) == 0
    assert native_log_level({"TF_CPP_MIN_LOG_LEVEL": "1"}, ["run_glue.py", "-v", "1"]) == 1
    flagfile = ROOT / "configs" / "demo.flags"
    assert native_log_level({}, ["run_glue.py", f"--flagfile={flagfile}"]) == 3


def test_verbosity_in_a_flagfile_shows_native_records(tmp_path):
    flagfile = tmp_path / "run.flags"
    flagfile.write_text("# settings\n--task=RTE\n--verbosity=0\n")
    assert native_log_level({}, ["run_glue.py", f"--flagfile={flagfile}"]) == 0
    assert native_log_level({}, ["run_glue.py", f"--flagfile={tmp_path / 'none'}"]) == 3


def test_retracing_warnings_are_dropped_unless_verbose(caplog):
    logger = logging.getLogger("tensorflow")
    filters = list(logger.filters)
    try:
        quiet_python_logs(verbose=False)
        with caplog.at_level(logging.WARNING):
            logger.warning("5 out of the last 5 calls to <function f> triggered tf.function "
                           "retracing. Tracing is expensive")
            logger.warning("another warning")
        assert [r.getMessage() for r in caplog.records] == ["another warning"]
    finally:
        logger.filters[:] = filters


@pytest.mark.parametrize("env, noisy", [({}, False), ({"TF_CPP_MIN_LOG_LEVEL": "0"}, True)])
def test_run_glue_run_directly_is_quiet(tmp_path, env, noisy):
    """Up to the first device use and a user error: only that error unless asked."""
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_glue.py"), "--task=RTE", f"--data_dir={tmp_path}",
         "--phase=finetune"], capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**environ, **env})
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("error: GLUE data folder")
    native = [line for line in lines if line[:5] in ("I0000", "W0000", "E0000")]
    assert bool(native) == noisy, result.stderr[-2000:]
    if not noisy:
        assert lines == [lines[-1]]
