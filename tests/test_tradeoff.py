"""experiments/tradeoff.py and drop_layers.py on a tiny model: every kind of point."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_task import write_tiny_model

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
from experiments.tradeoff_results import summary_lines, within_one_point  # noqa: E402


def _point(kind, label, dev, speedup, served, baseline_dev=0.81):
    return {"kind": kind, "label": label, "metric": "accuracy", "dev": dev,
            "baseline_dev": baseline_dev, "speedup": speedup, "served_speedups": served}


def test_within_one_point_takes_the_fastest_attention_point_per_comparison():
    points = [
        _point("PoWER-BERT (Attn-WS)", "target=2x", 0.80, 2.0,  # exactly 1 point below
               {"bucketed": 1.5, "bucketed_sorted": 1.2}),
        _point("PoWER-BERT (Attn-WS)", "target=4x", 0.7999, 4.0,  # just over 1 point below
               {"bucketed": 3.0, "bucketed_sorted": 2.5}),
        _point("PoWER-BERT (Attn-WS)", "lambda=1e-3", 0.815, 1.5,
               {"bucketed": 1.6, "bucketed_sorted": 1.1}),
        _point("Head-WS", "target=6x", 0.82, 6.0, {"bucketed": 5.0, "bucketed_sorted": 4.0}),
        _point("drop top layers", "keep 2", 0.81, 3.0, {}),
    ]
    assert within_one_point(points) == {
        "padded": {"label": "target=2x", "speedup": 2.0, "dev": 0.80},
        "bucketed": {"label": "lambda=1e-3", "speedup": 1.6, "dev": 0.815},
        "bucketed_sorted": {"label": "target=2x", "speedup": 1.2, "dev": 0.80}}


def test_within_one_point_is_null_where_no_point_qualifies():
    points = [_point("PoWER-BERT (Attn-WS)", "target=3x", 0.70, 3.0, {"bucketed_sorted": 2.0}),
              _point("Head-WS", "target=3x", 0.81, 3.0, {"bucketed_sorted": 2.0}),
              _point("drop top layers", "keep 1", 0.81, 4.0, {})]
    summary = within_one_point(points)
    assert summary == {"padded": None, "bucketed_sorted": None}
    assert summary_lines(summary)[1] == (
        "largest speed-up within 1 point of BERT, bucketed_sorted: none")
    assert within_one_point(points[1:]) == {"padded": None}  # no PoWER-BERT point at all


def test_existing_results_are_kept(tmp_path):
    (tmp_path / "tradeoff_SST-2.json").write_text("{}")
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "tradeoff.py"), "--task=sst-2",
         f"--results_dir={tmp_path}", f"--output_dir={tmp_path / 'runs'}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 1 and "exists; pass --overwrite" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_relative_sweep_has_its_own_results_file(tmp_path):
    """--retention_mode=relative writes tradeoff_<task>_relative[_<tag>]: an absolute
    sweep's file does not stop it, its own existing file does."""
    (tmp_path / "tradeoff_SST-2_s1.json").write_text("{}")  # the absolute sweep's
    (tmp_path / "tradeoff_SST-2_relative_s1.json").write_text("{}")
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "tradeoff.py"), "--task=sst-2",
         "--retention_mode=relative", "--tag=s1", f"--results_dir={tmp_path}",
         f"--output_dir={tmp_path / 'runs'}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"error: {tmp_path / 'tradeoff_SST-2_relative_s1.json'} exists" in result.stderr
    assert not (tmp_path / "runs").exists()
    wrong = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "tradeoff.py"), "--retention_mode=length",
         f"--results_dir={tmp_path}", f"--output_dir={tmp_path / 'runs'}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert wrong.returncode != 0 and "one of <absolute|relative>" in wrong.stderr
    assert not (tmp_path / "runs").exists()
    (tmp_path / "tradeoff_SST-2_relative_distill-logits-ranking_r10_s1.json").write_text("{}")
    distilled = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "tradeoff.py"), "--task=sst-2",
         "--retention_mode=relative", "--distill=logits+ranking", "--retrain_epochs=10",
         "--tag=s1", f"--results_dir={tmp_path}", f"--output_dir={tmp_path / 'runs'}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert distilled.returncode == 1, distilled.stderr[-2000:]
    assert "tradeoff_SST-2_relative_distill-logits-ranking_r10_s1.json exists" in (
        distilled.stderr)


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


@pytest.mark.slow
def test_a_relative_sweep_runs_every_power_bert_run_in_the_relative_mode(tmp_path):
    """--retention_mode=relative reaches the search, retrain and evaluate of the
    PoWER-BERT and Head-WS points, in folders of their own, and the JSON records the mode
    and the fastest point within one point per comparison."""
    model_dir = write_tiny_model(tmp_path / "tiny")
    (tmp_path / "tradeoff_SST-2.json").write_text("{}")  # an absolute sweep's: kept
    command = [
        sys.executable, str(ROOT / "experiments" / "tradeoff.py"), "--task=SST-2",
        f"--model={model_dir}", "--max_train_examples=32", "--max_eval_examples=16",
        "--max_seq_length=16", "--learning_rate=1e-3", "--soft_extract_learning_rate=1",
        "--retention_mode=relative", "--targets=1.5", "--lambdas=", "--selections=head",
        "--keep_layers=", f"--results_dir={tmp_path}", f"--output_dir={tmp_path / 'runs'}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "tradeoff_SST-2.json").read_text() == "{}"
    saved = json.loads((tmp_path / "tradeoff_SST-2_relative.json").read_text())
    assert saved["retention_mode"] == "relative"
    assert [p["kind"] for p in saved["points"]] == ["PoWER-BERT (Attn-WS)", "Head-WS"]
    root = tmp_path / "runs" / "SST-2"
    search = json.loads((root / "relative_target_1.5" / "SST-2" / "search" / "retention.json")
                        .read_text())
    assert search["mode"] == "relative"
    for folder in ("relative_target_1.5", "relative_target_1.5_head"):
        evaluate = json.loads((root / folder / "SST-2" / "evaluate" / "run.json").read_text())
        assert evaluate["retention_mode"] == "relative"
        assert all(0 < f <= 1 for f in evaluate["retention"])  # fractions, not counts
    assert not (root / "target_1.5").exists()  # an absolute sweep's point is not reused
    attention = saved["points"][0]
    assert set(saved["within_one_point"]) == {"padded", *attention["served_speedups"]}
    assert "bucketed_sorted" in attention["served_speedups"]
    assert saved["within_one_point"] == within_one_point(saved["points"])
    for line in summary_lines(saved["within_one_point"]):
        assert line in result.stdout
    assert (tmp_path / "tradeoff_SST-2_relative.png").is_file()

    # Distilled retrains from the same searches, in folders and a results file of their own.
    distilled = subprocess.run([*command, "--selections=", "--distill=logits",
                                "--retrain_epochs=1"],
                               capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert distilled.returncode == 0, distilled.stdout[-2000:] + distilled.stderr[-2000:]
    point = root / "relative_target_1.5_distill-logits_r1" / "SST-2"
    assert (point / "search").resolve() == (root / "relative_target_1.5" / "SST-2" /
                                            "search").resolve()
    assert json.loads((point / "retrain" / "run.json").read_text())["distill"] == "logits"
    saved = json.loads((tmp_path / "tradeoff_SST-2_relative_distill-logits_r1.json")
                       .read_text())
    assert saved["distill"] == "logits" and saved["retrain_epochs"] == 1
    assert [p["kind"] for p in saved["points"]] == ["PoWER-BERT (Attn-WS)"]
