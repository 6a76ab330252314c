"""The Table 2 study's distill stage: from each seed's PoWER-BERT search weights, the plain
retrain and the distilled ones (`run_glue.py --distill`), chosen once per task on the
first seed's dev (distill_results.DISTILL_RULE) and paired by seed; one JSON per run."""
from __future__ import annotations

import json
import time

from experiments import runner, table2_runs
from experiments.distill_results import choose_retrain
from experiments.results_table import Start, load
from experiments.table2_runs import Study
from power_bert_tf.errors import PowerBertError

# The distill stage's settings (run_glue.py flags), each retrained from the same search
# weights as the plain retrain: the teacher's logits at T = 2, half the loss each (the
# KL-divergence form of Hinton et al.; regression: the squared distance to the teacher's
# score), and the same with the ranking term over the teacher's top 20 tokens.
DISTILL_CANDIDATES = {
    "logits": ("--distill=logits", "--distill_temperature=2", "--distill_alpha=0.5"),
    "ranking": ("--distill=logits+ranking", "--distill_temperature=2", "--distill_alpha=0.5",
                "--ranking_weight=0.1", "--ranking_top_k=20"),
}


def retrain_arm(study: Study, task: str, start: Start, seed: int, arm: str,
                epochs: int) -> None:
    """One retrain of the distill stage: from the seed's PoWER-BERT search weights (its
    `power` run's search, run again into that folder where it is not on disk), `arm`
    "plain" or a DISTILL_CANDIDATES setting, `epochs` epochs, then timed against the
    baseline in the same process; its JSON <start.retrain_name(arm, epochs, seed)>.json."""
    name = start.retrain_name(arm, epochs, seed)
    if (study.results(task) / f"{name}.json").is_file():
        return
    power_folder, flags_ = table2_runs._power_run(study, task, start, seed)
    target = study.target(task)
    searched = power_folder / task / "search" / "run.json"
    if searched.is_file() and json.loads(searched.read_text())["target_speedup"] != target:
        raise PowerBertError(f"{searched.parent} was searched to another target than "
                             f"{target:g}x: remove {power_folder} to run it again")
    started, commands = time.time(), []
    if not searched.is_file():
        runner.run_glue(power_folder, task, "search", flags_, power_folder / "log.txt")
        commands.append(table2_runs._command(task, power_folder, "search", flags_))
    folder = study.runs(task) / name
    for phase in ("finetune", "search"):  # the seed's teacher and search weights
        link = folder / task / phase
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to((power_folder / task / phase).resolve(), target_is_directory=True)
    distill_flags = list(DISTILL_CANDIDATES.get(arm, ()))
    arm_flags = [f for f in flags_ if not f.startswith("--retrain_epochs=")] + [
        f"--retrain_epochs={epochs}", *distill_flags]
    runner.run_glue(folder, task, "retrain", arm_flags, folder / "log.txt")
    commands.append(table2_runs._command(task, folder, "retrain", arm_flags))
    run = table2_runs._read_run(folder, task, "retrain")
    comparison, metric = run["comparison"], run["comparison"]["metric"]
    best = max(run["history"], key=lambda h: h["dev"][metric])
    study.record(task, name, {
        "arm": arm, "seed": seed, "baseline": start.name(seed),
        "search": f"{start.power_name(seed)}/{task}/search", "retrain_epochs": epochs,
        "distill_flags": distill_flags, "metric": metric, "target_speedup": target,
        **table2_runs.comparison_record(comparison, metric), "best_epoch": best["epoch"],
        "teacher": run.get("teacher"),
        "history": [{"epoch": h["epoch"], "dev": h["dev"], "seconds": h["seconds"],
                     "train_loss": h["train_loss"]} for h in run["history"]],
        "retrain_wall_seconds": run["wall_seconds"]}, started, commands)


def distill(study: Study, task: str, start: Start, seeds: tuple[int, ...]) -> None:
    """The distill stage (distill_results.DISTILL_RULE): on the first seed the plain
    retrain and every candidate setting at every retrain schedule, then on the other
    `seeds` the chosen plain and distilled arms."""
    plan = study.plan(task)
    first = plan.seeds[0]
    if first in seeds:  # the shorter schedule of every arm first: a session cut off
        for epochs in plan.retrain_grid:  # has paired arms to compare sooner
            for arm in ("plain", *plan.distill_candidates):
                retrain_arm(study, task, start, first, arm, epochs)
    runs = load(study.results(task))
    chosen = [choose_retrain(runs, start, first, arms, plan.retrain_grid)
              for arms in (("plain",), plan.distill_candidates)]
    if None in chosen:
        print(f"{task}: the distill stage's other seeds wait for seed {first}'s choice",
              flush=True)
        return
    for seed in [seed for seed in seeds if seed != first]:
        for arm, epochs in chosen:
            retrain_arm(study, task, start, seed, arm, epochs)
