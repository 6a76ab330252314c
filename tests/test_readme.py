"""The README is a front page: short, results first, no run stamps, and its commands,
numbers and Python example are the project's."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
LINES = README.splitlines()

# A run id or timestamp (20261202-190544, 20261125-1336), a commit, a CPU model, a date
# or a clock time: the history of runs belongs in docs/, not on the front page.
STAMPS = {
    "run id": r"(?<!\d)\d{8}-\d{4,6}(?!\d)|(?<![\d,.])\d{6}(?![\d.x])",
    "commit": r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b",
    "CPU model": r"\b(EPYC|Xeon|Ryzen|Intel|AMD|Graviton|Neoverse|Sapphire Rapids|Apple M\d)\b",
    "date": r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
            r"[a-z]* \d{4}\b",
    "time of day": r"\b\d{2}:\d{2}:\d{2}\b",
}


def code_blocks(text: str, language: str = "") -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def test_short_with_results_first():
    assert len(LINES) <= 250
    first = "\n".join(LINES[:40])
    assert "<!-- table2:" in first and "<!-- /table2 -->" in first  # the Table 2 rows
    assert re.search(r"\*\*\d\.\dx(-\d\.\dx)?\*\* faster", first)  # the speed figure
    assert "padded to N" in first  # and what each is compared with


@pytest.mark.parametrize("kind", STAMPS)
def test_no_run_stamps(kind):
    found = [f"line {number}: {line.strip()}" for number, line in enumerate(LINES, 1)
             if re.search(STAMPS[kind], line)]
    assert not found


def test_the_stamp_patterns_catch_stamps():
    """The patterns above can fail: each catches what the README used to hold."""
    for kind, text in {"run id": "bench_cpu2_20261202-190544.md", "run id ": "in 190544,",
                       "commit": "since 178a1d0", "CPU model": "a 2-core Xeon with AMX",
                       "date": "run on 2026-12-02", "time of day": "at 19:14:51"}.items():
        assert re.search(STAMPS[kind.strip()], text), kind


def test_the_speed_figures_are_the_benchmark_pages():
    """The README's speed-ups are those of the runs docs/benchmarks.md's runtimes section
    links that time the peer deployment (an `hf-ort` row), over every CPU
    (speedup_vs_fastest_plain, rounded to 0.1; a range where the runs differ)."""
    page = (ROOT / "docs/benchmarks.md").read_text()
    runtimes = page.split("## Runtimes", 1)[1].split("\n## ", 1)[0]
    runs = sorted(set(re.findall(r"\((\.\./experiments/results/bench_cpu2_[\d-]+\.json)\)",
                                 runtimes)))
    assert len(runs) >= 3
    speedups = {}
    for run in runs:
        for case in json.loads((ROOT / "docs" / run).read_text())["runtimes"]:
            if any(row["path"] == "hf-ort" for row in case["rows"]):
                speedups.setdefault(case["case"], []).append(
                    case["speedup_vs_fastest_plain"]["median"])
    text = " ".join(LINES[:40])
    for case, words in (("bert-base-b32-n256", "**{}** faster"), ("bert-base-b1-n128",
                                                                 "N = 128, **{}**"),
                        ("minilm-b32-n64", "N = 64, **{}**")):
        low, high = (f"{value:.1f}x" for value in (min(speedups[case]), max(speedups[case])))
        assert words.format(low if low == high else f"{low}-{high}") in text, case


@pytest.fixture(scope="module")
def run_glue_flags() -> set[str]:
    done = subprocess.run([sys.executable, "-c", "import sys, json\nsys.argv = ['run_glue.py']\n"
                           "import run_glue\nprint(json.dumps(sorted(run_glue.FLAGS)))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_commands_use_real_flags_files_and_targets(run_glue_flags):
    commands = "\n".join(code_blocks(README)).replace("\\\n", " ")
    runs = [line for line in commands.splitlines() if "run_glue.py" in line]
    assert len(runs) >= 7
    for line in runs:
        for name in re.findall(r"--(\w+)", line):
            assert name in run_glue_flags or name.removeprefix("no") in run_glue_flags, (
                f"--{name} in: {line}")
    for flagfile in re.findall(r"--flagfile=([\w./-]+)", README):
        assert (ROOT / flagfile).is_file(), flagfile
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"`?make ([\w-]+)", README)):
        assert re.search(rf"^{target}:", makefile, re.M), f"make {target}"


def test_the_demo_printout_is_the_evaluate_report():
    """The README shows what `make demo` prints: the comparison with each model's
    training epochs (power_bert_tf/pipeline/evaluation.py format_summary)."""
    block = " ".join(next(b for b in code_blocks(README) if "dev accuracy" in b).split())
    assert "epochs trained" in block and "not a same-budget comparison" in block
    assert re.search(r"BERT \(fine-tuned\) 0\.\d{4} [\d.]+ 1 \(fine-tune\)", block)
    assert "3 (1 fine-tune + 1 search + 1 retrain)" in block
    change = re.search(r"metric change ([+-]\d\.\d{4}), with 2 more training epochs", block)
    accuracies = re.findall(r"(?:BERT \(fine-tuned\)|PoWER-BERT) (0\.\d{4})", block)
    assert change and len(accuracies) == 2
    assert float(change.group(1)) == round(float(accuracies[1]) - float(accuracies[0]), 4)


@pytest.mark.slow
def test_the_python_example_runs_as_written():
    """The README's Python example is complete: it runs alone in a fresh interpreter."""
    example = code_blocks(README, "python")[0]
    done = subprocess.run([sys.executable, "-c", example + "\nprint(tuple(logits.shape))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "(1, 2)"


def test_the_flag_reference_lists_every_run_glue_flag(run_glue_flags):
    """docs/cli.md's table names every flag run_glue.py defines (absl's own aside)."""
    documented = set(re.findall(r"^\| `--([a-z_0-9]+)`", (ROOT / "docs" / "cli.md").read_text(),
                                re.M))
    from absl import app, flags as absl_flags, logging  # noqa: F401 (they define flags)
    builtin = set(absl_flags.FLAGS) | {"lambda"}  # absl's flags; --lambda: the alias
    missing = sorted(run_glue_flags - builtin - documented)
    assert not missing, f"docs/cli.md does not list --{', --'.join(missing)}"
