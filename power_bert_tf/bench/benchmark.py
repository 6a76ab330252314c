"""Measured inference speed-up of Hard-Extract, beside its bounds, in one process.

A *case* is an encoder shape (BERT or ALBERT), its weights and a retention configuration
(l_1, ..., l_L) for inputs of N tokens. Each case is built twice with the same weights,
plain (`extract="none"`) and with Hard-Extract, both as a two-class `BertClassifier` on
random ids with a full-length mask, and timed at each batch size in each mode:

    eager        model(inputs, training=False)
    graph        tf.function
    xla          tf.function(jit_compile=True)
    saved_model  a tf.Module holding the model and an XLA tf.function with a
                 (None, N) int32 input signature, saved with tf.saved_model.save
                 and loaded back with tf.saved_model.load

A row reports, for both models, the median milliseconds per batch with its spread and
the process's peak memory, then the measured speed-up (median full / median pruned),
the word-vector bound L*N / sum_j l_j, the FLOP bound and the efficiency, speed-up /
FLOP bound. Cases of the same shape and N share one plain model, timed once.

A second measurement, `padding`, times the SST-2 dev set as a server sees it: padded
to N or sorted into length buckets, without and with elimination, all under XLA.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import re
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.data.tasks import get_task
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.classifier import BertClassifier
from power_bert_tf.model.factory import build_encoder
from power_bert_tf.model.retention import RetentionConfig, encoder_flops, flop_bound
from power_bert_tf.model.transfer import transfer_weights
from power_bert_tf.weights.pretrained import PretrainedBert, load_pretrained

Inputs = dict[str, tf.Tensor]

MODES = ("eager", "graph", "xla", "saved_model")
CASES = ("minilm", "bert-base-rte", "bert-base-sst2", "albert-base-rte", "albert-base-sst2",
         "tiny", "tiny-albert")
# `make bench` keeps to 10 minutes on 2 CPU cores; the ALBERT-base rows (about as long
# again) run with `make bench-albert`; "tiny" and "tiny-albert" are for tests.
DEFAULT_CASES = CASES[:3]
INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")

BERT_BASE = EncoderConfig(vocabulary_size=30522, num_layers=12, hidden_size=768,
                          num_heads=12, intermediate_size=3072)
# ALBERT-base (albert-base-v2): BERT-base's layers, embeddings of width 128, one set of
# layer weights shared by all 12 layers.
ALBERT_BASE = EncoderConfig(vocabulary_size=30000, num_layers=12, hidden_size=768,
                            num_heads=12, intermediate_size=3072,
                            activation="gelu_approximate", model_type="albert",
                            embedding_size=128)
TINY = EncoderConfig(vocabulary_size=100, num_layers=2, hidden_size=32, num_heads=4,
                     intermediate_size=64, max_sequence_length=64)
TINY_ALBERT = EncoderConfig(vocabulary_size=100, num_layers=2, hidden_size=32, num_heads=4,
                            intermediate_size=64, max_sequence_length=64,
                            model_type="albert", embedding_size=16)
# The paper's quoted configurations (SPEC): RTE, 868 of 3072 vectors; the SST-2 anecdote.
RTE_RETENTION = RetentionConfig((153, 125, 111, 105, 85, 80, 72, 48, 35, 27, 22, 5), 256)
SST2_RETENTION = RetentionConfig((7, 7, 7, 7, 4, 4, 4, 4, 2, 2, 2, 2), 64)
TINY_RETENTION = RetentionConfig((8, 4), 16)
# The padding measurement's configuration when no SST-2 retrain run is found (MiniLM, N=64).
DEFAULT_PADDING_RETENTION = (40, 32, 24, 16, 12, 8)
PADDING_SETTINGS = (  # (name, bucketed, eliminated)
    ("padded", False, False), ("bucketed", True, False),
    ("eliminated", False, True), ("bucketed+eliminated", True, True))

TIMING_METHOD = (
    "Per row and model: `warmup` untimed calls (tracing, compilation), then `repeats` "
    "timed calls, each synchronised with .numpy() on the logits; the plain model's block, "
    "then the pruned model's. Cases of one shape and N share the plain model and its "
    "timing. Peak memory is the process's over the timed calls only.")
HEAVY_POLICY = (
    "A row whose plain forward pass costs more than `heavy_gflops` GFLOP per batch "
    "(encoder FLOPs x batch) is heavy: it runs only the modes in `heavy_modes`, with "
    "`heavy_repeats` timed calls, so that each base shape's rows fit in about 10 minutes on 2 "
    "CPU cores.")


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What one benchmark run measures and where it writes.

    Attributes:
        cases: names from `CASES`; "minilm" expands to one case per retrained task.
        batch_sizes: batch sizes of every case.
        modes: execution modes from `MODES`.
        warmup: untimed calls before the timed ones (>= 2).
        repeats: timed calls per model in a row.
        heavy_gflops: GFLOP per batch of the plain model above which a row is heavy.
        heavy_repeats: timed calls per model in a heavy row.
        heavy_modes: the only modes a heavy row runs.
        padding: run the SST-2 dev padding measurement.
        padding_buckets: bucket lengths, ascending; the last is the padded length N.
        padding_batch_size: batch size within a bucket.
        padding_repeats: timed passes over the dev set per setting.
        checkpoints_dir: run_glue.py output folder searched for `*/retrain/run.json`.
        data_dir: GLUE data folder (default: `get_task`'s).
        output: JSON path (a markdown table goes next to it); None: a new file in
            `results_dir` named after the device and the time.
        results_dir: folder of the default output.
        device: device label for the file name and JSON; None: detected.
        seed: seed of random weights and inputs.
    """

    cases: tuple[str, ...] = DEFAULT_CASES
    batch_sizes: tuple[int, ...] = (1, 32)
    modes: tuple[str, ...] = MODES
    warmup: int = 2
    repeats: int = 5
    heavy_gflops: float = 100.0
    heavy_repeats: int = 3
    heavy_modes: tuple[str, ...] = ("graph", "xla", "saved_model")
    padding: bool = True
    padding_buckets: tuple[int, ...] = (16, 32, 64)
    padding_batch_size: int = 32
    padding_repeats: int = 2
    checkpoints_dir: Path = Path("checkpoints/glue")
    data_dir: Path | None = None
    output: Path | None = None
    results_dir: Path = Path("experiments/results")
    device: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (("cases", CASES), ("modes", MODES), ("heavy_modes", MODES)):
            values = tuple(getattr(self, name))
            object.__setattr__(self, name, values)
            unknown = [value for value in values if value not in allowed]
            if unknown or not values:
                raise PowerBertError(f"--{name}: {','.join(unknown) or 'empty'}; choose from "
                                     f"{', '.join(allowed)}")
        for name in ("batch_sizes", "padding_buckets"):
            values = tuple(int(value) for value in getattr(self, name))
            object.__setattr__(self, name, values)
            if not values or min(values) < 1:
                raise PowerBertError(f"--{name} must be positive integers, got {values}")
        if list(self.padding_buckets) != sorted(set(self.padding_buckets)):
            raise PowerBertError(f"--padding_buckets must be ascending, got {self.padding_buckets}")
        if self.warmup < 2:
            raise PowerBertError(f"--warmup must be >= 2, got {self.warmup}")
        for name in ("repeats", "heavy_repeats", "padding_batch_size", "padding_repeats"):
            if getattr(self, name) < 1:
                raise PowerBertError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.heavy_gflops < 0:
            raise PowerBertError(f"--heavy_gflops must be >= 0, got {self.heavy_gflops}")
        for name in ("checkpoints_dir", "data_dir", "output", "results_dir"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))

    def to_dict(self) -> dict[str, Any]:
        return {key: str(value) if isinstance(value, Path) else value
                for key, value in dataclasses.asdict(self).items()}


# --- Cases -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Case:
    """An encoder shape, its weights and one retention configuration.

    Attributes:
        name: table label, e.g. "bert-base/RTE".
        shape: "minilm", "bert-base", "albert-base", "tiny" or "tiny-albert"; cases
            of one shape and N share the plain model.
        config: the encoder shape.
        retention: the configuration and its N.
        pretrained: the weights; None for random ones (speed does not depend on them).
    """

    name: str
    shape: str
    config: EncoderConfig
    retention: RetentionConfig
    pretrained: PretrainedBert | None = dataclasses.field(default=None, compare=False,
                                                           repr=False)

    @property
    def weights(self) -> str:
        return "random" if self.pretrained is None else self.pretrained.source

    def full_gflops(self, batch_size: int) -> float:
        """GFLOP of the plain encoder on one batch."""
        return encoder_flops(self.config, self.retention.sequence_length) * batch_size / 1e9


# Every case but "minilm", whose cases come from retrained runs: random weights.
FIXED_CASES = {
    "bert-base-rte": Case("bert-base/RTE", "bert-base", BERT_BASE, RTE_RETENTION),
    "bert-base-sst2": Case("bert-base/SST-2", "bert-base", BERT_BASE, SST2_RETENTION),
    "albert-base-rte": Case("albert-base/RTE", "albert-base", ALBERT_BASE, RTE_RETENTION),
    "albert-base-sst2": Case("albert-base/SST-2", "albert-base", ALBERT_BASE, SST2_RETENTION),
    "tiny": Case("tiny", "tiny", TINY, TINY_RETENTION),
    "tiny-albert": Case("tiny-albert", "tiny-albert", TINY_ALBERT, TINY_RETENTION),
}


def retrained_configurations(checkpoints_dir: Path) -> tuple[dict[str, RetentionConfig],
                                                             list[str]]:
    """{task: retention} of every `<checkpoints_dir>/<task>/retrain/run.json` trained on
    the embedded model, and a note for each run.json left out."""
    found, notes = {}, []
    for path in sorted(Path(checkpoints_dir).glob("*/retrain/run.json")):
        try:
            run = json.loads(path.read_text())
            model = run["config"].get("model", "embedded")
            if model != "embedded":
                notes.append(f"{path}: trained on {model}, not the embedded MiniLM; skipped")
                continue
            retention = RetentionConfig(tuple(run["retention"]),
                                        int(run["config"]["max_seq_length"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            notes.append(f"{path}: unreadable ({error}); skipped")
            continue
        found[run.get("task", path.parts[-3])] = retention
    return found, notes


def resolve_cases(names: Sequence[str], checkpoints_dir: Path,
                  pretrained: PretrainedBert | None) -> tuple[list[Case], list[str]]:
    """The cases `names` stand for, and notes on what "minilm" could not use."""
    cases, notes = [], []
    for name in names:
        if name in FIXED_CASES:
            cases.append(FIXED_CASES[name])
        elif name == "minilm":
            found, skipped = retrained_configurations(checkpoints_dir)
            notes += skipped
            if not found:
                notes.append(f"minilm: no retrained run in {checkpoints_dir}/*/retrain/run.json")
            for task, retention in found.items():
                if retention.num_layers != pretrained.config.num_layers:
                    notes.append(f"minilm/{task}: retention has {retention.num_layers} layers, "
                                 f"the model {pretrained.config.num_layers}; skipped")
                    continue
                cases.append(Case(f"minilm/{task}", "minilm", pretrained.config, retention,
                                  pretrained))
    return cases, notes


# --- Models and execution modes ----------------------------------------------------------

def build_classifier(case: Case, *, eliminate: bool, sequence_length: int | None) -> BertClassifier:
    """The case's two-class classifier, plain or with Hard-Extract (random head)."""
    options = {"sequence_length": sequence_length, "name": "encoder"}
    if eliminate:
        options.update(extract="hard", retention=case.retention.kept)
    if case.pretrained is not None and not eliminate:
        encoder = case.pretrained.build_encoder(**options)
    else:
        encoder = build_encoder(case.config, **options)
    return BertClassifier(encoder, 2, name="classifier")


class ServingModule(tf.Module):
    """The saved_model rows' SavedModel: the model and an XLA `serve` of (None, N) int32."""

    def __init__(self, model: keras.Model, sequence_length: int):
        super().__init__(name="serving")
        self.model = model
        signature = {name: tf.TensorSpec((None, sequence_length), tf.int32, name=name)
                     for name in INPUT_NAMES}
        self.serve = tf.function(self._serve, input_signature=[signature], jit_compile=True)

    def _serve(self, inputs: Inputs) -> tf.Tensor:
        return self.model(inputs, training=False)


@dataclasses.dataclass(frozen=True)
class Runner:
    """One model in one execution mode.

    Attributes:
        call: inputs -> logits.
        function: the tf.function behind `call`, whose traces are counted; None in eager.
        owner: keeps a loaded SavedModel (and so its variables) alive.
    """

    call: Callable[[Inputs], tf.Tensor]
    function: Any = None
    owner: Any = None

    def tracing_count(self) -> int | None:
        return None if self.function is None else self.function.experimental_get_tracing_count()


def make_runner(model: keras.Model, mode: str, sequence_length: int, workdir: Path) -> Runner:
    """`model` in `mode`; "saved_model" saves into and loads from `workdir`."""
    def forward(inputs: Inputs) -> tf.Tensor:
        return model(inputs, training=False)

    if mode == "eager":
        return Runner(forward)
    if mode == "graph":
        function = tf.function(forward)
        return Runner(function, function)
    if mode == "xla":
        function = tf.function(forward, jit_compile=True)
        return Runner(function, function)
    if mode == "saved_model":
        tf.saved_model.save(ServingModule(model, sequence_length), str(workdir))
        loaded = tf.saved_model.load(str(workdir))
        return Runner(loaded.serve, loaded.serve, loaded)
    raise PowerBertError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")


def random_inputs(config: EncoderConfig, batch_size: int, sequence_length: int,
                  seed: int) -> Inputs:
    """Random word ids, a full-length mask and segment 0, int32 (batch, N)."""
    ids = np.random.default_rng(seed).integers(0, config.vocabulary_size,
                                               (batch_size, sequence_length), dtype=np.int32)
    shape = (batch_size, sequence_length)
    return {"input_word_ids": tf.constant(ids), "input_mask": tf.ones(shape, tf.int32),
            "input_type_ids": tf.zeros(shape, tf.int32)}


# --- Memory ------------------------------------------------------------------------------

class PeakMemory:
    """Peak memory of this process since `reset()`: host RSS and, on a GPU, device memory.

    On Linux, writing "5" to /proc/self/clear_refs resets the peak resident set size,
    read back as VmHWM from /proc/self/status. Where that is not permitted the host peak
    is `ru_maxrss`, the peak over the process's whole life so far.
    """

    _CLEAR_REFS = Path("/proc/self/clear_refs")
    _STATUS = Path("/proc/self/status")

    def __init__(self) -> None:
        self.resettable = self._reset_host()
        self.gpu = "GPU:0" if tf.config.list_logical_devices("GPU") else None

    @property
    def description(self) -> str:
        host = ("host: VmHWM, peak resident memory, reset before each timed block through "
                "/proc/self/clear_refs" if self.resettable else
                "host: ru_maxrss, the process's peak resident memory since it started "
                "(resetting through /proc/self/clear_refs is not permitted here), so a row "
                "shows the peak so far")
        device = f"; device: peak of {self.gpu} since tf.config.experimental.reset_memory_stats"
        return host + (device if self.gpu else "")

    def _reset_host(self) -> bool:
        try:
            self._CLEAR_REFS.write_text("5")
            return "VmHWM" in self._STATUS.read_text()
        except OSError:
            return False

    def reset(self) -> None:
        if self.resettable:
            self._reset_host()
        if self.gpu:
            tf.config.experimental.reset_memory_stats(self.gpu)

    def host_peak_mib(self) -> float:
        if self.resettable:
            match = re.search(r"^VmHWM:\s+(\d+) kB", self._STATUS.read_text(), re.MULTILINE)
            return int(match.group(1)) / 1024
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; bytes on macOS
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024

    def device_peak_mib(self) -> float | None:
        if not self.gpu:
            return None
        return tf.config.experimental.get_memory_info(self.gpu)["peak"] / 2**20


# --- Rows --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Timing:
    """The timed calls of one model in one mode: ms per batch, peak memory, retraces."""

    median_ms: float
    min_ms: float
    max_ms: float
    q1_ms: float
    q3_ms: float
    times_ms: tuple[float, ...]
    peak_mib: float
    device_peak_mib: float | None
    retraces: int | None  # traces during the timed calls (0 expected); None in eager


def time_calls(runner: Runner, inputs: Inputs, warmup: int, repeats: int,
               memory: PeakMemory) -> Timing:
    """`warmup` untimed calls, then `repeats` timed ones, each synchronised on its output."""
    for _ in range(warmup):
        runner.call(inputs).numpy()
    traces = runner.tracing_count()
    memory.reset()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner.call(inputs).numpy()
        times.append(1000 * (time.perf_counter() - start))
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    return Timing(float(median), min(times), max(times), float(q1), float(q3), tuple(times),
                  memory.host_peak_mib(), memory.device_peak_mib(),
                  None if traces is None else runner.tracing_count() - traces)


@dataclasses.dataclass(frozen=True)
class Row:
    """One case at one batch size in one mode: plain vs. Hard-Extract."""

    case: str
    weights: str
    sequence_length: int
    retention: tuple[int, ...]
    batch_size: int
    mode: str
    heavy: bool
    warmup: int
    repeats: int
    full_gflops: float
    full: Timing
    pruned: Timing
    speedup: float  # full.median_ms / pruned.median_ms
    word_vector_bound: float
    flop_bound: float
    efficiency: float  # speedup / flop_bound


def plan_rows(case: Case, config: BenchConfig) -> tuple[list[tuple[int, str, bool]], list[str]]:
    """(batch size, mode, heavy) of the case's rows, and a note per row left out."""
    planned, notes = [], []
    for batch_size in config.batch_sizes:
        gflops = case.full_gflops(batch_size)
        heavy = gflops > config.heavy_gflops
        for mode in config.modes:
            if heavy and mode not in config.heavy_modes:
                notes.append(f"{case.name} batch {batch_size} {mode}: skipped, heavy "
                             f"({gflops:.0f} > {config.heavy_gflops:g} GFLOP per batch; "
                             f"heavy rows run {','.join(config.heavy_modes)})")
            else:
                planned.append((batch_size, mode, heavy))
    return planned, notes


def benchmark_cases(cases: Sequence[Case], config: BenchConfig,
                    memory: PeakMemory) -> tuple[list[Row], list[str]]:
    """Every row of `cases`, and a note per row left out. Cases of one shape and N
    share the plain model and its timings."""
    groups: dict[tuple[str, int], list[Case]] = {}
    for case in cases:
        groups.setdefault((case.shape, case.retention.sequence_length), []).append(case)
    rows, notes = [], []
    for group in groups.values():
        with tempfile.TemporaryDirectory(prefix="power_bert_bench_") as workdir:
            group_rows, group_notes = _benchmark_group(group, config, memory, Path(workdir))
        rows += group_rows
        notes += group_notes
    return rows, notes


def _benchmark_group(group: list[Case], config: BenchConfig, memory: PeakMemory,
                     workdir: Path) -> tuple[list[Row], list[str]]:
    n = group[0].retention.sequence_length
    plans = [plan_rows(case, config) for case in group]
    notes = [note for _, case_notes in plans for note in case_notes]
    if not any(planned for planned, _ in plans):
        return [], notes
    keras.utils.set_random_seed(config.seed)
    print(f"{group[0].shape} N={n}: building the plain model", flush=True)
    full = build_classifier(group[0], eliminate=False, sequence_length=n)
    full_runners: dict[str, Runner] = {}
    full_timings: dict[tuple[int, str], Timing] = {}
    rows = []
    for index, (case, (planned, _)) in enumerate(zip(group, plans)):
        if not planned:
            continue
        pruned = build_classifier(case, eliminate=True, sequence_length=n)
        transfer_weights(full, pruned, "the plain model")
        pruned_runners: dict[str, Runner] = {}
        bound = flop_bound(case.config, case.retention)
        for batch_size, mode, heavy in planned:
            inputs = random_inputs(case.config, batch_size, n, config.seed)
            warmup = config.warmup
            repeats = config.heavy_repeats if heavy else config.repeats
            if mode not in full_runners:
                full_runners[mode] = make_runner(full, mode, n, workdir / f"full_{mode}")
            if mode not in pruned_runners:
                pruned_runners[mode] = make_runner(pruned, mode, n,
                                                   workdir / f"pruned{index}_{mode}")
            if (batch_size, mode) not in full_timings:
                full_timings[batch_size, mode] = time_calls(full_runners[mode], inputs, warmup,
                                                            repeats, memory)
            full_timing = full_timings[batch_size, mode]
            pruned_timing = time_calls(pruned_runners[mode], inputs, warmup, repeats, memory)
            speedup = full_timing.median_ms / pruned_timing.median_ms
            row = Row(case.name, case.weights, n, case.retention.kept, batch_size, mode, heavy,
                      warmup, repeats, case.full_gflops(batch_size), full_timing,
                      pruned_timing, speedup, case.retention.word_vector_bound, bound,
                      speedup / bound)
            rows.append(row)
            print(f"  {case.name} batch {batch_size} {mode}: {full_timing.median_ms:.1f} -> "
                  f"{pruned_timing.median_ms:.1f} ms, {speedup:.2f}x (FLOP bound {bound:.2f}x)",
                  flush=True)
    return rows, notes


# --- Padding -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PaddingSetting:
    """One way of serving the sentences: total seconds of a pass over all of them."""

    name: str
    bucketed: bool
    eliminated: bool
    batches: int
    passes_s: tuple[float, ...]
    seconds: float  # median pass
    speedup: float  # over "padded"
    flop_bound: float  # FLOPs of "padded" / FLOPs of this setting
    retraces: int


@dataclasses.dataclass(frozen=True)
class PaddingResult:
    """Padding to N vs. length buckets, without and with elimination."""

    case: str
    weights: str
    sentences: int
    mean_length: float
    buckets: tuple[int, ...]
    bucket_sentences: tuple[int, ...]
    batch_size: int
    retention: tuple[int, ...]
    retention_source: str
    warmup: int
    repeats: int
    settings: tuple[PaddingSetting, ...]


def tokenize(tokenizer: Callable[[tf.Tensor], Inputs],
             texts: Sequence[str]) -> dict[str, np.ndarray]:
    """(S,) sentences -> int32 (S, N) features, N the tokenizer's length."""
    return {name: value.numpy() for name, value in tokenizer(tf.constant(list(texts))).items()}


def padding_batches(features: Mapping[str, np.ndarray], batch_size: int,
                    buckets: Sequence[int] | None = None) -> list[Inputs]:
    """Batches in sentence order; with `buckets`, each sentence goes to the shortest bucket
    that holds it, is cut to that length and is batched with its bucket."""
    width = features["input_mask"].shape[1]
    if buckets is None:
        groups = [(np.arange(len(features["input_mask"])), width)]
    else:
        which = np.searchsorted(buckets, features["input_mask"].sum(axis=1))
        groups = [(np.flatnonzero(which == index), bucket) for index, bucket in enumerate(buckets)]
    return [{name: tf.constant(values[indices[start:start + batch_size], :length])
             for name, values in features.items()}
            for indices, length in groups for start in range(0, len(indices), batch_size)]


def measure_padding(case: Case, features: Mapping[str, np.ndarray], *,
                    buckets: Sequence[int], batch_size: int, warmup: int, repeats: int,
                    seed: int, retention_source: str) -> PaddingResult:
    """Times the four `PADDING_SETTINGS` on `features` (padded to `buckets[-1]` = N).

    The models take any length, so in a bucket of T tokens layer j keeps min(l_j, T).
    Each setting runs one XLA function per model, warmed up `warmup` times on each batch
    shape, then `repeats` timed passes over every batch.
    """
    n = case.retention.sequence_length
    if features["input_mask"].shape[1] != n or buckets[-1] != n:
        raise PowerBertError(f"padding: the features, the last bucket and N must agree; got "
                             f"{features['input_mask'].shape[1]}, {buckets[-1]} and {n}")
    keras.utils.set_random_seed(seed)
    full = build_classifier(case, eliminate=False, sequence_length=None)
    pruned = build_classifier(case, eliminate=True, sequence_length=None)
    transfer_weights(full, pruned, "the plain model")
    functions = {eliminated: tf.function(lambda x, m=model: m(x, training=False),
                                         jit_compile=True)
                 for eliminated, model in ((False, full), (True, pruned))}
    plans = {False: padding_batches(features, batch_size),
             True: padding_batches(features, batch_size, buckets)}

    def flops(batches: list[Inputs], eliminated: bool) -> int:
        kept = case.retention.kept if eliminated else None
        return sum(int(batch["input_mask"].shape[0])
                   * encoder_flops(case.config, int(batch["input_mask"].shape[1]), kept)
                   for batch in batches)

    measured = []
    for name, bucketed, eliminated in PADDING_SETTINGS:
        function, batches = functions[eliminated], plans[bucketed]
        for batch in {tuple(b["input_mask"].shape): b for b in batches}.values():
            for _ in range(warmup):
                function(batch).numpy()
        traces = function.experimental_get_tracing_count()
        passes = []
        for _ in range(repeats):
            start = time.perf_counter()
            for batch in batches:
                function(batch).numpy()
            passes.append(time.perf_counter() - start)
        measured.append((name, bucketed, eliminated, batches, passes,
                         function.experimental_get_tracing_count() - traces))
        print(f"  padding {name}: {float(np.median(passes)):.3g} s", flush=True)
    baseline_seconds = float(np.median(measured[0][4]))
    baseline_flops = flops(plans[False], False)
    settings = tuple(
        PaddingSetting(name, bucketed, eliminated, len(batches), tuple(passes),
                       float(np.median(passes)), baseline_seconds / float(np.median(passes)),
                       baseline_flops / flops(batches, eliminated), retraces)
        for name, bucketed, eliminated, batches, passes, retraces in measured)
    lengths = features["input_mask"].sum(axis=1)
    which = np.searchsorted(buckets, lengths)
    return PaddingResult(
        case.name, case.weights, len(lengths), float(lengths.mean()), tuple(buckets),
        tuple(int((which == index).sum()) for index in range(len(buckets))), batch_size,
        case.retention.kept, retention_source, warmup, repeats, settings)


# --- Report ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Report:
    """Everything one run measured, with the machine and the settings."""

    created: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    memory: str
    rows: tuple[Row, ...]
    notes: tuple[str, ...]
    padding: PaddingResult | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def detect_device() -> str:
    """A file-name-safe label: the first GPU's name, else "cpu<usable cores>"."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "gpu")
        return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"cpu{_usable_cpus()}"


def machine_info(device: str) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text() if cpuinfo.is_file() else "",
                      re.MULTILINE)
    return {
        "device": device, "platform": platform.platform(), "machine": platform.machine(),
        "cpu": match.group(1) if match else platform.processor(),
        "cpu_count": os.cpu_count(), "usable_cpus": _usable_cpus(),
        "gpus": [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
                 for gpu in tf.config.list_physical_devices("GPU")],
        "python": platform.python_version(), "tensorflow": tf.__version__,
        "keras": keras.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def default_output(results_dir: Path, device: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(results_dir) / f"bench_{re.sub(r'[^A-Za-z0-9._-]+', '-', device)}_{stamp}.json"


def _outputs(path: Path) -> tuple[Path, Path]:
    return path, path.with_suffix(".md")


def check_new(path: Path) -> None:
    """Refuses to run when the JSON or its markdown table already exists."""
    for existing in _outputs(path):
        if existing.exists():
            raise PowerBertError(f"{existing} exists; choose another --output "
                                 f"(results are never overwritten)")


def write_report(report: Report, path: Path) -> None:
    """Writes the JSON to `path` and the tables to `path` with suffix .md, both new files."""
    check_new(path)
    json_path, markdown_path = _outputs(path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    with json_path.open("x") as file:
        json.dump(report.to_dict(), file, indent=2)
        file.write("\n")
    with markdown_path.open("x") as file:
        file.write(render(report, markdown=True))


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _spread(timing: Timing) -> str:
    return f"{_ms(timing.median_ms)} [{_ms(timing.min_ms)}-{_ms(timing.max_ms)}]"


def _peak(row: Row) -> str:
    if row.full.device_peak_mib is not None:
        return f"{row.full.device_peak_mib:.0f} / {row.pruned.device_peak_mib:.0f} (device)"
    return f"{row.full.peak_mib:.0f} / {row.pruned.peak_mib:.0f}"


ROW_COLUMNS = ("case", "batch", "mode", "ms full (median [min-max])", "ms pruned", "speed-up",
               "wv bound", "FLOP bound", "efficiency", "peak MiB (full / pruned)")
PADDING_COLUMNS = ("setting", "batches", "total s (median pass)", "speed-up", "FLOP bound")


def _table(header: Sequence[str], body: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(cells) + " |" for cells in (header, *body)]
        lines.insert(1, "|" + "---|" * len(header))
        return "\n".join(lines)
    widths = [max(len(cell) for cell in column) for column in zip(header, *body)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()
             for cells in (header, *body)]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def render(report: Report, markdown: bool) -> str:
    """The rows table, the padding table and the notes, as text or markdown."""
    machine = report.machine
    lines = [("# " if markdown else "") + f"PoWER-BERT inference benchmark, {machine['device']}",
             "", f"{report.created}; {machine['cpu']} ({machine['usable_cpus']} usable CPUs"
             + (f", {', '.join(machine['gpus'])}" if machine["gpus"] else "")
             + f"); TensorFlow {machine['tensorflow']}, Keras {machine['keras']}.",
             f"XLA_FLAGS: {machine.get('xla_flags') or '(none)'}.",
             f"Peak memory (MiB): {report.memory}.", ""]
    body = [(row.case, str(row.batch_size), row.mode, _spread(row.full), _spread(row.pruned),
             f"{row.speedup:.2f}x", f"{row.word_vector_bound:.2f}x", f"{row.flop_bound:.2f}x",
             f"{row.efficiency:.2f}", _peak(row)) for row in report.rows]
    if body:
        lines += [_table(ROW_COLUMNS, body, markdown), ""]
    padding = report.padding
    if padding is not None:
        sizes = ", ".join(f"{count} <= {bucket}"
                          for count, bucket in zip(padding.bucket_sentences, padding.buckets))
        lines += [f"Padding: {padding.sentences} sentences (mean {padding.mean_length:.1f} "
                  f"tokens; {sizes}), batch {padding.batch_size}, {padding.case}, retention "
                  f"{','.join(map(str, padding.retention))} ({padding.retention_source}), XLA.",
                  ""]
        body = [(s.name, str(s.batches), f"{s.seconds:.3g}", f"{s.speedup:.2f}x",
                 f"{s.flop_bound:.2f}x") for s in padding.settings]
        lines += [_table(PADDING_COLUMNS, body, markdown), ""]
    lines += [("- " if markdown else "note: ") + note for note in report.notes]
    return "\n".join(lines).rstrip() + "\n"


def run(config: BenchConfig) -> tuple[Report, Path]:
    """Measures what `config` asks for, prints the tables and writes the JSON and markdown.

    Returns:
        The report and the JSON path. The output files are checked first: an existing
        one is an error before anything is measured.
    """
    device = config.device or detect_device()
    output = config.output or default_output(config.results_dir, device)
    check_new(output)
    memory = PeakMemory()
    pretrained = load_pretrained("embedded") if "minilm" in config.cases or config.padding else None
    cases, notes = resolve_cases(config.cases, config.checkpoints_dir, pretrained)
    padding_inputs = _padding_inputs(pretrained, config) if config.padding else None
    rows, skipped = benchmark_cases(cases, config, memory)
    padding = None
    if padding_inputs is not None:
        case, features, source = padding_inputs
        print(f"padding: {len(features['input_mask'])} SST-2 dev sentences, buckets "
              f"{config.padding_buckets}", flush=True)
        padding = measure_padding(
            case, features, buckets=config.padding_buckets,
            batch_size=config.padding_batch_size, warmup=config.warmup,
            repeats=config.padding_repeats, seed=config.seed, retention_source=source)
    settings = {**config.to_dict(), "device": device, "output": str(output),
                "timing_method": TIMING_METHOD, "heavy_policy": HEAVY_POLICY}
    report = Report(datetime.datetime.now().isoformat(timespec="seconds"),
                    machine_info(device), settings, memory.description, tuple(rows),
                    tuple(notes + skipped), padding)
    print("\n" + render(report, markdown=False), flush=True)
    write_report(report, output)
    print(f"wrote {output} and {output.with_suffix('.md')}", flush=True)
    return report, output


def _padding_inputs(pretrained: PretrainedBert,
                    config: BenchConfig) -> tuple[Case, dict[str, np.ndarray], str]:
    """The padding measurement's case (MiniLM with the SST-2 retrained configuration when
    there is one, else the default), the tokenized SST-2 dev set and where the
    configuration came from."""
    n = config.padding_buckets[-1]
    found, _ = retrained_configurations(config.checkpoints_dir)
    retention = found.get("SST-2")
    if (retention is not None and retention.sequence_length == n
            and retention.num_layers == pretrained.config.num_layers):
        source = f"{config.checkpoints_dir}/SST-2/retrain/run.json"
    else:
        retention = RetentionConfig(tuple(min(count, n) for count in DEFAULT_PADDING_RETENTION), n)
        source = "default (no SST-2 retrain run at this N)"
    texts = [example.text_a for example in get_task("SST-2", config.data_dir).read("dev")]
    features = tokenize(pretrained.tokenizer(n), texts)
    return (Case("minilm/SST-2 dev", "minilm", pretrained.config, retention, pretrained),
            features, source)
