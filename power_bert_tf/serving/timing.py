"""Timing models against each other: warm-up, interleaved repeats, median and spread.

The one timing function of the project: the evaluate phase (Table 2), the trade-off
curves and the benchmark all time through `time_interleaved`. Passes of the models
being compared alternate (A, B, A, B, ...), so a change of machine load during the
measurement hits every model alike, and each speed-up is the median of the paired
per-repeat ratios, reported with its spread.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Mapping, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds of each timed pass of one model."""

    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(np.median(self.seconds))

    def to_dict(self) -> dict:
        q25, q75 = np.percentile(self.seconds, [25, 75])
        return {"median_seconds": round(self.median, 5), "q25_seconds": round(float(q25), 5),
                "q75_seconds": round(float(q75), 5), "min_seconds": round(min(self.seconds), 5),
                "max_seconds": round(max(self.seconds), 5),
                "seconds": [round(s, 5) for s in self.seconds]}


def time_interleaved(passes: Mapping[str, Callable[[], object]], *, repeats: int = 5,
                     warmup: int = 1, clock: Callable[[], float] = time.perf_counter
                     ) -> dict[str, Timing]:
    """Times each pass `repeats` times, interleaved, after `warmup` untimed rounds.

    Args:
        passes: name -> a callable doing one full pass (for example over the dev
            batches) and returning once its results are on the host.
        repeats: timed rounds; each round runs every pass once, in the given order.
        warmup: untimed rounds first (compilation, caches).

    Returns:
        name -> its `Timing`, in the order of `passes`.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        for run in passes.values():
            run()
    seconds: dict[str, list[float]] = {name: [] for name in passes}
    for _ in range(repeats):
        for name, run in passes.items():
            start = clock()
            run()
            seconds[name].append(clock() - start)
    return {name: Timing(tuple(values)) for name, values in seconds.items()}


def paired_speedup(baseline: Timing, candidate: Timing) -> dict:
    """Speed-up of `candidate` over `baseline`: the median of the per-round ratios
    baseline / candidate, with their quartiles, minimum and maximum."""
    ratios = np.asarray(baseline.seconds) / np.asarray(candidate.seconds)
    q25, median, q75 = np.percentile(ratios, [25, 50, 75])
    return {"median": round(float(median), 4), "q25": round(float(q25), 4),
            "q75": round(float(q75), 4), "min": round(float(ratios.min()), 4),
            "max": round(float(ratios.max()), 4), "rounds": len(ratios)}


def compiled_pass(model, batches: Sequence, jit_compile: bool = True) -> Callable[[], None]:
    """One inference pass of `model` over `batches`, as a callable for
    `time_interleaved`: an (XLA-compiled) tf.function, each output fetched to the host."""
    import tensorflow as tf

    predict = tf.function(lambda x: model(x, training=False), jit_compile=jit_compile)

    def run() -> None:
        for batch in batches:
            np.asarray(predict(batch))

    return run
