"""The padding study: the SST-2 dev set as a server sees it, padded to N or sorted into
length buckets, without and with elimination, all under XLA.

The four settings' passes over the whole dev set are timed through
`serving.timing.time_interleaved` (one pass of each in turn; the first round, which
compiles every batch shape, is untimed), and each speed-up over "padded" is the median
of the paired per-round ratios.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from power_bert_tf.bench.cases import Case, Inputs, build_pair
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.retention import encoder_flops
from power_bert_tf.serving.timing import paired_speedup, time_interleaved

PADDING_SETTINGS = (  # (name, bucketed, eliminated)
    ("padded", False, False), ("bucketed", True, False),
    ("eliminated", False, True), ("bucketed+eliminated", True, True))
# The padding study's configuration when no SST-2 retrain run is found (MiniLM, N=64).
DEFAULT_PADDING_RETENTION = (40, 32, 24, 16, 12, 8)


@dataclasses.dataclass(frozen=True)
class PaddingSetting:
    """One way of serving the sentences: seconds of each pass over all of them."""

    name: str
    bucketed: bool
    eliminated: bool
    batches: int
    timing: dict  # Timing.to_dict() of the passes
    seconds: float  # median pass
    speedup: dict  # paired_speedup over "padded"
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
                    buckets: Sequence[int], batch_size: int, repeats: int,
                    seed: int, retention_source: str) -> PaddingResult:
    """Times the four `PADDING_SETTINGS` on `features` (padded to `buckets[-1]` = N).

    The models take any length, so in a bucket of T tokens layer j keeps min(l_j, T).
    """
    n = case.retention.sequence_length
    if features["input_mask"].shape[1] != n or buckets[-1] != n:
        raise PowerBertError(f"padding: the features, the last bucket and N must agree; got "
                             f"{features['input_mask'].shape[1]}, {buckets[-1]} and {n}")
    full, pruned = build_pair(case, sequence_length=None, seed=seed)
    functions = {eliminated: tf.function(lambda x, m=model: m(x, training=False),
                                         jit_compile=True)
                 for eliminated, model in ((False, full), (True, pruned))}
    plans = {False: padding_batches(features, batch_size),
             True: padding_batches(features, batch_size, buckets)}

    def flops(batches: list[Inputs], eliminated: bool) -> int:
        def kept(length: int):
            return case.retention.kept_at(length) if eliminated else None
        return sum(int(batch["input_mask"].shape[0])
                   * encoder_flops(case.config, int(batch["input_mask"].shape[1]),
                                   kept(int(batch["input_mask"].shape[1])))
                   for batch in batches)

    def one_pass(function, batches: list[Inputs]) -> Callable[[], None]:
        def run() -> None:
            for batch in batches:
                function(batch).numpy()
        return run

    passes = {name: one_pass(functions[eliminated], plans[bucketed])
              for name, bucketed, eliminated in PADDING_SETTINGS}
    for run in passes.values():  # compiles every batch shape
        run()
    traces = {key: function.experimental_get_tracing_count()
              for key, function in functions.items()}
    timings = time_interleaved(passes, repeats=repeats, warmup=0)
    retraces = {key: function.experimental_get_tracing_count() - traces[key]
                for key, function in functions.items()}
    baseline_flops = flops(plans[False], False)
    settings = tuple(
        PaddingSetting(name, bucketed, eliminated, len(plans[bucketed]),
                       timings[name].to_dict(), timings[name].median,
                       paired_speedup(timings["padded"], timings[name]),
                       baseline_flops / flops(plans[bucketed], eliminated), retraces[eliminated])
        for name, bucketed, eliminated in PADDING_SETTINGS)
    for setting in settings:
        print(f"  padding {setting.name}: {setting.seconds:.3g} s, "
              f"{setting.speedup['median']:.2f}x", flush=True)
    lengths = features["input_mask"].sum(axis=1)
    which = np.searchsorted(buckets, lengths)
    return PaddingResult(
        case.name, case.weights, len(lengths), float(lengths.mean()), tuple(buckets),
        tuple(int((which == index).sum()) for index in range(len(buckets))), batch_size,
        case.retention.kept, retention_source, repeats, settings)
