"""Accuracy vs inference time (the paper's trade-off figure), every point measured.

    python experiments/tradeoff.py --task=SST-2 --max_train_examples=8000
    python experiments/tradeoff.py --task=MRPC
    python experiments/tradeoff.py --task=CoLA --retention_mode=relative --targets=1.5,2,3,4

One fine-tuned baseline (run_glue.py --phase=finetune, or --base_dir's), then
- PoWER-BERT (Attn-WS): for each --targets speed-up (--target_speedup) and each
  --lambdas value, search, retrain and evaluate;
- Head-WS and Rand-WS: retrain from the same search weights with the same retention
  configuration, for the same epochs and seed, keeping the first l_j positions
  (Head-WS) or random ones (Rand-WS) instead of the most significant, then evaluate
  (the paper's ablation: Attn-WS should win);
- dropping top layers: the fine-tuned model cut to its first --keep_layers layers,
  re-fine-tuned, then timed the same way (a simple structural baseline).
Each point's time is its ms/batch over the baseline's, measured in one process on
the same dev batches (run_glue.py's evaluate phase does exactly that), so points
from runs under different machine load stay comparable. With --retention_mode=relative
the PoWER-BERT, Head-WS and Rand-WS points keep fractions of each input's length and
--targets are speed-ups over plain BERT served in the same length buckets (issue 47);
the figure's time is then over plain BERT in sorted length buckets. The JSON's
"within_one_point" names, per comparison, the fastest PoWER-BERT point within one point
of the baseline's dev metric. --distill and --retrain_epochs retrain every point from the
same searches as a sweep without them (issue 44's trade-off with distillation).

Runs go to <output_dir>/<task>/<point>/ (resumable: finished points are skipped; the
relative mode's PoWER-BERT points are relative_<point>, the baseline and layer cuts are
shared; --distill / --retrain_epochs retrains are <point>_<setting>); results to
<results_dir>/tradeoff_<task>[_relative][_<setting>][_<tag>].{json,png}.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from power_bert_tf.cli import quiet_native_logs  # light: TensorFlow is not loaded

if __name__ == "__main__":  # before TensorFlow loads; TF_CPP_MIN_LOG_LEVEL or -v shows all
    quiet_native_logs()

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from absl import app, flags  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# A point's figures come from its evaluate phase's timed comparison, so the retrain phase
# skips the same comparison (1.5-3 minutes a run at the study's sizes).
NO_COMPARISON = "--nocompare_after_retrain"
sys.path.insert(0, str(ROOT))
from experiments import runner  # noqa: E402
from experiments.tradeoff_results import summary_lines, within_one_point  # noqa: E402
from power_bert_tf.cli import exit_on_user_error  # noqa: E402
from power_bert_tf.data.tasks import canonical_task_name  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402
from power_bert_tf.model.config import DISTILL_MODES  # noqa: E402
from power_bert_tf.model.retention import RETENTION_MODES  # noqa: E402
from power_bert_tf.pipeline.evaluation import SERVED_SETTINGS  # noqa: E402
from power_bert_tf.pipeline.layout import PhaseFolder  # noqa: E402
from power_bert_tf.pipeline.search import search_collapsed  # noqa: E402

flags.DEFINE_string("task", "SST-2", "GLUE task.")
flags.DEFINE_list("targets", ["1.5", "2", "3", "4", "6"], "Speed-ups asked of the search "
                  "(--target_speedup), one PoWER-BERT point each.")
flags.DEFINE_list("lambdas", [], "Mass-loss weights of further PoWER-BERT points (one "
                  "search each, steered by lambda instead of a target).")
flags.DEFINE_list("selections", ["head", "random"], "Ablation strategies retrained with each "
                  "PoWER-BERT retention configuration.")
flags.DEFINE_enum("retention_mode", "absolute", RETENTION_MODES, "Retention unit of every "
                  "search, retrain and evaluate of the PoWER-BERT, Head-WS and Rand-WS points "
                  "(run_glue.py --retention_mode): absolute (the paper's l_j counts at "
                  "--max_seq_length; --targets are speed-ups padded to N) or relative "
                  "(fractions f_j of each input's length; --targets are speed-ups over plain "
                  "BERT served in the same length buckets). The layer-dropping points do not "
                  "depend on it. Relative results go to tradeoff_<task>_relative[_<tag>].")
flags.DEFINE_enum("distill", "none", list(DISTILL_MODES), "Distillation of every retrain "
                  "(run_glue.py --distill, its other settings at run_glue.py's defaults): the "
                  "retrains start from the same searches as a sweep without it, and go to "
                  "<point>_<suffix> folders and tradeoff_<task>[_relative]_<suffix> results.")
flags.DEFINE_integer("retrain_epochs", None, "Epochs of every retrain (run_glue.py "
                     "--retrain_epochs). Default: --epochs.")
flags.DEFINE_list("keep_layers", ["1", "2", "3", "4", "5"], "Layer-dropping points: how many "
                  "bottom layers to keep.")
flags.DEFINE_integer("epochs", 1, "Epochs of every training phase (fine-tune, search, "
                     "retrain, layer-dropping re-fine-tune).")
flags.DEFINE_integer("search_epochs", None, "Epochs of each search. Default: --epochs.")
flags.DEFINE_integer("seed", 42, "run_glue.py --seed of every run (fine-tune, search, retrain).")
flags.DEFINE_integer("base_epochs", None, "Epochs of the baseline fine-tune (the points then "
                     "train --epochs from it). Default: --epochs.")
flags.DEFINE_integer("max_train_examples", None, "Seeded random training subset.")
flags.DEFINE_integer("max_eval_examples", None, "Seeded random dev subset.")
flags.DEFINE_integer("max_seq_length", None, "Padded input length N. Default: per task.")
flags.DEFINE_float("learning_rate", None, "LR_BERT. Default: per task.")
flags.DEFINE_float("soft_extract_learning_rate", None, "LR_SOFT_EXTRACT. Default: per task.")
flags.DEFINE_string("model", "embedded", "Pre-trained weights (as run_glue.py).")
flags.DEFINE_string("data_dir", None, "GLUE data root. Default: $GLUE_DIR, else ../shared/glue.")
flags.DEFINE_string("output_dir", "checkpoints/tradeoff", "Where the runs go.")
flags.DEFINE_string("base_dir", None, "A run_glue.py --output_dir whose finished <task>/finetune "
                    "(run.json) is the baseline to reuse. Default: fine-tune one into "
                    "<output_dir>/<task>/base.")
flags.DEFINE_string("results_dir", "experiments/results", "Where tradeoff_<task>.{json,png} go "
                    "(tradeoff_<task>[_relative][_<setting>][_<tag>], see results_path).")
flags.DEFINE_string("tag", None, "Results go to tradeoff_<task>[_relative]_<tag>.{json,png} "
                    "(e.g. a seed).")
flags.DEFINE_bool("overwrite", False, "Replace an existing results file of this mode, setting "
                  "and tag.")
FLAGS = flags.FLAGS
# The served setting the relative mode's figure is drawn against (the dev set sorted by length).
SORTED_BUCKETS = next(name for name, order in SERVED_SETTINGS.items() if order == "sorted")


def _common_flags(search: bool = True) -> list[str]:
    """Flags every run shares; `search=False` leaves out the search's own (r's step)."""
    values = {"epochs": FLAGS.epochs, "max_train_examples": FLAGS.max_train_examples,
              "max_eval_examples": FLAGS.max_eval_examples,
              "max_seq_length": FLAGS.max_seq_length, "learning_rate": FLAGS.learning_rate,
              "soft_extract_learning_rate": FLAGS.soft_extract_learning_rate if search else None,
              "model": FLAGS.model, "data_dir": FLAGS.data_dir, "seed": FLAGS.seed}
    return [f"--{name}={value}" for name, value in values.items() if value is not None]


def retrain_setting() -> tuple[str, list[str]]:
    """The retrains' folder suffix ("" for run_glue.py's plain retrain, else e.g.
    "_distill-logits_r10") and their extra run_glue.py flags."""
    suffix, extra = "", []
    if FLAGS.distill != "none":
        suffix += f"_distill-{FLAGS.distill.replace('+', '-')}"
        extra.append(f"--distill={FLAGS.distill}")
    if FLAGS.retrain_epochs is not None:
        suffix += f"_r{FLAGS.retrain_epochs}"
        extra.append(f"--retrain_epochs={FLAGS.retrain_epochs}")
    return suffix, extra


def results_path() -> Path:
    """<results_dir>/tradeoff_<task>[_relative][<retrain suffix>][_<tag>].json: a sweep of
    one mode or retrain setting never overwrites another's."""
    mode = "_relative" if FLAGS.retention_mode == "relative" else ""
    suffix = f"_{FLAGS.tag}" if FLAGS.tag else ""
    return (Path(FLAGS.results_dir)
            / f"tradeoff_{FLAGS.task}{mode}{retrain_setting()[0]}{suffix}.json")


def run_glue(point_dir: Path, phase: str, *extra: str) -> None:
    """One run_glue.py phase into `point_dir` (skipped when finished), logged there."""
    runner.run_glue(point_dir, FLAGS.task, phase, [*_common_flags(), *extra],
                    point_dir / "log.txt")


def share_phase(source: Path, point_dir: Path, phase: str = "finetune") -> None:
    """A point reads another run's finished phase (the one fine-tuned baseline, or
    the search an ablation retrains from) through a symbolic link."""
    link = point_dir / FLAGS.task / phase
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((source / FLAGS.task / phase).resolve(), target_is_directory=True)


def collapsed_search(point_dir: Path) -> bool:
    """Whether the point's finished search drove every r to 0 (read from its retention
    file, so that a resumed sweep skips the point too)."""
    path = PhaseFolder(point_dir / FLAGS.task / "search").retention
    return path.is_file() and search_collapsed(json.loads(path.read_text())["masses"])


def evaluation(point_dir: Path) -> dict:
    return json.loads((point_dir / FLAGS.task / "evaluate" / "run.json").read_text())


def point(kind: str, label: str, summary: dict) -> dict:
    metric = summary["metric"]
    return {"kind": kind, "label": label, "metric": metric,
            "dev": summary["power_bert"]["dev"][metric],
            "baseline_dev": summary["baseline"]["dev"][metric],
            "relative_time": round(1 / summary["speedup"], 4), "speedup": summary["speedup"],
            "speedup_spread": summary.get("speedup_spread"),
            # over plain BERT in the same length buckets (evaluate phase; not for layer cuts)
            "served_speedups": {setting: served["speedup"]["median"]
                                for setting, served in summary.get("served", {}).items()},
            "retention": summary.get("retention"),
            "ms_per_batch": summary["power_bert"]["ms_per_batch"],
            "baseline_ms_per_batch": summary["baseline"]["ms_per_batch"]}


def drop_layers(base: Path, keep: int) -> dict:
    """The fine-tuned model cut to its first `keep` layers, re-fine-tuned, evaluated."""
    point_dir = Path(FLAGS.output_dir) / FLAGS.task / f"drop_{keep}"
    result_path = point_dir / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    print(f"drop_{keep}: re-fine-tune {keep} layers", flush=True)
    command = [sys.executable, str(ROOT / "experiments" / "drop_layers.py"),
               f"--task={FLAGS.task}", f"--keep_layers={keep}",
               f"--finetune_dir={base / FLAGS.task / 'finetune'}", f"--output={result_path}",
               *_common_flags(search=False)]
    runner.run_logged(command, point_dir / "log.txt", f"drop_{keep}")
    return json.loads(result_path.read_text())


def plot_time(p: dict) -> float:
    """A point's x: its time relative to BERT, padded to N (absolute mode), or in sorted
    length buckets where the point has that comparison (relative mode)."""
    served = p.get("served_speedups") or {}
    if FLAGS.retention_mode == "relative" and served.get(SORTED_BUCKETS):
        return round(1 / served[SORTED_BUCKETS], 4)
    return p["relative_time"]


def plot(points: list[dict], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(6, 4))
    xlabel = "inference time relative to BERT (measured, dev set)"
    if FLAGS.retention_mode == "relative":
        xlabel = ("inference time relative to BERT in sorted length buckets\n(measured, dev "
                  "set; points without that comparison: both padded to N)")
    styles = {"PoWER-BERT (Attn-WS)": "o-", "Head-WS": "s--", "Rand-WS": "^--",
              "drop top layers": "d:"}
    for kind, style in styles.items():
        series = sorted((p for p in points if p["kind"] == kind), key=plot_time)
        if series:
            axis.plot([plot_time(p) for p in series], [p["dev"] for p in series], style,
                      label=kind)
    baseline = points[0]["baseline_dev"]
    axis.plot([1.0], [baseline], "k*", markersize=12, label="BERT (fine-tuned)")
    axis.set(xlabel=xlabel,
             ylabel=f"dev {points[0]['metric']}",
             title=f"{FLAGS.task}: accuracy vs time"
             + (" (relative retention)" if FLAGS.retention_mode == "relative" else ""))
    axis.legend(fontsize=8)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


@exit_on_user_error
def main(argv):
    if len(argv) > 1:
        raise PowerBertError(f"unexpected arguments: {' '.join(argv[1:])}")
    FLAGS.task = canonical_task_name(FLAGS.task)
    unknown = set(FLAGS.selections) - {"head", "random"}
    if unknown:
        raise PowerBertError(f"--selections: unknown {', '.join(sorted(unknown))}; "
                             f"use head, random")
    results = results_path()
    if results.exists() and not FLAGS.overwrite:
        raise PowerBertError(f"{results} exists; pass --overwrite to replace it")
    started = time.time()
    root = Path(FLAGS.output_dir) / FLAGS.task
    base = Path(FLAGS.base_dir) if FLAGS.base_dir else root / "base"
    if FLAGS.base_dir and not PhaseFolder(base / FLAGS.task / "finetune").finished():
        # Not resumed here: this script's fine-tune flags are not the ones it was begun with.
        raise PowerBertError(f"--base_dir={base}: its {FLAGS.task}/finetune is not finished "
                             "(no run.json); finish it with the command that began it")
    run_glue(base, "finetune", f"--epochs={FLAGS.base_epochs or FLAGS.epochs}")
    points, collapsed = [], []
    mode = f"--retention_mode={FLAGS.retention_mode}"
    prefix = "relative_" if FLAGS.retention_mode == "relative" else ""  # not an absolute's
    searches = ([(f"{prefix}target_{value}", f"target={value}x", f"--target_speedup={value}")
                 for value in FLAGS.targets]
                + [(f"{prefix}lambda_{value}", f"lambda={value}", f"--lambda={value}")
                   for value in FLAGS.lambdas])
    search_epochs = f"--search_epochs={FLAGS.search_epochs or FLAGS.epochs}"
    suffix, retrain_flags = retrain_setting()
    for name, label, steering in searches:
        searched = root / name
        share_phase(base, searched)
        try:
            run_glue(searched, "search", steering, search_epochs, mode)
        except PowerBertError:
            if not collapsed_search(searched):
                raise
        if collapsed_search(searched):
            print(f"{label}: the search collapsed (every r at 0), no point", flush=True)
            collapsed.append(label.split("=", 1)[1])
            continue
        attention = root / f"{name}{suffix}"
        if suffix:  # the same search weights and counts as the sweep without the setting
            share_phase(base, attention)
            share_phase(searched, attention, "search")
        run_glue(attention, "retrain", NO_COMPARISON, mode, *retrain_flags)
        run_glue(attention, "evaluate", mode)
        summary = evaluation(attention)
        points.append(point("PoWER-BERT (Attn-WS)", label, summary))
        for selection in FLAGS.selections:
            ablation = root / f"{name}_{selection}{suffix}"
            share_phase(base, ablation)
            share_phase(searched, ablation, "search")  # the same start weights and counts
            run_glue(ablation, "retrain", f"--selection={selection}", NO_COMPARISON, mode,
                     *retrain_flags)
            run_glue(ablation, "evaluate", mode)
            kind = {"head": "Head-WS", "random": "Rand-WS"}[selection]
            points.append(point(kind, label, evaluation(ablation)))
    for keep in map(int, FLAGS.keep_layers):
        points.append(drop_layers(base, keep))
    for p in points:
        print(f"{p['kind']:<22} {p['label']:<14} dev {p['metric']} {p['dev']:.4f} "
              f"(BERT {p['baseline_dev']:.4f}), time x{p['relative_time']:.3f}")
    summary = within_one_point(points)
    results.parent.mkdir(parents=True, exist_ok=True)
    png = results.with_suffix(".png")
    plot(points, png)
    runner.write_result(results, {"task": FLAGS.task, "flags": _common_flags(),
                                  "retention_mode": FLAGS.retention_mode,
                                  "distill": FLAGS.distill,
                                  "retrain_epochs": FLAGS.retrain_epochs or FLAGS.epochs,
                                  "seed": FLAGS.seed, "points": points,
                                  "collapsed": collapsed, "within_one_point": summary},
                        started=started, commands=[" ".join(["python", *sys.argv])],
                        overwrite=FLAGS.overwrite)
    print("\n".join(summary_lines(summary)))
    print(f"wrote {results} and {png}")


if __name__ == "__main__":
    app.run(main)
