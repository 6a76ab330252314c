"""The Table 2 study's distill stage in numbers: the rule choosing each task's settings,
the choice, and the plain and distilled retrains side by side, paired by seed."""
from __future__ import annotations

from experiments.results_table import Start, pm, mean_std


# The distill stage: the rule choosing each task's settings, once, on the first seed's dev.
DISTILL_RULE = (
    "Distillation settings are chosen once per task on the first seed's dev metric, as the "
    "baselines' learning rates are: every candidate setting (listed below the table) and "
    "the plain retrain are each retrained at every retrain schedule of the plan from the "
    "first seed's search weights; the plain arm keeps its best schedule, the distilled arm "
    "its best (setting, schedule) (ties: the earlier listed setting, then the shorter "
    "schedule); every other seed then runs both chosen arms from its own search weights. "
    "The change is paired by seed (distilled minus plain, from the same search weights at "
    "the same target speed-up).")


def choose_retrain(runs: dict[str, dict], start: Start, seed: int, arms: tuple[str, ...],
                   schedules: tuple[int, ...]) -> tuple[str, int] | None:
    """The (arm, schedule) with the best dev metric among the first seed's retrains of
    `arms` at `schedules` (ties: the earlier arm, then the shorter schedule); None while
    one is unfinished."""
    names = {(arm, epochs): start.retrain_name(arm, epochs, seed)
             for arm in arms for epochs in schedules}
    if any(name not in runs for name in names.values()):
        return None
    order = {key: index for index, key in enumerate(names)}
    return max(names, key=lambda key: (runs[names[key]]["power_bert_dev"], -order[key]))


def distill_summary(task: str, runs: dict[str, dict], start: Start, seeds: tuple[int, ...],
                    candidates: tuple[str, ...], schedules: tuple[int, ...]) -> dict | None:
    """The plain and the distilled retrain at their chosen settings, over the seeds that
    have both: mean +- std of each, of the paired change and of each against its seed's
    baseline; None before the choice or without a pair."""
    plain = choose_retrain(runs, start, seeds[0], ("plain",), schedules)
    chosen = choose_retrain(runs, start, seeds[0], candidates, schedules)
    if plain is None or chosen is None:
        return None
    pairs = [(runs[start.retrain_name(*plain, s)], runs[start.retrain_name(*chosen, s)])
             for s in seeds if start.retrain_name(*plain, s) in runs
             and start.retrain_name(*chosen, s) in runs]
    without, with_ = ([run["power_bert_dev"] for run in side] for side in zip(*pairs))
    baseline = [a["baseline_dev"] for a, _ in pairs]
    speedups = sorted(b["speedup"] for _, b in pairs)
    sorted_buckets = sorted(b["served"]["bucketed_sorted"]["speedup"]["median"]
                            for _, b in pairs if "served" in b)
    return {"task": task, "metric": pairs[0][0]["metric"], "seeds": [a["seed"] for a, _ in pairs],
            "plain_schedule": plain[1], "setting": chosen[0], "schedule": chosen[1],
            "flags": pairs[0][1]["distill_flags"], "baseline": mean_std(baseline),
            "plain": mean_std(without), "distilled": mean_std(with_),
            "change": mean_std([b - a for a, b in zip(without, with_)]),
            "plain_vs_baseline": mean_std([a - b for a, b in zip(without, baseline)]),
            "distilled_vs_baseline": mean_std([a - b for a, b in zip(with_, baseline)]),
            "speedup": speedups[len(speedups) // 2], "target": pairs[0][1]["target_speedup"],
            "speedup_sorted_buckets": (sorted_buckets[len(sorted_buckets) // 2]
                                       if sorted_buckets else None)}


def distill_table(rows: list[dict]) -> str:
    """Markdown of the distill stage's `distill_summary` rows."""
    lines = ["| task | metric | seeds | BERT | PoWER-BERT, plain (retrain epochs) "
             "| PoWER-BERT, distilled (setting, epochs) | paired change | plain vs BERT "
             "| distilled vs BERT | target / measured speed-up (median) "
             "| over BERT in sorted length buckets (median) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["task"]):
        lines.append(
            f"| {r['task']} | {r['metric']} | {len(r['seeds'])} | {pm(r['baseline'])} "
            f"| {pm(r['plain'])} ({r['plain_schedule']}) | {pm(r['distilled'])} "
            f"({r['setting']}, {r['schedule']}) | {pm(r['change'], sign=True)} "
            f"| {pm(r['plain_vs_baseline'], sign=True)} "
            f"| {pm(r['distilled_vs_baseline'], sign=True)} "
            f"| {r['target']:g}x / {r['speedup']:.2f}x "
            f"| {_speedup(r.get('speedup_sorted_buckets'))} |")
    return "\n".join(lines) + "\n"


def _speedup(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.2f}x"
