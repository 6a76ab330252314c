"""The inference benchmark (power_bert_tf.bench) on the hidden `tiny` case, in seconds."""
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from power_bert_tf.bench.benchmark import (
    MODES, PADDING_SETTINGS, RTE_RETENTION, SST2_RETENTION, TINY, TINY_RETENTION, BenchConfig,
    Case, PeakMemory, benchmark_cases, build_classifier, make_runner, measure_padding,
    plan_rows, random_inputs, resolve_cases, run, tokenize)
from power_bert_tf.model.albert import AlbertEncoder
from power_bert_tf.model.transfer import transfer_weights
from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.retention import RetentionConfig, flop_bound
from power_bert_tf.serving.xla_cpu import ONEDNN_DOT_FLAGS
from power_bert_tf.weights.pretrained import PretrainedBert

ROOT = Path(__file__).parents[1]
TINY_CASE = Case("tiny", "tiny", TINY, TINY_RETENTION)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench") / "bench.json"
    config = BenchConfig(cases=("tiny",), batch_sizes=(1, 2), repeats=2, padding=False,
                         output=output, device="test")
    report, path = run(config)
    return config, report, path


def test_every_mode_and_batch_gives_a_full_row(tiny_run):
    config, report, _ = tiny_run
    assert [(row.batch_size, row.mode) for row in report.rows] == [
        (batch, mode) for batch in (1, 2) for mode in MODES]
    for row in report.rows:
        assert (row.case, row.sequence_length, row.retention) == ("tiny", 16, (8, 4))
        assert (row.warmup, row.repeats, row.heavy, row.weights) == (2, 2, False, "random")
        for timing in (row.full, row.pruned):
            assert len(timing.times_ms) == 2 and all(t > 0 for t in timing.times_ms)
            assert timing.median_ms == pytest.approx(statistics.median(timing.times_ms))
            assert (timing.min_ms <= timing.q1_ms <= timing.median_ms <= timing.q3_ms
                    <= timing.max_ms)
            assert (timing.min_ms, timing.max_ms) == (min(timing.times_ms), max(timing.times_ms))
            assert timing.peak_mib > 0 and timing.device_peak_mib is None
            # No retracing during the timed calls; eager has no function to count.
            assert timing.retraces == (None if row.mode == "eager" else 0)
        assert row.speedup == pytest.approx(row.full.median_ms / row.pruned.median_ms)
        assert row.word_vector_bound == pytest.approx(2 * 16 / (8 + 4))
        assert row.flop_bound == pytest.approx(flop_bound(TINY, TINY_RETENTION))
        assert row.efficiency == pytest.approx(row.speedup / row.flop_bound)


def test_cases_of_one_shape_and_length_share_the_plain_timing():
    other = Case("tiny-other", "tiny", TINY, RetentionConfig((4, 2), 16))
    config = BenchConfig(batch_sizes=(2,), modes=("xla",), repeats=2)
    rows, notes = benchmark_cases([TINY_CASE, other], config, PeakMemory())
    assert [row.case for row in rows] == ["tiny", "tiny-other"] and not notes
    assert rows[0].full is rows[1].full and rows[0].pruned != rows[1].pruned
    assert rows[1].word_vector_bound == pytest.approx(2 * 16 / 6)


def test_json_and_markdown_written_and_never_overwritten(tiny_run):
    config, report, path = tiny_run
    data = json.loads(path.read_text())
    assert data["machine"]["device"] == "test" and data["machine"]["cpu_count"] >= 1
    assert data["machine"]["tensorflow"] and data["memory"]
    assert data["settings"]["repeats"] == 2 and "heavy_policy" in data["settings"]
    assert len(data["rows"]) == 8 and data["padding"] is None
    assert data["rows"][0]["speedup"] == pytest.approx(report.rows[0].speedup)
    markdown = path.with_suffix(".md").read_text()
    assert "| case | batch | mode | ms full (median [min-max]) |" in markdown
    assert markdown.count("| tiny |") == 8
    before = path.read_text()
    with pytest.raises(PowerBertError, match="exists"):
        run(config)
    assert path.read_text() == before


def test_xla_function_compiles_once_per_shape(tmp_path):
    model = build_classifier(TINY_CASE, eliminate=True, sequence_length=16)
    inputs = random_inputs(TINY, 3, 16, seed=0)
    expected = model(inputs, training=False).numpy()
    for mode in ("xla", "saved_model"):
        runner = make_runner(model, mode, 16, tmp_path / mode)
        np.testing.assert_allclose(runner.call(inputs).numpy(), expected, atol=1e-5)
        traces = runner.tracing_count()
        runner.call(inputs).numpy()
        assert runner.tracing_count() == traces == 1, mode


def test_copied_weights_give_the_same_logits_when_nothing_is_eliminated():
    keep_all = Case("tiny", "tiny", TINY, RetentionConfig((16, 16), 16))
    full = build_classifier(keep_all, eliminate=False, sequence_length=16)
    pruned = build_classifier(keep_all, eliminate=True, sequence_length=16)
    transfer_weights(full, pruned, "the plain model")
    inputs = random_inputs(TINY, 2, 16, seed=1)
    np.testing.assert_allclose(pruned(inputs, training=False).numpy(),
                               full(inputs, training=False).numpy(), atol=1e-5)


def test_heavy_rows_run_only_the_heavy_modes():
    config = BenchConfig(batch_sizes=(1, 64), heavy_gflops=0.01, heavy_modes=("xla",))
    planned, notes = plan_rows(TINY_CASE, config)
    # tiny: 0.59 MFLOP per example, so batch 1 is light and batch 64 heavy.
    assert planned == [(1, mode, False) for mode in MODES] + [(64, "xla", True)]
    assert len(notes) == 3 and all("batch 64" in note and "heavy" in note for note in notes)


def _write_run(folder: Path, task: str, retention, max_seq_length=64, model="embedded"):
    path = folder / task / "retrain" / "run.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"task": task, "retention": retention,
                                "config": {"max_seq_length": max_seq_length, "model": model}}))


def test_minilm_cases_come_from_retrain_runs(tmp_path):
    _write_run(tmp_path, "SST-2", [40, 30, 20, 10, 5, 2])
    _write_run(tmp_path, "RTE", [200, 100, 50, 20, 10, 5], max_seq_length=256)
    _write_run(tmp_path, "CoLA", [10, 5])  # wrong number of layers
    _write_run(tmp_path, "MRPC", [60, 50, 40, 30, 20, 10], model="/elsewhere")
    (tmp_path / "QQP" / "retrain").mkdir(parents=True)
    (tmp_path / "QQP" / "retrain" / "run.json").write_text("{not json")
    config = EncoderConfig(vocabulary_size=10, num_layers=6, hidden_size=8, num_heads=2,
                           intermediate_size=16)
    pretrained = PretrainedBert(config, {}, Path("vocab.txt"), True, "embedded-source")
    cases, notes = resolve_cases(("minilm", "bert-base-rte"), tmp_path, pretrained)
    assert [(case.name, case.retention.sequence_length, case.weights) for case in cases] == [
        ("minilm/RTE", 256, "embedded-source"), ("minilm/SST-2", 64, "embedded-source"),
        ("bert-base/RTE", 256, "random")]
    assert cases[2].retention.word_vector_bound == pytest.approx(3072 / 868)
    assert len(notes) == 3
    assert any("CoLA" in note and "2 layers" in note for note in notes)
    assert any("MRPC" in note and "/elsewhere" in note for note in notes)
    assert any("QQP" in note and "unreadable" in note for note in notes)
    _, notes = resolve_cases(("minilm",), tmp_path / "empty", pretrained)
    assert notes == [f"minilm: no retrained run in {tmp_path / 'empty'}/*/retrain/run.json"]


@pytest.mark.parametrize("options, message", [
    ({"modes": ("xla", "fast")}, "--modes: fast"),
    ({"cases": ("bert-large",)}, "--cases: bert-large"),
    ({"warmup": 1}, "--warmup must be >= 2"),
    ({"batch_sizes": (0,)}, "--batch_sizes must be positive"),
    ({"padding_buckets": (32, 16)}, "--padding_buckets must be ascending"),
])
def test_bad_settings_are_one_line_errors(options, message):
    with pytest.raises(PowerBertError, match=message.replace("[", r"\[")):
        BenchConfig(**options)


def test_padding_measurement_gives_all_four_totals(pretrained):
    texts = ["a", "good film .", "nice", "the plot was very dull and the actors were boring , "
             "but the music was fine and the story had a few nice moments"] * 3
    features = tokenize(pretrained.tokenizer(32), texts)
    config = EncoderConfig(vocabulary_size=pretrained.config.vocabulary_size, num_layers=2,
                           hidden_size=32, num_heads=4, intermediate_size=64,
                           max_sequence_length=64)
    case = Case("tiny-vocab", "tiny", config, RetentionConfig((12, 6), 32))
    result = measure_padding(case, features, buckets=(8, 16, 32), batch_size=4, warmup=2,
                             repeats=2, seed=0, retention_source="test")
    assert [s.name for s in result.settings] == [name for name, _, _ in PADDING_SETTINGS]
    assert result.sentences == 12 and sum(result.bucket_sentences) == 12
    assert result.bucket_sentences == (9, 0, 3)  # the long sentence is 26 tokens
    padded, bucketed, eliminated, both = result.settings
    assert (padded.batches, bucketed.batches) == (3, 4)  # 12 / 4; 9 in 3 batches + 3 in 1
    for setting in result.settings:
        assert setting.seconds > 0 and len(setting.passes_s) == 2 and setting.retraces == 0
        assert setting.speedup == pytest.approx(padded.seconds / setting.seconds)
    assert (padded.speedup, padded.flop_bound) == (1.0, 1.0)
    assert 1 < eliminated.flop_bound and 1 < bucketed.flop_bound < both.flop_bound


def test_command_line(tmp_path):
    output = tmp_path / "cli.json"
    command = [sys.executable, "-m", "power_bert_tf.bench", "--cases=tiny,tiny-albert",
               "--batch_sizes=1",
               "--modes=graph,xla", "--repeats=2", "--nopadding", f"--output={output}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "speed-up" in result.stdout and f"wrote {output}" in result.stdout
    report = json.loads(output.read_text())
    assert [row["mode"] for row in report["rows"]] == ["graph", "xla"] * 2
    assert "xla_cpu_use_onednn" not in report["machine"]["xla_flags"]  # off by default
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert f"error: {output} exists" in again.stderr


def test_xla_dots_through_onednn_on_request(tmp_path):
    output = tmp_path / "onednn.json"
    command = [sys.executable, "-m", "power_bert_tf.bench", "--cases=tiny", "--batch_sizes=2",
               "--modes=xla", "--repeats=2", "--nopadding", "--xla_cpu_onednn",
               f"--output={output}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    machine = json.loads(output.read_text())["machine"]
    if not machine["gpus"]:
        assert machine["xla_flags"].split() == list(ONEDNN_DOT_FLAGS)


def test_albert_cases_have_the_bert_configurations():
    names = ("albert-base-rte", "albert-base-sst2", "tiny-albert")
    assert not set(names) & set(BenchConfig().cases)  # make bench-albert, not make bench
    make = subprocess.run(["make", "-n", "bench-albert"], capture_output=True, text=True,
                          cwd=ROOT)
    assert "--cases=bert-base-rte,bert-base-sst2,albert-base-rte,albert-base-sst2" in make.stdout
    cases, notes = resolve_cases(names, Path("unused"), None)
    assert not notes
    assert [(case.name, case.shape, case.retention) for case in cases] == [
        ("albert-base/RTE", "albert-base", RTE_RETENTION),
        ("albert-base/SST-2", "albert-base", SST2_RETENTION),
        ("tiny-albert", "tiny-albert", TINY_RETENTION)]
    base = cases[0].config
    assert (base.model_type, base.num_layers, base.hidden_size, base.embedding_size,
            base.num_heads, base.intermediate_size, base.vocabulary_size) == (
        "albert", 12, 768, 128, 12, 3072, 30000)
    rows, _ = benchmark_cases(cases[2:], BenchConfig(batch_sizes=(2,), modes=("xla",),
                                                     repeats=2), PeakMemory())
    assert [(row.case, row.mode) for row in rows] == [("tiny-albert", "xla")]
    assert rows[0].speedup > 0 and rows[0].flop_bound == pytest.approx(
        flop_bound(TINY, TINY_RETENTION))  # the layers' FLOPs are BERT's
    model = build_classifier(cases[2], eliminate=True, sequence_length=16)
    assert isinstance(model.encoder, AlbertEncoder) and model.encoder.retention == [8, 4]
