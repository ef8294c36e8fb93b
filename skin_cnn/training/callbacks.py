"""Keras callbacks of a training run: the validation score, atomic checkpoints, history, resume.

The order in which :func:`skin_cnn.training.trainer.make_callbacks` lists them matters, because they
share one ``logs`` dict at the end of every epoch:

1. :class:`TaskAUC` adds the exact ``val_<task>_auc`` and ``val_mean_auc`` to ``logs``;
2. ``EarlyStopping`` and ``ReduceLROnPlateau`` watch ``val_mean_auc``;
3. :class:`AtomicCheckpoint` writes ``best.keras`` on a better ``val_mean_auc`` (on cached
   features: keeps that epoch's weights and writes it at the end) and, with ``--save-last``,
   ``last.keras`` at the end
   (temporary name, then ``os.replace``: a killed run never leaves half a model);
4. :class:`HistoryCSV` rewrites ``history.csv``;
5. :class:`TrainingState` stores everything a resumed run needs: weights, optimizer variables
   (moments, iteration count, learning rate), the epoch, and the counters of the callbacks above.

A run killed at any moment restarts from the last completed epoch; because the data order and the
augmentation of every epoch are functions of (seed, epoch) (:mod:`skin_cnn.data.pipeline`),
the resumed run replays the interrupted epoch exactly and ends with the same weights as an
uninterrupted one.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from skin_cnn.core import io as atomic
from skin_cnn.core.run_paths import RunPaths
from skin_cnn.core.tasks import TASK_NAMES, TASKS



# ----------------------------------------------------------------------------------------------
def task_aucs(probabilities, labels, masks, tasks=TASK_NAMES):
    """ROC AUC per task over the images that belong to it; NaN when a task lacks a class.

    Parameters
    ----------
    probabilities, labels, masks : dict of str -> array of shape (n,)
    """
    out = {}
    for task in tasks:
        keep = np.asarray(masks[task]).reshape(-1) > 0
        y = np.asarray(labels[task]).reshape(-1)[keep]
        p = np.asarray(probabilities[task]).reshape(-1)[keep]
        out[task] = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
    return out


def task_losses(probabilities, labels, masks, tasks=TASK_NAMES, eps=1e-7):
    """Binary cross-entropy per task, averaged over the images that belong to it (NaN if none).

    The same quantity the masked training loss sums over tasks (``compile_model``'s default
    ``mean_with_sample_weight`` reduction), so training and validation curves are comparable.
    """
    out = {}
    for task in tasks:
        keep = np.asarray(masks[task]).reshape(-1) > 0
        y = np.asarray(labels[task], dtype=float).reshape(-1)[keep]
        p = np.clip(np.asarray(probabilities[task], dtype=float).reshape(-1)[keep], eps, 1 - eps)
        out[task] = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if keep.any() else float("nan")
    return out


def mean_auc(aucs):
    """Mean of the defined task AUCs; 0.5 (chance) when no task has both classes."""
    values = [v for v in aucs.values() if not math.isnan(v)]
    return float(np.mean(values)) if values else 0.5


def predict_batches(model, x, batch_size=64, transform=None, call=None):
    """Run ``model`` on ``x`` in batches, locally and without tf.distribute, as NumPy arrays.

    Calling the model directly (not ``model.predict``) keeps the computation on this process:
    under MultiWorkerMirroredStrategy every worker holds the same weights, and a collective
    ``predict`` inside a callback would make the workers wait on each other.

    Parameters
    ----------
    call : callable, optional
        ``call(batch) -> outputs`` used instead of ``model(batch, training=False)``, e.g. a
        traced :func:`inference_function` when the same model is run after every epoch.
    """
    outputs = {task: [] for task in TASK_NAMES}
    for start in range(0, len(x), batch_size):
        batch = np.asarray(x[start:start + batch_size])
        batch = batch.astype("float32") if transform is None else transform(batch)
        pred = model(batch, training=False) if call is None else call(batch)
        for task in TASK_NAMES:
            outputs[task].append(np.asarray(keras.ops.convert_to_numpy(pred[task])).reshape(-1))
    return {task: np.concatenate(v) if v else np.zeros(0) for task, v in outputs.items()}


def inference_function(model):
    """``model(batch, training=False)`` traced once by ``tf.function`` (any batch size).

    An eager call of a Keras model runs layer by layer from Python; after every epoch on cached
    features that costs more than the epoch itself.
    """
    return tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)


class TaskAUC(keras.callbacks.Callback):
    """Exact per-task and mean ROC AUC on the validation set after every epoch.

    Keras' streaming AUC is an approximation on a threshold grid, and the study keeps the epoch
    with the best *validation* score; the exact AUC of the model's probabilities on the images of
    each task is cheap next to an epoch of training. Adds ``val_<task>_auc`` (replacing Keras'
    streaming value of the same name when present), ``val_mean_auc``, and ``mean_auc``: the mean
    of the training-set streaming ``<task>_auc`` values Keras already logged.

    Parameters
    ----------
    val : tuple (x, labels, masks)
        Validation inputs (images or cached features) with per-task labels and masks.
    """

    def __init__(self, val, batch_size=64, echo=None):
        super().__init__()
        self.val = val
        self.batch_size = batch_size
        self.echo = echo
        self._warned = False
        self._traced = (None, None)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        x, labels, masks = self.val
        if self._traced[0] is not self.model:
            self._traced = (self.model, inference_function(self.model))
        probabilities = predict_batches(self.model, x, self.batch_size, call=self._traced[1])
        aucs = task_aucs(probabilities, labels, masks)
        losses = task_losses(probabilities, labels, masks)
        for task, value in losses.items():
            logs[f"val_{task}_loss"] = value
        defined = [v for v in losses.values() if not math.isnan(v)]
        if defined:
            regularisation = sum(float(keras.ops.convert_to_numpy(v)) for v in self.model.losses)
            logs["val_loss"] = float(np.sum(defined)) + regularisation
        if all(math.isnan(v) for v in aucs.values()) and not self._warned and self.echo:
            self.echo("warning: no task has both classes in the validation split; "
                      "val_mean_auc is set to 0.5 and the best epoch cannot be chosen by it")
            self._warned = True
        for task, value in aucs.items():
            logs[f"val_{task}_auc"] = value
        logs["val_mean_auc"] = mean_auc(aucs)
        train = {t: float(logs[f"{t}_auc"]) for t in TASK_NAMES if f"{t}_auc" in logs}
        if train:
            logs["mean_auc"] = mean_auc(train)


# ----------------------------------------------------------------------------------------------
def epoch_line(epoch, epochs, logs, seconds):
    """One short plain line per epoch: loss, validation AUC per task and mean, time."""
    logs = logs or {}

    def number(key, digits=3):
        value = logs.get(key)
        return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"

    aucs = "  ".join(f"{TASKS[t].short} {number(f'val_{t}_auc')}" for t in TASK_NAMES)
    return (f"epoch {epoch}/{epochs}  loss {number('loss')}  val_loss {number('val_loss')}  "
            f"val AUC {aucs}  mean {number('val_mean_auc')}  {seconds:.0f} s")


class EpochProgress(keras.callbacks.Callback):
    """A progress bar per epoch in a terminal, and one short plain line per epoch everywhere.

    Keras' own progress lines hold every metric of every task (700 characters and more, with
    terminal control codes even when written to a file); this shows the numbers a reader
    follows: loss, validation AUC per task and their mean.

    Parameters
    ----------
    epochs, steps : int
        Epochs in the run and batches per epoch.
    echo : callable
        Where the per-epoch lines go.
    bar : bool
        Draw a bar over the batches of each epoch (:func:`skin_cnn.core.progress.progress_bar`).
    """

    def __init__(self, epochs, steps, echo=print, bar=False):
        super().__init__()
        self.epochs, self.steps, self.echo, self.bar = int(epochs), int(steps), echo, bar
        self._bar = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        if self.bar:
            from skin_cnn.core.progress import progress_bar

            self._bar = progress_bar(total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="batch",
                                     leave=False)

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is not None:
            self._bar.update(1)
            if logs and "loss" in logs:
                self._bar.set_postfix(loss=f"{float(logs['loss']):.3f}", refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self.echo(epoch_line(epoch + 1, self.epochs, logs, time.perf_counter() - self._start))


class TrainingDiverged(FloatingPointError):
    """The weights stopped being numbers (a NaN or infinite loss, or transformer zoom and shift).

    Its message says everything there is to say (run folder, epoch, batch, what to do), so the
    command line shows it as one line without pointing to a traceback.
    """


class StopOnNonFinite(keras.callbacks.Callback):
    """Fail the fit at the first batch whose training loss is NaN or infinite, naming where.

    Keras' ``TerminateOnNaN`` stops quietly, and the run would then finish as if it had
    converged; gradient steps from a NaN loss leave NaN weights, so nothing after it is worth
    computing. The run folder keeps ``best.keras`` and the state of the last finished epoch.

    Parameters
    ----------
    run_dir : path
        The run folder, named in the error.
    """

    def __init__(self, run_dir):
        super().__init__()
        self.run_dir, self.epoch, self.batch = run_dir, 0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.batch = epoch + 1, 0

    def on_train_batch_begin(self, batch, logs=None):
        self.batch = batch + 1

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise self.diverged(f"the training loss is {float(loss)}")

    def diverged(self, what):
        """The error to raise, ``what`` saying which number stopped being finite."""
        where = f"{self.run_dir}: training diverged in epoch {self.epoch}, batch {self.batch}: {what}"
        if self.epoch <= 1:
            return TrainingDiverged(f"{where}. No epoch had finished, so there is nothing to resume; train "
                                    "again with a lower --learning-rate")
        return TrainingDiverged(f"{where}. best.keras keeps the best finished epoch; --resume continues from "
                                f"epoch {self.epoch}, or train again with a lower --learning-rate")


def save_model_atomic(model, path):
    """``model.save(path)`` without optimizer state, through a temporary file and ``os.replace``.

    A saved model is for predicting; what resuming needs (optimizer moments included) is in
    ``backup/state.npz``. Leaving the optimizer out makes ``best.keras`` a third of the size.
    The file's layers are float32 whatever precision the trunk computes in now
    (:func:`~skin_cnn.models.precision_policy.float32_layers`), so any Keras loads it at full precision.
    """
    from skin_cnn.models.precision_policy import float32_layers

    optimizer = getattr(model, "optimizer", None)
    with atomic.atomic_path(path) as tmp, float32_layers(model):
        try:
            if optimizer is not None:
                model.optimizer = None
            model.save(tmp)
        finally:
            if optimizer is not None:
                model.optimizer = optimizer


class AtomicCheckpoint(keras.callbacks.Callback):
    """Write ``best.keras`` for the best ``monitor`` value (and ``last.keras`` when training ends).

    Parameters
    ----------
    model_to_save : keras.Model
        The full image-in model. With the feature cache the model being trained is the head,
        which shares its layers with this one, so saving this one always gives a model that
        takes images.
    defer_best : bool
        False: write ``best.keras`` at every improvement. True: keep the trained model's weights
        of the best epoch in memory (and in the resume state, see :class:`TrainingState`) and
        write ``best.keras`` once, when training ends. Saving a full VGG-16 (~60 MB) takes longer
        than a whole epoch on cached features, so the feature-cache path defers it.
    """

    def __init__(self, model_to_save, run_dir, monitor="val_mean_auc", enabled=True, defer_best=False,
                 save_last=True):
        super().__init__()
        self.save_last = save_last
        self.model_to_save = model_to_save
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.enabled = enabled
        self.defer_best = defer_best
        self.best = -math.inf
        self.best_epoch = 0
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        score = float((logs or {}).get(self.monitor, math.nan))
        improved = not math.isnan(score) and score > self.best
        if not improved:
            return
        self.best, self.best_epoch = score, epoch + 1
        if self.defer_best:
            self.best_weights = [np.array(w, copy=True) for w in self.model.get_weights()]
        elif self.enabled:
            save_model_atomic(self.model_to_save, RunPaths(self.run_dir).best_model)

    def on_train_end(self, logs=None):
        # Resuming needs only backup/state.npz, so the full model is written once at the end
        # instead of every epoch (a VGG-16 is ~60 MB).
        if not self.enabled:
            return
        if self.save_last:
            save_model_atomic(self.model_to_save, RunPaths(self.run_dir).last_model)
        if self.defer_best and self.best_weights is not None:
            last = self.model.get_weights()
            self.model.set_weights(self.best_weights)
            try:
                save_model_atomic(self.model_to_save, RunPaths(self.run_dir).best_model)
            finally:
                self.model.set_weights(last)

    def get_state(self):
        return {"best": self.best, "best_epoch": self.best_epoch}

    def set_state(self, state):
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])

    def get_arrays(self):
        """The deferred best weights, which a resumed run needs to write ``best.keras``."""
        return list(self.best_weights) if self.best_weights is not None else []

    def set_arrays(self, arrays):
        self.best_weights = [np.asarray(a) for a in arrays] if arrays else None


class HistoryCSV(keras.callbacks.Callback):
    """Rewrite ``history.csv`` (one row per completed epoch, 1-based) after every epoch.

    Besides Keras' logs each row holds the learning rate and ``epoch_time_s``: the wall time
    from the previous row (or the start of training) to this one, so it covers the whole cycle
    of an epoch, every callback of the previous epoch's end included.

    On resume the rows of the epochs already completed are kept and the replayed epochs
    replace anything written after the last saved state, so the file never holds an epoch twice.
    """

    def __init__(self, path, previous_rows=None, enabled=True):
        super().__init__()
        self.path = Path(path)
        self.rows = list(previous_rows or [])
        self.enabled = enabled

    @staticmethod
    def read_rows(path, up_to_epoch):
        """Rows of an existing history.csv with ``epoch <= up_to_epoch``."""
        path = Path(path)
        if not path.is_file() or up_to_epoch <= 0:
            return []
        frame = pd.read_csv(path)
        return frame[frame["epoch"] <= up_to_epoch].to_dict("records")

    def on_train_begin(self, logs=None):
        self._last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        now = time.perf_counter()
        if getattr(self, "_last", None) is not None:
            row["epoch_time_s"] = now - self._last
        self._last = now
        try:
            row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        except (AttributeError, TypeError, ValueError):
            pass
        for key, value in sorted((logs or {}).items()):
            if key in row:
                continue
            try:
                row[key] = float(value)
            except (TypeError, ValueError):
                continue
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch + 1] + [row]
        if self.enabled:
            atomic.write_csv(self.path, pd.DataFrame(self.rows))


# ----------------------------------------------------------------------------------------------
_CALLBACK_FIELDS = {
    "EarlyStopping": ("wait", "best", "best_epoch", "stopped_epoch"),
    "ReduceLROnPlateau": ("wait", "best", "cooldown_counter"),
}


def callback_state(callback):
    """The counters of a callback that a resumed run must carry on with."""
    if hasattr(callback, "get_state"):
        return callback.get_state()
    fields = _CALLBACK_FIELDS.get(type(callback).__name__, ())
    state = {}
    for name in fields:
        value = getattr(callback, name, None)
        if value is not None:
            state[name] = float(value) if isinstance(value, (float, np.floating)) else value
    return state


def set_callback_state(callback, state):
    if hasattr(callback, "set_state"):
        callback.set_state(state)
        return
    for name, value in state.items():
        setattr(callback, name, value)


class TrainingState(keras.callbacks.Callback):
    """Save, after every epoch, all a killed run needs to continue; restore it on resume.

    Everything goes into one ``.npz`` file written under a temporary name and renamed, so the
    saved state is always a complete epoch: model weights, optimizer variables, the number of
    completed epochs, and the counters of ``tracked`` callbacks (early stopping, learning-rate
    schedule, best checkpoint). Put this callback last so it sees their end-of-epoch values.
    """

    def __init__(self, path, tracked=(), restore=None, enabled=True):
        super().__init__()
        self.path = Path(path)
        self.tracked = dict(tracked)
        self._restore = restore
        self.enabled = enabled

    def on_train_begin(self, logs=None):
        # Other callbacks reset their counters in their own on_train_begin; put ours back after.
        self.apply_restored()

    def apply_restored(self):
        """Give the tracked callbacks their saved counters and arrays (no-op for a new run)."""
        if self._restore:
            for name, state in self._restore.get("callbacks", {}).items():
                if name in self.tracked:
                    set_callback_state(self.tracked[name], state)
            for name, arrays in self._restore.get("arrays", {}).items():
                if name in self.tracked and hasattr(self.tracked[name], "set_arrays"):
                    self.tracked[name].set_arrays(arrays)

    def _arrays(self):
        return {name: cb.get_arrays() for name, cb in self.tracked.items() if hasattr(cb, "get_arrays")}

    def on_epoch_end(self, epoch, logs=None):
        meta = {
            "epoch": epoch + 1,
            "stop_training": bool(getattr(self.model, "stop_training", False)),
            "callbacks": {name: callback_state(cb) for name, cb in self.tracked.items()},
        }
        if self.enabled:
            save_state(self.path, self.model, meta, extra=self._arrays())

    def on_train_end(self, logs=None):
        if self.enabled and self.path.is_file():
            state = load_state_meta(self.path)
            state["finished"] = True
            save_state(self.path, self.model, state, extra=self._arrays())


def save_state(path, model, meta, extra=None):
    """Write weights, optimizer variables and ``meta`` (JSON) into one ``.npz``, atomically.

    ``extra`` maps names to lists of arrays (e.g. the checkpoint's deferred best weights);
    :func:`restore_state` returns them as ``meta["arrays"]``.
    """
    arrays = {f"w{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and optimizer.built:
        for i, v in enumerate(optimizer.variables):
            arrays[f"o{i}"] = np.asarray(keras.ops.convert_to_numpy(v.value))
    meta = dict(meta, extra_arrays={name: len(values) for name, values in (extra or {}).items()})
    for name, values in (extra or {}).items():
        for i, value in enumerate(values):
            arrays[f"x{i}_{name}"] = np.asarray(value)
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_state_meta(path):
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["meta"]))


def restore_state(path, model, strategy=None):
    """Load weights and optimizer variables saved by :func:`save_state`; return the meta dict."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            weights = [data[f"w{i}"] for i in range(sum(k.startswith("w") for k in data.files))]
            opt_values = [data[f"o{i}"] for i in range(sum(k.startswith("o") for k in data.files))]
            meta["arrays"] = {name: [data[f"x{i}_{name}"] for i in range(count)]
                              for name, count in meta.pop("extra_arrays", {}).items()}
    except (zipfile.BadZipFile, ValueError, OSError, KeyError, EOFError) as exc:
        raise ValueError(f"{path}: saved training state is damaged or incomplete ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); delete {path} to train from the "
                         "start") from None
    model.set_weights(weights)
    if opt_values:
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
        variables = model.optimizer.variables
        if len(variables) != len(opt_values):
            raise ValueError(f"{path}: saved optimizer state has {len(opt_values)} variables, "
                             f"the model's optimizer {len(variables)}; was the configuration changed?")
        for var, value in zip(variables, opt_values):
            var.assign(value)
    return meta


def state_path(run_dir):
    return RunPaths(run_dir).state


def has_state(run_dir):
    return os.path.isfile(state_path(run_dir))
