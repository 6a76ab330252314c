"""experiments/tradeoff.py and drop_layers.py on a tiny model: every kind of point."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_task import write_tiny_model

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_tradeoff_points_and_resume(tmp_path):
    model = write_tiny_model(tmp_path / "tiny")
    results = tmp_path / "results"
    command = [sys.executable, str(ROOT / "experiments" / "tradeoff.py"), "--task=SST-2",
               f"--model={model}", "--lambdas=3e-3", "--selections=head", "--keep_layers=1",
               "--max_train_examples=32", "--max_eval_examples=16", "--max_seq_length=16",
               "--soft_extract_learning_rate=0.1", f"--output_dir={tmp_path / 'runs'}",
               f"--results_dir={results}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((results / "tradeoff_SST-2.json").read_text())
    kinds = [p["kind"] for p in summary["points"]]
    assert kinds == ["PoWER-BERT (Attn-WS)", "Head-WS", "drop top layers"]
    power, head, drop = summary["points"]
    assert head["retention"] == power["retention"]  # the ablation keeps the same counts
    assert drop["label"] == "1 layers" and drop["relative_time"] > 0
    assert all(p["baseline_dev"] == power["baseline_dev"] for p in summary["points"])
    assert (results / "tradeoff_SST-2.png").stat().st_size > 1000
    head_run = json.loads((tmp_path / "runs/SST-2/lambda_3e-3_head/SST-2/retrain/run.json")
                          .read_text())
    assert head_run["selection"] == "head"

    again = subprocess.run(command + ["--overwrite"], capture_output=True, text=True,
                           cwd=ROOT, timeout=300)
    assert again.returncode == 0
    assert ": search" not in again.stdout and "re-fine-tune" not in again.stdout  # resumed
    refused = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert refused.returncode == 1 and "exists; pass --overwrite" in refused.stderr


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
