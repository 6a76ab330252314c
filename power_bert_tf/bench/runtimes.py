"""The runtime table: what a CPU user would deploy, side by side, in one interleaved run.

For one case at one batch size, the same weights (plain and Hard-Extract) and the same
inputs run as

    tf-graph / tf-xla  fp32 or bf16   TensorFlow, tf.function without / with XLA
                                      (bf16: `serving.precision.with_precision`)
    ort                fp32, int8 or  ONNX Runtime on this project's fused export
                       int8-default   (`serving.onnx`, `serving.onnx_fusion`) at the
                                      case's batch size; int8: the export's per-channel
                                      recipe, int8-default: `quantize_dynamic`'s defaults
    hf-ort (plain)     fp32 or        the peer deployment (`bench.peer`): the same weights
                       int8-default   in Hugging Face transformers, torch.onnx.export, ONNX
                                      Runtime's transformer optimizer, `quantize_dynamic`

and every row's pass is timed in one `serving.timing.time_interleaved` call, so each
ratio is the median of paired per-round ratios. A heavy case (plain forward pass over
`heavy_gflops` GFLOP) runs only the measured default TF path of each precision
(`default_jit_compile`); the others run both paths, which is the measurement the
default is chosen by. ONNX Runtime rows need the `[onnx]` extra, the peer rows torch and
transformers (the `[peer]` extra, or `--peer_python`); without them they are skipped
with a note. Graphs are converted at the case's fixed batch size, as a server of that
batch size exports them (`serving.onnx.convert`). Rows take turns on the same cores, and
a thread pool that spin-waits for more work after a run would take the cores from the
row timed after it, so ONNX Runtime sessions spin within a run, as they do by default,
and stop when it returns (`session.force_spinning_stop` 1; measured against no spinning
and against a pause before each pass in docs/benchmarks.md).

Per case the result names the fastest plain row (peer rows included) and the fastest
PoWER-BERT row with the paired speed-up between them (`speedup_vs_fastest_plain`),
records each ONNX graph's fused operator counts, and checks that precision and
elimination stack: in the runtime of the fastest PoWER-BERT row, (plain fp32 /
PoWER-BERT at that precision) against (plain fp32 / PoWER-BERT fp32) x (plain fp32 /
plain at that precision).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from power_bert_tf.bench.cases import RuntimeCase, build_pair, random_inputs
from power_bert_tf.model.retention import flop_bound
from power_bert_tf.serving.precision import default_jit_compile, with_precision
from power_bert_tf.serving.timing import paired_speedup, time_interleaved

MODELS = ("plain", "power-bert")
# ONNX Runtime precisions: float32, the export's per-channel int8 recipe and
# `quantize_dynamic`'s defaults (`serving.onnx.INT8_RECIPES`).
INT8_PRECISIONS = {"int8": "per-channel", "int8-default": "ort-default"}
ORT_PRECISIONS = ("fp32", *INT8_PRECISIONS)
# Our input names -> Hugging Face's (the peer graphs take int64 ids).
PEER_INPUTS = {"input_word_ids": "input_ids", "input_mask": "attention_mask",
               "input_type_ids": "token_type_ids"}
# Converting BERT-base (110M parameters) peaks at 8.3 GB, the TF model included
# (serving/onnx.py); memory grows with the weights, so BERT-large would need ~25 GB.
ONNX_MAX_PARAMETERS = 200_000_000
STACKING_THRESHOLD = 0.8


@dataclasses.dataclass(frozen=True)
class RuntimeRow:
    """One model in one runtime, precision and path."""

    name: str  # "<model> <path> <precision>", e.g. "power-bert ort int8"
    model: str  # "plain" or "power-bert"
    path: str  # "tf-graph", "tf-xla", "ort" (this project's export) or "hf-ort" (peer)
    precision: str  # "fp32", "bf16", "int8" (per-channel) or "int8-default" (ORT's)
    timing: dict  # Timing.to_dict(): seconds per batch of each round
    median_ms: float
    speedup_vs_plain_fp32: dict  # paired, over `RuntimeResult.reference`
    max_abs_logit_diff: float  # against the same model in TF fp32
    argmax_agreement: float


@dataclasses.dataclass(frozen=True)
class RuntimeResult:
    """One case at one batch size, every row, and the comparisons between them."""

    case: str
    weights: str
    batch_size: int
    sequence_length: int
    retention: tuple[int, ...]
    flop_bound: float
    heavy: bool
    repeats: int
    reference: str  # the plain fp32 TF row every row's speed-up is over
    rows: tuple[RuntimeRow, ...]
    chosen_tf_path: dict  # "<model> <precision>" -> the faster measured TF path
    fastest_plain: str
    fastest_power_bert: str
    speedup_vs_fastest_plain: dict  # paired; with the two row names
    stacking: dict | None
    fused_operators: dict  # "<model> <path> <precision>" -> its graph's fused operator counts
    notes: tuple[str, ...]


def onnx_available() -> bool:
    return all(importlib.util.find_spec(name) is not None
               for name in ("onnxruntime", "tf2onnx", "onnx"))


def _tf_pass(model, inputs, jit_compile: bool) -> tuple[Callable[[], np.ndarray], object]:
    import tensorflow as tf

    function = tf.function(lambda x: model(x, training=False), jit_compile=jit_compile)
    return (lambda: np.asarray(function(inputs), np.float32)), function


def _cached(cache: Path | None, names: dict[str, str], make: Callable[[], dict[str, Path]]
            ) -> dict[str, Path]:
    """{label: file}: `<cache>/<names[label]>` when all are there, else `make()`'s files,
    copied into `cache` (when there is one)."""
    if cache is not None:
        cached = {label: cache / name for label, name in names.items()}
        if all(path.is_file() for path in cached.values()):
            return cached
    files = make()
    if cache is None:
        return files
    cache.mkdir(parents=True, exist_ok=True)
    for label, target in cached.items():
        partial = target.with_suffix(".partial")
        shutil.copyfile(files[label], partial)
        partial.replace(target)
    return cached


def _onnx_files(model, name: str, sequence_length: int | None, batch_size: int,
                workdir: Path, cache: Path | None, key: str) -> dict[str, Path]:
    """{precision: file} of `model` for `ORT_PRECISIONS`, converted (fused) into
    `workdir`, or read from `cache` (`<cache>/<key>-<name>-<precision>.onnx`)."""
    from power_bert_tf.serving.onnx import convert_in_subprocess, quantize_int8

    def make() -> dict[str, Path]:
        fp32 = convert_in_subprocess(model, workdir / f"{name}.onnx", sequence_length,
                                     workdir, batch_size)
        return {"fp32": fp32, **{precision: quantize_int8(fp32, workdir / f"{name}_{recipe}.onnx",
                                                           recipe)
                                 for precision, recipe in INT8_PRECISIONS.items()}}

    return _cached(cache, {precision: f"{key}-{name}-{precision}.onnx"
                           for precision in ORT_PRECISIONS}, make)


def _peer_files(model, python: str, sequence_length: int, batch_size: int, workdir: Path,
                cache: Path | None, key: str) -> tuple[dict[str, Path], dict]:
    """{precision: file} of the peer deployment of the plain `model` (`bench.peer`) and
    the exporter's report, cached as `_onnx_files`'s."""
    from power_bert_tf.bench.peer import export_peer

    report = {}

    def make() -> dict[str, Path]:
        fp32, int8, found = export_peer(model, python, workdir / "peer", batch_size,
                                        sequence_length)
        report.update(found)
        (workdir / "peer" / "report.json").write_text(json.dumps(found))
        return {"fp32": fp32, "int8-default": int8, "report": workdir / "peer" / "report.json"}

    names = {"fp32": f"{key}-peer-fp32.onnx", "int8-default": f"{key}-peer-int8-default.onnx",
             "report": f"{key}-peer-report.json"}
    files = _cached(cache, names, make)
    return ({label: path for label, path in files.items() if label != "report"},
            report or json.loads(files["report"].read_text()))


def _session(path: Path):
    """An ONNX Runtime session whose threads spin within a run and stop when it returns
    (see the module docstring)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _ort_passes(models: dict, inputs: dict, sequence_length: int, workdir: Path,
                cache: Path | None, key: str, peer: str | None
                ) -> tuple[dict[tuple[str, str, str], Callable[[], np.ndarray]], dict, list[str]]:
    """(model, path, precision) -> an ONNX Runtime pass, for each model and
    `ORT_PRECISIONS`, and the peer rows ("plain", "hf-ort", fp32 / int8-default) where
    `peer` (a Python with torch and transformers) is given; each graph's fused operator
    counts; notes."""
    import onnx

    from power_bert_tf.serving.onnx_fusion import fused_counts

    feeds = {name: np.asarray(value, np.int32) for name, value in inputs.items()}
    batch_size = len(feeds["input_word_ids"])
    passes, counts, notes = {}, {}, []
    for name, model in models.items():
        files = _onnx_files(model, name, sequence_length, batch_size, workdir, cache, key)
        for precision, path in files.items():
            session = _session(path)
            passes[name, "ort", precision] = (lambda s=session: s.run(["logits"], feeds)[0])
            counts[f"{name} ort {precision}"] = fused_counts(onnx.load(str(path)))
    if peer is None:
        notes.append("peer rows (Hugging Face export, ONNX Runtime optimizer, quantize_dynamic) "
                     "skipped: torch and transformers are not importable here and no "
                     "--peer_python was given (pip install '.[peer]')")
        return passes, counts, notes
    try:
        files, report = _peer_files(models["plain"], peer, sequence_length, batch_size,
                                    workdir, cache, f"{key}-{_peer_tag(peer)}")
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        notes.append(f"peer rows skipped: {error}")
        return passes, counts, notes
    hf_feeds = {hf: np.asarray(inputs[ours], np.int64) for ours, hf in PEER_INPUTS.items()}
    for precision, path in files.items():
        session = _session(path)
        passes["plain", "hf-ort", precision] = (lambda s=session: s.run(["logits"], hf_feeds)[0])
        counts[f"plain hf-ort {precision}"] = fused_counts(onnx.load(str(path)))
    notes.append(f"peer rows: transformers {report['transformers']}, torch {report['torch']} "
                 f"(torch.onnx.export, opset 17), ONNX Runtime {report['onnxruntime']}'s "
                 f"transformer optimizer fused {report['fused_operators']}")
    return passes, counts, notes


def _peer_tag(python: str) -> str:
    return hashlib.sha256(python.encode()).hexdigest()[:8]


def cache_key(runtime_case: RuntimeCase, seed: int) -> str:
    """What the converted files depend on: the case, the seed, the converter's version
    and the code that builds, converts and fuses the models (`bench/cases.py`,
    `bench/peer*.py`, `serving/onnx*.py` and `power_bert_tf/model/`)."""
    import importlib.metadata

    from power_bert_tf import model
    from power_bert_tf.bench import cases
    from power_bert_tf.serving import onnx

    case = runtime_case.case
    files = [Path(cases.__file__), *sorted(Path(onnx.__file__).parent.glob("onnx*.py")),
             Path(cases.__file__).with_name("peer.py"),
             Path(cases.__file__).with_name("peer_export.py"),
             *sorted(Path(model.__file__).parent.glob("*.py"))]
    sources = [path.read_text() for path in files]
    text = repr((case.name, case.weights, case.config, case.retention, seed,
                 runtime_case.batch_size,
                 importlib.metadata.version("tf2onnx"), sources))
    return f"{runtime_case.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def measure_runtimes(runtime_case: RuntimeCase, *, repeats: int, heavy_gflops: float,
                     seed: int, use_onnx: bool = True, onnx_cache: Path | None = None,
                     onnx_max_parameters: int = ONNX_MAX_PARAMETERS,
                     peer_python: str | None = None) -> RuntimeResult:
    """Builds, converts and times every row of `runtime_case` (see the module docstring).

    `onnx_cache`: a folder keeping the converted ONNX files between runs (a BERT-base
    conversion takes minutes on 2 cores); None converts every time. Models of more
    than `onnx_max_parameters` weights are not converted (a note says so).
    `peer_python`: the interpreter of the peer export (`bench.peer.peer_python`); None:
    this one if it has torch and transformers, else the peer rows are skipped (a note).
    """
    from power_bert_tf.bench.peer import peer_python as find_peer

    case, batch_size = runtime_case.case, runtime_case.batch_size
    n = case.retention.sequence_length
    heavy = case.full_gflops(batch_size) > heavy_gflops
    notes = []
    full, pruned = build_pair(case, sequence_length=n, seed=seed)
    models = {"plain": full, "power-bert": pruned}
    inputs = random_inputs(case.config, batch_size, n, seed)
    passes: dict[str, Callable[[], np.ndarray]] = {}
    rows_meta: dict[str, tuple[str, str, str]] = {}
    for model_name, model in models.items():
        for precision in ("fp32", "bf16"):
            low = with_precision(model, precision)
            default = default_jit_compile(precision)
            for jit_compile in ((default,) if heavy else (False, True)):
                path = "tf-xla" if jit_compile else "tf-graph"
                name = f"{model_name} {path} {precision}"
                passes[name], _ = _tf_pass(low, inputs, jit_compile)
                rows_meta[name] = (model_name, path, precision)
    if heavy:
        notes.append(f"heavy ({case.full_gflops(batch_size):.0f} > {heavy_gflops:g} GFLOP per "
                     f"batch): TF rows run only the default path of each precision")
    fused: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="power_bert_onnx_") as workdir:
        parameters = full.count_params()
        if use_onnx and parameters > onnx_max_parameters:
            notes.append(f"ONNX Runtime rows skipped: {parameters / 1e6:.0f}M parameters > "
                         f"--onnx_max_parameters {onnx_max_parameters / 1e6:.0f}M (conversion "
                         f"memory: 8.3 GB for BERT-base's 110M)")
        elif use_onnx and onnx_available():
            print(f"  {runtime_case.name}: converting to ONNX", flush=True)
            ort_passes, fused, ort_notes = _ort_passes(
                models, inputs, n, Path(workdir), onnx_cache, cache_key(runtime_case, seed),
                find_peer(peer_python))
            notes += ort_notes
            for (model_name, path, precision), run in ort_passes.items():
                name = f"{model_name} {path} {precision}"
                passes[name] = run
                rows_meta[name] = (model_name, path, precision)
        else:
            notes.append("ONNX Runtime rows skipped: onnxruntime, onnx or tf2onnx is not "
                         "installed (pip install '.[onnx]')" if use_onnx else
                         "ONNX Runtime rows not asked for")
        outputs = {name: run() for name, run in passes.items()}  # compiles; untimed
        tf_path = "tf-xla" if default_jit_compile("fp32") else "tf-graph"
        for name, (model_name, path, precision) in rows_meta.items():
            reference_output = outputs[f"{model_name} {tf_path} fp32"]
            if (path.endswith("ort") and precision == "fp32"
                    and np.abs(outputs[name] - reference_output).max() > 1e-3):
                notes.append(f"{name}: logits differ from TF fp32 by more than 1e-3")
        print(f"  {runtime_case.name}: timing {len(passes)} rows, {repeats} interleaved "
              f"rounds", flush=True)
        timings = time_interleaved(passes, repeats=repeats, warmup=0)
    reference = f"plain tf-{'xla' if default_jit_compile('fp32') else 'graph'} fp32"
    rows = []
    for name, (model_name, path, precision) in rows_meta.items():
        expected = outputs[f"{model_name} {reference.split()[1]} fp32"]
        got = outputs[name]
        rows.append(RuntimeRow(
            name, model_name, path, precision, timings[name].to_dict(),
            round(1000 * timings[name].median, 3),
            paired_speedup(timings[reference], timings[name]),
            float(np.abs(got - expected).max()),
            float((got.argmax(-1) == expected.argmax(-1)).mean())))
    by_name = {row.name: row for row in rows}
    chosen = {}
    for model_name in MODELS:
        for precision in ("fp32", "bf16"):
            candidates = [f"{model_name} {path} {precision}" for path in ("tf-graph", "tf-xla")
                          if f"{model_name} {path} {precision}" in by_name]
            chosen[f"{model_name} {precision}"] = by_name[min(
                candidates, key=lambda c: by_name[c].median_ms)].path
    fastest = {model_name: min((row for row in rows if row.model == model_name),
                               key=lambda row: row.median_ms).name for model_name in MODELS}
    speedup = {**paired_speedup(timings[fastest["plain"]], timings[fastest["power-bert"]]),
               "plain_row": fastest["plain"], "power_bert_row": fastest["power-bert"]}
    return RuntimeResult(
        runtime_case.name, case.weights, batch_size, n, case.retention.kept,
        flop_bound(case.config, case.retention), heavy, repeats, reference, tuple(rows),
        chosen, fastest["plain"], fastest["power-bert"], speedup,
        stacking_check(by_name[fastest["power-bert"]], timings, chosen), fused, tuple(notes))


def stacking_check(fastest: RuntimeRow, timings: dict, chosen: dict) -> dict | None:
    """Whether precision and elimination multiply, in the fastest PoWER-BERT row's runtime.

    With P(p) and E(p) the plain and PoWER-BERT rows at precision p in that runtime
    (TF: each on its chosen path), stacked = P(fp32) / E(p), elimination =
    P(fp32) / E(fp32), precision = P(fp32) / P(p), each a median of paired ratios;
    it passes when stacked >= 0.8 x elimination x precision. None when the fastest
    row is fp32 (nothing to stack).
    """
    if fastest.precision == "fp32":
        return None

    def row(model_name: str, precision: str) -> str:
        path = fastest.path if fastest.path == "ort" else chosen[f"{model_name} {precision}"]
        return f"{model_name} {path} {precision}"

    plain32, power32 = row("plain", "fp32"), row("power-bert", "fp32")
    plain_p, power_p = row("plain", fastest.precision), row("power-bert", fastest.precision)
    stacked = paired_speedup(timings[plain32], timings[power_p])["median"]
    elimination = paired_speedup(timings[plain32], timings[power32])["median"]
    precision = paired_speedup(timings[plain32], timings[plain_p])["median"]
    ratio = stacked / (elimination * precision)
    return {"rows": {"plain fp32": plain32, "power-bert fp32": power32,
                     f"plain {fastest.precision}": plain_p,
                     f"power-bert {fastest.precision}": power_p},
            "stacked": stacked, "elimination": elimination, "precision": precision,
            "ratio": round(ratio, 4), "threshold": STACKING_THRESHOLD,
            "passes": ratio >= STACKING_THRESHOLD}
