"""Serving latency and throughput of exported SavedModels under concurrent clients.

Each model is exported with `serving.saved_model.export_saved_model` (raw text in, the
tokenizer and the length-bucketed programs inside) and loaded back. `clients` threads
in this process then each send `requests` one-sentence requests to `serving_default`,
back to back. A round does that for one model; the models' rounds alternate through
`serving.timing.time_interleaved`, so the throughput ratio is a median of paired
per-round ratios. Latencies (one request, sent to answered) are pooled over the rounds
for p50 / p99. The first round of each model, which compiles the buckets, is untimed.
"""
from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from power_bert_tf.serving.timing import paired_speedup, time_interleaved


@dataclasses.dataclass(frozen=True)
class ServingLoad:
    """One model under `clients` concurrent clients."""

    model: str
    latency_p50_ms: float
    latency_p99_ms: float
    throughput_rps: float  # requests per second, median over rounds
    round_timing: dict  # Timing.to_dict() of the rounds' wall times


@dataclasses.dataclass(frozen=True)
class ConcurrencyResult:
    case: str
    precision: str
    clients: int
    requests_per_client: int
    repeats: int
    models: tuple[ServingLoad, ...]
    throughput_speedup: dict  # paired, the second model's rounds over the first's


def _round(serve: Callable[[list[str]], object], texts: Sequence[str], clients: int,
           requests: int, latencies: list[float]) -> Callable[[], None]:
    """A pass for `time_interleaved`: `clients` threads, `requests` sequential requests each;
    each request's seconds are appended to `latencies`."""
    def client(index: int) -> None:
        for step in range(requests):
            text = texts[(index * requests + step) % len(texts)]
            start = time.perf_counter()
            serve([text])
            latencies.append(time.perf_counter() - start)

    def run() -> None:
        threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return run


def measure_concurrency(models: dict, tokenizer, texts: Sequence[str], *, case: str,
                        labels: Sequence[str], precision: str, clients: int, requests: int,
                        repeats: int) -> ConcurrencyResult:
    """Exports each of `models` (name -> classifier), then loads and serves them.

    Args:
        models: two classifiers, e.g. {"plain": ..., "power-bert": ...}.
        tokenizer: the in-graph tokenizer exported with them.
        texts: the requests' sentences, cycled.
        labels: the classes' names.
    """
    import tensorflow as tf

    from power_bert_tf.serving.saved_model import export_saved_model

    with tempfile.TemporaryDirectory(prefix="power_bert_serving_") as workdir:
        served, latencies, passes = {}, {}, {}
        for name, model in models.items():
            path = export_saved_model(model, tokenizer, Path(workdir), name, labels=labels,
                                      retention=model.encoder.retention, task_name=case,
                                      is_pair=False, precision=precision)
            served[name] = tf.saved_model.load(str(path)).signatures["serving_default"]
            latencies[name] = []
            passes[name] = _round(lambda batch, f=served[name]: f(text=tf.constant(batch))[
                "probabilities"].numpy(), texts, clients, requests, latencies[name])
        for run in passes.values():  # compiles each bucket the texts reach; untimed
            run()
        for values in latencies.values():
            values.clear()
        timings = time_interleaved(passes, repeats=repeats, warmup=0)
    loads = tuple(
        ServingLoad(name, round(1000 * float(np.percentile(latencies[name], 50)), 2),
                    round(1000 * float(np.percentile(latencies[name], 99)), 2),
                    round(clients * requests / timings[name].median, 2),
                    timings[name].to_dict())
        for name in models)
    first, second = list(models)
    return ConcurrencyResult(case, precision, clients, requests, repeats, loads,
                             paired_speedup(timings[first], timings[second]))
