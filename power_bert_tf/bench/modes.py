"""The mode table: plain vs. Hard-Extract in each TensorFlow execution mode.

    eager        model(inputs, training=False)
    graph        tf.function
    xla          tf.function(jit_compile=True)
    saved_model  a tf.Module holding the model and an XLA tf.function with a
                 (None, N) int32 input signature, saved with tf.saved_model.save
                 and loaded back with tf.saved_model.load

A row times the plain and the pruned model of one case at one batch size in one mode
through `serving.timing.time_interleaved` (their calls alternate), and reports the
median ms per batch with its spread, the paired speed-up, the word-vector and FLOP
bounds, the efficiency (speed-up / FLOP bound) and each model's peak memory.
"""
from __future__ import annotations

import dataclasses
import re
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import keras
import tensorflow as tf

from power_bert_tf.bench.cases import Case, Inputs, build_pair, random_inputs
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.retention import flop_bound
from power_bert_tf.data.tokenizer import INPUT_NAMES
from power_bert_tf.serving.timing import Timing, paired_speedup, time_interleaved

MODES = ("eager", "graph", "xla", "saved_model")


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
        host = ("host: VmHWM, peak resident memory over one call of the model, reset "
                "through /proc/self/clear_refs" if self.resettable else
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

    def of_call(self, call: Callable[[], object]) -> tuple[float, float | None]:
        """(host, device) peak MiB over one `call()`."""
        self.reset()
        call()
        return self.host_peak_mib(), self.device_peak_mib()


@dataclasses.dataclass(frozen=True)
class ModelTiming:
    """One model's timed calls in a row, its peak memory and retraces while timed."""

    timing: dict  # Timing.to_dict(): seconds of each call, median, quartiles, min, max
    median_ms: float
    peak_mib: float
    device_peak_mib: float | None
    retraces: int | None  # traces during the timed calls (0 expected); None in eager


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
    full: ModelTiming
    pruned: ModelTiming
    speedup: dict  # paired_speedup(full, pruned): median of the per-round ratios, spread
    word_vector_bound: float
    flop_bound: float
    efficiency: float  # speedup["median"] / flop_bound


def plan_rows(case: Case, batch_sizes: Sequence[int], modes: Sequence[str],
              heavy_gflops: float, heavy_modes: Sequence[str]
              ) -> tuple[list[tuple[int, str, bool]], list[str]]:
    """(batch size, mode, heavy) of the case's rows, and a note per row left out."""
    planned, notes = [], []
    for batch_size in batch_sizes:
        gflops = case.full_gflops(batch_size)
        heavy = gflops > heavy_gflops
        for mode in modes:
            if heavy and mode not in heavy_modes:
                notes.append(f"{case.name} batch {batch_size} {mode}: skipped, heavy "
                             f"({gflops:.0f} > {heavy_gflops:g} GFLOP per batch; "
                             f"heavy rows run {','.join(heavy_modes)})")
            else:
                planned.append((batch_size, mode, heavy))
    return planned, notes


def time_row(case: Case, runners: dict[str, Runner], inputs: Inputs, *, mode: str, heavy: bool,
             warmup: int, repeats: int, memory: PeakMemory) -> Row:
    """Times runners "full" and "pruned" on `inputs`, interleaved, and builds the row."""
    calls = {name: (lambda r=runner: r.call(inputs).numpy()) for name, runner in runners.items()}
    for call in calls.values():  # tracing and compilation, before counting retraces
        call()
    traces = {name: runner.tracing_count() for name, runner in runners.items()}
    timings: dict[str, Timing] = time_interleaved(calls, repeats=repeats, warmup=warmup - 1)
    models = {}
    for name, runner in runners.items():
        after = runner.tracing_count()
        host, device = memory.of_call(calls[name])
        models[name] = ModelTiming(timings[name].to_dict(), 1000 * timings[name].median, host,
                                   device, None if after is None else after - traces[name])
    speedup = paired_speedup(timings["full"], timings["pruned"])
    bound = flop_bound(case.config, case.retention)
    batch_size = int(inputs["input_word_ids"].shape[0])
    return Row(case.name, case.weights, case.retention.sequence_length, case.retention.kept,
               batch_size, mode, heavy, warmup, repeats, case.full_gflops(batch_size),
               models["full"], models["pruned"], speedup, case.retention.word_vector_bound,
               bound, speedup["median"] / bound)


def benchmark_cases(cases: Sequence[Case], *, batch_sizes: Sequence[int], modes: Sequence[str],
                    warmup: int, repeats: int, heavy_gflops: float, heavy_repeats: int,
                    heavy_modes: Sequence[str], seed: int,
                    memory: PeakMemory) -> tuple[list[Row], list[str]]:
    """Every row of `cases`, and a note per row left out."""
    rows, notes = [], []
    for case in cases:
        planned, skipped = plan_rows(case, batch_sizes, modes, heavy_gflops, heavy_modes)
        notes += skipped
        if not planned:
            continue
        n = case.retention.sequence_length
        print(f"{case.name} N={n}: building the plain and the pruned model", flush=True)
        full, pruned = build_pair(case, sequence_length=n, seed=seed)
        with tempfile.TemporaryDirectory(prefix="power_bert_bench_") as workdir:
            runners: dict[str, dict[str, Runner]] = {}
            for batch_size, mode, heavy in planned:
                if mode not in runners:
                    runners[mode] = {name: make_runner(model, mode, n,
                                                       Path(workdir) / f"{name}_{mode}")
                                     for name, model in (("full", full), ("pruned", pruned))}
                inputs = random_inputs(case.config, batch_size, n, seed)
                row = time_row(case, runners[mode], inputs, mode=mode, heavy=heavy,
                               warmup=warmup, repeats=heavy_repeats if heavy else repeats,
                               memory=memory)
                rows.append(row)
                print(f"  {case.name} batch {batch_size} {mode}: {row.full.median_ms:.1f} -> "
                      f"{row.pruned.median_ms:.1f} ms, {row.speedup['median']:.2f}x "
                      f"(FLOP bound {row.flop_bound:.2f}x)", flush=True)
    return rows, notes
