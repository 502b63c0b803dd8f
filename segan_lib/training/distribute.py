"""Training across devices and machines with tf.distribute, chosen by name.

    default       one device (whatever TensorFlow picks)
    mirrored      every GPU of this machine (MirroredStrategy); on a machine without a GPU,
                  the CPU split into `logical_cpus` devices (a test of the code path, not a speed-up)
    multiworker   several machines or processes (MultiWorkerMirroredStrategy), described by the
                  TF_CONFIG environment variable that every worker is started with

The profile's batch size is the global batch: each of the N replicas gets B/N
slices, batch normalisation is synchronised across them, and each replica's
loss counts 1/N because the optimizer sums the replicas' gradients, so N
replicas train like one device with batch B. Only the chief (worker 0 when
TF_CONFIG names no chief) writes the run folder; for resume, every worker must
see that folder (a shared file system).

The strategy is a property of where a run executes, not of its results, so it
is not part of the profile: `segan train --strategy`, `segan study --strategy`,
or the SEGAN_STRATEGY environment variable (which papermill kernels inherit).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from segan_lib.errors import ConfigError

DEVICE_STRATEGIES = ("default", "mirrored", "multiworker")
ENV_STRATEGY = "SEGAN_STRATEGY"
ENV_LOGICAL_CPUS = "SEGAN_LOGICAL_CPUS"


@dataclass
class Placement:
    """Where a run executes: the strategy (None = default), its replicas, and whether this process writes."""

    name: str
    strategy: Any = None
    replicas: int = 1
    is_chief: bool = True

    def scope(self):
        import contextlib

        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


def _split_cpu(n: int) -> None:
    """Expose the CPU as n logical devices; must happen before TensorFlow's runtime starts."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current is not None and len(current) == n:
        return
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError as exc:
        raise ConfigError(f"cannot split the CPU into {n} devices after TensorFlow started ({exc}); "
                          f"set {ENV_LOGICAL_CPUS}={n} before the process starts") from None


def _is_chief(tf_config: dict) -> bool:
    task = tf_config.get("task", {})
    kind, index = task.get("type"), int(task.get("index", 0))
    if kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in tf_config.get("cluster", {})


def make_placement(name: str | None = None, logical_cpus: int | None = None) -> Placement:
    """The placement for a strategy name (default: $SEGAN_STRATEGY, else 'default')."""
    name = name or os.environ.get(ENV_STRATEGY) or "default"
    if name not in DEVICE_STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; choose one of {', '.join(DEVICE_STRATEGIES)}")
    if name == "default":
        return Placement(name)
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ConfigError(f"strategy {name!r} needs the TensorFlow backend (KERAS_BACKEND is "
                          f"{keras.backend.backend()!r})")
    import tensorflow as tf

    if name == "mirrored":
        logical_cpus = logical_cpus or int(os.environ.get(ENV_LOGICAL_CPUS, "0") or 0)
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus and logical_cpus > 1:
            _split_cpu(logical_cpus)
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
                  [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices=devices)
        return Placement(name, strategy, strategy.num_replicas_in_sync, True)
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ConfigError("strategy 'multiworker' needs TF_CONFIG: a JSON cluster description with this worker's "
                          "task, e.g. {\"cluster\": {\"worker\": [\"host1:port\", \"host2:port\"]}, "
                          "\"task\": {\"type\": \"worker\", \"index\": 0}}")
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({exc})") from None
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return Placement(name, strategy, strategy.num_replicas_in_sync, _is_chief(tf_config))


def check_global_batch(batch_size: int, replicas: int) -> None:
    if batch_size % replicas:
        raise ConfigError(f"train.batch_size={batch_size} is the global batch and must divide evenly among "
                          f"{replicas} replicas")


def replica_share(loss):
    """The part of a loss one replica's gradients stand for: 1/N of it under N replicas, else all of it."""
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss


def per_replica_logs(logs: dict) -> dict:
    """Logs as Keras can reduce them across workers.

    Keras (3.15) reduces every log of a multi-worker step with a mean over axis 0, which a
    scalar lacks; the trackers behind our logs already hold the value summed over all
    replicas, so a length-1 axis changes nothing else.
    """
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    multi_worker = getattr(strategy.extended, "_in_multi_worker_mode", None)
    if multi_worker is not None and multi_worker():
        return {name: tf.reshape(value, (1,)) for name, value in logs.items()}
    return logs


def shard_by_data(dataset):
    """A generator-fed dataset has no files to shard: every worker makes the same batches, each takes its part."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
