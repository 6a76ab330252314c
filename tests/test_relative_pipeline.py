"""The relative mode through the phases on the tiny task: a --target_speedup search in
the served units, retrain and evaluate with the search's fractions, and the one-line
refusal of a configuration of the other mode."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.retention import RelativeRetention, flop_bound, served_flop_bound
from power_bert_tf.pipeline import phases
from power_bert_tf.training.checkpoints import load_model
from tiny_task import tiny_config, tiny_run_config, write_tiny_model, write_tiny_task

ROOT = Path(__file__).parents[1]
TRAIN = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("relative")
    model = write_tiny_model(root / "model")
    train, dev = write_tiny_task(root / "data", train=TRAIN, dev=16)
    output = root / "out"
    phases.run(tiny_run_config(model, train, dev, output, phase="finetune", finetune_epochs=1))
    return {"model": str(model), "train": str(train), "dev": str(dev), "output": output}


def run(tiny, **overrides) -> dict:
    options = dict(phase="search", mass_lambda=None, overwrite=True, search_epochs=2,
                   retention_mode="relative")
    return phases.run(tiny_run_config(tiny["model"], tiny["train"], tiny["dev"],
                                      tiny["output"], **{**options, **overrides}))


@pytest.mark.parametrize("target", [1.5, 2.5])
def test_relative_search_reaches_the_served_target_within_5_percent(tiny, target):
    result = run(tiny, target_speedup=target)
    retention = RelativeRetention(tuple(result["retention"]), 16)
    # The tiny task's inputs (7-13 tokens) all lie in the one bucket of N = 16.
    bound = served_flop_bound(tiny_config(), retention, [(TRAIN, 16)])
    assert target <= bound <= 1.05 * target
    assert result["flop_bound"] == pytest.approx(bound, abs=1e-3)
    assert all(0 < f <= 1 for f in retention.fractions) and retention.kept != (1, 1, 1)
    saved = json.loads((tiny["output"] / "custom" / "search" / "retention.json").read_text())
    assert saved["mode"] == "relative" and saved["origin"] == "target"
    assert saved["retention"] == list(retention.fractions)
    # f_j is mass(j) / N, floored to the 1e-4 grid
    for mass, fraction in zip(saved["masses"], saved["retention"]):
        assert fraction <= max(mass / 16, 1e-4) + 1e-4


def test_relative_target_is_over_the_bucketed_plain_model(tiny):
    """At N = 32 every tiny batch is served in the bucket of 16: the target is met there,
    not at the padded length."""
    result = run(tiny, target_speedup=2.0, max_seq_length=32)
    retention = RelativeRetention(tuple(result["retention"]), 32)
    bound = served_flop_bound(tiny_config(), retention, [(TRAIN, 16)])
    assert 2.0 <= bound <= 2.1 and result["flop_bound"] == pytest.approx(bound, abs=1e-3)
    assert result["padded_flop_bound"] == pytest.approx(flop_bound(tiny_config(), retention),
                                                        abs=1e-3)


def test_relative_retrain_evaluate_and_refusals(tiny):
    search = run(tiny, target_speedup=2.0)
    with pytest.raises(PowerBertError, match="retention.json holds a relative retention "
                                             "configuration but this run has "
                                             "--retention_mode=absolute") as error:
        run(tiny, phase="retrain", retention_mode="absolute", compare_after_retrain=False)
    assert "\n" not in str(error.value)
    retrain = run(tiny, phase="retrain", compare_after_retrain=False)
    assert retrain["retention"] == search["retention"]
    assert retrain["retention_mode"] == "relative"
    model = load_model(tiny["output"] / "custom" / "retrain" / "model.keras", "retrain")
    assert model.encoder.retention_mode == "relative"
    assert model.encoder.retention == search["retention"]
    summary = run(tiny, phase="evaluate", timing_repeats=1)
    assert summary["retention_mode"] == "relative"
    assert summary["retention"] == search["retention"]
    given = run(tiny, phase="retrain", retention_config="0.9,0.6,0.3", retrain_epochs=1,
                compare_after_retrain=False)
    assert given["retention"] == [0.9, 0.6, 0.3]
    with pytest.raises(PowerBertError, match="looks like fractions"):
        run(tiny, phase="retrain", retention_config="0.9,0.6,0.3", retention_mode="absolute",
            compare_after_retrain=False)
    with pytest.raises(PowerBertError, match="--retention_mode='sideways' is not one of"):
        run(tiny, retention_mode="sideways")


def test_unreachable_relative_target_is_one_line_before_training(tmp_path):
    model = write_tiny_model(tmp_path / "model")
    train, dev = write_tiny_task(tmp_path / "data", train=16, dev=8)
    # At N = 32 the padded bound of keeping [CLS] is 4.53x, but every tiny input is served
    # in the bucket of 16, where it is 4.31x.
    config = tiny_run_config(model, train, dev, tmp_path / "out", phase="all",
                             max_seq_length=32, mass_lambda=None, target_speedup=4.4,
                             retention_mode="relative")
    with pytest.raises(PowerBertError, match=r"--target_speedup=4.4 cannot be reached: the "
                                             r"largest FLOP-bound speed-up over "
                                             r"length-bucketed plain BERT .* is 4\.31x") as error:
        phases.run(config)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out" / "custom" / "finetune").exists()  # nothing trained


@pytest.mark.parametrize("flags, message", [
    (["--retention_config=0.8,0.5,0.3"], "--retention_config=0.8,0.5,0.3 looks like fractions "
                                         "of each input's length"),
    (["--retention_mode=relative", "--retention_config=8,4,2"],
     "layer 1 keeps the fraction 8; each must be in (0, 1] (counts at N need "
     "--retention_mode=absolute)"),
])
def test_the_other_modes_configuration_is_one_line_on_the_command_line(tmp_path, flags,
                                                                      message):
    model = write_tiny_model(tmp_path / "model")
    train, dev = write_tiny_task(tmp_path / "data", train=16, dev=8)
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_glue.py"), f"--model={model}", "--task=custom",
         f"--train_file={train}", f"--dev_file={dev}", "--text_a_column=text",
         "--label_column=label", "--labels=neg,pos", "--max_seq_length=16",
         f"--output_dir={tmp_path / 'out'}", "--phase=retrain", *flags],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
