"""What every experiment script shares: running one run_glue.py phase (or another
script) in a subprocess with its log, and writing result JSON files that record
their command, git commit, CPU and wall time, never replacing other results silently."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from power_bert_tf.bench.report import cpu_name
from power_bert_tf.errors import PowerBertError
from power_bert_tf.serving.precision import cpu_features

ROOT = Path(__file__).resolve().parents[1]
# Reports rebuilt from the result JSONs after each stage of a study, never read by a run
# (git glob pathspecs): a difference in them does not make the next run's code differ
# from its commit.
REBUILT_REPORTS = ("experiments/results/table2.md", "experiments/results/table2_summary.json",
                   "experiments/results/ablation_*", "experiments/results/target_search.png",
                   "README.md")


def git_commit() -> str:
    """The checkout's commit, with "+dirty" when tracked files other than
    `REBUILT_REPORTS` differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                  *(f":(exclude,glob){path}" for path in REBUILT_REPORTS))
    return commit + ("+dirty" if changed else "")


def run_logged(command: Sequence[str], log: Path, what: str) -> float:
    """Runs `command` from the repository root, appending its output to `log`;
    returns its wall seconds. A failure raises PowerBertError with the command's own
    `error: ` line (or its exit status)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with log.open("a") as file:
        file.write(f"$ {' '.join(map(str, command))}\n")
        file.flush()
        code = subprocess.call(list(map(str, command)), stdout=file, stderr=subprocess.STDOUT,
                               cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if code:
        errors = [line for line in log.read_text().splitlines() if line.startswith("error: ")]
        raise PowerBertError(f"{what}: " + (errors[-1][len("error: "):] if errors
                                            else f"exit {code}, see {log}"))
    return time.time() - started


def run_glue(output_dir: Path, task: str, phase: str, flags: Sequence[str], log: Path,
             resume: bool = True) -> float:
    """One run_glue.py phase into `output_dir`; skipped (0 s) when its run.json exists."""
    if (output_dir / task / phase / "run.json").is_file():
        return 0.0
    command = [sys.executable, "run_glue.py", f"--task={task}", f"--phase={phase}",
               f"--output_dir={output_dir}", *flags]
    if resume and phase not in ("evaluate", "predict", "export"):
        command.append("--resume")
    print(f"{output_dir}: {phase}", flush=True)
    return run_logged(command, log, f"{output_dir.name} {phase}")


def write_result(path: Path, result: dict, *, started: float, commands: Sequence[str],
                 overwrite: bool = False) -> None:
    """Writes `result` with its commands, git commit, CPU (model name and the features
    speed depends on) and wall time, atomically; an existing file is an error unless
    `overwrite`."""
    record = {**result, "command": " && ".join(commands), "commands": list(commands),
              "git_commit": git_commit(),
              "cpu": {"name": cpu_name(), "features": cpu_features()["flags"]},
              "wall_seconds": round(time.time() - started, 1)}
    if path.exists() and not overwrite:
        raise PowerBertError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(partial, path)


def commit_files(message: str, *paths: Path) -> None:
    """Commits `paths` alone, in one commit (other staged changes stay staged); retries
    while another git command holds the index."""
    names = [str(path) for path in paths]
    for _ in range(10):
        subprocess.run(["git", "add", *names], cwd=ROOT, capture_output=True)
        done = subprocess.run(["git", "commit", "-q", "-m", message, "--", *names],
                              cwd=ROOT, capture_output=True, text=True)
        if done.returncode == 0 or "nothing" in done.stdout + done.stderr:
            return
        time.sleep(3)
    print(f"warning: could not commit {', '.join(names)}: {done.stderr.strip()}", flush=True)
