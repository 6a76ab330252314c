"""`--distribution`: the tf.distribute strategy a run trains under, and the chief's role.

Every worker of a multi-worker run computes the same thing; only the chief writes
the run's folders, the others write to temporary ones (TensorFlow's multi-worker
pattern). `docs/distributed.md` shows how to start the workers.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from typing import Iterator

import tensorflow as tf

from power_bert_tf.errors import PowerBertError

# A worker that stops answering is declared lost after about this many seconds: the
# collectives of the others are aborted and they exit (see `worker_failures`).
HEALTH_CHECK_SECONDS = 5
_LOST_WORKER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                       tf.errors.CancelledError, tf.errors.AbortedError,
                       tf.errors.FailedPreconditionError, tf.errors.InternalError)


def make_strategy(name: str, tpu: str | None = None) -> tf.distribute.Strategy:
    """default | mirrored (all local GPUs, else all logical CPUs) | multi_worker | tpu.

    multi_worker reads the cluster from $TF_CONFIG and must be created before any
    other TensorFlow op runs in the process; it waits until every worker has started.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi_worker":
        return _multi_worker_strategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as error:
            raise PowerBertError(f"--distribution=tpu: no TPU found "
                                 f"({str(error).splitlines()[0]})") from None
        return tf.distribute.TPUStrategy(resolver)
    raise PowerBertError(f"--distribution={name!r} is not one of default, mirrored, "
                         f"multi_worker, tpu")


def _multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}"))
        task = cluster["task"]
        workers = cluster["cluster"]["worker"]
        int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise PowerBertError(f"--distribution=multi_worker needs $TF_CONFIG with cluster.worker "
                             f"and task.type/index (docs/distributed.md); got "
                             f"{os.environ.get('TF_CONFIG', 'nothing')!r} ({error!r})") from None
    if not workers:
        raise PowerBertError("--distribution=multi_worker: $TF_CONFIG lists no workers")
    # A lost peer is detected by the strategy's health check (TensorFlow's default is
    # every 30 s, 3 tries of 10 s); check more often so that survivors stop promptly.
    from tensorflow.python.distribute.collective_all_reduce_strategy import (
        CollectiveAllReduceExtended)

    CollectiveAllReduceExtended._check_health_interval = HEALTH_CHECK_SECONDS
    CollectiveAllReduceExtended._check_health_timeout = HEALTH_CHECK_SECONDS
    CollectiveAllReduceExtended._check_health_retry_limit = 1
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:
        raise PowerBertError(f"--distribution=multi_worker: {str(error).splitlines()[0]} (create "
                             f"the strategy before any other TensorFlow work)") from None


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster (the
    chief is task "chief", else worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    jobs = resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in jobs


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """Processes taking part in the strategy (1 unless multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 1
    return sum(len(tasks) for job, tasks in resolver.cluster_spec().as_dict().items()
               if job in ("chief", "worker"))


@contextlib.contextmanager
def worker_failures(strategy: tf.distribute.Strategy, what: str) -> Iterator[None]:
    """Turns the errors a multi-worker run gets when a peer dies into one PowerBertError
    naming `what` was interrupted; single-process runs are unaffected."""
    if num_workers(strategy) == 1:
        yield
        return
    try:
        yield
    except _LOST_WORKER_ERRORS as error:
        reason = re.sub(r"\{\{.*?\}\}\s*", "", (str(error).strip().splitlines() or [""])[0])
        raise PowerBertError(f"lost a worker of the multi-worker cluster during {what} "
                             f"({type(error).__name__}: {reason[:120]}); restart every "
                             f"worker with --resume to continue from the last completed "
                             f"epoch") from None


def sync_workers(strategy: tf.distribute.Strategy, what: str) -> None:
    """Waits until every worker gets here (an all-reduce), so that what the chief wrote
    before is complete when the others read it. A no-op on one process."""
    if num_workers(strategy) == 1:
        return

    @tf.function
    def count_workers() -> tf.Tensor:
        ones = strategy.run(lambda: tf.ones([]))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)

    with worker_failures(strategy, what):
        count_workers().numpy()
