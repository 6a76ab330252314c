"""The Table 2 study's relative stage in numbers: per task, PoWER-BERT with
--retention_mode=relative beside the absolute runs of the Table 2 row, the measured
speed-ups over plain BERT served in the same length buckets, and issue 47's verdict."""
from __future__ import annotations

from experiments.paper_table2 import PAPER_TABLE2
from experiments.results_table import SERVED_SETTINGS, Start, mean_std, pm
from experiments.table2_runs import AIM

ACCURACY_BAR = -1.0  # points of mean change against the baseline that issue 47 allows
RELATIVE_NOTE = (
    "Each seed's baseline (the model its absolute PoWER-BERT run starts from) searched, "
    "retrained and evaluated with `--retention_mode=relative` (an input of T word-pieces "
    "keeps ceil(f_j * T) after layer j), to the paper's speed-up " f"x{AIM:.2f} read as the FLOP "
    "bound over plain BERT served in the same length buckets on the training lengths; "
    "the retrain is the distill stage's choice on the first seed's dev (the plain arm and "
    "every setting, every schedule) once it has chosen, else the plain retrain. Change: "
    "PoWER-BERT minus its seed's baseline, mean ± std over the seeds. Speed-ups over "
    "plain BERT in the same length buckets (`served`), median over the seeds, the dev set "
    "sorted by length / in file order. Verdict: issue 47's bar, a median sorted-bucket "
    "speed-up at or above the paper's and a mean change of -1.0 point or better.")


def _median(values: list[float]) -> float | None:
    """The median (the upper one of an even count, as the Table 2 verdicts take it)."""
    return sorted(values)[len(values) // 2] if values else None


def verdict(sorted_speedup: float | None, change: float, paper: float | None) -> str:
    """Issue 47's bar on the median sorted-bucket speed-up and the mean change (metric
    units), or which part fails."""
    misses = []
    if paper is None:
        misses.append("no paper speed-up to compare with")
    elif sorted_speedup is None:
        misses.append("no sorted-bucket speed-up measured")
    elif sorted_speedup < paper:
        misses.append(f"sorted-bucket speed-up {sorted_speedup:.2f}x under the paper's "
                      f"{paper:g}x")
    if round(100 * change, 6) < ACCURACY_BAR:
        misses.append(f"loses {-100 * change:.1f} points (more than 1)")
    return "meets issue 47's bar" if not misses else "misses: " + "; ".join(misses)


def relative_summary(task: str, runs: dict[str, dict], start: Start, seeds: tuple[int, ...],
                     absolute: dict | None) -> dict | None:
    """The relative runs from `start`'s baselines over the finished seeds beside
    `absolute` (the task's Table 2 row, `results_table.summarize`, or None); None
    without a relative run."""
    rows = [runs[start.relative_name(s)] for s in seeds if start.relative_name(s) in runs]
    if not rows:
        return None
    baseline = [r["baseline_dev"] for r in rows]
    power = [r["power_bert_dev"] for r in rows]
    change = mean_std([p - b for b, p in zip(baseline, power)])
    served = {setting: _median([r["served"][setting]["speedup"]["median"] for r in rows
                                if setting in r.get("served", {})])
              for setting in SERVED_SETTINGS}
    absolute_served = ({setting: _median(absolute.get("served_speedups", {}).get(setting, []))
                        for setting in SERVED_SETTINGS} if absolute else None)
    paper = PAPER_TABLE2[task][4] if task in PAPER_TABLE2 else None
    return {
        "task": task, "metric": rows[0]["metric"], "seeds": [r["seed"] for r in rows],
        "baseline_start": start.tag, "target": rows[0]["target_speedup"],
        "retrain": sorted({f"{r['retrain_setting']}, {r['retrain_epochs']}" for r in rows}),
        "retention": rows[0]["retention"], "baseline": mean_std(baseline),
        "power_bert_absolute": absolute["power_bert"] if absolute else None,
        "power_bert_relative": mean_std(power), "change": change,
        "speedups": [r["speedup"] for r in rows],
        "served_speedup": served, "absolute_served_speedup": absolute_served,
        "paper_speedup": paper, "verdict": verdict(served["bucketed_sorted"], change[0], paper)}


def _speedups(served: dict | None) -> str:
    """"sorted / file order" medians, or "-" where not measured."""
    if not served or not any(served.values()):
        return "-"
    return " / ".join("-" if served[s] is None else f"{served[s]:.2f}x"
                      for s in ("bucketed_sorted", "bucketed"))


def relative_section(rows: list[dict]) -> str:
    """table2.md's section on the relative stage's `relative_summary` rows ("" without)."""
    if not rows:
        return ""
    lines = ["| task | metric | seeds | BERT | PoWER-BERT, absolute (Table 2) "
             "| PoWER-BERT, relative | change (relative) | retrain (setting, epochs) "
             "| target | over BERT in the same length buckets, relative: sorted / file order "
             "| the same, absolute | paper speed-up | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["task"]):
        paper = "-" if r["paper_speedup"] is None else f"{r['paper_speedup']:g}x"
        lines.append(
            f"| {r['task']} | {r['metric']} | {len(r['seeds'])} | {pm(r['baseline'])} "
            f"| {pm(r['power_bert_absolute'])} | {pm(r['power_bert_relative'])} "
            f"| {pm(r['change'], sign=True)} | {'; '.join(r['retrain'])} | {r['target']:g}x "
            f"| {_speedups(r['served_speedup'])} | {_speedups(r['absolute_served_speedup'])} "
            f"| {paper} | {r['verdict']} |")
    return ("\n## Relative retention (--retention_mode=relative) beside absolute\n\n"
            + RELATIVE_NOTE + "\n\n" + "\n".join(lines) + "\n")
