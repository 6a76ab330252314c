"""Finished run_glue.py runs -> one JSON per task and the Table 2 markdown.

A task folder (`<output_dir>/<task>/`) is finished when its fine-tune, search,
retrain and evaluate phases all wrote `run.json`.
"""
from __future__ import annotations

import json
from pathlib import Path

from experiments.paper_table2 import PAPER_TABLE2

PHASES = ("finetune", "search", "retrain", "evaluate")


def collect(task_dir: Path) -> dict | None:
    """The run's summary (metrics, retention, timings, commands), or None if unfinished."""
    runs = {}
    for phase in PHASES:
        path = task_dir / phase / "run.json"
        if not path.is_file():
            return None
        runs[phase] = json.loads(path.read_text())
    evaluate = runs["evaluate"]
    return {
        "task": evaluate["task"], "model": evaluate["model_source"],
        "metric": evaluate["metric"],
        "baseline_dev": evaluate["baseline"]["dev"], "power_bert_dev": evaluate["power_bert"]["dev"],
        "metric_change": evaluate["metric_change"], "retention": evaluate["retention"],
        "word_vector_bound": evaluate["word_vector_bound"], "flop_bound": evaluate["flop_bound"],
        "baseline_ms_per_batch": evaluate["baseline"]["ms_per_batch"],
        "power_bert_ms_per_batch": evaluate["power_bert"]["ms_per_batch"],
        "speedup": evaluate["speedup"], "eval_batch_size": evaluate["eval_batch_size"],
        "dev_examples": evaluate["dev_examples"],
        "search": {key: runs["search"][key] for key in ("masses", "lambda", "history")},
        # wall_seconds: the phase's last process (a resumed phase's earlier processes are
        # not in it); epoch_seconds: every training epoch's time, across resumptions.
        "phases": {phase: {"command": run.get("command"), "wall_seconds": run["wall_seconds"],
                           "epoch_seconds": round(sum(h["seconds"] for h in run.get("history", [])), 1),
                           "dev": run.get("dev")} for phase, run in runs.items()},
        "total_wall_seconds": round(sum(run["wall_seconds"] for run in runs.values()), 1),
        "versions": evaluate["versions"],
    }


def write_task_json(result: dict, results_dir: Path, overwrite: bool) -> str:
    """Writes `run_glue_<task>.json`; an existing, different file is kept unless
    `overwrite`. Returns what happened, for the log."""
    path = results_dir / f"run_glue_{result['task']}.json"
    text = json.dumps(result, indent=2) + "\n"
    if path.exists() and path.read_text() != text and not overwrite:
        return f"{path} exists with other results, kept (pass --overwrite to replace it)"
    path.write_text(text)
    return f"wrote {path}"


def _paper(task: str) -> str:
    paper = PAPER_TABLE2.get(task)
    if paper is None:
        return "- | - | - |"
    return f"{paper[0]} -> {paper[1]} | {paper[2]} -> {paper[3]} | {paper[4]}x |"


def table2(results: list[dict], missing: dict[str, str] | None = None) -> str:
    """Markdown: our dev metrics, ms/batch, speed-up and bounds beside the paper's
    Table 2; `missing` maps tasks without results to the reason (no data, failed)."""
    lines = ["| task | metric | our BERT | our PoWER-BERT | change | retention "
             "| ms/batch BERT -> PoWER | measured speed-up | bound (wv / FLOP) "
             "| paper BERT -> PoWER | paper ms/batch | paper speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: r["task"]):
        m = r["metric"]
        lines.append(
            f"| {r['task']} | {m} | {100 * r['baseline_dev'][m]:.1f} | "
            f"{100 * r['power_bert_dev'][m]:.1f} | {100 * r['metric_change']:+.1f} | "
            f"{','.join(map(str, r['retention']))} | {r['baseline_ms_per_batch']:.0f} -> "
            f"{r['power_bert_ms_per_batch']:.0f} | {r['speedup']:.2f}x | "
            f"{r['word_vector_bound']:.2f}x / {r['flop_bound']:.2f}x | {_paper(r['task'])}")
    for task, reason in sorted((missing or {}).items()):
        lines.append(f"| {task} | {reason} | | | | | | | | {_paper(task)}")
    return "\n".join(lines) + "\n"
