"""The paper's Table 2 as a study a reviewer accepts: converged baselines, seeds,
interleaved timings, a same-budget control and a fair ablation.

    python experiments/reproduce_table2.py            # make reproduce-table2
    python experiments/reproduce_table2.py --quick    # make reproduce-table2 QUICK=1

For each task with data, in stages (each stage over every task before the next):
  grid     fine-tune at each learning rate and start of the task's grid (first seed;
           RTE also from MRPC's baseline), keeping the best dev epoch; the best point
           chooses the learning rate and the start; then the longer schedules (10
           epochs) at that point, and the best of these chooses the schedule;
  search   the first seed's search alone, for target_search_<task>.json;
  power    PoWER-BERT from the first seed's baseline: a search to the paper's speed-up
           (--target_speedup, aimed higher: table2_runs.AIM), retrain, evaluate (baseline and
           PoWER-BERT timed interleaved, 5 passes each);
  seeds    the same baseline + PoWER-BERT for the other seeds;
  budget   the same-budget control: the chosen baseline fine-tuned for as many more
           epochs as search and retrain add, every seed;
  grouping (CoLA, STS-B) every seed's baseline fine-tuned again with --length_grouping=50,
           against the seed spread of the plain baselines, before the study adopts it;
  bf16     the same with --train_precision=bf16 (mixed bfloat16 training);
  distill  every seed's retrain from its PoWER-BERT search weights again, without and with
           distillation from its baseline (--distill), paired by seed at the same target;
           the settings and the retrain schedule (3 or 10 epochs) chosen once per task on
           the first seed's dev (distill_results.DISTILL_RULE);
  relative every seed's baseline searched, retrained and evaluated with
           --retention_mode=relative (ceil(f_j * T) of an input's T word-pieces kept) to the
           paper's speed-up x AIM over length-bucketed plain BERT, with the distill stage's
           chosen retrain (experiments/table2_relative.py);
  ablation (SST-2, RTE) Attn-WS, Head-WS and Rand-WS from the same search weights at
           targets 2, 3, 4, 6x, and the first k layers (experiments/tradeoff.py), every
           seed, one run per seed and point; (CoLA) Attn-WS alone at 2 and 3x, under the
           paper's 4.5x. Every call (--notrain too) rebuilds ablation_<task>.{json,png},
           mean +- std over the seeds finished so far (experiments/ablation_figure.py).
The plans and the runs are in experiments/table2_runs.py. Every finished run writes
one JSON (command, git commit, wall time) under <results_dir>/table2/<task>/ and is
skipped when the study is run again; a killed run resumes from its last completed
epoch. `--commit` commits each JSON as it lands.
Then table2.md (mean +- std over seeds beside the paper's), target_search.png (FLOP
bound vs search step per task) and, unless --nofigures, the paper's analyses on SST-2.

--quick trains on data subsets (64 examples, N = 32, one epoch a phase) into
checkpoints/table2_quick: a smoke test of the whole pipeline in minutes, not results.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from absl import app, flags

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from experiments import ablation_figure, runner, target_search_figure  # noqa: E402
from experiments.results_table import lever as lever_row  # noqa: E402
from experiments.distill_results import (DISTILL_RULE, distill_summary,  # noqa: E402
                                         distill_table)
from experiments.results_table import (NO_DATA, first_aim_line, lever_table, load,  # noqa: E402
                                       power_starts, retrained_baseline_lines, summarize,
                                       table2, with_readme_table)
from experiments.table2_ablation import ablation  # noqa: E402
from experiments.table2_distill import DISTILL_CANDIDATES, distill  # noqa: E402
from experiments.relative_results import relative_section, relative_summary  # noqa: E402
from experiments.table2_relative import relative  # noqa: E402
from experiments.table2_runs import (AIM, MARGIN,  # noqa: E402
                                     LEVER_TASKS, LEVERS, SMALL, Study,
                                     baseline, finetune, power, target_search)
from power_bert_tf.cli import exit_on_user_error, quiet_native_logs  # noqa: E402
from power_bert_tf.data.tasks import canonical_task_name, get_task  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402


TASKS = ("CoLA", "RTE", "QQP", "MRPC", "SST-2", "MNLI-m", "MNLI-mm", "QNLI", "STS-B")
STAGES = ("grid", "search", "power", "seeds", "budget", *(lever.stage for lever in LEVERS),
          "distill", "relative", "ablation")
LEVERS_BY_STAGE = {lever.stage: lever for lever in LEVERS}
ANALYSES = ("diffusion", "scoring", "elimination", "retention")
RESULTS_DIR, README = ROOT / "experiments" / "results", ROOT / "README.md"

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
flags.DEFINE_list("seeds", [], "Seeds the per-seed stages (seeds, budget, the levers, "
                  "distill, relative, ablation) run, in this order, each of every task's "
                  "plan (e.g. 2,3 to run the seeds whose models are on disk first). "
                  "Default: the plan's.")
FLAGS = flags.FLAGS


def run_stage(study: Study, stage: str, task: str, only: tuple[int, ...] = ()) -> None:
    """Runs `stage` for `task`; the per-seed stages run the seeds of `only` (all the
    plan's if empty)."""
    plan = study.plan(task)
    seeds = only or plan.seeds
    if stage == "grid":
        for start in plan.starts:
            finetune(study, task, start, plan.seeds[0], start.name(plan.seeds[0]), "grid")
        for start in plan.schedules(study.chosen(task, schedule=False))[1:]:
            finetune(study, task, start, plan.seeds[0], start.name(plan.seeds[0]), "grid")
        return
    start = study.chosen(task)
    if start is None:
        print(f"{task}: {stage} waits for the grid", flush=True)
        return
    if stage == "search":
        target_search(study, task, start, plan.seeds[0])
    elif stage == "power":
        power(study, task, start, plan.seeds[0])
    elif stage == "seeds":
        for seed in [seed for seed in seeds if seed != plan.seeds[0]]:
            power(study, task, start, seed)
    elif stage == "budget":
        budget = plan.same_budget(start)
        for seed in seeds:
            finetune(study, task, budget, seed, budget.name(seed), "same_budget")
    elif stage in LEVERS_BY_STAGE and (task in LEVER_TASKS or study.quick):
        lever = LEVERS_BY_STAGE[stage]
        for seed in seeds:  # the plain baseline's JSON, not its model, is compared
            baseline(study, task, start, seed, need_model=False)
            finetune(study, task, start, seed, start.lever_name(lever.arm, seed), lever.arm,
                     extra=(lever.flag,))
    elif stage == "distill":
        distill(study, task, start, seeds)
    elif stage == "relative":
        for seed in seeds:
            relative(study, task, start, seed)
    elif stage == "ablation" and study.ablation_plan(task):
        for seed in seeds:
            ablation(study, task, start, seed)


def project_table(study: Study) -> bool:
    """Whether `study` writes the project's Table 2 (experiments/results, not --quick):
    then it covers every task, whichever a call runs, and the README shows it."""
    return not study.quick and study.results_dir.resolve() == RESULTS_DIR.resolve()


def build_table(study: Study, tasks: list[str], missing: dict[str, str]) -> str:
    started, summaries, others = time.time(), [], []
    with_data = {task: load(study.results(task)) for task in tasks if task not in missing}
    starts = {task: study.plan(task).choose(runs) for task, runs in with_data.items()}
    for task, runs in with_data.items():
        plan, start = study.plan(task), starts[task]
        summary = (None if start is None else
                   summarize(task, runs, start, plan.seeds, plan.same_budget(start)))
        if summary is None:
            first = f"_seed{plan.seeds[0]}"
            grid = [f"{name[len('finetune_'):-len(first)]}: {100 * run['best_dev']:.1f} "
                    f"(epoch {run['best_epoch']})" for name, run in runs.items()
                    if name.startswith("finetune_") and name.endswith(first)]
            waits = (f"PoWER-BERT from {start.tag} to run" if start else
                     "the grid to finish")
            missing[task] = (f"in progress, {waits}; grid " + ", ".join(grid) if grid
                             else "not finished")
        else:
            summaries.append(summary)
        status = (f"its grid since chose {start.tag}" if start else
                  "its grid's longer schedule not run yet")
        others += [{**row, "verdict": f"{status}; {row['verdict']}"}
                   for other in sorted(power_starts(runs) - {start}, key=lambda s: s.tag)
                   for row in [summarize(task, runs, other, plan.seeds,
                                         plan.same_budget(other))] if row]
    levers = {lever: [row for task, start in starts.items() if start is not None
                      for row in [lever_row(task, with_data[task], start,
                                            study.plan(task).seeds, lever.arm, lever.flag)]
                      if row] for lever in LEVERS}
    distilled = [row for task, start in starts.items() if start is not None
                 for plan in [study.plan(task)]
                 for row in [distill_summary(task, with_data[task], start, plan.seeds,
                                             plan.distill_candidates, plan.retrain_grid)]
                 if row]
    rows = {s["task"]: s for s in summaries}
    relatives = [row for task, start in starts.items() if start is not None
                 for row in [relative_summary(task, with_data[task], start,
                                              study.plan(task).seeds, rows.get(task))] if row]
    summary = {"summaries": summaries, "not_chosen": others, "missing": missing,
               "levers": {lever.arm: rows for lever, rows in levers.items()},
               "distill": distilled, "relative": relatives,
               "command": " ".join(["python", *sys.argv]),
               "git_commit": runner.git_commit(),
               "wall_seconds": round(time.time() - started, 1)}
    (study.results_dir / "table2_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if project_table(study):
        README.write_text(with_readme_table(README.read_text(), summary))
    header = ("# Table 2 on the embedded MiniLM (GLUE dev sets, 2-core CPU)\n\n"
              "Made by `python experiments/reproduce_table2.py"
              f"{' --quick' if study.quick else ''}` from the run files in `table2/<task>/` "
              "(each with its commands, git commit and wall time). Mean ± std over seeds "
              "(sample std); metric x100. PoWER-BERT is searched (target column) to the "
              f"paper's speed-up x{AIM:.2f}, or, for a task whose first run measured under "
              "the paper's, to the paper's over that run's measured / FLOP-bound ratio, "
              f"x{MARGIN:.2f} (below the table), in "
              f"{SMALL.search_epochs} epochs, retrained {SMALL.retrain_epochs}; its speed-up "
              "is the median of 5 interleaved timed passes "
              "over the dev set per seed. The same-budget BERT is fine-tuned for as many "
              "more epochs as search and retrain add. The paper's columns: test set, "
              "BERT-base, K80 GPU, batch 128.\n\n")
    subsets = [f"{task} trains on a seeded subset of {flag.split('=')[1]} training examples "
               "(the dev set whole)" for task in with_data for flag in study.plan(task).flags
               if flag.startswith("--max_train_examples=")]
    if "MRPC" in with_data and not study.quick:
        subsets.append("MRPC trains on the full MSR Paraphrase training file (4,076 pairs, "
                       "GLUE's dev pairs included) and is evaluated on the labelled MSR test "
                       "set (1,725 pairs): GLUE's 408-pair dev split is not available offline")
    if study.quick:
        header += "**Quick smoke mode: 64 training examples per task; not results.**\n\n"
    elif subsets:
        header += "; ".join(subsets) + ".\n\n"
    markdown = header + table2(summaries, missing)
    first_aims = [first_aim_line(task, first, study.target(task)) for task in with_data
                  for first in [study.first_aim(task)] if first]
    if first_aims:
        markdown += ("\n## Re-aimed tasks\n\nTheir first run measured under the paper's "
                     "speed-up; it is kept in `table2/<task>/first_aim/` and not counted "
                     "above.\n\n"
                     + "\n".join(f"- {line}" for line in first_aims) + "\n")
    again = [line for task, runs in with_data.items()
             for start in sorted(power_starts(runs), key=lambda s: s.tag)
             for line in retrained_baseline_lines(task, runs, start, study.plan(task).seeds)]
    if again:
        markdown += ("\n## Baselines trained again\n\nCheckpoints are not kept between "
                     "sessions, so a PoWER-BERT run fine-tunes its baseline again from the "
                     "recorded grid point (same data, seed and flags). CPUs differ between "
                     "sessions and round differently, and a small dev set magnifies it:\n\n"
                     + "\n".join(f"- {line}" for line in again) + "\n")
    if others:
        markdown += ("\n## PoWER-BERT from baselines other than the grid's choice\n\n"
                     "Runs searched from a baseline that a longer schedule of the grid has "
                     "since beaten, or whose longer schedule has not run yet (the verdict "
                     "says which): kept as run files, not counted above.\n\n"
                     + table2(others, {}))
    for lever, rows in levers.items():
        if rows:
            markdown += (f"\n## {lever.title} ({lever.flag}) against the seed spread\n\n"
                         "Each seed's baseline fine-tuned again with the flag (same data, "
                         "epochs and steps); the change is paired by seed and exceeds the seed "
                         "spread when larger than the std of the runs with the flag or of "
                         "the plain baselines over all their seeds. Epoch time: wall "
                         "seconds per epoch, dev pass included, under whatever ran beside; "
                         "shown only where both runs of each pair ran on one kind of "
                         "CPU.\n\n" + lever_table(rows))
    if distilled:
        settings = "; ".join(f"`{name}`: {' '.join(flags_)}"
                             for name, flags_ in DISTILL_CANDIDATES.items())
        markdown += ("\n## Distillation from the fine-tuned model (--distill)\n\n"
                     "Each seed's retrain from the same search weights without and with "
                     "distillation from that seed's baseline (docs/method.md, "
                     "\"Distillation\"); change: distilled minus plain, mean ± std over "
                     f"the paired seeds. {DISTILL_RULE} Settings: {settings}.\n\n"
                     + distill_table(distilled))
    markdown += relative_section(relatives)
    (study.results_dir / "table2.md").write_text(markdown)
    return markdown


def analyses(study: Study) -> str | None:
    """The paper's analyses on the first SST-2 seed's models; None or the error."""
    plan, task = study.plan("SST-2"), "SST-2"
    runs = load(study.results(task))
    start = study.chosen(task)
    todo = [name for name in ANALYSES
            if not (study.results_dir / f"analysis_{name}.json").is_file()]
    if start is None or start.power_name(plan.seeds[0]) not in runs or not todo:
        return None
    seed = plan.seeds[0]
    finetuned = study.runs(task) / start.name(seed) / task / "finetune/model.keras"
    retrained = study.runs(task) / start.power_name(seed) / task / "retrain/model.keras"
    power_runs = [path for other in sorted(p.name for p in study.results_dir.glob("table2/*"))
                  for path in [study.chosen_power_run(other)] if path]
    extra = (("--max_examples=32", "--scoring_layers=2", "--fractions=0.2,0.5")
             if study.quick else ())
    try:
        runner.run_logged([sys.executable, "experiments/analyses.py",
                           f"--analyses={','.join(todo)}",
                           f"--task={task}", f"--finetuned={finetuned}", f"--retrained={retrained}",
                           f"--power_runs={','.join(map(str, power_runs))}",
                           f"--results_dir={study.results_dir}", f"--model={FLAGS.model}", *extra],
                          study.output_dir / "analyses.log", "analyses")
    except PowerBertError as error:
        return str(error)
    return None


def _seeds(values: list[str], study: Study, tasks: list[str]) -> tuple[int, ...]:
    """--seeds as integers, each in every studied task's plan."""
    try:
        seeds = tuple(int(value) for value in values)
    except ValueError:
        raise PowerBertError(f"--seeds={','.join(values)}: not a list of integers") from None
    for task in tasks:
        planned = study.plan(task).seeds
        unknown = sorted(set(seeds) - set(planned))
        if unknown:
            raise PowerBertError(
                f"--seeds: {task}'s plan has no seed {', '.join(map(str, unknown))}; its "
                f"seeds are {', '.join(map(str, planned))}")
    return seeds


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
                                                         else RESULTS_DIR)), quick,
                  FLAGS.data_dir, FLAGS.model, FLAGS.commit)
    output_dir.mkdir(parents=True, exist_ok=True)
    study.results_dir.mkdir(parents=True, exist_ok=True)
    tasks = [canonical_task_name(task) for task in FLAGS.tasks]
    shown = list(dict.fromkeys([*tasks, *TASKS])) if project_table(study) else tasks
    missing, failed = {}, []
    for task in shown:
        try:
            get_task(task, FLAGS.data_dir)
        except PowerBertError as error:
            print(f"{task}: no data ({error})")
            missing[task] = NO_DATA
    studied = [task for task in tasks if task not in missing]
    only = _seeds(FLAGS.seeds, study, studied)
    if FLAGS.train:
        for stage in FLAGS.stages:
            for task in studied:
                if task in failed:
                    continue
                try:
                    run_stage(study, stage, task, only)
                except PowerBertError as error:
                    print(f"{task}: {error}", flush=True)
                    failed.append(task)
                    missing[task] = f"failed: {error}".replace("|", "/")
    print(build_table(study, shown, missing))
    target_search_figure.write_figure(study.results_dir)
    ablation_figure.write_study_summaries(study, [t for t in shown if t not in missing])
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
    quiet_native_logs()  # TensorFlow's C++ records, here and in the runs it starts
    app.run(main)
