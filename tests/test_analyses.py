"""experiments/analyses.py: the paper's analyses as plots, on a tiny model."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tiny_task import tiny_config, write_tiny_model

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
from experiments import analyses  # noqa: E402
from power_bert_tf.model.classifier import BertClassifier  # noqa: E402
from power_bert_tf.model.encoder import BertEncoder  # noqa: E402

SCRIPT = ROOT / "experiments" / "analyses.py"


def test_eliminate_keeps_cls_and_removes_by_rank():
    mask = np.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]])
    scores = np.array([[9.0, 1.0, 5.0, 3.0, 4.0, 0.0], [9.0, 2.0, 1.0, 0.0, 0.0, 0.0]])
    rng = np.random.default_rng(0)
    top = analyses._eliminate(mask, scores, np.array([0.4, 0.4]), "top", rng)
    np.testing.assert_array_equal(top, [[1, 1, 0, 1, 0, 0], [1, 0, 1, 0, 0, 0]])
    bottom = analyses._eliminate(mask, scores, np.array([0.4, 0.4]), "bottom", rng)
    np.testing.assert_array_equal(bottom, [[1, 0, 1, 0, 1, 0], [1, 1, 0, 0, 0, 0]])
    everything = analyses._eliminate(mask, scores, np.array([1.0, 1.0]), "random", rng)
    np.testing.assert_array_equal(everything[:, 0], [1, 1])  # [CLS] stays
    assert everything[:, 1:].sum() == 0


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny model folder and a fine-tuned-shaped and a retrained-shaped classifier."""
    import keras

    folder = tmp_path_factory.mktemp("analyses")
    model_dir = write_tiny_model(folder / "tiny")
    config = tiny_config().to_dict()
    keras.utils.set_random_seed(0)
    plain = BertClassifier(BertEncoder(**config, sequence_length=16), 2)
    plain.save(folder / "finetuned.keras")
    hard = BertClassifier(BertEncoder(**config, sequence_length=16, extract="hard",
                                      retention=[10, 6, 3]), 2)
    hard.save(folder / "retrained.keras")
    return folder, model_dir


def _run(folder, model_dir, *flags):
    return subprocess.run(
        [sys.executable, str(SCRIPT), f"--model={model_dir}", "--task=SST-2",
         "--max_examples=24", f"--finetuned={folder / 'finetuned.keras'}",
         f"--retrained={folder / 'retrained.keras'}", *flags],
        capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_existing_results_are_kept(checkpoints, tmp_path):
    folder, model_dir = checkpoints
    (tmp_path / "analysis_retention.json").write_text("{}")
    result = _run(folder, model_dir, "--analyses=retention", f"--results_dir={tmp_path}")
    assert result.returncode == 1 and "exists; pass --overwrite" in result.stderr
    assert (tmp_path / "analysis_retention.json").read_text() == "{}"


@pytest.mark.slow
def test_position_classifiers(checkpoints, tmp_path):
    folder, model_dir = checkpoints
    result = _run(folder, model_dir, "--analyses=position", "--positions=0,2",
                  "--position_train_examples=32", "--position_max_seq_length=16",
                  f"--results_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    position = json.loads((tmp_path / "analysis_position.json").read_text())
    assert set(position["accuracy"]) == {"0", "2"}
    assert all(0 <= acc <= 1 for acc in position["accuracy"].values())
    assert position["real_token_fraction"]["0"] == 1.0
    assert position["command"].startswith("python ") and position["git_commit"]


def test_unknown_analysis_is_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--analyses=difusion",
                             f"--results_dir={tmp_path}"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 1
    assert "error: --analyses: unknown difusion" in result.stderr
    assert "Traceback" not in result.stderr
