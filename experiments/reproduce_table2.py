"""The paper's Table 2 as a study a reviewer accepts: converged baselines, seeds,
interleaved timings, a same-budget control and a fair ablation.

    python experiments/reproduce_table2.py            # make reproduce-table2
    python experiments/reproduce_table2.py --quick    # make reproduce-table2 QUICK=1

For each task with data, in stages (each stage over every task before the next):
  grid     fine-tune at each learning rate of the task's grid (first seed), keeping the
           best dev epoch; the best point chooses the learning rate and epoch count;
  search   the first seed's search alone, for target_search_<task>.json;
  power    PoWER-BERT from the first seed's baseline: a search to the paper's speed-up
           (--target_speedup, aimed AIM x higher), retrain, evaluate (baseline and
           PoWER-BERT timed interleaved, 5 passes each);
  seeds    the same baseline + PoWER-BERT for the other seeds;
  budget   the same-budget control: the baseline fine-tuned for as many more epochs as
           search and retrain add, every seed;
  ablation (SST-2, RTE) Attn-WS, Head-WS and Rand-WS from the same search weights at
           targets 2, 3, 4, 6x, and the first k layers (experiments/tradeoff.py).
Every finished run writes one JSON (command, git commit, wall time) under
<results_dir>/table2/<task>/ and is skipped when the study is run again; a killed
run resumes from its last completed epoch. `--commit` commits each JSON as it lands.
Then table2.md (mean +- std over seeds beside the paper's), target_search.png (FLOP
bound vs search step per task) and, unless --nofigures, the paper's analyses on SST-2.

--quick trains on data subsets (64 examples, N = 32, one epoch a phase) into
checkpoints/table2_quick: a smoke test of the whole pipeline in minutes, not results.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from experiments import runner, target_search_figure  # noqa: E402
from experiments.paper_table2 import PAPER_TABLE2  # noqa: E402
from experiments.results_table import (choose_learning_rate, load, majority_dev,  # noqa: E402
                                       summarize, table2)
from power_bert_tf.cli import exit_on_user_error  # noqa: E402
from power_bert_tf.data.tasks import canonical_task_name, get_task  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402


@dataclasses.dataclass(frozen=True)
class TaskPlan:
    """How one task is studied."""

    learning_rates: tuple[float, ...]  # the fine-tuning grid
    finetune_epochs: int  # of each grid point; the best dev epoch is kept
    seeds: tuple[int, ...]
    flags: tuple[str, ...] = ()  # run_glue.py flags of every run
    search_epochs: int = 2
    retrain_epochs: int = 3


# A 6-layer MiniLM under-trains at BERT-base's 2e-5-3e-5 for 3 epochs (RTE stayed at its
# majority class, CoLA at Matthews 0.21): the grid is two larger rates, 5 epochs each,
# the best dev epoch kept.
SMALL = TaskPlan((5e-5, 1e-4), 5, (1, 2, 3))
# SST-2: 67k sentences, about 15 minutes an epoch on 2 CPU cores: one rate, one seed.
PLANS = {"CoLA": SMALL, "RTE": SMALL, "MRPC": SMALL, "STS-B": SMALL,
         "SST-2": TaskPlan((5e-5,), 2, (1,)),
         **{task: TaskPlan((2e-5, 5e-5, 1e-4), 3, (1,))
            for task in ("QQP", "MNLI-m", "MNLI-mm", "QNLI")}}
QUICK_PLAN = TaskPlan((1e-4,), 1, (1,), (
    "--max_train_examples=64", "--max_eval_examples=32", "--max_seq_length=32",
    "--batch_size=16", "--eval_batch_size=16", "--timing_repeats=2"), 1, 1)
TASKS = ("CoLA", "RTE", "QQP", "MRPC", "SST-2", "MNLI-m", "MNLI-mm", "QNLI", "STS-B")
# The measured speed-up runs under the FLOP bound (embeddings, classifier, extract layers).
# Aimed x1.05 above the paper's, CoLA, MRPC, STS-B measured 0.83-0.95 of it: x1.10 since.
AIM, FIRST_AIMS = 1.10, {"CoLA": 1.05, "MRPC": 1.05, "STS-B": 1.05}
DEFAULT_TARGET = 2.0  # tasks the paper's Table 2 does not have (WNLI, custom)
ABLATION_TASKS = ("SST-2", "RTE")
ABLATION = ("--targets=2,3,4,6", "--selections=head,random", "--keep_layers=2,4")
QUICK_ABLATION = ("--targets=2", "--selections=head", "--keep_layers=")
STAGES = ("grid", "search", "power", "seeds", "budget", "ablation")
ANALYSES = ("diffusion", "scoring", "elimination", "retention")

flags.DEFINE_list("tasks", list(TASKS), "Tasks to study, in order; those without data are "
                  "listed in the table as such.")
flags.DEFINE_list("stages", list(STAGES), f"Stages to run, of {', '.join(STAGES)}.")
flags.DEFINE_bool("quick", False, "Smoke mode: data subsets, one epoch a phase, into "
                  "checkpoints/table2_quick (results go there too).")
flags.DEFINE_bool("train", True, "Run the unfinished runs; --notrain only builds the table.")
flags.DEFINE_bool("figures", True, "After the table, the paper's analyses on the SST-2 models.")
flags.DEFINE_bool("commit", False, "git-commit each result JSON as it is written.")
flags.DEFINE_string("output_dir", None, "Where the runs go. Default: checkpoints/table2, or "
                    "checkpoints/table2_quick with --quick.")
flags.DEFINE_string("results_dir", None, "Where table2/, table2.md and the figures go. "
                    "Default: experiments/results, or --output_dir with --quick.")
flags.DEFINE_string("data_dir", None, "GLUE data root. Default: $GLUE_DIR, else ../shared/glue.")
flags.DEFINE_string("model", "embedded", "run_glue.py --model: pre-trained weights.")
FLAGS = flags.FLAGS


@dataclasses.dataclass
class Study:
    """Paths and plan of one call."""

    output_dir: Path
    results_dir: Path
    quick: bool

    def plan(self, task: str) -> TaskPlan:
        return QUICK_PLAN if self.quick else PLANS.get(task, SMALL)

    def results(self, task: str) -> Path:
        return self.results_dir / "table2" / task

    def runs(self, task: str) -> Path:
        return self.output_dir / task

    def common(self, task: str) -> list[str]:
        extra = [f"--data_dir={FLAGS.data_dir}"] if FLAGS.data_dir else []
        return [f"--model={FLAGS.model}", *self.plan(task).flags, *extra]

    def target(self, task: str) -> float:
        if self.quick:
            return 2.0
        paper = PAPER_TABLE2[task][4] if task in PAPER_TABLE2 else DEFAULT_TARGET
        return round(FIRST_AIMS.get(task, AIM) * paper, 3)

    def record(self, task: str, name: str, result: dict, started: float,
               commands: list[str]) -> None:
        path = self.results(task) / f"{name}.json"
        runner.write_result(path, {"task": task, **result}, started=started, commands=commands)
        print(f"{task}: wrote {path}", flush=True)
        if FLAGS.commit:
            runner.commit_file(path, f"Table 2 study: {task} {name}")


def _command(task: str, folder: Path, phase: str, flags_: list[str]) -> str:
    return " ".join(["python", "run_glue.py", f"--task={task}", f"--phase={phase}",
                     f"--output_dir={folder}", *flags_])


def _read_run(folder: Path, task: str, phase: str) -> dict:
    return json.loads((folder / task / phase / "run.json").read_text())


def finetune(study: Study, task: str, lr: float, seed: int, epochs: int,
             name: str, arm: str) -> Path:
    """One fine-tune (a grid point, a seed, or the same-budget control)."""
    folder = study.runs(task) / name
    if (study.results(task) / f"{name}.json").is_file():
        return folder
    started = time.time()
    flags_ = [f"--learning_rate={lr:g}", f"--finetune_epochs={epochs}", f"--seed={seed}",
              *study.common(task)]
    runner.run_glue(folder, task, "finetune", flags_, folder / "log.txt")
    run = _read_run(folder, task, "finetune")
    metric = next(iter(run["dev"]))
    history = [{"epoch": h["epoch"], "dev": h["dev"], "seconds": h["seconds"]}
               for h in run["history"]]
    best = max(history, key=lambda h: h["dev"][metric])
    study.record(task, name, {"arm": arm, "learning_rate": lr, "seed": seed, "epochs": epochs,
                              "metric": metric, "best_dev": best["dev"][metric],
                              "best_epoch": best["epoch"], "history": history},
                 started, [_command(task, folder, "finetune", flags_)])
    return folder


def _power_run(study: Study, task: str, lr: float, seed: int) -> tuple[Path, list[str]]:
    """The folder of power_seed<seed>, its baseline linked in, and its run_glue.py flags."""
    plan = study.plan(task)
    base = finetune(study, task, lr, seed, plan.finetune_epochs, f"finetune_lr{lr:g}_seed{seed}",
                    "baseline")
    folder = study.runs(task) / f"power_seed{seed}"
    link = folder / task / "finetune"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((base / task / "finetune").resolve(), target_is_directory=True)
    return folder, [f"--learning_rate={lr:g}", f"--seed={seed}",
                    f"--target_speedup={study.target(task):g}",
                    f"--search_epochs={plan.search_epochs}",
                    f"--retrain_epochs={plan.retrain_epochs}", "--timing_repeats=5",
                    *study.common(task)]


def target_search(study: Study, task: str, lr: float, seed: int) -> None:
    """The search phase alone (the speed-up-on-demand record), ahead of retrain."""
    if not (study.results_dir / f"target_search_{task}.json").is_file():
        folder, flags_ = _power_run(study, task, lr, seed)
        runner.run_glue(folder, task, "search", flags_, folder / "log.txt")
        write_target_search(study, task, folder, _command(task, folder, "search", flags_))


def power(study: Study, task: str, lr: float, seed: int) -> None:
    """Search to the target, retrain and evaluate from the seed's baseline."""
    name = f"power_seed{seed}"
    if (study.results(task) / f"{name}.json").is_file():
        return
    plan = study.plan(task)
    folder, flags_ = _power_run(study, task, lr, seed)
    started, commands = time.time(), []
    for phase in ("search", "retrain", "evaluate"):
        runner.run_glue(folder, task, phase, flags_, folder / "log.txt")
        commands.append(_command(task, folder, phase, flags_))
    search, evaluate = _read_run(folder, task, "search"), _read_run(folder, task, "evaluate")
    metric = evaluate["metric"]
    result = {
        "arm": "power_bert", "seed": seed, "learning_rate": lr, "metric": metric,
        "target_speedup": study.target(task), "majority_dev": majority_dev(task, FLAGS.data_dir),
        "baseline_dev": evaluate["baseline"]["dev"][metric],
        "power_bert_dev": evaluate["power_bert"]["dev"][metric],
        "retention": evaluate["retention"], "flop_bound": evaluate["flop_bound"],
        "word_vector_bound": evaluate["word_vector_bound"], "speedup": evaluate["speedup"],
        "speedup_spread": evaluate["speedup_spread"],
        "baseline_ms_per_batch": evaluate["baseline"]["ms_per_batch"],
        "power_bert_ms_per_batch": evaluate["power_bert"]["ms_per_batch"],
        "search_masses": search["masses"],
        "phase_wall_seconds": {p: _read_run(folder, task, p)["wall_seconds"]
                               for p in ("search", "retrain", "evaluate")}}
    study.record(task, name, result, started, commands)
    if seed == plan.seeds[0] and not (study.results_dir / f"target_search_{task}.json").is_file():
        write_target_search(study, task, folder, commands[0])


def write_target_search(study: Study, task: str, folder: Path, command: str) -> None:
    """experiments/results/target_search_<task>.json: the search's per-step bound."""
    search = _read_run(folder, task, "search")
    trajectory = json.loads((folder / task / "search" / "controller.json").read_text())
    path = study.results_dir / f"target_search_{task}.json"
    runner.write_result(path, {
        "task": task, "target_speedup": search["target_speedup"],
        "search_epochs": study.plan(task).search_epochs, "retention": search["retention"],
        "sequence_length": search["sequence_length"], "flop_bound": search["flop_bound"],
        "within_5_percent": abs(search["flop_bound"] / search["target_speedup"] - 1) <= 0.05,
        "search_wall_seconds": search["wall_seconds"], **trajectory},
        started=time.time() - search["wall_seconds"], commands=[command], overwrite=True)
    if FLAGS.commit:
        runner.commit_file(path, f"Table 2 study: {task} target search")


def ablation(study: Study, task: str, lr: float, seed: int) -> None:
    """Attn-WS, Head-WS, Rand-WS from the same search weights, and dropped layers."""
    path = study.results(task) / f"tradeoff_{task}_seed{seed}.json"
    if path.is_file():
        return
    plan = study.plan(task)
    base = finetune(study, task, lr, seed, plan.finetune_epochs, f"finetune_lr{lr:g}_seed{seed}",
                    "baseline")
    command = [sys.executable, "experiments/tradeoff.py", f"--task={task}",
               f"--base_dir={base}", f"--output_dir={study.runs(task) / f'ablation_seed{seed}'}",
               f"--results_dir={study.results(task)}", f"--tag=seed{seed}",
               f"--learning_rate={lr:g}", f"--seed={seed}",
               f"--epochs={plan.retrain_epochs}", f"--search_epochs={plan.search_epochs}",
               f"--model={FLAGS.model}",
               *(QUICK_ABLATION if study.quick else ABLATION),
               *[f for f in study.common(task) if f.split("=")[0] in (
                   "--max_train_examples", "--max_eval_examples", "--max_seq_length",
                   "--data_dir")]]
    runner.run_logged(command, study.runs(task) / f"ablation_seed{seed}.log", f"{task} ablation")
    if FLAGS.commit:
        for file in (path, path.with_suffix(".png")):
            runner.commit_file(file, f"Table 2 study: {task} ablation seed {seed}")


def run_stage(study: Study, stage: str, task: str) -> None:
    plan = study.plan(task)
    runs = load(study.results(task))
    if stage == "grid":
        for lr in plan.learning_rates:
            finetune(study, task, lr, plan.seeds[0], plan.finetune_epochs,
                     f"finetune_lr{lr:g}_seed{plan.seeds[0]}", "grid")
        return
    lr = choose_learning_rate(runs, plan.learning_rates, plan.seeds[0])
    if lr is None:
        print(f"{task}: {stage} waits for the grid", flush=True)
        return
    if stage == "search":
        target_search(study, task, lr, plan.seeds[0])
    elif stage == "power":
        power(study, task, lr, plan.seeds[0])
    elif stage == "seeds":
        for seed in plan.seeds[1:]:
            power(study, task, lr, seed)
    elif stage == "budget":
        for seed in plan.seeds:
            finetune(study, task, lr, seed,
                     plan.finetune_epochs + plan.search_epochs + plan.retrain_epochs,
                     f"same_budget_seed{seed}", "same_budget")
    elif stage == "ablation" and (task in ABLATION_TASKS or study.quick):
        ablation(study, task, lr, plan.seeds[0])


def build_table(study: Study, tasks: list[str], missing: dict[str, str]) -> str:
    started, summaries = time.time(), []
    for task in tasks:
        if task in missing:
            continue
        runs = load(study.results(task))
        summary = summarize(task, runs, study.plan(task).seeds)
        if summary is None:
            grid = [f"{run['learning_rate']:g}: {100 * run['best_dev']:.1f} (epoch "
                    f"{run['best_epoch']})" for run in runs.values() if run.get("arm") == "grid"]
            missing[task] = ("in progress; grid " + ", ".join(grid)) if grid else "not finished"
        else:
            summaries.append(summary)
    (study.results_dir / "table2_summary.json").write_text(json.dumps(
        {"summaries": summaries, "missing": missing, "command": " ".join(["python", *sys.argv]),
         "git_commit": runner.git_commit(), "wall_seconds": round(time.time() - started, 1)},
        indent=2) + "\n")
    header = ("# Table 2 on the embedded MiniLM (GLUE dev sets, 2-core CPU)\n\n"
              "Made by `python experiments/reproduce_table2.py"
              f"{' --quick' if study.quick else ''}` from the run files in `table2/<task>/` "
              "(each with its commands, git commit and wall time). Mean ± std over seeds "
              "(sample std); metric x100. PoWER-BERT is searched to the paper's speed-up "
              f"x1.05-{AIM:.2f} (target column) in {SMALL.search_epochs} epochs, retrained "
              f"{SMALL.retrain_epochs}; its speed-up is the median of 5 interleaved timed passes "
              "over the dev set per seed. The same-budget BERT is fine-tuned for as many "
              "more epochs as search and retrain add. The paper's columns: test set, "
              "BERT-base, K80 GPU, batch 128.\n\n")
    if study.quick:
        header += "**Quick smoke mode: 64 training examples per task; not results.**\n\n"
    markdown = header + table2(summaries, missing)
    (study.results_dir / "table2.md").write_text(markdown)
    return markdown


def analyses(study: Study) -> str | None:
    """The paper's analyses on the first SST-2 seed's models; None or the error."""
    plan, task = study.plan("SST-2"), "SST-2"
    runs = load(study.results(task))
    lr = choose_learning_rate(runs, plan.learning_rates, plan.seeds[0])
    todo = [name for name in ANALYSES
            if not (study.results_dir / f"analysis_{name}.json").is_file()]
    if lr is None or f"power_seed{plan.seeds[0]}" not in runs or not todo:
        return None
    seed = plan.seeds[0]
    finetuned = study.runs(task) / f"finetune_lr{lr:g}_seed{seed}" / task / "finetune/model.keras"
    retrained = study.runs(task) / f"power_seed{seed}" / task / "retrain/model.keras"
    extra = (("--max_examples=32", "--scoring_layers=2", "--fractions=0.2,0.5")
             if study.quick else ())
    try:
        runner.run_logged([sys.executable, "experiments/analyses.py",
                           f"--analyses={','.join(todo)}",
                           f"--task={task}", f"--finetuned={finetuned}", f"--retrained={retrained}",
                           f"--results_dir={study.results_dir}", f"--model={FLAGS.model}", *extra],
                          study.output_dir / "analyses.log", "analyses")
    except PowerBertError as error:
        return str(error)
    return None


@exit_on_user_error
def main(argv):
    if len(argv) > 1:
        raise PowerBertError(f"unexpected arguments: {' '.join(argv[1:])}")
    unknown = set(FLAGS.stages) - set(STAGES)
    if unknown:
        raise PowerBertError(f"--stages: unknown {', '.join(sorted(unknown))}; use "
                             f"{', '.join(STAGES)}")
    quick = FLAGS.quick
    output_dir = Path(FLAGS.output_dir or ("checkpoints/table2_quick" if quick
                                           else "checkpoints/table2"))
    study = Study(output_dir, Path(FLAGS.results_dir or (output_dir if quick
                                                         else "experiments/results")), quick)
    output_dir.mkdir(parents=True, exist_ok=True)
    tasks = [canonical_task_name(task) for task in FLAGS.tasks]
    missing, failed = {}, []
    for task in tasks:
        try:
            get_task(task, FLAGS.data_dir)
        except PowerBertError as error:
            print(f"{task}: no data ({error})")
            missing[task] = "no data here"
    studied = [task for task in tasks if task not in missing]
    if FLAGS.train:
        for stage in FLAGS.stages:
            for task in studied:
                if task in failed:
                    continue
                try:
                    run_stage(study, stage, task)
                except PowerBertError as error:
                    print(f"{task}: {error}", flush=True)
                    failed.append(task)
                    missing[task] = f"failed: {error}".replace("|", "/")
    print(build_table(study, tasks, missing))
    target_search_figure.write_figure(study.results_dir)
    errors = []
    if FLAGS.figures and FLAGS.train and "SST-2" in studied:
        error = analyses(study)
        errors += [f"analyses: {error}"] if error else []
    if failed:
        errors.insert(0, f"{len(failed)} task(s) failed: {', '.join(failed)}; see "
                         f"{study.results_dir / 'table2.md'} and the logs in {output_dir}")
    if errors:
        raise PowerBertError("; ".join(errors))


if __name__ == "__main__":
    app.run(main)
