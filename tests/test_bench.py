"""The inference benchmark (power_bert_tf.bench) on the hidden `tiny` cases, in seconds."""
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from power_bert_tf.bench.benchmark import BenchConfig, run
from power_bert_tf.bench.cases import (RTE_RETENTION, SST2_RETENTION, TINY, TINY_RETENTION, Case,
                                       build_classifier, build_pair, random_inputs,
                                       resolve_cases, runtime_case, scale_retention)
from power_bert_tf.bench.concurrency import measure_concurrency
from power_bert_tf.bench.modes import MODES, PeakMemory, benchmark_cases, make_runner, plan_rows
from power_bert_tf.bench.onednn import measure_onednn
from power_bert_tf.bench.padding import PADDING_SETTINGS, measure_padding, tokenize
from power_bert_tf.bench.runtimes import cache_key, measure_runtimes, onnx_available
from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.albert import AlbertEncoder
from power_bert_tf.model.retention import RetentionConfig, flop_bound
from power_bert_tf.serving.xla_cpu import ONEDNN_DOT_FLAGS
from power_bert_tf.weights.pretrained import PretrainedBert
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.encoder import BertEncoder
from serving_models import N, RETENTION, tiny_tokenizer
from tiny_task import tiny_config

ROOT = Path(__file__).parents[1]
TINY_CASE = Case("tiny", "tiny", TINY, TINY_RETENTION)
MODULES = ("__main__", "benchmark", "cases", "concurrency", "modes", "onednn", "padding",
           "peer", "peer_export", "report", "runtimes")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench") / "bench.json"
    config = BenchConfig(sections=("runtimes", "modes"), runtime_cases=("tiny-b2",),
                         cases=("tiny",), batch_sizes=(2,), repeats=2, output=output,
                         device="test", onnx_cache=None)
    report, path = run(config)
    return config, report, path


def test_runtime_rows_side_by_side(tiny_run):
    _, report, _ = tiny_run
    (result,) = report.runtimes
    names = [row.name for row in result.rows]
    tf_rows = [f"{model} {path} {precision}" for model in ("plain", "power-bert")
               for precision in ("fp32", "bf16") for path in ("tf-graph", "tf-xla")]
    ort_rows = [f"{model} ort {precision}" for model in ("plain", "power-bert")
                for precision in ("fp32", "int8", "int8-default")]
    peer_rows = ["plain hf-ort fp32", "plain hf-ort int8-default"]
    expected = tf_rows + (ort_rows if onnx_available() else [])
    assert names in (expected, expected + peer_rows)
    if onnx_available():
        # Both fused exports: TINY's 2 layers, one SkipLayerNormalization per residual.
        for model in ("plain", "power-bert"):
            counts = result.fused_operators[f"{model} ort fp32"]
            assert counts["SkipLayerNormalization"] == 4 and counts["Gelu"] == 2
            assert counts["LayerNormalization"] == 1
        assert set(result.fused_operators) >= set(ort_rows)
        if names == expected:
            assert any(note.startswith("peer rows") and "skipped" in note
                       for note in result.notes)
    by_name = {row.name: row for row in result.rows}
    assert result.reference == "plain tf-xla fp32"
    assert by_name[result.reference].speedup_vs_plain_fp32["median"] == 1.0
    for row in result.rows:
        assert len(row.timing["seconds"]) == 2 and row.median_ms > 0
        assert row.median_ms == pytest.approx(1000 * np.median(row.timing["seconds"]), abs=0.01)
        tolerance = 1e-5 if row.precision == "fp32" else 0.05
        assert row.max_abs_logit_diff < tolerance, row.name
    fastest_plain = min((r for r in result.rows if r.model == "plain"), key=lambda r: r.median_ms)
    assert result.fastest_plain == fastest_plain.name
    speedup = result.speedup_vs_fastest_plain
    assert (speedup["plain_row"], speedup["power_bert_row"]) == (result.fastest_plain,
                                                                 result.fastest_power_bert)
    ratios = (np.asarray(by_name[result.fastest_plain].timing["seconds"])
              / np.asarray(by_name[result.fastest_power_bert].timing["seconds"]))
    assert speedup["median"] == pytest.approx(np.median(ratios), rel=0.02)  # seconds rounded
    assert set(result.chosen_tf_path) == {"plain fp32", "plain bf16", "power-bert fp32",
                                          "power-bert bf16"}
    if result.stacking is not None:
        s = result.stacking
        assert s["ratio"] == pytest.approx(s["stacked"] / (s["elimination"] * s["precision"]),
                                           rel=1e-3)
        assert s["passes"] == (s["ratio"] >= 0.8)


def test_heavy_runtime_case_runs_the_default_paths_only():
    result = measure_runtimes(runtime_case("tiny-b2", None), repeats=1, heavy_gflops=0,
                              seed=0, use_onnx=False)
    assert [row.name for row in result.rows] == [
        "plain tf-xla fp32", "plain tf-graph bf16", "power-bert tf-xla fp32",
        "power-bert tf-graph bf16"]
    assert result.heavy and any("heavy" in note for note in result.notes)
    assert any("not asked for" in note for note in result.notes)


def test_mode_rows_interleave_the_plain_and_the_pruned_model(tiny_run):
    _, report, _ = tiny_run
    assert [(row.batch_size, row.mode) for row in report.rows] == [(2, mode) for mode in MODES]
    for row in report.rows:
        assert (row.case, row.sequence_length, row.retention) == ("tiny", 16, (8, 4))
        assert (row.repeats, row.heavy, row.weights) == (2, False, "random")
        for model in (row.full, row.pruned):
            assert len(model.timing["seconds"]) == 2 and model.peak_mib > 0
            assert model.retraces == (None if row.mode == "eager" else 0)
        ratios = np.asarray(row.full.timing["seconds"]) / np.asarray(row.pruned.timing["seconds"])
        assert row.speedup["median"] == pytest.approx(np.median(ratios), rel=0.02)
        assert row.flop_bound == pytest.approx(flop_bound(TINY, TINY_RETENTION))
        assert row.efficiency == pytest.approx(row.speedup["median"] / row.flop_bound)


def test_json_records_provenance_and_is_never_overwritten(tiny_run):
    config, report, path = tiny_run
    data = json.loads(path.read_text())
    prov = data["provenance"]
    assert "power_bert_tf.bench" in prov["command"] and prov["wall_seconds"] > 0
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    assert prov["commit"] == head and isinstance(prov["dirty"], bool)
    assert len(prov["load_average_start"]) == 3 and len(prov["load_average_end"]) == 3
    machine = data["machine"]
    assert machine["device"] == "test" and "xla_flags" in machine
    assert set(machine["cpu_features"]) == {"flags", "bf16_matmul", "int8_matmul"}
    assert data["runtimes"][0]["speedup_vs_fastest_plain"]["plain_row"]
    markdown = path.with_suffix(".md").read_text()
    assert "speedup_vs_fastest_plain:" in markdown and "| tiny | 2 | xla |" in markdown
    before = path.read_text()
    with pytest.raises(PowerBertError, match="exists"):
        run(config)
    assert path.read_text() == before


def test_every_bench_module_is_under_400_lines():
    for name in MODULES:
        lines = (ROOT / "power_bert_tf" / "bench" / f"{name}.py").read_text().count("\n")
        assert lines < 400, (name, lines)


def test_onednn_child_process_has_the_same_weights():
    result = measure_onednn("tiny-b2", 2, models=("plain", "power-bert"), repeats=2, seed=0)
    assert result.child_xla_flags.split() == list(ONEDNN_DOT_FLAGS)
    assert set(result.timings) == {"plain xla", "plain xla+onednn", "power-bert xla",
                                   "power-bert xla+onednn"}
    assert all(diff < 1e-4 for diff in result.max_abs_logit_diff.values())
    assert result.keep == all(s["median"] >= 1.05 and s["q25"] > 1
                              for s in result.speedup_with_onednn.values())


@pytest.mark.slow  # two SavedModel exports
def test_concurrent_clients_on_exported_saved_models():
    encoder = BertEncoder(**tiny_config().to_dict(), extract="hard", retention=RETENTION,
                          sequence_length=N)
    model = BertClassifier(encoder, 2)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = tiny_tokenizer(Path(folder))
        result = measure_concurrency({"a": model, "b": model}, tokenizer,
                                     ["the film was good .", "a dull plot"], case="tiny",
                                     labels=("neg", "pos"), precision="fp32", clients=3,
                                     requests=4, repeats=2)
    assert [load.model for load in result.models] == ["a", "b"]
    for load in result.models:
        assert 0 < load.latency_p50_ms <= load.latency_p99_ms
        assert load.throughput_rps == pytest.approx(
            12 / np.median(load.round_timing["seconds"]), rel=0.01)
    assert result.throughput_speedup["rounds"] == 2


def test_heavy_rows_run_only_the_heavy_modes():
    planned, notes = plan_rows(TINY_CASE, (1, 64), MODES, 0.01, ("xla",))
    # tiny: 0.59 MFLOP per example, so batch 1 is light and batch 64 heavy.
    assert planned == [(1, mode, False) for mode in MODES] + [(64, "xla", True)]
    assert len(notes) == 3 and all("batch 64" in note and "heavy" in note for note in notes)


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


def test_same_logits_when_nothing_is_eliminated():
    full, pruned = build_pair(Case("tiny", "tiny", TINY, RetentionConfig((16, 16), 16)),
                              sequence_length=16, seed=3)
    inputs = random_inputs(TINY, 2, 16, seed=1)
    np.testing.assert_allclose(pruned(inputs, training=False).numpy(),
                               full(inputs, training=False).numpy(), atol=1e-5)


def test_scaled_retention_and_runtime_cases():
    assert scale_retention(RTE_RETENTION, 128).kept == (77, 63, 56, 53, 43, 40, 36, 24, 18, 14,
                                                        11, 3)
    case = runtime_case("bert-base-b1-n128", None)
    assert (case.batch_size, case.case.retention.sequence_length) == (1, 128)
    assert runtime_case("bert-base-b32-n256", None).case.retention == RTE_RETENTION
    with pytest.raises(ValueError, match="unknown runtime case"):
        runtime_case("bert-huge", None)


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


@pytest.mark.parametrize("options, message", [
    ({"modes": ("xla", "fast")}, "--modes: fast"),
    ({"cases": ("bert-large",)}, "--cases: bert-large"),
    ({"sections": ("speed",)}, "--sections: speed"),
    ({"runtime_cases": ("bert-huge",)}, "--runtime_cases: bert-huge"),
    ({"warmup": 0}, "--warmup must be >= 1"),
    ({"clients": 0}, "--clients must be >= 1"),
    ({"batch_sizes": (0,)}, "--batch_sizes must be positive"),
    ({"padding_buckets": (32, 16)}, "--padding_buckets must be ascending"),
])
def test_bad_settings_are_one_line_errors(options, message):
    with pytest.raises(PowerBertError, match=message.replace("[", r"\[")):
        BenchConfig(**options)


def test_padding_measurement_gives_all_six_settings(pretrained):
    texts = ["a", "good film .", "nice", "the plot was very dull and the actors were boring , "
             "but the music was fine and the story had a few nice moments"] * 3
    features = tokenize(pretrained.tokenizer(32), texts)
    config = EncoderConfig(vocabulary_size=pretrained.config.vocabulary_size, num_layers=2,
                           hidden_size=32, num_heads=4, intermediate_size=64,
                           max_sequence_length=64)
    case = Case("tiny-vocab", "tiny", config, RetentionConfig((12, 6), 32))
    result = measure_padding(case, features, buckets=(8, 16, 32), batch_size=4, repeats=2,
                             seed=0, retention_source="test")
    assert [s.name for s in result.settings] == [name for name, _, _ in PADDING_SETTINGS]
    assert result.sentences == 12 and result.bucket_sentences == (9, 0, 3)
    padded, bucketed, ordered, eliminated, both, ordered_both = result.settings
    # 12 / 4 in file order, each batch holding a long sentence; sorted: 9 short in 3 + 3 long
    assert (padded.batches, bucketed.batches, ordered.batches) == (3, 3, 3)
    for setting in result.settings:
        assert len(setting.timing["seconds"]) == 2 and setting.retraces == 0
        assert (setting.over_plain is None) == (not setting.eliminated)
    assert padded.speedup["median"] == 1.0 and padded.flop_bound == 1.0
    assert 1 < eliminated.flop_bound and 1 < ordered.flop_bound < ordered_both.flop_bound
    assert bucketed.flop_bound == 1.0  # every file-order batch holds a 32-token sentence


def test_command_line(tmp_path):
    output = tmp_path / "cli.json"
    command = [sys.executable, "-m", "power_bert_tf.bench", "--sections=modes",
               "--cases=tiny,tiny-albert", "--batch_sizes=1", "--modes=graph,xla",
               "--repeats=2", f"--output={output}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "speed-up" in result.stdout and f"wrote {output}" in result.stdout
    report = json.loads(output.read_text())
    assert [row["mode"] for row in report["rows"]] == ["graph", "xla"] * 2
    assert "--sections=modes" in report["provenance"]["command"]
    assert "xla_cpu_use_onednn" not in report["machine"]["xla_flags"]  # off by default
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert f"error: {output} exists" in again.stderr


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
    rows, _ = benchmark_cases(cases[2:], batch_sizes=(2,), modes=("xla",), warmup=1,
                              repeats=2, heavy_gflops=100, heavy_repeats=1, heavy_modes=(),
                              seed=0, memory=PeakMemory())
    assert [(row.case, row.mode) for row in rows] == [("tiny-albert", "xla")]
    assert rows[0].flop_bound == pytest.approx(flop_bound(TINY, TINY_RETENTION))
    model = build_classifier(cases[2], eliminate=True, sequence_length=16)
    assert isinstance(model.encoder, AlbertEncoder) and model.encoder.retention == [8, 4]


@pytest.mark.skipif(not onnx_available(), reason="needs the [onnx] extra")
def test_the_onnx_cache_key_follows_the_model_code(tmp_path, monkeypatch):
    from power_bert_tf import model

    case = runtime_case("tiny-b2", None)
    before = cache_key(case, 0)
    copy = tmp_path / "model"
    shutil.copytree(Path(model.__file__).parent, copy)
    monkeypatch.setattr(model, "__file__", str(copy / "__init__.py"))
    assert cache_key(case, 0) == before
    significance = copy / "significance.py"
    significance.write_text(significance.read_text() + "\n# another graph\n")
    assert cache_key(case, 0) != before
    assert cache_key(case, 1) != cache_key(case, 0)
