"""tf.distribute for ``skin-cnn train --strategy auto|mirrored|multi-worker``.

* ``auto``: TensorFlow's default strategy on one device, :class:`tf.distribute.MirroredStrategy`
  when more than one GPU is visible.
* ``mirrored``: MirroredStrategy over all local GPUs (or the CPU when there is none).
* ``multi-worker``: :class:`tf.distribute.MultiWorkerMirroredStrategy` configured by the
  ``TF_CONFIG`` environment variable (one process per machine, same command everywhere). Only the
  chief writes the run folder; the other workers write into a temporary folder.

Keras 3 (up to at least 3.15) does not run ``Model.fit`` under MultiWorkerMirroredStrategy out of
the box (keras-team/keras#20585): its symbolic build and its log reduction call
``strategy.reduce`` on per-replica values in a way the collective strategy rejects.
:func:`patch_keras_for_multi_worker` works around both: the model is built on one local batch
before ``fit``, and the per-step logs (loss and metrics, used only for display and callbacks) are
averaged over the local replicas. Gradients are still all-reduced across every worker by the
strategy, so all workers keep identical weights; the multi-worker test checks exactly that.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass


@dataclass
class StrategyInfo:
    """The strategy and this process's role in it."""

    strategy: object
    name: str
    is_chief: bool = True
    num_workers: int = 1
    worker_index: int = 0

    @property
    def num_replicas(self):
        return int(self.strategy.num_replicas_in_sync)


def tf_config():
    """``TF_CONFIG`` as a dict, or ``{}``; one clear error when it is not valid JSON."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        return {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"TF_CONFIG is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or "cluster" not in config or "task" not in config:
        raise ValueError("TF_CONFIG needs 'cluster' and 'task' entries (docs/distributed.md)")
    return config


def is_chief_task(config):
    """True for the task that writes outputs: the ``chief``, or worker 0 when there is none."""
    if not config:
        return True
    task = config.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    if kind == "chief":
        return True
    if "chief" in config.get("cluster", {}):
        return False
    return kind == "worker" and index == 0


def make_strategy(name="auto"):
    """Create the tf.distribute strategy called ``name`` (must run before other TF work)."""
    import tensorflow as tf

    if name == "multi-worker":
        config = tf_config()
        if not config:
            raise ValueError("--strategy multi-worker needs the TF_CONFIG environment variable "
                             "(docs/distributed.md)")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        cluster = config["cluster"]
        workers = sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))
        return StrategyInfo(strategy, name, is_chief=is_chief_task(config), num_workers=workers,
                            worker_index=int(config["task"].get("index", 0)))
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return StrategyInfo(tf.distribute.MirroredStrategy(), "mirrored")
    if name not in ("auto", "mirrored"):
        raise ValueError(f"unknown strategy {name!r}; expected auto, mirrored or multi-worker")
    return StrategyInfo(tf.distribute.get_strategy(), "default")


def output_dir_for(info, out):
    """The chief writes ``out``; other workers write into a fresh temporary folder."""
    if info.is_chief:
        return out
    return tempfile.mkdtemp(prefix=f"skin-cnn-worker{info.worker_index}-")


def patch_keras_for_multi_worker(model, strategy, first_batch):
    """Let ``model.fit`` run under MultiWorkerMirroredStrategy (see the module docstring).

    Parameters
    ----------
    model : keras.Model
        A compiled model created under ``strategy.scope()``.
    strategy : tf.distribute.Strategy
    first_batch : tuple
        One local (non-distributed) batch ``(x, y, sample_weight)`` to build the model on.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return model
    with strategy.scope():
        model._symbolic_build(data_batch=first_batch)
    model._maybe_symbolic_build = lambda *args, **kwargs: None
    # Logs are reduced over local replicas only; gradients are still all-reduced by the strategy.
    tf_trainer._collective_all_reduce_multi_worker = lambda strategy: False
    return model
