"""The Table 2 study's relative stage (issue 47): from each seed's baseline, PoWER-BERT
searched, retrained and evaluated with `run_glue.py --retention_mode=relative` (each input
of length T keeps ceil(f_j * T) word-vectors after layer j), to the paper's speed-up x AIM
over plain BERT served in the same length buckets, with the retrain the distill stage
chose; one JSON per seed, `Start.relative_name`."""
from __future__ import annotations

import json
import time

from experiments import runner, table2_runs
from experiments.distill_results import choose_retrain
from experiments.paper_table2 import PAPER_TABLE2
from experiments.results_table import Start, load
from experiments.table2_distill import DISTILL_CANDIDATES
from experiments.table2_runs import AIM, DEFAULT_TARGET, Study
from power_bert_tf.errors import PowerBertError


def relative_target(study: Study, task: str) -> float:
    """--target_speedup of the relative runs: the paper's speed-up x AIM, which the relative
    mode reads as the FLOP bound over length-bucketed plain BERT on the training lengths."""
    if study.quick:
        return 2.0
    return round(AIM * (PAPER_TABLE2[task][4] if task in PAPER_TABLE2 else DEFAULT_TARGET), 3)


def retrain_choice(study: Study, task: str, start: Start) -> tuple[str, int, str]:
    """(setting, retrain epochs, where the choice comes from): the distill stage's best
    retrain on the first seed's dev among the plain arm and every candidate setting, at
    every retrain schedule (`choose_retrain`); before that stage has chosen, the plain
    retrain at the plan's `retrain_epochs`."""
    plan = study.plan(task)
    chosen = choose_retrain(load(study.results(task)), start, plan.seeds[0],
                            ("plain", *plan.distill_candidates), plan.retrain_grid)
    if chosen is None:
        return "plain", plan.retrain_epochs, "the plan (the distill stage has not chosen)"
    return (*chosen, f"the distill stage (seed {plan.seeds[0]}'s dev)")


def relative(study: Study, task: str, start: Start, seed: int) -> None:
    """Search (--retention_mode=relative, to `relative_target`), retrain and evaluate from
    the seed's baseline (the model its `power` run starts from, linked in, not trained
    again); skipped when its JSON exists."""
    name = start.relative_name(seed)
    if (study.results(task) / f"{name}.json").is_file():
        return
    plan, target = study.plan(task), relative_target(study, task)
    base = table2_runs.baseline(study, task, start, seed)
    folder = study.runs(task) / name
    link = folder / task / "finetune"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((base / task / "finetune").resolve(), target_is_directory=True)
    searched = folder / task / "search" / "run.json"
    if searched.is_file():
        begun = json.loads(searched.read_text())
        if begun["target_speedup"] != target or begun.get("mode") != "relative":
            raise PowerBertError(f"{searched.parent} was searched to another target than "
                                 f"{target:g}x (relative mode): remove {folder} to run it again")
    setting, epochs, chosen_by = retrain_choice(study, task, start)
    distill_flags = list(DISTILL_CANDIDATES.get(setting, ()))
    flags_ = [f"--learning_rate={start.learning_rate:g}", f"--seed={seed}",
              "--retention_mode=relative", f"--target_speedup={target:g}",
              f"--search_epochs={plan.search_epochs}", f"--retrain_epochs={epochs}",
              "--timing_repeats=5", *study.common(task)]
    started, commands = time.time(), []
    for phase, phase_flags in (("search", flags_),
                               ("retrain", [*flags_, *distill_flags, "--nocompare_after_retrain"]),
                               ("evaluate", flags_)):  # evaluate times the comparison
        runner.run_glue(folder, task, phase, phase_flags, folder / "log.txt")
        commands.append(table2_runs._command(task, folder, phase, phase_flags))
    search = table2_runs._read_run(folder, task, "search")
    evaluate = table2_runs._read_run(folder, task, "evaluate")
    metric = evaluate["metric"]
    study.record(task, name, {
        "arm": "relative", "seed": seed, "learning_rate": start.learning_rate,
        "init_from": start.init_from, "baseline_epochs": start.epochs,
        "baseline": start.name(seed), "metric": metric, "retention_mode": "relative",
        "target_speedup": target, "retrain_setting": setting, "retrain_epochs": epochs,
        "retrain_chosen_by": chosen_by, "distill_flags": distill_flags,
        **table2_runs.comparison_record(evaluate, metric),
        "search_flop_bound": search["flop_bound"],
        "baseline_ms_per_batch": evaluate["baseline"]["ms_per_batch"],
        "power_bert_ms_per_batch": evaluate["power_bert"]["ms_per_batch"],
        "phase_wall_seconds": {p: table2_runs._read_run(folder, task, p)["wall_seconds"]
                               for p in ("search", "retrain", "evaluate")}},
        started, commands)
