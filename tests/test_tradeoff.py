"""experiments/tradeoff.py and drop_layers.py on a tiny model: every kind of point."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_task import write_tiny_model

ROOT = Path(__file__).parents[1]


def test_existing_results_are_kept(tmp_path):
    (tmp_path / "tradeoff_SST-2.json").write_text("{}")
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "tradeoff.py"), "--task=sst-2",
         f"--results_dir={tmp_path}", f"--output_dir={tmp_path / 'runs'}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 1 and "exists; pass --overwrite" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_an_unfinished_base_dir_is_refused_not_trained_on(tmp_path):
    """A baseline fine-tune cut off (its best model so far kept, no run.json) is not taken
    up with this script's flags, which are not those it was begun with."""
    phase = tmp_path / "base" / "RTE" / "finetune"
    phase.mkdir(parents=True)
    (phase / "model.keras").write_bytes(b"epoch 3 of 4")
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "tradeoff.py"), "--task=rte",
         f"--base_dir={tmp_path / 'base'}", f"--results_dir={tmp_path}",
         f"--output_dir={tmp_path / 'runs'}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: --base_dir={tmp_path / 'base'}: its RTE/finetune is not finished" in (
        result.stderr)
    assert not (phase / "run.json").exists() and not (tmp_path / "runs").exists()


def test_drop_layers_rejects_keeping_every_layer(tmp_path):
    import keras

    from tiny_task import tiny_config
    from power_bert_tf.model.classifier import BertClassifier
    from power_bert_tf.model.encoder import BertEncoder

    model_dir = write_tiny_model(tmp_path / "tiny")
    finetune = tmp_path / "finetune"
    finetune.mkdir()
    keras.utils.set_random_seed(0)
    BertClassifier(BertEncoder(**tiny_config().to_dict(), sequence_length=16), 2).save(
        finetune / "model.keras")
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "drop_layers.py"), "--task=SST-2",
         "--keep_layers=3", f"--finetune_dir={finetune}", f"--output={tmp_path / 'p.json'}",
         f"--model={model_dir}", "--max_seq_length=16", "--max_train_examples=8"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 1
    assert "error: --keep_layers=3 must be in [1, 2]" in result.stderr


@pytest.mark.slow
def test_collapsed_search_is_recorded_and_the_sweep_goes_on(tmp_path):
    """A lambda that drives every r to 0 is the reference's best-known trap: the sweep
    lists it and keeps the other points instead of failing, also when resumed."""
    model_dir = write_tiny_model(tmp_path / "tiny")
    command = [
        sys.executable, str(ROOT / "experiments" / "tradeoff.py"), "--task=SST-2",
        f"--model={model_dir}", "--max_train_examples=32", "--max_eval_examples=16",
        "--max_seq_length=16", "--learning_rate=1e-3", "--soft_extract_learning_rate=1",
        "--targets=", "--lambdas=100", "--selections=", "--keep_layers=1",
        f"--results_dir={tmp_path}", f"--output_dir={tmp_path / 'runs'}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "lambda=100: the search collapsed" in result.stdout
    saved = json.loads((tmp_path / "tradeoff_SST-2.json").read_text())
    assert saved["collapsed"] == ["100"]
    # Its timings' machine, wall time and command (runner.write_result, atomic).
    assert saved["cpu"]["name"] and isinstance(saved["cpu"]["features"], list)
    assert saved["wall_seconds"] > 0 and "--lambdas=100" in saved["command"]
    assert not (tmp_path / "tradeoff_SST-2.partial").exists()
    assert [p["kind"] for p in saved["points"]] == ["drop top layers"]
    spread = saved["points"][0]["speedup_spread"]  # the timed passes, not only their median
    assert spread["min"] <= spread["median"] <= spread["max"] and spread["rounds"] >= 1
    assert saved["points"][0]["speedup"] == pytest.approx(spread["median"], abs=1e-3)
    assert (tmp_path / "tradeoff_SST-2.png").is_file()

    resumed = subprocess.run([*command, "--overwrite"], capture_output=True, text=True,
                             cwd=ROOT, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "lambda=100: the search collapsed" in resumed.stdout
