"""Accuracy of each precision and runtime (power_bert_tf.bench.accuracy) on the tiny model."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import random_inputs
from power_bert_tf.bench.accuracy import VARIANTS, precision_accuracy
from power_bert_tf.bench.runtimes import onnx_available
from power_bert_tf.data.tasks import get_task
from serving_models import N, tiny_classifier
from tiny_task import NEGATIVE, POSITIVE, VOCAB, write_tiny_model

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def model():
    return tiny_classifier()


def test_each_variant_against_fp32(model, tmp_path):
    features = random_inputs(48, N, lengths=[3 + i % (N - 2) for i in range(48)], seed=5,
                             vocabulary_size=len(VOCAB))
    reference = model(features, training=False).numpy().argmax(-1)
    labels = reference.copy()
    labels[:12] = 1 - labels[:12]  # fp32 accuracy 0.75
    (tmp_path / "SST-2").mkdir()
    task = get_task("SST-2", tmp_path)
    result = precision_accuracy(model, features, labels, task, batch_size=16)
    expected = VARIANTS if onnx_available() else VARIANTS[:2]
    assert tuple(result["variants"]) == expected
    assert result["examples"] == 48 and result["retention"] == model.encoder.retention
    fp32 = result["variants"]["tf fp32"]
    assert fp32["value"] == pytest.approx(0.75) and fp32["change_points"] == 0
    assert fp32["kept_overlap_last_layer"] == 1.0 and fp32["prediction_agreement"] == 1.0
    for name, variant in result["variants"].items():
        assert variant["change_points"] == pytest.approx(100 * (variant["value"] - 0.75),
                                                         abs=1e-3)
        agreement = variant["prediction_agreement"]
        # With 12 of 48 labels flipped, accuracy moves by at most the disagreement.
        assert abs(variant["value"] - 0.75) <= 1 - agreement + 1e-9, name
        assert 0.5 < variant["kept_overlap_first_layer"] <= 1.0
    if onnx_available():
        ort = result["variants"]["ort fp32"]
        assert ort["max_abs_logit_diff"] < 1e-4 and ort["kept_overlap_last_layer"] == 1.0


@pytest.mark.slow
def test_command_line(model, tmp_path):
    folder = tmp_path / "glue" / "SST-2"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = [" ".join(rng.choice(POSITIVE + NEGATIVE, size=6)) for _ in range(20)]
    folder.joinpath("dev.tsv").write_text("sentence\tlabel\n" + "".join(
        f"{row}\t{int(sum(w in POSITIVE for w in row.split()) > 3)}\n" for row in rows))
    write_tiny_model(tmp_path / "pretrained")
    model.save(tmp_path / "model.keras")
    output = tmp_path / "accuracy.json"
    command = [sys.executable, "-m", "power_bert_tf.bench.accuracy",
               f"--checkpoint=SST-2={tmp_path / 'model.keras'}",
               f"--model={tmp_path / 'pretrained'}", f"--data_dir={tmp_path / 'glue'}",
               f"--output={output}"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(output.read_text())
    variants = report["runs"]["SST-2"]["variants"]
    assert report["runs"]["SST-2"]["examples"] == 20 and "tf bf16" in variants
    assert "points" in run.stdout
    assert report["provenance"]["command"].endswith(f"--output={output}")
    assert report["provenance"]["commit"] and report["provenance"]["wall_seconds"] > 0
    assert "flags" in report["machine"]["cpu_features"]
    again = subprocess.run(command[:-1] + ["--checkpoint=SST-2"], capture_output=True,
                           text=True, timeout=600, cwd=ROOT)
    assert again.returncode == 1 and "expected TASK=PATH" in again.stderr
    twice = subprocess.run(command[:-1] + [command[3]], capture_output=True, text=True,
                           timeout=600, cwd=ROOT)
    assert twice.returncode == 1 and "SST-2 given twice" in twice.stderr
