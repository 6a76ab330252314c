"""--distribution=multi_worker for real: two worker processes on 127.0.0.1 (TF_CONFIG).

Each worker is a `run_glue.py` process with one CPU replica, so the global batch of 8
is 4 + 4. The single-process run it is compared with trains the same global batch on
one replica; the two differ only by the order of floating-point sums. Training losses
agree to 1e-3 (relative; measured: at most 1.4e-4, in the third phase) and dev metrics
exactly. Weights are not compared: Adam divides
each gradient by its own running size, so where a true gradient is zero and float noise
decides its sign, a step moves that weight by up to the learning rate either way
(measured: about 10% of an FFN kernel's elements). The models' dev logits agree to 5e-3
(measured: at most 1.1e-3, on logits of size 0.02-0.09 of this barely trained tiny
model), r masses to 1e-2 (sums of 16 r) and the retention configurations exactly.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from power_bert_tf.pipeline import phases
from power_bert_tf.weights import load_pretrained
from tiny_task import tiny_run_config, write_tiny_model, write_tiny_task

ROOT = Path(__file__).parents[1]
LOSS_RTOL, LOGIT_ATOL, MASS_ATOL = 1e-3, 5e-3, 1e-2
LOST_WORKER_SECONDS = 90  # health check every 5 s; generous for 2 busy cores

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_worker")
    model = write_tiny_model(root / "model")
    train, dev = write_tiny_task(root / "data", train=32, dev=8)
    return {"model": model, "train": train, "dev": dev}


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def cli_flags(tiny, output_dir, **extra) -> list[str]:
    """The flags of `tiny_run_config`'s defaults, for run_glue.py."""
    flags = {"task": "custom", "model": tiny["model"], "train_file": tiny["train"],
             "dev_file": tiny["dev"], "text_a_column": "text", "label_column": "label",
             "labels": "neg,pos", "max_seq_length": 16, "batch_size": 8,
             "eval_batch_size": 8, "learning_rate": 5e-3, "soft_extract_learning_rate": 5e-2,
             "lambda": 1e-2, "timing_repeats": 1, "output_dir": output_dir,
             "distribution": "multi_worker", **extra}
    return [f"--{name}={value}" for name, value in flags.items()]


class Cluster:
    """Two `run_glue.py` workers; worker 0 is the chief. Each has its own $TMPDIR."""

    def __init__(self, flags: list[str], folder: Path):
        ports = free_ports(2)
        workers = [f"127.0.0.1:{port}" for port in ports]
        self.folder, self.processes = folder, []
        for index in range(2):
            tmp = folder / f"tmp{index}"
            tmp.mkdir(parents=True)
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp),
                   "CUDA_VISIBLE_DEVICES": "",
                   "TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                            "task": {"type": "worker", "index": index}})}
            self.processes.append(subprocess.Popen(
                [sys.executable, str(ROOT / "run_glue.py"), *flags], cwd=ROOT, env=env,
                stdout=(folder / f"out{index}").open("w"),
                stderr=(folder / f"err{index}").open("w")))

    def output(self, index: int) -> str:
        return (self.folder / f"out{index}").read_text()

    def errors(self, index: int) -> str:
        return (self.folder / f"err{index}").read_text()

    def wait(self, timeout: float = 600) -> list[int]:
        return [process.wait(timeout=timeout) for process in self.processes]

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def read(path: Path):
    return json.loads(path.read_text())


def dev_logits(path: Path, tiny) -> np.ndarray:
    texts = [line.split("\t")[0] for line in tiny["dev"].read_text().splitlines()[1:]]
    features = load_pretrained(str(tiny["model"])).tokenizer(16)(tf.constant(texts))
    return keras.saving.load_model(path)(features, training=False).numpy()


def assert_same_training(actual: Path, expected: Path, tiny) -> None:
    """Two runs of a phase: the same losses and dev metrics, close dev logits."""
    got, want = read(actual / "history.json"), read(expected / "history.json")
    assert [h["epoch"] for h in got] == [h["epoch"] for h in want]
    for a, b in zip(got, want):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=LOSS_RTOL)
        assert a["dev"] == pytest.approx(b["dev"], abs=1e-6)
    np.testing.assert_allclose(dev_logits(actual / "model.keras", tiny),
                               dev_logits(expected / "model.keras", tiny), atol=LOGIT_ATOL)


def test_two_workers_match_one_process_and_only_the_chief_writes(tiny, tmp_path):
    cluster = Cluster(cli_flags(tiny, tmp_path / "multi", phase="all", epochs=1), tmp_path)
    try:
        codes = cluster.wait()
    finally:
        cluster.kill()
    assert codes == [0, 0], cluster.errors(0)[-2000:] + cluster.errors(1)[-2000:]
    for index in range(2):
        assert "training on 2 replicas (multi_worker)" in cluster.output(index)
        assert "Traceback" not in cluster.errors(index)
    # The other worker wrote into a temporary folder and removed it.
    assert list((tmp_path / "tmp1").iterdir()) == []

    phases.run(tiny_run_config(tiny["model"], tiny["train"], tiny["dev"], tmp_path / "single",
                               finetune_epochs=1, search_epochs=1, retrain_epochs=1,
                               eval_batch_size=8, timing_repeats=1))
    multi, single = tmp_path / "multi" / "custom", tmp_path / "single" / "custom"
    for phase in ("finetune", "search", "retrain", "evaluate"):
        assert read(multi / phase / "run.json")["config"]["distribution"] == "multi_worker"
    for phase in ("finetune", "search", "retrain"):
        assert_same_training(multi / phase, single / phase, tiny)
    got = read(multi / "search" / "retention.json")
    want = read(single / "search" / "retention.json")
    assert got["retention"] == want["retention"]
    np.testing.assert_allclose(got["masses"], want["masses"], atol=MASS_ATOL)
    assert (read(multi / "evaluate" / "run.json")["power_bert"]["dev"]
            == read(single / "evaluate" / "run.json")["power_bert"]["dev"])


def test_a_killed_worker_stops_the_other_and_resume_loses_nothing(tiny, tmp_path):
    flags = cli_flags(tiny, tmp_path / "multi", phase="finetune", epochs=2)
    cluster = Cluster(flags, tmp_path / "first")
    try:
        deadline = time.monotonic() + 600
        while "epoch 2/2" not in cluster.output(1):  # epoch 1 is saved
            assert cluster.processes[1].poll() is None, cluster.errors(1)[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        cluster.processes[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        code = cluster.processes[0].wait(timeout=LOST_WORKER_SECONDS)
        stopped_after = time.monotonic() - killed
    finally:
        cluster.kill()
    assert code == 1
    errors = cluster.errors(0)
    assert "Traceback" not in errors
    lines = [line for line in errors.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "lost a worker" in lines[0] and "--resume" in lines[0], errors
    print(f"the chief stopped {stopped_after:.1f} s after its peer was killed")

    finetune = tmp_path / "multi" / "custom" / "finetune"
    completed = read(finetune / "history.json")[-1]["epoch"]
    resumed = Cluster([*flags, "--resume"], tmp_path / "second")
    try:
        codes = resumed.wait()
    finally:
        resumed.kill()
    assert codes == [0, 0], resumed.errors(0)[-2000:] + resumed.errors(1)[-2000:]
    for index in range(2):
        assert f"resuming after epoch {completed}" in resumed.output(index)

    phases.run(tiny_run_config(tiny["model"], tiny["train"], tiny["dev"], tmp_path / "single",
                               phase="finetune", finetune_epochs=2, eval_batch_size=8))
    assert_same_training(finetune, tmp_path / "single" / "custom" / "finetune", tiny)
