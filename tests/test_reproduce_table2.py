"""experiments/reproduce_table2.py: `make reproduce-table2 [QUICK=1]`."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "experiments" / "reproduce_table2.py"


def _run(*flags, timeout=900):
    return subprocess.run([sys.executable, str(SCRIPT), *flags], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def _rows(table: Path) -> dict[str, list[str]]:
    rows = [line.split("|")[1:-1] for line in table.read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| task")]
    return {cells[0].strip(): [cell.strip() for cell in cells[1:]] for cells in rows}


def test_make_target_passes_quick():
    dry_run = subprocess.run(["make", "-n", "reproduce-table2", "QUICK=1"], cwd=ROOT,
                             capture_output=True, text=True)
    assert dry_run.returncode == 0
    assert "experiments/reproduce_table2.py --quick" in dry_run.stdout
    full = subprocess.run(["make", "-n", "reproduce-table2"], cwd=ROOT, capture_output=True,
                          text=True)
    assert "--quick" not in full.stdout


@pytest.mark.slow
def test_quick_mode_runs_every_phase_and_resumes(tmp_path):
    out = tmp_path / "quick"
    result = _run("--quick", "--tasks=SST-2,QQP", f"--output_dir={out}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = _rows(out / "table2.md")
    assert set(rows) == {"SST-2", "QQP"}
    assert rows["QQP"][0] == "no data here"  # listed, not dropped
    assert rows["SST-2"][0] == "accuracy"
    summary = json.loads((out / "run_glue_SST-2.json").read_text())
    assert set(summary["phases"]) == {"finetune", "search", "retrain", "evaluate"}
    assert "--max_train_examples=64" in summary["phases"]["finetune"]["command"]
    assert summary["speedup"] > 0 and len(summary["retention"]) == 6
    assert rows["SST-2"][6] == f"{summary['speedup']:.2f}x"
    assert rows["SST-2"][8:] == ["93.0 -> 92.1", "905 -> 374", "2.4x"]  # the paper's, beside
    assert "Quick smoke mode" in (out / "table2.md").read_text()

    tradeoff = json.loads((out / "tradeoff_SST-2.json").read_text())
    power, head, drop = tradeoff["points"]
    assert [power["kind"], head["kind"], drop["kind"]] == [
        "PoWER-BERT (Attn-WS)", "Head-WS", "drop top layers"]
    assert head["retention"] == power["retention"]  # the ablation keeps the same counts
    assert drop["label"] == "3 layers" and drop["relative_time"] > 0
    finetuned_dev = json.loads((out / "run_glue_SST-2.json").read_text())["baseline_dev"]
    assert all(p["baseline_dev"] == finetuned_dev["accuracy"] for p in tradeoff["points"])
    head_run = json.loads((out / "tradeoff/SST-2/lambda_3e-3_head/SST-2/retrain/run.json")
                          .read_text())
    assert head_run["selection"] == "head"
    for name in ("tradeoff_SST-2", "analysis_diffusion", "analysis_scoring",
                 "analysis_elimination", "analysis_retention"):
        assert (out / f"{name}.png").stat().st_size > 1000, name
    diffusion = json.loads((out / "analysis_diffusion.json").read_text())
    assert len(diffusion["mean_pairwise_cosine"]["fine-tuned"]) == 7  # embeddings + 6 layers
    scoring = json.loads((out / "analysis_scoring.json").read_text())
    assert set(scoring["curves"]) == {"layer 2, top", "layer 2, random", "layer 2, bottom"}
    elimination = json.loads((out / "analysis_elimination.json").read_text())
    assert elimination["kept"]["layer 6"][0] == "[CLS]"
    retention = json.loads((out / "analysis_retention.json").read_text())
    assert set(retention["configurations"]) == {"SST-2"}

    again = _run("--quick", "--tasks=SST-2", f"--output_dir={out}")
    assert again.returncode == 0
    assert "running" not in again.stdout  # finished tasks and figures are not run again


@pytest.mark.slow
def test_failed_task_is_listed_and_exit_is_nonzero(tmp_path):
    result = _run("--quick", "--tasks=WNLI", f"--output_dir={tmp_path}", "--model=/nonexistent")
    assert result.returncode == 1
    assert "error: 1 task(s) failed: WNLI" in result.stderr
    assert "Traceback" not in result.stderr
    row = _rows(tmp_path / "table2.md")["WNLI"]
    assert row[0] == "failed: model folder /nonexistent does not exist"


def test_collect_only_uses_committed_results(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(ROOT / "experiments" / "results" / "run_glue_STS-B.json", results)
    result = _run("--notrain", "--tasks=STS-B,RTE", f"--output_dir={tmp_path / 'none'}",
                  f"--results_dir={results}")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = _rows(results / "table2.md")
    assert rows["STS-B"][0] == "spearman" and rows["RTE"][0] == "not finished"


def test_unknown_task_is_one_line_error(tmp_path):
    result = _run("--tasks=SST-3", f"--output_dir={tmp_path}")
    assert result.returncode == 1
    assert "error: unknown task 'SST-3'" in result.stderr and "Traceback" not in result.stderr
