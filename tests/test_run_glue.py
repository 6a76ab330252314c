"""run_glue.py from the command line: the bad-input catalogue and the mirrored strategy.

Every user mistake is one line on stderr naming the flag, file, row or value, with
exit status 1 and no traceback.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_task import write_tiny_model, write_tiny_task

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    model = write_tiny_model(root / "model")
    train, dev = write_tiny_task(root / "data", train=16, dev=8)
    return {"model": model, "train": train, "dev": dev, "root": root}


def run_glue(*flags, env=None):
    return subprocess.run([sys.executable, str(ROOT / "run_glue.py"), *flags],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)


def custom_flags(tiny, train=None, dev=None, **extra):
    flags = {"task": "custom", "model": tiny["model"], "train_file": train or tiny["train"],
             "dev_file": dev or tiny["dev"], "text_a_column": "text", "label_column": "label",
             "labels": "neg,pos", "max_seq_length": 16, "batch_size": 8, "epochs": 1,
             "output_dir": tiny["root"] / "out", **extra}
    return [f"--{name}={value}" for name, value in flags.items()]


def assert_user_error(result, message):
    assert result.returncode == 1, result.stdout[-1000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]


def test_unknown_task():
    assert_user_error(run_glue("--task=SST-3"), "unknown task 'SST-3'; known tasks: CoLA")


def test_missing_data_folder(tmp_path):
    assert_user_error(run_glue("--task=RTE", f"--data_dir={tmp_path}/nowhere"),
                      f"GLUE data folder {tmp_path}/nowhere/RTE for task RTE does not exist")


def test_missing_file(tiny, tmp_path):
    result = run_glue(*custom_flags(tiny, train=tmp_path / "absent.tsv", phase="finetune"))
    assert_user_error(result, str(tmp_path / "absent.tsv"))


def _write(path, rows):
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("rows, message", [
    (["text\tlabel", "good film\tpos", "a bad one"], "bad.tsv:3: expected 2 columns, found 1"),
    (["text\tlabel", "good film\tpos", "meh\tneutral"], "bad.tsv:3: label 'neutral' is not one of"),
    (["text\tlabel", "\tpos"], "bad.tsv:2: empty text"),
])
def test_bad_rows(tiny, tmp_path, rows, message):
    bad = _write(tmp_path / "bad.tsv", rows)
    assert_user_error(run_glue(*custom_flags(tiny, train=bad, phase="finetune")), message)


def test_custom_task_needs_its_flags(tiny):
    assert_user_error(run_glue("--task=custom", f"--model={tiny['model']}"),
                      "--task=custom needs --train_file")


@pytest.mark.parametrize("retention, message", [
    ("4,3", "has 2 entries but the encoder has 3 layers"),
    ("4,6,2", "non-increasing: layer 2 keeps 6 > layer 1 keeps 4"),
    ("20,6,2", "layer 1 keeps 20 > sequence length 16"),
])
def test_bad_retention_configuration(tiny, retention, message):
    result = run_glue(*custom_flags(tiny, phase="retrain", retention_config=retention))
    assert_user_error(result, message)


def test_collapsed_search_output(tiny, tmp_path):
    search = tmp_path / "custom" / "search"
    search.mkdir(parents=True)
    (search / "retention.json").write_text(json.dumps(
        {"masses": [0.4, 0.2, 0.0], "retention": [1, 1, 1]}))
    result = run_glue(*custom_flags(tiny, phase="retrain", output_dir=tmp_path))
    assert_user_error(result, "the search collapsed, every mass(j) < 1")
    assert "smaller --lambda" in result.stderr


def test_finished_output_folder(tiny, tmp_path):
    finetune = tmp_path / "custom" / "finetune"
    finetune.mkdir(parents=True)
    (finetune / "run.json").write_text("{}")
    result = run_glue(*custom_flags(tiny, phase="finetune", output_dir=tmp_path))
    assert_user_error(result, f"{finetune} holds a finished run; pass --overwrite")


def test_search_before_finetune(tiny, tmp_path):
    result = run_glue(*custom_flags(tiny, phase="search", output_dir=tmp_path))
    assert_user_error(result, "no finetune model at")


def test_bad_flag_value(tiny):
    result = run_glue(*custom_flags(tiny, phase="finetune", batch_size=0))
    assert_user_error(result, "--batch_size must be >= 1, got 0")
    result = run_glue(*custom_flags(tiny, phase="finetune", length_grouping=-2))
    assert_user_error(result, "--length_grouping=-2 must be >= 0 (0: off)")
    result = run_glue(*custom_flags(tiny, phase="export", onnx_batch_size=4))
    assert_user_error(result, "--onnx_batch_size applies to --export_format=onnx only")


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tiny, tmp_path):
    script = f"""
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.argv = ["run_glue.py"] + {custom_flags(tiny, phase="finetune", distribution="mirrored",
                                            output_dir=tmp_path)!r}
sys.path.insert(0, {str(ROOT)!r})
import runpy
runpy.run_path({str(ROOT / "run_glue.py")!r}, run_name="__main__")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training on 2 replicas" in result.stdout
    run = json.loads((tmp_path / "custom" / "finetune" / "run.json").read_text())
    assert run["config"]["distribution"] == "mirrored" and "accuracy" in run["dev"]


def test_headerless_files_need_index_columns(tiny):
    result = run_glue(*custom_flags(tiny, phase="finetune", header=False))
    assert_user_error(result, "--text_a_column='text': with --noheader columns are 0-based "
                              "indices")


def test_label_written_differently_from_labels(tiny, tmp_path):
    bad = _write(tmp_path / "bad.tsv", ["text\tlabel", "good film\t1", "bad film\t1.0"])
    result = run_glue(*custom_flags(tiny, train=bad, phase="finetune", labels="0,1"))
    assert_user_error(result, "bad.tsv:3: label '1.0' is not one of 0, 1 (labels are "
                              "compared as the strings given: '1.0' is not '1'")


def test_the_phase_flag_names_the_phase_table():
    """--phase's choices live in pipeline.config so that `run_glue.py --help` imports no
    TensorFlow; they must be the table's phases (pipeline.phases.PHASES) and "all"."""
    from power_bert_tf.pipeline import config, phases

    assert set(config.PHASES) == set(phases.PHASES) | {"all"}
    assert set(phases.ALL) <= set(phases.PHASES)
