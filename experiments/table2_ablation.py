"""The Table 2 study's ablation stage: Attn-WS, Head-WS and Rand-WS retrained from the
same search weights at each target, and BERT cut to its first k layers (`tradeoff.py`,
one JSON per seed and point; the plan is `table2_runs.ABLATIONS`)."""
from __future__ import annotations

import sys
from pathlib import Path

from experiments import runner, table2_runs
from experiments.results_table import Start
from experiments.table2_runs import Study


def ablation_results(study: Study, task: str, start: Start) -> Path:
    """The folder of the ablation runs from `start`'s baselines."""
    return study.results(task) / f"ablation_{start.tag}"


def ablation(study: Study, task: str, start: Start, seed: int) -> None:
    """The task's `Study.ablation_plan`: Attn-WS and its selections from the same
    search weights at each target, and the first k layers: one run per point, its JSON
    <ablation_results(study, task, start)>/tradeoff_<task>_seed<s>_<point>.json."""
    plan, ablation_plan = study.plan(task), study.ablation_plan(task)
    results = ablation_results(study, task, start)
    for name, targets, keep in ablation_plan.points():
        tag = f"seed{seed}_{name}"
        path = results / f"tradeoff_{task}_{tag}.json"
        if path.is_file():
            continue
        base = table2_runs.baseline(study, task, start, seed)
        command = [sys.executable, "experiments/tradeoff.py", f"--task={task}",
                   f"--base_dir={base}",
                   f"--output_dir={study.runs(task) / f'ablation_{start.tag}_seed{seed}'}",
                   f"--results_dir={results}", f"--tag={tag}",
                   f"--learning_rate={start.learning_rate:g}", f"--seed={seed}",
                   f"--epochs={plan.retrain_epochs}", f"--search_epochs={plan.search_epochs}",
                   f"--model={study.model}", f"--targets={targets}", f"--keep_layers={keep}",
                   f"--selections={ablation_plan.selections}",
                   *[f for f in study.common(task) if f.split("=")[0] in (
                       "--max_train_examples", "--max_eval_examples", "--max_seq_length",
                       "--data_dir")]]
        runner.run_logged(command, study.runs(task) / f"ablation_{tag}.log",
                          f"{task} ablation {tag}")
        if study.commit:
            runner.commit_files(f"Table 2 study: {task} ablation {tag}", path,
                                path.with_suffix(".png"))
