"""XLA:CPU with and without oneDNN dots, interleaved across two processes.

XLA reads `XLA_FLAGS` once per process, so the two settings cannot share one. This
process keeps its own flags; a child process started with `serving.xla_cpu`'s
`ONEDNN_DOT_FLAGS` builds the same models (same seed, same weights) and runs one pass
per request on a pipe. `serving.timing.time_interleaved` then alternates the local and
the remote passes (the pipe's round trip, well under a millisecond, is inside the
remote time), so both see the same machine load.

    python -m power_bert_tf.bench.onednn   # the child; it reads JSON requests on stdin
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from typing import Callable

import numpy as np

from power_bert_tf.bench.cases import build_pair, random_inputs, runtime_case
from power_bert_tf.serving.timing import paired_speedup, time_interleaved
from power_bert_tf.serving.xla_cpu import ONEDNN_DOT_FLAGS

_REPLY = "@@onednn "
# oneDNN dots are kept where the median paired speed-up is at least this and its lower
# quartile above 1, so that noise on a shared CPU does not decide.
KEEP_THRESHOLD = 1.05


@dataclasses.dataclass(frozen=True)
class OnednnResult:
    """One case: each model's XLA pass without and with oneDNN dots."""

    case: str
    batch_size: int
    child_xla_flags: str
    models: tuple[str, ...]
    timings: dict  # row name -> Timing.to_dict()
    speedup_with_onednn: dict  # model -> paired speed-up of the oneDNN pass (> 1: it helps)
    max_abs_logit_diff: dict  # model -> |local - child| logits (same weights, same inputs)
    keep: bool  # oneDNN dots faster for every model measured (see `KEEP_THRESHOLD`)


def _xla_passes(case_name: str, seed: int, models: tuple[str, ...]
                ) -> dict[str, Callable[[], np.ndarray]]:
    import tensorflow as tf

    from power_bert_tf.weights.pretrained import load_pretrained

    pretrained = load_pretrained("embedded") if case_name.startswith("minilm") else None
    chosen = runtime_case(case_name, pretrained)
    n = chosen.case.retention.sequence_length
    full, pruned = build_pair(chosen.case, sequence_length=n, seed=seed)
    inputs = random_inputs(chosen.case.config, chosen.batch_size, n, seed)
    passes = {}
    for name, model in (("plain", full), ("power-bert", pruned)):
        if name in models:
            function = tf.function(lambda x, m=model: m(x, training=False), jit_compile=True)
            passes[name] = (lambda f=function: np.asarray(f(inputs)))
    return passes


def worker() -> None:
    """The child: "setup" builds and compiles the passes, "run" runs one, "exit" ends."""
    passes: dict[str, Callable[[], np.ndarray]] = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "setup":
            passes = _xla_passes(request["case"], request["seed"], tuple(request["models"]))
            reply = {name: run().tolist() for name, run in passes.items()}
        elif request["op"] == "run":
            passes[request["model"]]()
            reply = {}
        else:
            return
        print(_REPLY + json.dumps(reply), flush=True)


class Child:
    """The worker process with oneDNN dots, and its request / reply pipe."""

    def __init__(self):
        env = {**os.environ, "XLA_FLAGS": " ".join(ONEDNN_DOT_FLAGS)}
        self.process = subprocess.Popen([sys.executable, "-m", "power_bert_tf.bench.onednn"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)
        self.xla_flags = env["XLA_FLAGS"]

    def request(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith(_REPLY):
                return json.loads(line[len(_REPLY):])
        raise RuntimeError(f"the oneDNN worker ended (exit status {self.process.wait()})")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write(json.dumps({"op": "exit"}) + "\n")
            self.process.stdin.close()
            self.process.wait(timeout=60)


def measure_onednn(case_name: str, batch_size: int, *, models: tuple[str, ...], repeats: int,
                   seed: int) -> OnednnResult:
    """Times `models` under XLA here and in a oneDNN-dots child, interleaved."""
    local = _xla_passes(case_name, seed, models)
    child = Child()
    try:
        remote_outputs = child.request(op="setup", case=case_name, seed=seed, models=models)
        passes = {}
        for name in models:
            passes[f"{name} xla"] = local[name]
            passes[f"{name} xla+onednn"] = (lambda m=name: child.request(op="run", model=m))
        diffs = {name: float(np.abs(local[name]() - np.asarray(remote_outputs[name])).max())
                 for name in models}
        timings = time_interleaved(passes, repeats=repeats, warmup=0)
    finally:
        child.close()
    speedups = {name: paired_speedup(timings[f"{name} xla"], timings[f"{name} xla+onednn"])
                for name in models}
    return OnednnResult(case_name, batch_size, child.xla_flags, models,
                        {name: timing.to_dict() for name, timing in timings.items()}, speedups,
                        diffs, all(s["median"] >= KEEP_THRESHOLD and s["q25"] > 1
                            for s in speedups.values()))


if __name__ == "__main__":
    worker()
