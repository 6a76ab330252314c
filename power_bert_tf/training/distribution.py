"""`--strategy`: the tf.distribute strategy a run trains under."""
from __future__ import annotations

import tensorflow as tf

from power_bert_tf.errors import PowerBertError


def make_strategy(name: str, tpu: str | None = None) -> tf.distribute.Strategy:
    """default | mirrored (all local GPUs, else all logical CPUs) | multi_worker | tpu."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as error:
            raise PowerBertError(f"--strategy=tpu: no TPU found ({str(error).splitlines()[0]})") from None
        return tf.distribute.TPUStrategy(resolver)
    raise PowerBertError(f"--strategy={name!r} is not one of default, mirrored, multi_worker, tpu")
