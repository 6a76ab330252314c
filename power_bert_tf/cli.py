"""Command-line plumbing shared by the absl drivers: one-line user errors, quiet logs."""
from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Callable

from power_bert_tf.errors import PowerBertError

# TensorFlow's C++ code logs through absl before absl::InitializeLog, which ignores
# TF_CPP_MIN_LOG_LEVEL (TF 2.21): "I0000 00:00:1795934500.626458    5797 port.cc:153] ...".
_NATIVE_RECORD = re.compile(rb"^([IWEF])0000 00:00:\d+\.\d+\s+\d+ [^\]\s]+:\d+\] ")
_NATIVE_PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called"
_SEVERITIES = b"IWEF"
# Lines Python writes to stderr (ours, tracebacks, absl-py's records such as
# "W1129 06:51:10.989182 139790 file.py:87] ..."): never the tail of a native record.
_OWN_LINE = re.compile(rb"^(error: |warning: |Traceback |WARNING:|"
                       rb"[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [^\]\s]+:\d+\] )")
DEFAULT_NATIVE_LOG_LEVEL = 3  # I, W and E records hidden, F (fatal) kept


def exit_on_user_error(main: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
    """Wraps an absl `main`: a user mistake prints one line and exits 1, no traceback."""

    @functools.wraps(main)
    def wrapped(argv: list[str]) -> None:
        try:
            main(argv)
        except (PowerBertError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(1)

    return wrapped


def native_log_level(environ: dict[str, str] | None = None,
                     argv: list[str] | None = None) -> int:
    """The lowest TensorFlow C++ severity shown (0 I, 1 W, 2 E, 3 F): $TF_CPP_MIN_LOG_LEVEL
    when set, else 0 when absl's --verbosity (-v) is on the command line or in a
    --flagfile it names, else 3."""
    environ = os.environ if environ is None else environ
    argv = sys.argv if argv is None else argv
    if environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip().isdigit():
        return int(environ["TF_CPP_MIN_LOG_LEVEL"])
    if any(arg in ("-v", "--verbosity") or arg.startswith(("-v=", "--verbosity="))
           for arg in _with_flagfiles(argv[1:])):
        return 0
    return DEFAULT_NATIVE_LOG_LEVEL


def _with_flagfiles(args: list[str]) -> list[str]:
    """`args` and the lines of the --flagfile=... files among them (one level, unreadable
    files skipped: absl reports them)."""
    lines = []
    for arg in args:
        if arg.startswith("--flagfile="):
            try:
                lines += Path(arg.split("=", 1)[1]).read_text().split()
            except OSError:
                pass
    return [*args, *lines]


def filter_native_lines(chunk: bytes, level: int) -> bytes:
    """The lines of one stderr `chunk` (whole lines) without the TensorFlow C++ records
    below `level`, their continuation lines and absl's preamble."""
    kept, dropping = [], False
    for line in chunk.splitlines(keepends=True):
        record = _NATIVE_RECORD.match(line)
        if record:
            dropping = _SEVERITIES.index(record.group(1)) < level
        elif line.startswith(_NATIVE_PREAMBLE):
            dropping = level > 0
        elif _OWN_LINE.match(line):
            dropping = False
        if not dropping:
            kept.append(line)
    return b"".join(kept)


def quiet_native_logs() -> None:
    """Filters TensorFlow's C++ start-up and runtime log records out of this process's
    stderr (file descriptor 2), keeping everything else; see `native_log_level`.

    Call before importing TensorFlow. A thread copies fd 2 through `filter_native_lines`
    to the original stderr; at exit fd 2 is restored and the thread drained.
    """
    level = native_log_level()
    if level == 0:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = str(min(level, 3))  # for the code that reads it
    original = os.dup(2)
    read_end, write_end = os.pipe()
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        pending = b""
        while True:
            data = os.read(read_end, 65536)
            if not data:
                break
            lines, newline, pending = (pending + data).rpartition(b"\n")
            if newline:
                os.write(original, filter_native_lines(lines + newline, level))
        if pending:
            os.write(original, filter_native_lines(pending, level))
        os.close(read_end)

    thread = threading.Thread(target=pump, name="native-log-filter", daemon=True)
    thread.start()

    def restore() -> None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(original, 2)  # closes the pipe's last write end: the thread sees EOF
        thread.join(timeout=2)

    atexit.register(restore)


class _NoRetracingWarnings(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def quiet_python_logs(verbose: bool) -> None:
    """Unless `verbose`, absl logs WARNING and above, without TensorFlow's tf.function
    retracing warnings (a batch shape the step has not seen before is expected here)."""
    if verbose:
        return
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("tensorflow").addFilter(_NoRetracingWarnings())
