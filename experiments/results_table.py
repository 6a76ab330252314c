"""The Table 2 study's result files -> per-task summaries and the Table 2 markdown.

Every finished run of the study is one JSON in `<results_dir>/table2/<task>/`, named
by its baseline's `Start` (learning rate, start, epochs of the schedule):
`finetune_lr<lr>[_from<task>]_e<epochs>_seed<s>.json` (a fine-tune: a point of the grid,
a seed of the chosen one, or the same-budget control, which is the chosen start fine-tuned
for as many more epochs as search and retrain add), `power_<start>_seed<s>.json` (search
to the target, retrain, evaluate from that seed's baseline) and `<arm>_<start>_seed<s>`
(the baseline with a training lever's flag: `grouped_` --length_grouping, `bf16_`
--train_precision=bf16) and `retrain_<start>_<arm>_r<epochs>_seed<s>` (the distill stage: a
retrain from that seed's PoWER-BERT search weights, `plain` or with a distillation setting,
on a schedule of `epochs`) and `relative_<start>_seed<s>` (the relative stage: search,
retrain and evaluate with --retention_mode=relative from that seed's baseline).
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

from experiments.paper_table2 import PAPER_TABLE2

NEAR_MAJORITY = 0.02  # a baseline this close to the constant predictor shows nothing
RETRAINED_TOLERANCE = 0.005  # a baseline trained again this far from its record is named
# The evaluate phase's served comparisons (pipeline.evaluation.SERVED_SETTINGS's keys).
SERVED_SETTINGS = ("bucketed", "bucketed_sorted")
NO_DATA = "no data here"  # the reason of a task whose GLUE files are not in the data dir
# The README's Table 2 sits between these lines; the study rewrites it (`with_readme_table`).
README_MARKERS = ("<!-- table2: rebuilt from experiments/results/table2_summary.json by "
                  "experiments/reproduce_table2.py; do not edit by hand -->", "<!-- /table2 -->")


def load(task_dir: Path) -> dict[str, dict]:
    """File stem -> result, for every finished run of one task."""
    return {path.stem: json.loads(path.read_text())
            for path in sorted(task_dir.glob("*.json"))} if task_dir.is_dir() else {}


def majority_dev(task: str, data_dir: str | None) -> float:
    """The dev metric of always predicting the most frequent training label (for
    regression, a constant: correlation 0)."""
    import numpy as np

    from power_bert_tf.data.tasks import get_task
    from power_bert_tf.training.metrics import compute_metrics

    loaded = get_task(task, data_dir)
    if loaded.is_regression:
        return 0.0
    train = [e.label for e in loaded.read("train")]
    labels = np.array([e.label for e in loaded.read("dev")])
    logits = np.zeros((len(labels), loaded.num_classes))
    logits[:, max(set(train), key=train.count)] = 1.0
    return compute_metrics(loaded, labels, logits)[loaded.metric]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


@dataclasses.dataclass(frozen=True)
class Start:
    """How a baseline is fine-tuned: a learning rate, from the pre-trained weights or from
    another task's baseline (`init_from`), on a schedule of `epochs` (the learning rate
    decays to 0 over them; the best dev epoch is kept)."""

    learning_rate: float
    init_from: str | None
    epochs: int

    @property
    def tag(self) -> str:
        """e.g. lr0.0001_e5, lr5e-05_fromMRPC_e10."""
        source = f"_from{self.init_from}" if self.init_from else ""
        return f"lr{self.learning_rate:g}{source}_e{self.epochs}"

    def name(self, seed: int) -> str:
        """The fine-tune's file stem, e.g. finetune_lr0.0001_e5_seed1."""
        return f"finetune_{self.tag}_seed{seed}"

    def power_name(self, seed: int) -> str:
        """The PoWER-BERT run searched from this baseline, e.g. power_lr0.0001_e5_seed1."""
        return f"power_{self.tag}_seed{seed}"

    def lever_name(self, arm: str, seed: int) -> str:
        """This baseline fine-tuned with a training lever's flag, e.g.
        grouped_lr5e-05_e10_seed1 (`arm` "grouped")."""
        return f"{arm}_{self.tag}_seed{seed}"

    def retrain_name(self, arm: str, epochs: int, seed: int) -> str:
        """A retrain of the distill stage from this baseline's PoWER-BERT search: `arm`
        "plain" or a distillation setting, `epochs` its schedule, e.g.
        retrain_lr0.0001_e5_ranking_r10_seed1."""
        return f"retrain_{self.tag}_{arm}_r{epochs}_seed{seed}"

    def relative_name(self, seed: int) -> str:
        """The relative stage's run from this baseline (--retention_mode=relative), e.g.
        relative_lr0.0001_e5_seed1."""
        return f"relative_{self.tag}_seed{seed}"

    def longer(self, epochs: int) -> "Start":
        """The same start on a schedule `epochs` longer."""
        return dataclasses.replace(self, epochs=self.epochs + epochs)


_POWER_NAME = re.compile(r"power_lr(?P<lr>[0-9.e+-]+)(?:_from(?P<init>[A-Za-z0-9-]+))?"
                         r"_e(?P<epochs>\d+)_seed\d+")


def power_starts(runs: dict[str, dict]) -> set[Start]:
    """The baselines that PoWER-BERT runs among `runs` were searched from."""
    return {Start(float(m["lr"]), m["init"], int(m["epochs"]))
            for name in runs for m in [_POWER_NAME.fullmatch(name)] if m}


def choose_start(runs: dict[str, dict], starts: tuple[Start, ...], seed: int) -> Start | None:
    """The grid point with the best dev metric (best epoch); on a tie the smaller rate,
    then the pre-trained start, then the shorter schedule; None while a grid point is
    unfinished."""
    if any(start.name(seed) not in runs for start in starts):
        return None
    return max(starts, key=lambda start: (runs[start.name(seed)]["best_dev"],
                                          -start.learning_rate, start.init_from is None,
                                          -start.epochs))


def _against_budget(differences: list[float], seeds: int) -> str:
    """The verdict's clause on PoWER-BERT against the same-budget BERT: the mean of the
    per-seed differences over the `seeds` seeds that have both (of those finished)."""
    points = 100 * sum(differences) / len(differences)
    of = "" if len(differences) == seeds else f" ({len(differences)} of {seeds} seeds)"
    if points < -1:
        return f"{points:.1f} points against the same-budget BERT{of}: outside 1 point of it"
    return f"{points:+.1f} points against the same-budget BERT{of}"


def summarize(task: str, runs: dict[str, dict], start: Start, seeds: tuple[int, ...],
              budget: Start) -> dict | None:
    """Mean +- std over the finished seeds of PoWER-BERT from `start`'s baselines, of
    those baselines and of the change, the same-budget control (`budget`), speed-ups
    (median per seed) and a verdict; None if no seed has finished."""
    powers = [runs[start.power_name(s)] for s in seeds if start.power_name(s) in runs]
    if not powers:
        return None
    metric = powers[0]["metric"]
    baseline = [p["baseline_dev"] for p in powers]
    power = [p["power_bert_dev"] for p in powers]
    budget_by_seed = {s: runs[budget.name(s)]["best_dev"] for s in seeds
                      if budget.name(s) in runs}
    budget_scores = list(budget_by_seed.values())
    against_budget = [p["power_bert_dev"] - budget_by_seed[p["seed"]] for p in powers
                      if p["seed"] in budget_by_seed]
    speedups = [p["speedup"] for p in powers]
    paper = PAPER_TABLE2[task][4] if task in PAPER_TABLE2 else None
    change = mean_std([b - a for a, b in zip(baseline, power)])
    majority = powers[0]["majority_dev"]
    near_majority = mean_std(baseline)[0] - majority < NEAR_MAJORITY
    if near_majority:
        verdict = "baseline near the constant predictor: shows nothing about accuracy"
    else:
        verdict = "; ".join([
            "within 1 point" if change[0] >= -0.01 else
            f"loses {100 * -change[0]:.1f} points",
            *([f"gains {100 * change[0]:.1f} points, which training longer may explain: "
               "no same-budget control yet"] if change[0] > 0.01 and not budget_scores
              else []),
            *([_against_budget(against_budget, len(powers))] if against_budget else []),
            ("speed-up at or above the paper's" if paper and sorted(speedups)[len(speedups) // 2]
             >= paper else "speed-up below the paper's")])
    return {
        "task": task, "metric": metric, "seeds": [p["seed"] for p in powers],
        "baseline_start": start.tag, "learning_rate": start.learning_rate,
        "init_from": start.init_from,
        "baseline_epochs": start.epochs, "same_budget_epochs": budget.epochs,
        "majority_dev": majority,
        "baseline": mean_std(baseline), "power_bert": mean_std(power), "change": change,
        "same_budget": mean_std(budget_scores) if budget_scores else None,
        "same_budget_seeds": len(budget_scores),
        "retention": powers[0]["retention"], "target": powers[0]["target_speedup"],
        "flop_bound": powers[0]["flop_bound"], "speedups": speedups,
        "speedup_spreads": [p["speedup_spread"] for p in powers],
        "served_speedups": {setting: [p["served"][setting]["speedup"]["median"]
                                      for p in powers if "served" in p]
                            for setting in SERVED_SETTINGS},
        "ms_per_batch": (powers[0]["baseline_ms_per_batch"], powers[0]["power_bert_ms_per_batch"]),
        "paper_speedup": paper, "verdict": verdict,
    }


def _served(summary: dict) -> str:
    """The per-seed speed-ups over length-bucketed BERT, or why there are none."""
    served = summary.get("served_speedups") or {}
    if not any(served.values()):
        return "not measured (runs before the bucketed comparison)"
    return " / ".join(", ".join(f"{m:.2f}x" for m in served[setting])
                      for setting in SERVED_SETTINGS)


def pm(value: tuple[float, float] | None, scale: float = 100.0, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{scale * value[0]:{'+' if sign else ''}.1f} ± {scale * value[1]:.1f}"


def _paper(task: str) -> str:
    paper = PAPER_TABLE2.get(task)
    return "- | -" if paper is None else f"{paper[0]} -> {paper[1]} | {paper[4]}x"


def first_aim_line(task: str, first: dict, target: float) -> str:
    """One line on a re-aimed task's first run (`first`, a PoWER-BERT run JSON)."""
    return (f"{task}: searched to {first['target_speedup']:g}x (FLOP bound "
            f"{first['flop_bound']:.2f}x), measured {first['speedup']:.3f}x, "
            f"{first['speedup'] / first['flop_bound']:.2f} of the bound; "
            f"{first['metric']} {100 * first['baseline_dev']:.1f} -> "
            f"{100 * first['power_bert_dev']:.1f}. Every seed is now searched to {target:g}x.")


def retrained_baseline_lines(task: str, runs: dict[str, dict], start: Start,
                             seeds: tuple[int, ...]) -> list[str]:
    """A line per seed whose PoWER-BERT run was searched from a baseline that, trained
    again for its model, ended `RETRAINED_TOLERANCE` or more away from the recorded grid
    run."""
    lines = []
    for seed in seeds:
        power, record = runs.get(start.power_name(seed)), runs.get(start.name(seed))
        if (not power or not record
                or abs(power["baseline_dev"] - record["best_dev"]) < RETRAINED_TOLERANCE):
            continue
        cpu = power.get("cpu")
        where = f" on {cpu['name']} ({', '.join(cpu['features'])})" if cpu else ""
        lines.append(f"{task} seed {seed}: its baseline, trained again{where}, reached "
                     f"{100 * power['baseline_dev']:.1f} against the recorded "
                     f"{100 * record['best_dev']:.1f} (`{start.name(seed)}.json`); the row "
                     "compares PoWER-BERT with the baseline it was searched from.")
    return lines


def table2(summaries: list[dict], missing: dict[str, str]) -> str:
    """Markdown: mean +- std over seeds beside the paper's Table 2; `missing` maps tasks
    without results to the reason."""
    lines = ["| task | metric | seeds | constant predictor | BERT | PoWER-BERT | change "
             "| BERT, same budget | retention (first seed) | target / FLOP bound "
             "| measured speed-up: median [min-max] per seed, both padded to N "
             "| over BERT in the same length buckets: file order / sorted | paper BERT -> PoWER "
             "| paper speed-up | verdict | BERT fine-tuning: rate, epochs (same budget) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in sorted(summaries, key=lambda s: s["task"]):
        per_seed = ", ".join(f"{m:.2f}x [{spread['min']:.2f}-{spread['max']:.2f}]"
                             for m, spread in zip(s["speedups"], s["speedup_spreads"]))
        lines.append(
            f"| {s['task']} | {s['metric']} | {len(s['seeds'])} | {100 * s['majority_dev']:.1f} "
            f"| {pm(s['baseline'])} | {pm(s['power_bert'])} | {pm(s['change'], sign=True)} "
            f"| {pm(s['same_budget'])} ({s['same_budget_seeds']}) "
            f"| {','.join(map(str, s['retention']))} | {s['target']:g}x / {s['flop_bound']:.2f}x "
            f"| {per_seed} | {_served(s)} | {_paper(s['task'])} | {s['verdict']} "
            f"| {s['learning_rate']:g}{' from ' + s['init_from'] if s['init_from'] else ''}, "
            f"{s['baseline_epochs']} ({s['same_budget_epochs']}) |")
    for task, reason in sorted(missing.items()):
        lines.append(f"| {task} | {reason} | | | | | | | | | | | {_paper(task)} | | |")
    return "\n".join(lines) + "\n"


def readme_table(summary: dict) -> str:
    """Markdown: the README's short Table 2 from `summary` (table2_summary.json): a row
    per counted task, a row per task in progress, and the tasks without data."""
    lines = ["| task | metric | seeds | BERT | PoWER-BERT | change | measured speed-up "
             "(median, per seed) | paper BERT -> PoWER | paper speed-up | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in sorted(summary["summaries"], key=lambda s: s["task"]):
        lines.append(
            f"| {s['task']} | {s['metric']} | {len(s['seeds'])} | {pm(s['baseline'])} "
            f"| {pm(s['power_bert'])} | {pm(s['change'], sign=True)} "
            f"| {', '.join(f'{m:.2f}x' for m in s['speedups'])} | {_paper(s['task'])} "
            f"| {s['verdict']} |")
    missing = summary["missing"]
    for task, reason in sorted(missing.items()):
        if reason != NO_DATA:
            lines.append(f"| {task} | | | | | | | {_paper(task)} | {reason.split(';')[0]} |")
    absent = sorted(task for task, reason in missing.items() if reason == NO_DATA)
    return "\n".join(lines) + "\n" + (f"\nNo data here: {', '.join(absent)}.\n" if absent else "")


def with_readme_table(readme: str, summary: dict) -> str:
    """`readme` with the text between `README_MARKERS` replaced by `readme_table(summary)`."""
    begin, end = README_MARKERS
    head, found, rest = readme.partition(begin + "\n")
    _, found_end, tail = rest.partition(end)
    if not (found and found_end):
        raise ValueError(f"the README has no Table 2 block ({begin} ... {end})")
    return head + begin + "\n" + readme_table(summary) + end + tail


def lever(task: str, runs: dict[str, dict], start: Start, seeds: tuple[int, ...],
          arm: str, flag: str) -> dict | None:
    """Plain baselines against the same fine-tunes with a lever's `flag` (runs
    `start.lever_name(arm, s)`), over the seeds that have both: mean +- std of each, the
    paired change, whether it exceeds the seed spread (the larger std of the lever's runs
    and of the plain baselines over every seed they have), the CPUs, and the ratio of mean
    epoch seconds where both runs of every pair ran on one kind of CPU (None elsewhere:
    the ratio would be the CPUs'); None without a pair."""
    pairs = [(runs[start.name(s)], runs[start.lever_name(arm, s)]) for s in seeds
             if start.name(s) in runs and start.lever_name(arm, s) in runs]
    if not pairs:
        return None
    plain, levered = ([run["best_dev"] for run in side] for side in zip(*pairs))
    change = mean_std([b - a for a, b in zip(plain, levered)])
    every_plain = [runs[start.name(s)]["best_dev"] for s in seeds if start.name(s) in runs]
    spread = max(mean_std(every_plain)[1], mean_std(levered)[1])

    def epoch_seconds(run: dict) -> float:
        return sum(h["seconds"] for h in run["history"]) / len(run["history"])

    def cpu(run: dict) -> str:
        return run.get("cpu", {}).get("name", "unknown")

    same_cpu = all(a.get("cpu") and a.get("cpu") == b.get("cpu") for a, b in pairs)
    if len(every_plain) < 2:
        verdict = "one plain seed: no spread to compare with"
    else:
        verdict = ("exceeds the seed spread" if abs(change[0]) > spread else
                   "within the seed spread")
        if len(pairs) < 2:
            verdict += " (one seed with the lever)"
    return {"task": task, "arm": arm, "flag": flag, "metric": pairs[0][0]["metric"],
            "seeds": [run["seed"] for run, _ in pairs], "plain": mean_std(plain),
            "lever": mean_std(levered), "change": change, "seed_spread": spread,
            "cpus": sorted({f"{cpu(a)} / {cpu(b)}" for a, b in pairs}),
            "epoch_time_ratio": (mean_std([epoch_seconds(a) / epoch_seconds(b)
                                           for a, b in pairs]) if same_cpu else None),
            "verdict": verdict}


def lever_table(rows: list[dict]) -> str:
    """Markdown of one lever's `lever` rows."""
    flag = rows[0]["flag"] if rows else ""
    lines = [f"| task | metric | seeds | BERT | BERT, {flag} | change | epoch time, plain / "
             "lever | CPUs, plain / lever | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["epoch_time_ratio"]
        shown = f"{ratio[0]:.2f}x ± {ratio[1]:.2f}" if ratio else "not comparable (CPUs differ)"
        lines.append(f"| {r['task']} | {r['metric']} | {len(r['seeds'])} | {pm(r['plain'])} "
                     f"| {pm(r['lever'])} | {pm(r['change'], sign=True)} | {shown} "
                     f"| {'; '.join(r['cpus'])} | {r['verdict']} |")
    return "\n".join(lines) + "\n"
