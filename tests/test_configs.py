"""configs/*.flags (absl's --flagfile) parse with run_glue.py's flags, and the Table 2
files hold the settings the study runs (experiments/table2_runs.py)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.table2_runs import Study

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.flags"))
TABLE2 = ("CoLA", "MRPC", "RTE", "SST-2", "STS-B")  # the tasks with data the study runs

# Each file parsed alone (flags reset between files) into run_glue.py's RunConfig.
PARSE = """
import json, sys
files = sys.argv[1:]
sys.argv = ["run_glue.py"]
import run_glue
configs = {}
for path in files:
    run_glue.FLAGS.unparse_flags()
    run_glue.FLAGS(["run_glue.py", f"--flagfile={path}"])
    configs[path] = run_glue.config_from_flags().to_dict()
print(json.dumps(configs))
"""


@pytest.fixture(scope="module")
def parsed() -> dict[str, dict]:
    done = subprocess.run([sys.executable, "-c", PARSE, *map(str, CONFIGS)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return {Path(path).relative_to(ROOT).as_posix(): config
            for path, config in json.loads(done.stdout.splitlines()[-1]).items()}


def test_every_config_parses(parsed):
    assert "configs/demo.flags" in parsed
    assert {f"configs/table2/{task}.flags" for task in TABLE2} <= set(parsed)
    assert len(parsed) == len(CONFIGS)


def test_the_demo_config_is_what_make_demo_runs(parsed):
    demo = parsed["configs/demo.flags"]
    assert demo["task"] == "SST-2" and demo["phase"] == "all"
    assert demo["target_speedup"] == 3 and demo["max_train_examples"] == 2000
    assert demo["finetune_epochs"] == demo["search_epochs"] == demo["retrain_epochs"] == 1
    makefile = (ROOT / "Makefile").read_text()
    assert "run_glue.py --flagfile=configs/demo.flags" in makefile


@pytest.mark.parametrize("task", TABLE2)
def test_a_table2_config_is_the_study_plan(parsed, task):
    study = Study(output_dir=ROOT / "checkpoints", results_dir=ROOT / "experiments/results",
                  quick=False)
    plan, start = study.plan(task), study.chosen(task)
    assert start is not None, f"{task}: the grid has not chosen a baseline"
    config = parsed[f"configs/table2/{task}.flags"]
    assert config["task"] == task and config["phase"] == "all"
    assert config["seed"] == plan.seeds[0]
    assert config["learning_rate"] == start.learning_rate
    assert config["finetune_epochs"] == start.epochs
    assert (config["search_epochs"], config["retrain_epochs"]) == (plan.search_epochs,
                                                                  plan.retrain_epochs)
    assert config["target_speedup"] == study.target(task)
    assert config["timing_repeats"] == 5
    extra = dict(flag.lstrip("-").split("=", 1) for flag in plan.flags)
    assert config["max_train_examples"] == (int(extra.pop("max_train_examples"))
                                            if "max_train_examples" in extra else None)
    assert not extra, f"plan flags not checked here: {extra}"
    if start.init_from:
        assert config["init_checkpoint"] == f"checkpoints/{start.init_from}/finetune"
        source = study.chosen(start.init_from, schedule=False)
        assert parsed[f"configs/table2/{start.init_from}.flags"]["finetune_epochs"] == (
            source.epochs)
    else:
        assert config["init_checkpoint"] is None
