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

The log reduction is decided by a private Keras function,
``keras.src.backend.tensorflow.trainer._collective_all_reduce_multi_worker``. It is wrapped, not
replaced: the wrapper answers ``False`` only for the strategy objects handed to
:func:`patch_keras_for_multi_worker` and defers to Keras for every other one, so nothing else in
the process changes. When that function or the model methods used here are missing (Keras moved
them), :func:`patch_keras_for_multi_worker` says so instead of failing inside ``fit``; the test
suite checks both that they still exist and that an unpatched Keras still fails, so a Keras release
that fixes the bug is noticed and the workaround can go.
"""
from __future__ import annotations

import json
import os
import tempfile
import weakref
from dataclasses import dataclass

#: Keras releases the workaround was checked against (the test suite checks the installed one).
KERAS_CHECKED = "3.7 to 3.15"
_PRIVATE_FUNCTION = "_collective_all_reduce_multi_worker"
# Strategies whose per-step logs are reduced locally; weak so that a finished strategy is dropped.
_LOCAL_LOG_STRATEGIES = weakref.WeakSet()


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

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return model
    tf_trainer = keras_private_hooks(model)
    with strategy.scope():
        model._symbolic_build(data_batch=first_batch)
    model._maybe_symbolic_build = lambda *args, **kwargs: None
    # Logs are reduced over local replicas only; gradients are still all-reduced by the strategy.
    _LOCAL_LOG_STRATEGIES.add(strategy)
    current = getattr(tf_trainer, _PRIVATE_FUNCTION)
    if not getattr(current, "skin_cnn_wrapper", False):
        def collective_all_reduce_multi_worker(strategy):
            if strategy in _LOCAL_LOG_STRATEGIES:
                return False
            return current(strategy)

        collective_all_reduce_multi_worker.skin_cnn_wrapper = True
        collective_all_reduce_multi_worker.wrapped = current
        setattr(tf_trainer, _PRIVATE_FUNCTION, collective_all_reduce_multi_worker)
    return model


def keras_private_hooks(model=None):
    """The Keras trainer module whose private function is wrapped; a clear error if it moved.

    Parameters
    ----------
    model : keras.Model, optional
        Also checked for the private ``_symbolic_build`` and ``_maybe_symbolic_build`` methods.

    Raises
    ------
    RuntimeError
        Naming the installed Keras version and what is missing: multi-worker training needs a
        Keras release in which the workaround was checked (:data:`KERAS_CHECKED`).
    """
    import keras

    try:
        from keras.src.backend.tensorflow import trainer as tf_trainer
    except ImportError:
        tf_trainer = None
    missing = []
    if tf_trainer is None:
        missing.append("keras.src.backend.tensorflow.trainer")
    elif not callable(getattr(tf_trainer, _PRIVATE_FUNCTION, None)):
        missing.append(f"keras.src.backend.tensorflow.trainer.{_PRIVATE_FUNCTION}")
    for name in ("_symbolic_build", "_maybe_symbolic_build"):
        if model is not None and not callable(getattr(model, name, None)):
            missing.append(f"Model.{name}")
    if missing:
        raise RuntimeError(
            f"--strategy multi-worker: Keras {keras.__version__} lacks {', '.join(missing)}, which the "
            f"multi-worker workaround relies on (checked with Keras {KERAS_CHECKED}); "
            "use --strategy auto or a checked Keras release"
        )
    return tf_trainer
