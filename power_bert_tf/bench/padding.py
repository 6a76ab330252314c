"""The padding study: the SST-2 dev set as a server sees it, padded to N or cut to length
buckets (in file order, or sorted by length first), without and with elimination, all
under XLA.

The six settings' passes over the whole dev set are timed through
`serving.timing.time_interleaved` (one pass of each in turn; the first round, which
compiles every batch shape, is untimed). Each setting's speed-up over "padded" and, for
an eliminated setting, over plain BERT batched the same way ("over_plain": the speed-up a
user serving plain BERT with length buckets gets) are medians of paired per-round ratios.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from power_bert_tf.bench.cases import Case, Inputs, build_pair
from power_bert_tf.data.buckets import BATCH_ORDERS, served_batches
from power_bert_tf.errors import PowerBertError
from power_bert_tf.model.retention import encoder_flops
from power_bert_tf.serving.timing import paired_speedup, time_interleaved

PADDING_SETTINGS = (  # (name, batching: None for padded to N or a served_batches order, eliminated)
    ("padded", None, False), ("bucketed", "file", False), ("bucketed_sorted", "sorted", False),
    ("eliminated", None, True), ("bucketed+eliminated", "file", True),
    ("bucketed_sorted+eliminated", "sorted", True))
# The padding study's configuration when no SST-2 retrain run is found (MiniLM, N=64).
DEFAULT_PADDING_RETENTION = (40, 32, 24, 16, 12, 8)


@dataclasses.dataclass(frozen=True)
class PaddingSetting:
    """One way of serving the sentences: seconds of each pass over all of them."""

    name: str
    batching: str | None  # None: padded to N; else the `served_batches` order
    eliminated: bool
    batches: int
    timing: dict  # Timing.to_dict() of the passes
    seconds: float  # median pass
    speedup: dict  # paired_speedup over "padded"
    over_plain: dict | None  # eliminated: paired_speedup over plain BERT batched alike
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
                    buckets: Sequence[int] | None = None, order: str = "file") -> list[Inputs]:
    """Batches padded to N in sentence order; with `buckets`, batched in `order` and each
    batch cut to the bucket of its longest sentence (`data.buckets.served_batches`)."""
    lengths = features["input_mask"].sum(axis=1)
    if buckets is None:
        plan = served_batches(lengths, batch_size, (features["input_mask"].shape[1],))
    else:
        plan = served_batches(lengths, batch_size, buckets, order)
    return [{name: tf.constant(values[rows, :length]) for name, values in features.items()}
            for rows, length in plan]


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
    plans = {None: padding_batches(features, batch_size),
             **{order: padding_batches(features, batch_size, buckets, order)
                for order in BATCH_ORDERS}}

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

    passes = {name: one_pass(functions[eliminated], plans[batching])
              for name, batching, eliminated in PADDING_SETTINGS}
    plain = {batching: name for name, batching, eliminated in PADDING_SETTINGS
             if not eliminated}
    for run in passes.values():  # compiles every batch shape
        run()
    traces = {key: function.experimental_get_tracing_count()
              for key, function in functions.items()}
    timings = time_interleaved(passes, repeats=repeats, warmup=0)
    retraces = {key: function.experimental_get_tracing_count() - traces[key]
                for key, function in functions.items()}
    baseline_flops = flops(plans[None], False)
    settings = tuple(
        PaddingSetting(name, batching, eliminated, len(plans[batching]),
                       timings[name].to_dict(), timings[name].median,
                       paired_speedup(timings["padded"], timings[name]),
                       paired_speedup(timings[plain[batching]], timings[name])
                       if eliminated else None,
                       baseline_flops / flops(plans[batching], eliminated), retraces[eliminated])
        for name, batching, eliminated in PADDING_SETTINGS)
    for setting in settings:
        over_plain = (f", {setting.over_plain['median']:.2f}x over {plain[setting.batching]}"
                      if setting.over_plain else "")
        print(f"  padding {setting.name}: {setting.seconds:.3g} s, "
              f"{setting.speedup['median']:.2f}x over padded{over_plain}", flush=True)
    lengths = features["input_mask"].sum(axis=1)
    which = np.searchsorted(buckets, lengths)
    return PaddingResult(
        case.name, case.weights, len(lengths), float(lengths.mean()), tuple(buckets),
        tuple(int((which == index).sum()) for index in range(len(buckets))), batch_size,
        case.retention.kept, retention_source, repeats, settings)
