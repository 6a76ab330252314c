"""The Table 2 study's ablation over seeds: accuracy vs measured time, mean +- std.

    python experiments/ablation_figure.py --task=RTE \
        --runs_dir=experiments/results/table2/RTE/ablation_lr0.0001_fromMRPC_e5

Reads every `<runs_dir>/tradeoff_<task>_seed<s>_<point>.json` (runs_dir: the ablation
from one baseline, `table2/<task>/ablation_<start>/`; one run of
`experiments/tradeoff.py` per seed and target, or per seed and kept-layer count, written
by `reproduce_table2.py --stages=ablation`) and, per method (PoWER-BERT's Attn-WS,
Head-WS, Rand-WS, the first k layers) and point, takes the mean and sample std over seeds
of the dev metric, of its change from the seed's baseline (paired by seed) and of the
measured time relative to the baseline (each a ratio timed in one run; the CPUs the runs
were timed on are listed per point). At each target the
paired per-seed differences Attn-WS - Head-WS and Attn-WS - Rand-WS are compared with the
seed spread: a difference "exceeds the seed spread" when its mean is larger than the
std of each method over the seeds and than the std of the paired differences themselves
(a mean of +6 and +1 points is not a difference the seeds agree on), with at least 2
seeds. Writes
`ablation_<task>.json` and `ablation_<task>.png` beside `table2/` (rebuilt from the run
files each time).
"""
from __future__ import annotations

import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

from absl import app, flags

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.results_table import mean_std  # noqa: E402
from experiments.runner import git_commit  # noqa: E402
from experiments.table2_ablation import ablation_results  # noqa: E402
from experiments.table2_runs import Study  # noqa: E402
from power_bert_tf.cli import exit_on_user_error, quiet_native_logs  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402

ATTENTION = "PoWER-BERT (Attn-WS)"
STYLES = {ATTENTION: "o-", "Head-WS": "s--", "Rand-WS": "^--", "drop top layers": "d:"}
RUN_NAME = re.compile(r"tradeoff_(?P<task>.+)_seed(?P<seed>\d+)_(?P<point>[a-z]+\d+)\.json")


def load_points(task_dir: Path) -> list[dict]:
    """Every ablation point of the task's run files, each with its seed and the CPU its
    run was timed on ("not recorded" in runs written before tradeoff.py recorded it)."""
    points = []
    for path in sorted(Path(task_dir).glob("tradeoff_*_seed*_*.json")):
        match = RUN_NAME.fullmatch(path.name)
        if not match:
            continue
        try:
            record = json.loads(path.read_text())
            cpu = record.get("cpu", {}).get("name", "not recorded")
            points += [{**point, "seed": int(match["seed"]), "cpu": cpu}
                       for point in record["points"]]
        except (OSError, ValueError, KeyError) as error:
            raise PowerBertError(f"{path}: unreadable ablation run ({error})")
    return points


def summarize(task: str, points: list[dict]) -> dict:
    """Mean +- std over seeds per (method, point); paired differences at each target."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for point in points:
        groups[point["kind"], point["label"]].append(point)
    rows = []
    for (kind, label), members in sorted(groups.items()):
        rows.append({"kind": kind, "label": label, "seeds": sorted(p["seed"] for p in members),
                     "dev": mean_std([p["dev"] for p in members]),
                     "change": mean_std([p["dev"] - p["baseline_dev"] for p in members]),
                     "relative_time": mean_std([p["relative_time"] for p in members]),
                     "retention": members[0].get("retention"),
                     "cpus": sorted({p["cpu"] for p in members})})
    comparisons = []
    for label in sorted({label for kind, label in groups if kind == ATTENTION}):
        ours = {p["seed"]: p["dev"] for p in groups[ATTENTION, label]}
        for other in ("Head-WS", "Rand-WS"):
            theirs = {p["seed"]: p["dev"] for p in groups.get((other, label), [])}
            seeds = sorted(set(ours) & set(theirs))
            if not seeds:
                continue
            difference = mean_std([ours[s] - theirs[s] for s in seeds])
            spread = max(mean_std([ours[s] for s in seeds])[1],
                         mean_std([theirs[s] for s in seeds])[1], difference[1])
            verdict = ("one seed: no spread to compare with" if len(seeds) < 2 else
                       "exceeds the seed spread" if abs(difference[0]) > spread else
                       "within the seed spread")
            comparisons.append({"label": label, "versus": other, "seeds": seeds,
                                "difference": difference, "seed_spread": spread,
                                "verdict": verdict})
    # A seed's baseline trained again in a new checkout can differ from its first
    # training (another CPU rounds differently): each seed counts once, at its mean.
    baselines: dict[int, set[float]] = defaultdict(set)
    for point in points:
        baselines[point["seed"]].add(point["baseline_dev"])
    return {"task": task, "metric": points[0]["metric"],
            "baseline_dev": mean_std([sum(v) / len(v) for v in baselines.values()]),
            "baselines": {str(seed): sorted(v) for seed, v in sorted(baselines.items())},
            "rows": rows, "comparisons": comparisons}


def title(summary: dict) -> str:
    """The figure's title: the seeds (one seed said so: no bars), and how many a point
    has where they differ."""
    seeds = sorted({s for r in summary["rows"] for s in r["seeds"]})
    if len(seeds) == 1:
        return f"{summary['task']}: accuracy vs time, seed {seeds[0]} (one seed: no std bars)"
    text = (f"{summary['task']}: accuracy vs time, mean ± std over seeds "
            f"{','.join(map(str, seeds))}")
    counts = sorted({len(r["seeds"]) for r in summary["rows"]})
    if len(counts) > 1:
        text += f"\n({counts[0]}-{counts[-1]} seeds a point; one seed has no bar)"
    return text


def plot(summary: dict, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for kind, style in STYLES.items():
        series = sorted((r for r in summary["rows"] if r["kind"] == kind),
                        key=lambda r: r["relative_time"][0])
        if series:
            axis.errorbar([r["relative_time"][0] for r in series],
                          [r["dev"][0] for r in series],
                          xerr=[r["relative_time"][1] for r in series],
                          yerr=[r["dev"][1] for r in series], fmt=style, capsize=3,
                          label=kind)
    mean, std = summary["baseline_dev"]
    axis.errorbar([1.0], [mean], yerr=[std], fmt="k*", markersize=12, capsize=3,
                  label="BERT (fine-tuned)")
    axis.set(xlabel="inference time relative to BERT (measured, dev set)",
             ylabel=f"dev {summary['metric']}", title=title(summary))
    axis.legend(fontsize=8)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def write_summary(results_dir: Path, task: str, runs_dir: Path) -> Path | None:
    """<results_dir>/ablation_<task>.{json,png} from the task's ablation runs in
    `runs_dir`; None without any."""
    points = load_points(runs_dir)
    if not points:
        return None
    started, summary = time.time(), summarize(task, points)
    path = Path(results_dir) / f"ablation_{task}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    plot(summary, path.with_suffix(".png"))
    path.write_text(json.dumps({
        **summary, "command": " ".join(["python", *sys.argv]), "git_commit": git_commit(),
        "wall_seconds": round(time.time() - started, 1)}, indent=2) + "\n")
    for row in summary["rows"]:
        (dev, dev_std), (change, change_std) = row["dev"], row["change"]
        time_mean, time_std = row["relative_time"]
        print(f"{task} {row['kind']} {row['label']}: {100 * dev:.1f} ± {100 * dev_std:.1f} "
              f"({100 * change:+.1f} ± {100 * change_std:.1f} points against each seed's "
              f"BERT) in {time_mean:.2f} ± {time_std:.2f} of BERT's time, seeds "
              f"{','.join(map(str, row['seeds']))}")
    for comparison in summary["comparisons"]:
        mean, std = comparison["difference"]
        print(f"{task} {comparison['label']}: Attn-WS - {comparison['versus']} "
              f"{100 * mean:+.1f} ± {100 * std:.1f} points over seeds "
              f"{','.join(map(str, comparison['seeds']))} ({comparison['verdict']})")
    return path


def write_study_summaries(study: Study, tasks: list[str]) -> None:
    """ablation_<task>.{json,png} from the run files of each task's ablation (those
    finished so far, from the grid's chosen baseline); nothing for a task without any."""
    for task in tasks:
        start = study.chosen(task) if study.ablation_plan(task) else None
        if start is not None:
            write_summary(study.results_dir, task, ablation_results(study, task, start))


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise PowerBertError(f"unexpected arguments: {' '.join(argv[1:])}")
    results_dir = Path(flags.FLAGS.results_dir)
    path = write_summary(results_dir, flags.FLAGS.task, Path(flags.FLAGS.runs_dir))
    if path is None:
        raise PowerBertError(f"no ablation runs in {flags.FLAGS.runs_dir}")
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":  # flags defined here: the study imports this module
    quiet_native_logs()  # TensorFlow's C++ records, here and in the runs it starts
    flags.DEFINE_string("task", "RTE", "Task whose ablation runs to summarize.")
    flags.DEFINE_string("results_dir", "experiments/results", "Where "
                        "ablation_<task>.{json,png} go.")
    flags.DEFINE_string("runs_dir", None, "The ablation's run files: "
                        "<results_dir>/table2/<task>/ablation_<start>/.")
    flags.mark_flag_as_required("runs_dir")
    app.run(exit_on_user_error(main))
