"""The paper's Table 2, rebuilt: every phase of run_glue.py on each GLUE task with data.

    python experiments/reproduce_table2.py            # make reproduce-table2
    python experiments/reproduce_table2.py --quick    # make reproduce-table2 QUICK=1

For each task of the paper's Table 2 (and WNLI) whose data is in --data_dir it runs
`run_glue.py --phase=all --resume` in a subprocess (log: <output_dir>/<task>.log),
skipping tasks whose evaluate phase finished earlier; a killed run resumes from its
last completed epoch when this is run again. It then writes one JSON per finished
task (`run_glue_<task>.json`, never silently replacing other results) and
`table2.md`: our dev metrics, ms/batch, measured speed-up and bounds beside the
paper's figures; tasks without data or with a failed run are listed as such.
Then the figures (unless --nofigures), each skipped once written: the accuracy vs
time trade-off of SST-2 and CoLA (experiments/tradeoff.py, `SWEEPS`) and the paper's
analyses on SST-2 (experiments/analyses.py).

--quick trains on data subsets (64 examples, N = 32, one epoch a phase) into
checkpoints/table2_quick, then a one-point trade-off and the analyses on its SST-2
models: a smoke test of the whole pipeline in minutes, not results.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from experiments.results_table import collect, table2, write_task_json  # noqa: E402
from power_bert_tf.cli import exit_on_user_error  # noqa: E402
from power_bert_tf.data.tasks import canonical_task_name, get_task  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402

# The paper's Table 2 tasks, then WNLI (GLUE, not in the paper).
TASKS = ("CoLA", "RTE", "QQP", "MRPC", "SST-2", "MNLI-m", "MNLI-mm", "QNLI", "STS-B", "WNLI")
# run_glue.py flags of the committed runs; search_epochs=5 is the top of the paper's
# 3-5 range, since r moves about LR_SOFT_EXTRACT per step (STS-B ran with 3).
FULL_FLAGS = ("--search_epochs=5",)
# SST-2 (67k examples, about 15 minutes an epoch on 2 CPU cores) gets 5 epochs in all so
# that it finishes in one session: 2 fine-tune, 1 search, 2 retrain. The one search epoch
# has 5 times the paper's r step, so that r can move as far as in the 5-epoch searches.
TASK_FLAGS = {"SST-2": ("--finetune_epochs=2", "--search_epochs=1", "--retrain_epochs=2",
                        "--soft_extract_learning_rate=2.5e-3")}
# Subsets and a larger step than the paper's, so each phase does something in one epoch.
QUICK_FLAGS = ("--max_train_examples=64", "--max_eval_examples=32", "--max_seq_length=32",
               "--epochs=1", "--batch_size=16", "--eval_batch_size=16",
               "--learning_rate=1e-4", "--soft_extract_learning_rate=1e-1", "--lambda=3e-3")

# Trade-off sweeps behind the committed figures: one epoch a phase, so larger steps than
# the paper's for BERT (MiniLM learns next to nothing from 63 steps at 3e-5) and for r
# (which moves about LR_SOFT_EXTRACT per step). SST-2: 4,000 training examples (63 steps).
# CoLA: all 8,551 (267 steps) and a 3-epoch baseline (after one epoch it still predicts
# the majority class, Matthews 0), so a smaller r step and lambdas (lambda 2e-3 at 3e-2
# collapsed every r).
SWEEPS = {"SST-2": ("--max_train_examples=4000", "--learning_rate=1e-4",
                    "--soft_extract_learning_rate=3e-2",
                    "--lambdas=3e-4,2e-3,1e-2", "--keep_layers=2,4"),
          "CoLA": ("--base_epochs=3", "--learning_rate=1e-4", "--soft_extract_learning_rate=1e-2",
                   "--lambdas=1e-4,3e-4,1e-3", "--keep_layers=2,4")}
ELIMINATION_LAMBDA = "2e-3"  # the sweep point whose model the elimination figure shows
QUICK_SWEEP_FLAGS = ("--lambdas=3e-3", "--selections=head", "--keep_layers=3",
                     "--max_train_examples=64", "--max_eval_examples=32", "--max_seq_length=32",
                     "--learning_rate=1e-4", "--soft_extract_learning_rate=1e-1")
ANALYSES = ("diffusion", "scoring", "elimination", "retention", "position")

flags.DEFINE_list("tasks", list(TASKS), "Tasks to run, in order; those without data are "
                  "listed in the table as such.")
flags.DEFINE_bool("quick", False, "Smoke mode: data subsets, one epoch a phase, into "
                  "checkpoints/table2_quick (results go there too, not to --results_dir).")
flags.DEFINE_bool("train", True, "Run the unfinished tasks and figures; --notrain only "
                  "collects the table.")
flags.DEFINE_bool("figures", True, "After the table, the trade-off curves (SST-2, CoLA) and "
                  "the paper's analyses (experiments/tradeoff.py, analyses.py), skipping "
                  "those already written.")
flags.DEFINE_string("output_dir", None, "run_glue.py --output_dir. Default: checkpoints/glue, "
                    "or checkpoints/table2_quick with --quick.")
flags.DEFINE_string("results_dir", None, "Where the JSON files and table2.md go. Default: "
                    "experiments/results, or --output_dir with --quick.")
flags.DEFINE_string("data_dir", None, "GLUE data root. Default: $GLUE_DIR, else ../shared/glue.")
flags.DEFINE_string("model", "embedded", "run_glue.py --model: pre-trained weights.")
flags.DEFINE_bool("overwrite", False, "Replace run_glue_<task>.json files that hold other results.")
FLAGS = flags.FLAGS


def data_status(task: str, data_dir: str | None) -> str | None:
    """None when the task's train and dev files exist, else why not (one line)."""
    try:
        get_task(task, data_dir)
    except PowerBertError as error:
        return str(error)
    return None


def run_task(task: str, output_dir: Path, extra_flags: tuple[str, ...]) -> str | None:
    """Runs (or resumes) every phase of one task; None on success, else the error line."""
    command = [sys.executable, "run_glue.py", f"--task={task}", "--phase=all",
               f"--output_dir={output_dir}", f"--model={FLAGS.model}", "--resume", *extra_flags]
    if FLAGS.data_dir:
        command.append(f"--data_dir={FLAGS.data_dir}")
    log = output_dir / f"{task}.log"
    print(f"{task}: running (log: {log})", flush=True)
    started = time.time()
    with log.open("a") as file:
        file.write(f"$ {' '.join(command)}\n")
        file.flush()
        returncode = subprocess.call(command, stdout=file, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
    print(f"{task}: exit {returncode} after {time.time() - started:.0f} s", flush=True)
    if returncode == 0:
        return None
    errors = [line for line in log.read_text().splitlines() if line.startswith("error: ")]
    return errors[-1][len("error: "):] if errors else f"run_glue.py exited {returncode}, see {log}"


def table(tasks: list[str], output_dir: Path, results_dir: Path, quick: bool) -> list[str]:
    """Runs the unfinished tasks and writes table2.md; returns the failed tasks."""
    started = time.time()
    results, missing = [], {}
    for task in tasks:
        reason = data_status(task, FLAGS.data_dir)
        if reason is not None:
            print(f"{task}: no data ({reason})")
            missing[task] = "no data here"
            continue
        result = collect(output_dir / task)
        if result is None and FLAGS.train:
            error = run_task(task, output_dir, QUICK_FLAGS if quick
                             else (*FULL_FLAGS, *TASK_FLAGS.get(task, ())))
            if error is not None:
                missing[task] = f"failed: {error}".replace("|", "/")
                continue
            result = collect(output_dir / task)
        if result is None:
            saved = results_dir / f"run_glue_{task}.json"
            if saved.is_file():  # committed results, without the checkpoints behind them
                print(f"{task}: not run here, using {saved}")
                results.append(json.loads(saved.read_text()))
            else:
                missing[task] = "not finished"
            continue
        print(write_task_json(result, results_dir, FLAGS.overwrite))
        results.append(result)
    header = ("# Table 2, reproduced on the embedded MiniLM (GLUE dev sets, CPU)\n\n"
              f"Made by `python experiments/reproduce_table2.py{' --quick' if quick else ''}`"
              f" ({time.time() - started:.0f} s this call; each task's phases and their exact "
              "commands and wall times are in run_glue_<task>.json). Our columns: dev set, "
              "6-layer MiniLM, batch of --eval_batch_size on this machine; the paper's: test "
              "set, BERT-base, K80 GPU, batch 128.\n\n")
    if quick:
        header += "**Quick smoke mode: 64 training examples per task; not results.**\n\n"
    markdown = header + table2(results, missing)
    (results_dir / "table2.md").write_text(markdown)
    print(markdown)
    return [task for task, reason in missing.items() if reason.startswith("failed")]


def _script(name: str, *args: str) -> str | None:
    """Runs experiments/<name>; None on success, else its error line."""
    result = subprocess.run([sys.executable, str(ROOT / "experiments" / name), *args],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    if result.returncode == 0:
        return None
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    return errors[-1] if errors else f"{name} exited {result.returncode}"


def _first(*paths: Path) -> Path:
    return next((path for path in paths if path.is_file()), paths[-1])


def figures(output_dir: Path, results_dir: Path, quick: bool) -> list[str]:
    """Trade-off curves and the paper's analyses, skipping those already written;
    returns the errors."""
    errors = []
    if quick:
        sweeps = {"SST-2": (*QUICK_SWEEP_FLAGS, f"--base_dir={output_dir}",
                            f"--output_dir={output_dir / 'tradeoff'}")}
        finetuned = output_dir / "SST-2/finetune/model.keras"
        retrained = output_dir / "SST-2/retrain/model.keras"
        analyses = ANALYSES[:-1]  # position fine-tunes four models: tested on its own
        analysis_flags = ("--max_examples=32", "--scoring_layers=2", "--fractions=0.2,0.5")
    else:
        sweeps = SWEEPS
        sweep_dir = Path("checkpoints/tradeoff/SST-2")
        finetuned = _first(output_dir / "SST-2/finetune/model.keras",
                           sweep_dir / "base/SST-2/finetune/model.keras")
        retrained = _first(output_dir / "SST-2/retrain/model.keras",
                           sweep_dir / f"lambda_{ELIMINATION_LAMBDA}/SST-2/retrain/model.keras")
        analyses, analysis_flags = ANALYSES, ()
    for task, flags_ in sweeps.items():
        if data_status(task, FLAGS.data_dir) is not None:
            print(f"trade-off {task}: no data, skipped")
        elif (results_dir / f"tradeoff_{task}.json").is_file():
            print(f"trade-off {task}: {results_dir / f'tradeoff_{task}.json'} exists, kept")
        else:
            print(f"trade-off {task}: running", flush=True)
            error = _script("tradeoff.py", f"--task={task}", f"--results_dir={results_dir}",
                            f"--model={FLAGS.model}", *flags_)
            errors += [f"trade-off {task}: {error}"] if error else []
    todo = [name for name in analyses if not (results_dir / f"analysis_{name}.json").is_file()]
    if todo and data_status("SST-2", FLAGS.data_dir) is None:
        print(f"analyses: {', '.join(todo)}", flush=True)
        error = _script("analyses.py", f"--analyses={','.join(todo)}", "--task=SST-2",
                        f"--finetuned={finetuned}", f"--retrained={retrained}",
                        f"--results_dir={results_dir}", f"--model={FLAGS.model}",
                        *analysis_flags)
        errors += [f"analyses: {error}"] if error else []
    return errors


@exit_on_user_error
def main(argv):
    if len(argv) > 1:
        raise PowerBertError(f"unexpected arguments: {' '.join(argv[1:])}")
    quick = FLAGS.quick
    output_dir = Path(FLAGS.output_dir or ("checkpoints/table2_quick" if quick
                                           else "checkpoints/glue"))
    results_dir = Path(FLAGS.results_dir or (output_dir if quick else "experiments/results"))
    output_dir.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    failed = table([canonical_task_name(task) for task in FLAGS.tasks], output_dir,
                   results_dir, quick)
    errors = figures(output_dir, results_dir, quick) if FLAGS.figures and FLAGS.train else []
    if failed:
        errors.insert(0, f"{len(failed)} task(s) failed: {', '.join(failed)}; see "
                         f"{results_dir / 'table2.md'} and the logs in {output_dir}")
    if errors:
        raise PowerBertError("; ".join(errors))


if __name__ == "__main__":
    app.run(main)
