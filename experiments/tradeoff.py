"""Accuracy vs inference time (the paper's trade-off figure), every point measured.

    python experiments/tradeoff.py --task=SST-2 --max_train_examples=8000
    python experiments/tradeoff.py --task=MRPC

One fine-tuned baseline (run_glue.py --phase=finetune, or --base_dir's), then
- PoWER-BERT (Attn-WS): for each --lambdas value, search, retrain and evaluate;
- Head-WS and Rand-WS: retrain with each Attn-WS retention configuration, keeping
  the first l_j positions (Head-WS) or random ones (Rand-WS) instead of the most
  significant, then evaluate (the paper's ablation: Attn-WS should win);
- dropping top layers: the fine-tuned model cut to its first --keep_layers layers,
  re-fine-tuned, then timed the same way (a simple structural baseline).
Each point's time is its ms/batch over the baseline's, measured in one process on
the same dev batches (run_glue.py's evaluate phase does exactly that), so points
from runs under different machine load stay comparable.

Runs go to <output_dir>/<task>/<point>/ (resumable: finished points are skipped);
results to <results_dir>/tradeoff_<task>.{json,png}.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from absl import app, flags  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from power_bert_tf.cli import exit_on_user_error  # noqa: E402
from power_bert_tf.data.tasks import canonical_task_name  # noqa: E402
from power_bert_tf.errors import PowerBertError  # noqa: E402
from power_bert_tf.training.phases import RETENTION_FILE, search_collapsed  # noqa: E402

flags.DEFINE_string("task", "SST-2", "GLUE task.")
flags.DEFINE_list("lambdas", ["1e-4", "3e-4", "1e-3", "3e-3"], "Mass-loss weights of the "
                  "PoWER-BERT points (one search each).")
flags.DEFINE_list("selections", ["head", "random"], "Ablation strategies retrained with each "
                  "PoWER-BERT retention configuration.")
flags.DEFINE_list("keep_layers", ["1", "2", "3", "4", "5"], "Layer-dropping points: how many "
                  "bottom layers to keep.")
flags.DEFINE_integer("epochs", 1, "Epochs of every training phase (fine-tune, search, "
                     "retrain, layer-dropping re-fine-tune).")
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
flags.DEFINE_string("base_dir", None, "A run_glue.py --output_dir whose <task>/finetune is the "
                    "baseline to reuse. Default: fine-tune one into <output_dir>/<task>/base.")
flags.DEFINE_string("results_dir", "experiments/results", "Where tradeoff_<task>.{json,png} go.")
flags.DEFINE_bool("overwrite", False, "Replace an existing tradeoff_<task>.json.")
FLAGS = flags.FLAGS


def _common_flags(search: bool = True) -> list[str]:
    """Flags every run shares; `search=False` leaves out the search's own (r's step)."""
    values = {"epochs": FLAGS.epochs, "max_train_examples": FLAGS.max_train_examples,
              "max_eval_examples": FLAGS.max_eval_examples,
              "max_seq_length": FLAGS.max_seq_length, "learning_rate": FLAGS.learning_rate,
              "soft_extract_learning_rate": FLAGS.soft_extract_learning_rate if search else None,
              "model": FLAGS.model, "data_dir": FLAGS.data_dir}
    return [f"--{name}={value}" for name, value in values.items() if value is not None]


def run_glue(point_dir: Path, phase: str, *extra: str) -> None:
    """One run_glue.py phase into `point_dir` (skipped when finished), logged there."""
    task_dir = point_dir / FLAGS.task
    if (task_dir / phase / "run.json").is_file():
        return
    command = [sys.executable, "run_glue.py", f"--task={FLAGS.task}", f"--phase={phase}",
               f"--output_dir={point_dir}", "--resume", *_common_flags(), *extra]
    if phase == "evaluate":
        command.remove("--resume")
    print(f"{point_dir.name}: {phase}", flush=True)
    point_dir.mkdir(parents=True, exist_ok=True)
    with (point_dir / "log.txt").open("a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if code:
        errors = [line for line in (point_dir / "log.txt").read_text().splitlines()
                  if line.startswith("error: ")]
        raise PowerBertError(f"{point_dir.name} {phase}: "
                             + (errors[-1][7:] if errors else f"exit {code}, see log.txt"))


def share_finetune(base: Path, point_dir: Path) -> None:
    """Points read the one fine-tuned baseline through a symbolic link."""
    link = point_dir / FLAGS.task / "finetune"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((base / FLAGS.task / "finetune").resolve(), target_is_directory=True)


def collapsed_search(point_dir: Path) -> bool:
    """Whether the point's finished search drove every r to 0 (read from its retention
    file, so that a resumed sweep skips the point too)."""
    path = point_dir / FLAGS.task / "search" / RETENTION_FILE
    return path.is_file() and search_collapsed(json.loads(path.read_text())["masses"])


def evaluation(point_dir: Path) -> dict:
    return json.loads((point_dir / FLAGS.task / "evaluate" / "run.json").read_text())


def point(kind: str, label: str, summary: dict) -> dict:
    metric = summary["metric"]
    return {"kind": kind, "label": label, "metric": metric,
            "dev": summary["power_bert"]["dev"][metric],
            "baseline_dev": summary["baseline"]["dev"][metric],
            "relative_time": round(1 / summary["speedup"], 4), "speedup": summary["speedup"],
            "retention": summary.get("retention"), "ms_per_batch": summary["power_bert"]["ms_per_batch"],
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
    point_dir.mkdir(parents=True, exist_ok=True)
    with (point_dir / "log.txt").open("a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if code:
        raise PowerBertError(f"drop_{keep}: exit {code}, see {point_dir / 'log.txt'}")
    return json.loads(result_path.read_text())


def plot(points: list[dict], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(6, 4))
    styles = {"PoWER-BERT (Attn-WS)": "o-", "Head-WS": "s--", "Rand-WS": "^--",
              "drop top layers": "d:"}
    for kind, style in styles.items():
        series = sorted((p for p in points if p["kind"] == kind),
                        key=lambda p: p["relative_time"])
        if series:
            axis.plot([p["relative_time"] for p in series], [p["dev"] for p in series], style,
                      label=kind)
    baseline = points[0]["baseline_dev"]
    axis.plot([1.0], [baseline], "k*", markersize=12, label="BERT (fine-tuned)")
    axis.set(xlabel="inference time relative to BERT (measured, dev set)",
             ylabel=f"dev {points[0]['metric']}", title=f"{FLAGS.task}: accuracy vs time")
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
        raise PowerBertError(f"--selections: unknown {', '.join(sorted(unknown))}; use head, random")
    results = Path(FLAGS.results_dir) / f"tradeoff_{FLAGS.task}.json"
    if results.exists() and not FLAGS.overwrite:
        raise PowerBertError(f"{results} exists; pass --overwrite to replace it")
    started = time.time()
    root = Path(FLAGS.output_dir) / FLAGS.task
    base = Path(FLAGS.base_dir) if FLAGS.base_dir else root / "base"
    run_glue(base, "finetune", f"--epochs={FLAGS.base_epochs or FLAGS.epochs}")
    points, collapsed = [], []
    for value in FLAGS.lambdas:
        attention = root / f"lambda_{value}"
        share_finetune(base, attention)
        try:
            run_glue(attention, "search", f"--lambda={value}")
        except PowerBertError:
            if not collapsed_search(attention):
                raise
        if collapsed_search(attention):
            print(f"lambda={value}: the search collapsed (every r at 0), no point", flush=True)
            collapsed.append(value)
            continue
        run_glue(attention, "retrain")
        run_glue(attention, "evaluate")
        summary = evaluation(attention)
        points.append(point("PoWER-BERT (Attn-WS)", f"lambda={value}", summary))
        for selection in FLAGS.selections:
            ablation = root / f"lambda_{value}_{selection}"
            share_finetune(base, ablation)
            run_glue(ablation, "retrain", f"--selection={selection}",
                     f"--retention_config={','.join(map(str, summary['retention']))}")
            run_glue(ablation, "evaluate")
            kind = {"head": "Head-WS", "random": "Rand-WS"}[selection]
            points.append(point(kind, f"lambda={value}", evaluation(ablation)))
    for keep in map(int, FLAGS.keep_layers):
        points.append(drop_layers(base, keep))
    for p in points:
        print(f"{p['kind']:<22} {p['label']:<14} dev {p['metric']} {p['dev']:.4f} "
              f"(BERT {p['baseline_dev']:.4f}), time x{p['relative_time']:.3f}")
    results.parent.mkdir(parents=True, exist_ok=True)
    png = results.with_suffix(".png")
    plot(points, png)
    results.write_text(json.dumps({
        "task": FLAGS.task, "command": " ".join(["python", *sys.argv]),
        "wall_seconds_this_call": round(time.time() - started, 1), "flags": _common_flags(),
        "points": points, "collapsed_lambdas": collapsed}, indent=2) + "\n")
    print(f"wrote {results} and {png}")


if __name__ == "__main__":
    app.run(main)
