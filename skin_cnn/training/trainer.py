"""The steps of one training: split → prepared images → (feature cache) → fit → run folder.

:func:`skin_cnn.app.train_run.train` composes them: open the run folder, read the split, build
the model, record the run's settings, prepare the training and validation images once
(:func:`skin_cnn.data.preprocessing.prepare_images`) with the training stream
(:mod:`skin_cnn.data.pipeline`: images, or cached trunk features for variant P), fit (gradient
descent with the run's callbacks, or logistic regressions for linear heads), write the best
model's validation predictions and curves, and store the thresholds fitted on them. The test
evaluation, the flow record and the model card are the application's (:mod:`skin_cnn.app`).
Training never reads the test split.

Determinism and resume rest on one rule: everything random during training is a function of
(seed, epoch) (:mod:`skin_cnn.data.pipeline`), so a run resumed at epoch ``k`` (weights,
optimizer and callback counters restored from ``backup/state.npz``) replays exactly what an
uninterrupted run would have done.
"""
from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from skin_cnn.core import io as atomic
from skin_cnn.core.io import sha256_file
from skin_cnn.core.compute_precision import Precision
from skin_cnn.models.precision_policy import apply_precision, model_precision, resolve_precision
from skin_cnn.data.augment import AugmentConfig
from skin_cnn.data import pipeline
from skin_cnn.data.pipeline import ViewRows, feature_stream, image_stream, steps_per_epoch, targets
from skin_cnn.data.preprocessing import ImageStore, prepare_images
from skin_cnn.core.tasks import TASK_NAMES, TASKS
from skin_cnn.data.crop import check_not_cropped_twice, fitting_crop_boxes
from skin_cnn.models import build_model, compile_model, parameter_counts, split_at_frozen_boundary, with_model_info
from skin_cnn.models.spatial_transformer import NON_FINITE_PARAMETERS
from skin_cnn.core.predictions import predictions_frame
from skin_cnn.core.run_paths import RunPaths
from skin_cnn.data.skipped import read_skipped, write_skipped
from skin_cnn.data.split import load_split, write_split
from skin_cnn.training import callbacks as cb
from skin_cnn.training import run_folder
from skin_cnn.training.config import TrainConfig, prepared_bytes, resolve_config, run_config_document
from skin_cnn.training.curves import plot_training_curves
from skin_cnn.evaluation.method import trained_blocks_text
from skin_cnn.training.distribute import StrategyInfo, output_dir_for, patch_keras_for_multi_worker
from skin_cnn.training.feature_cache import (FeatureSettings, cached_features, identity_of, image_identities,
                                             pid_alive, weights_digest)

PREPARED_PREFIX = ".prepared-"


@dataclass
class RunResult:
    """What :func:`train` returns (and prints as a summary)."""

    run_dir: Path
    best_epoch: int = 0
    epochs_run: int = 0
    val_aucs: dict = field(default_factory=dict)
    wall_s: float = 0.0
    skipped: list = field(default_factory=list)
    feature_cache: str | None = None
    cache_reused: bool = False
    eval_dir: Path | None = None
    test_metrics: dict | None = None
    summary: str = ""
    converged: bool = True
    threshold_fit: object = None

    @property
    def val_mean_auc(self):
        values = [v for v in self.val_aucs.values() if not math.isnan(v)]
        return float(np.mean(values)) if values else float("nan")


@dataclass
class TrainingData:
    """What the fit needs, whichever input (images or cached features) the run trains on.

    Attributes
    ----------
    train_model : keras.Model
        The full model, or its head on cached features.
    stream : callable
        ``stream(initial_epoch, shard=None) -> tf.data.Dataset`` of all remaining epochs.
    steps : int
        Batches per epoch.
    val_x : array or ImageStore
        Validation inputs of ``train_model`` (prepared images or cached features).
    val_positions : numpy.ndarray
        Frame row labels of the validation rows of ``val_x``.
    skipped : list of dict
        Unreadable images (``image_path``, ``split``, ``reason``).
    cache : CachedFeatures or None
    """

    train_model: object
    stream: object
    steps: int
    val_x: object
    val_positions: np.ndarray
    skipped: list
    cache: object = None
    train_features: object = None
    train_positions: np.ndarray = None


@dataclass
class RunContext:
    """What every step of one training knows: its settings, devices, folder and how it reports.

    Attributes
    ----------
    config : TrainConfig
    info : StrategyInfo
        The tf.distribute strategy and this process's place in it (chief or worker).
    run_dir : Path
        The folder this process writes (a worker's is a scratch folder beside the chief's).
    resume : bool
        Continue the run in ``config.out`` from its last completed epoch.
    progress : bool
        Progress bars in a terminal (one line per epoch otherwise).
    echo : callable
        Where one-line messages go (``click.echo`` from the CLI).
    synthetic : bool
        Trained on synthetic demo data (said in the curves' title, the model card and the model's
        ModelInfo); also set when the split's ``synthetic`` column marks its images so.
    """

    config: TrainConfig
    info: StrategyInfo
    run_dir: Path
    resume: bool = False
    progress: bool = True
    echo: Callable[[str], object] = print
    synthetic: bool = False

    @property
    def paths(self) -> RunPaths:
        """The files of this process's run folder."""
        return RunPaths(self.run_dir)


# ----------------------------------------------------------------------------------------------
def set_determinism(seed):
    """Seed Python, NumPy and TensorFlow and ask TensorFlow for deterministic kernels."""
    keras.utils.set_random_seed(int(seed))
    with contextlib.suppress(RuntimeError, AttributeError):
        tf.config.experimental.enable_op_determinism()


@contextlib.contextmanager
def deterministic(seed):
    """:func:`set_determinism` for the duration of a run, then TensorFlow's kernels as they were.

    Deterministic kernels are slower and refuse a few ops; a notebook that trains and then goes
    on with other TensorFlow work should not keep them. TensorFlow exposes the switch-off only
    in ``tensorflow.python.framework.config``; where that is missing the setting stays on.
    """
    from tensorflow.python.framework import config as tf_config

    was_on = getattr(tf_config, "is_op_determinism_enabled", lambda: True)()
    set_determinism(seed)
    try:
        yield
    finally:
        if not was_on and hasattr(tf_config, "disable_op_determinism"):
            tf_config.disable_op_determinism()


def augment_config(config):
    """The run's :class:`AugmentConfig` from its flat settings."""
    return AugmentConfig.from_dict({"zoom": config.zoom, "rotation": config.rotation,
                                    "translation": config.translation, "flip": config.flip})


def load_resume_config(run_dir):
    """The TrainConfig a run was started with (``--resume``), pointing at the same folder."""
    document = run_folder.read_run_config(run_dir)
    settings = dict(document.get("train", {}))
    settings["out"] = os.fspath(run_dir)
    return resolve_config(settings, source=f"{RunPaths(run_dir).config}")


def tensorboard_available():
    """Keras' TensorBoard callback needs the ``tensorboard`` package, which tensorflow-cpu lacks."""
    return importlib.util.find_spec("tensorboard") is not None


@contextlib.contextmanager
def preparation_folder(run_dir):
    """A ``.prepared-<pid>-*`` folder for this run's prepared images, removed afterwards.

    Folders of processes that no longer exist (a run killed with SIGKILL) are removed first.
    """
    run_dir = Path(run_dir)
    for stale in run_dir.glob(PREPARED_PREFIX + "*"):
        pid = stale.name[len(PREPARED_PREFIX):].split("-", 1)[0]
        if not pid_alive(int(pid) if pid.isdigit() else None):
            shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f"{PREPARED_PREFIX}{os.getpid()}-", dir=run_dir))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# The steps of a run


def open_run_folder(config, info, resume):
    out = Path(config.out)
    if not resume and info.is_chief:
        run_folder.check_new_run_folder(out)
    run_dir = Path(output_dir_for(info, out))
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def read_split(config, echo=None):
    """The run's split, checked, keeping only the crop boxes its crop would cut.

    Boxes another crop made are emptied (:func:`~skin_cnn.data.crop.fitting_crop_boxes`), so the
    run's own ``split.csv`` holds the boxes it used; ``echo`` receives the line saying so.
    """
    path = Path(config.split)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file not found")
    frame = load_split(path)
    check_not_cropped_twice(frame, config.crop, path)
    frame, note = fitting_crop_boxes(frame, config.preprocessing(), str(path))
    if note and echo is not None:
        echo(note)
    counts = frame["split"].value_counts()
    for split in ("train", "val"):
        if counts.get(split, 0) == 0:
            raise ValueError(f"{path}: the {split} split is empty; training needs train and val images")
    if not learnable_tasks(frame):
        raise ValueError(
            f"{path}: no task has both of its diseases in train and in val ({class_counts(frame)}); "
            "a model could neither learn nor be checked on any task"
        )
    return frame


def check_disk_space(run_dir, frame, image_size):
    """Refuse, before any image is prepared, a run whose prepared images cannot fit on the disk.

    Training writes every train and val image, resized, as uint8 next to the run
    (:func:`preparation_folder`); at large ``image_size`` that is tens of GB written before the
    disk fills half-way through.
    """
    n_images = int(frame["split"].isin(["train", "val"]).sum())
    need = prepared_bytes(image_size, n_images)
    free = shutil.disk_usage(run_dir).free
    if need > free:
        raise ValueError(
            f"{run_dir}: the {n_images} train and val images prepared at {image_size}×{image_size} "
            f"take {need / 1e9:,.1f} GB of disk and {free / 1e9:,.1f} GB are free there; lower "
            "--image-size or free some disk"
        )


def learnable_tasks(frame):
    """The tasks whose two diseases both appear in the train split and in the val split.

    A task missing one class in train cannot be learned, and one missing a class in val has no
    validation AUC to choose the epoch or threshold with. With no such task at all, training
    would still write a normal-looking ``best.keras`` (every AUC "–") that predict and serve
    accept, so :func:`read_split` refuses it.
    """
    present = {s: set(frame.loc[frame["split"] == s, "diagnosis"]) for s in ("train", "val")}
    return [name for name, task in TASKS.items()
            if all({task.positive, task.negative} <= present[s] for s in ("train", "val"))]


def class_counts(frame):
    """``train: acne 4, rosacea 3; val: acne 1`` — the images per disease of train and val."""
    parts = []
    for split in ("train", "val"):
        counts = frame.loc[frame["split"] == split, "diagnosis"].value_counts().sort_index()
        parts.append(f"{split}: " + ", ".join(f"{d} {n}" for d, n in counts.items()))
    return "; ".join(parts)


def build(config, info, precision=None, synthetic=False):
    """The run's model, its trunk computing in ``precision`` (recorded in its ModelInfo too, with
    whether its training images are ``synthetic``).

    ``precision`` defaults to ``config.precision`` resolved on this machine.
    """
    precision = resolve_precision(precision or config.precision)
    with info.strategy.scope():
        model = build_model(config.variant, input_shape=(config.image_size, config.image_size, 3),
                            weights=config.model_weights(), fine_tune_blocks=config.fine_tune_blocks,
                            seed=config.seed, preprocessing=config.preprocessing(), head=config.head,
                            pool_blocks=config.pooled_blocks(), mirror=config.mirror,
                            sqrt_features=config.sqrt_features,
                            second_scale=config.second_scale)
    return with_model_info(apply_precision(model, precision), precision=precision.name, synthetic=bool(synthetic))


def run_precision(config, resume):
    """The precision of a run: ``config.precision`` resolved, or for ``--resume`` the one recorded.

    A resumed run keeps the precision it started in (``config.json``, ``resolved.precision``),
    whatever ``auto`` would choose on this machine, so it replays exactly; runs recorded before
    the setting existed computed in float32.
    """
    if not resume:
        return resolve_precision(config.precision)
    path = RunPaths(config.out).config
    return Precision.from_record(run_folder.read_run_config(config.out).get("resolved", {}).get("precision"),
                              source=f"{path}: resolved.precision")


def record_run(config, run_dir, frame, model, info, resume, precision):
    """Write ``config.json`` and ``split.csv`` (new run) or check the split is unchanged (resume)."""
    split_path = Path(config.split)
    if resume:
        document = run_folder.read_run_config(config.out)
        if document.get("split_sha256") and document["split_sha256"] != sha256_file(split_path):
            raise ValueError(f"{split_path}: changed since the run started (SHA-256 differs); "
                             "a resumed run must train on the same split")
        return document
    resolved = {"feature_cache": config.use_feature_cache(), "strategy": info.name,
                "replicas": info.num_replicas, "workers": info.num_workers,
                "parameters": parameter_counts(model), "precision": precision.to_dict(),
                "learning_rate": {"value": config.learning_rate, "origin": config.learning_rate_origin}}
    document = run_config_document(config, split_sha256=sha256_file(split_path), resolved=resolved)
    document["split"] = os.fspath(split_path.resolve())
    paths = RunPaths(run_dir)
    write_split(frame, paths.split)
    document["run_split_sha256"] = sha256_file(paths.split)  # checked by evaluate
    atomic.write_json(paths.config, document)
    return document


@dataclass
class SharedFeatures:
    """Cached trunk features of a superset of a run's images (``skin-cnn cv`` extracts them once).

    Attributes
    ----------
    cache : CachedFeatures
        Where they came from (its entry path is reported by the runs).
    features : numpy.ndarray, (1 + K, n, ...)
        The clean view and K augmented views of every readable image of the superset.
    row_of : dict of identity -> int
        Image identity ``(image_path, sha256, box, diagnosis)`` → row of ``features``.
    skipped : list of dict
        Images that could not be read (``image_path``, ``split``, ``reason``).
    """

    cache: object
    features: np.ndarray
    row_of: dict
    skipped: list

    @classmethod
    def from_cache(cls, cache, frame, split="train"):
        """The features of ``cache.arrays[split]``, indexed by the identity of ``frame``'s rows."""
        identities = image_identities(frame.loc[cache.positions[split]])
        row_of = {identity_of(r): i for i, r in enumerate(identities.to_dict("records"))}
        return cls(cache, cache.arrays[split], row_of, list(cache.skipped))

    def rows_of(self, part):
        """``(frame labels, feature rows)`` of the readable rows of ``part``, matched by identity.

        A row that is neither among the features nor among the unreadable images (its file or
        diagnosis changed since the features were extracted) is a ValueError naming it.
        """
        unreadable = {s["image_path"] for s in self.skipped}
        labels, rows = [], []
        for label, record in zip(part.index, image_identities(part).to_dict("records")):
            row = self.row_of.get(identity_of(record))
            if row is not None:
                labels.append(label)
                rows.append(row)
            elif record["image_path"] not in unreadable:
                raise ValueError(f"{record['image_path']}: not among the features extracted for this "
                                 "cross-validation (its file or diagnosis changed since); start it again")
        return np.asarray(labels, dtype=np.int64), np.asarray(rows, dtype=np.int64)


def training_data(run, frame, model, work, shared=None):
    """Prepare the training and validation images once; on variant P, the feature cache too.

    ``run`` is the :class:`RunContext`; ``work`` the scratch folder of the prepared images
    (:func:`preparation_folder`); ``shared`` trunk features already extracted
    (:class:`SharedFeatures`, ``skin-cnn cv``).
    """
    config = run.config
    augment = augment_config(config)
    if shared is not None:
        with run.info.strategy.scope():
            return _shared_training_data(config, frame, model, shared)
    if config.use_feature_cache():
        with run.info.strategy.scope():  # the head model must belong to the run's strategy
            return _cached_training_data(run, frame, model, work, augment)
    prepared, skipped = prepare_images(frame, config.preprocessing(), work, progress=run.progress)
    train = prepared["train"]
    diseases = frame.loc[train.positions, "diagnosis"].to_numpy()

    def stream(initial_epoch, shard=None):
        return image_stream(train.store, diseases, seed=config.seed, epochs=range(initial_epoch, config.epochs),
                            batch_size=config.batch_size, augment=augment, balanced=config.balanced, shard=shard)

    return TrainingData(model, stream, steps_per_epoch(len(diseases), config.batch_size),
                        prepared["val"].store, prepared["val"].positions, skipped)


def feature_settings(config, feature_model, precision=None):
    """The :class:`~skin_cnn.training.feature_cache.FeatureSettings` of a run's frozen trunk.

    ``precision`` is the compute precision of the trunk (default: what the feature model's trunk
    layers compute in now, :func:`~skin_cnn.models.precision_policy.model_precision`). Returns the
    settings and ``K``, the augmented views stored per training image.
    """
    augment = augment_config(config)
    views = int(config.cache_views) if augment.enabled else 0
    settings = FeatureSettings(trunk_digest=weights_digest(feature_model),
                               preprocessing=config.preprocessing().to_dict(),
                               precision=str(precision or model_precision(feature_model)),
                               augmentation=augment.to_dict() if views else {}, seed=int(config.seed))
    return settings, views


def _cached_training_data(run, frame, model, work, augment):
    """Heads on cached trunk features; rows found by image identity, in the current frame's order."""
    config = run.config
    feature_model, head_model = split_at_frozen_boundary(model)
    settings, views = feature_settings(config, feature_model)
    cache = cached_features(frame, {"train": 1 + views, "val": 1}, feature_model, settings,
                            cache_dir=config.cache_dir, work=work, progress=run.progress, echo=run.echo)
    positions = cache.positions
    diseases = frame.loc[positions["train"], "diagnosis"].to_numpy()
    features = cache.train
    if "train" in cache.files:
        features = ImageStore.from_npy(cache.files["train"], leading_axes=2)

    def stream(initial_epoch, shard=None):
        return feature_stream(features, diseases, seed=config.seed, epochs=range(initial_epoch, config.epochs),
                              batch_size=config.batch_size, balanced=config.balanced, shard=shard)

    return TrainingData(head_model, stream, steps_per_epoch(len(diseases), config.batch_size), cache.val,
                        positions["val"], list(cache.skipped), cache, features, positions["train"])


def _shared_training_data(config, frame, model, shared):
    """Training data from a :class:`SharedFeatures` superset: rows selected by identity, nothing extracted."""
    _, head_model = split_at_frozen_boundary(model)
    positions, rows = {}, {}
    for split in ("train", "val"):
        positions[split], rows[split] = shared.rows_of(frame[frame["split"] == split])
    split_of = dict(zip(frame["image_path"].astype(str), frame["split"]))
    skipped = [dict(s, split=split_of[s["image_path"]]) for s in shared.skipped
               if split_of.get(s["image_path"]) in ("train", "val")]
    features = ViewRows(shared.features, rows["train"])
    if features.nbytes <= pipeline.IN_MEMORY_FEATURES_BYTES:  # else each batch reads its rows
        features = np.asarray(shared.features[:, rows["train"]], dtype="float32")
    val_x = np.asarray(shared.features[0, rows["val"]], dtype="float32")
    diseases = frame.loc[positions["train"], "diagnosis"].to_numpy()

    def stream(initial_epoch, shard=None):
        return feature_stream(features, diseases, seed=config.seed, epochs=range(initial_epoch, config.epochs),
                              batch_size=config.batch_size, balanced=config.balanced, shard=shard)

    return TrainingData(head_model, stream, steps_per_epoch(len(diseases), config.batch_size), val_x,
                        positions["val"], skipped, shared.cache, features, positions["train"])


def compile_for(config, data, info):
    with info.strategy.scope():
        # On cached features a step is tiny next to a Python round trip: run a whole epoch per
        # call (one device only: collectives inside Keras' step loop fail across workers).
        whole_epoch = data.cache is not None and info.name == "default"
        compile_model(data.train_model, optimizer=config.optimizer, learning_rate=config.learning_rate,
                      steps_per_execution=data.steps if whole_epoch else 1)


def restore(run, data):
    """``(initial_epoch, saved state or None)`` of a resumed run."""
    out = Path(run.config.out)
    if run.resume and cb.has_state(out):
        restored = cb.restore_state(cb.state_path(out), data.train_model, run.info.strategy)
        run.echo(f"resuming {out} after epoch {int(restored['epoch'])}")
        return int(restored["epoch"]), restored
    if run.resume:
        run.echo(f"{out}: no saved state yet; starting from epoch 1")
    return 0, None


def make_callbacks(run, data, frame, model, initial_epoch, restored):
    """The callbacks of the fit, in their order, and the checkpoint, history and state among them."""
    config, run_dir, echo = run.config, run.run_dir, run.echo
    val_y, val_m = targets(frame.loc[data.val_positions, "diagnosis"])
    early = keras.callbacks.EarlyStopping(monitor="val_mean_auc", mode="max", patience=config.patience)
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_mean_auc", mode="max", factor=config.lr_factor,
                                                patience=config.lr_patience, min_lr=1e-7, verbose=0)
    checkpoint = cb.AtomicCheckpoint(model, run_dir, defer_best=data.cache is not None, save_last=config.save_last)
    history = cb.HistoryCSV(run.paths.history,
                            cb.HistoryCSV.read_rows(RunPaths(config.out).history, initial_epoch))
    tracked = {"early_stopping": early, "reduce_lr": plateau, "checkpoint": checkpoint}
    state = cb.TrainingState(cb.state_path(run_dir), tracked=tracked, restore=restored)
    state.apply_restored()  # counters right now, not only when fit starts (a finished run has no fit)
    pooled = data.cache is not None and np.ndim(data.val_x) == 2
    listed = [cb.StopOnNonFinite(run_dir),
              cb.TaskAUC((data.val_x, val_y, val_m), batch_size=1024 if pooled else max(config.batch_size, 64),
                         echo=echo), early, plateau, checkpoint, history]
    if run.progress:  # after TaskAUC, so the epoch line has the validation AUCs
        listed.append(cb.EpochProgress(config.epochs, data.steps, echo=echo, bar=sys.stdout.isatty()))
    if config.tensorboard and not tensorboard_available():
        echo("TensorBoard is not installed (skin-cnn's [tensorboard] extra); no TensorBoard logs written")
    elif config.tensorboard:
        listed.append(keras.callbacks.TensorBoard(log_dir=os.fspath(run.paths.tensorboard), histogram_freq=0,
                                                  write_graph=False, update_freq="epoch", profile_batch=0))
    return listed + [state], checkpoint, history, state


def fit(config, data, info, callbacks, initial_epoch):
    """Run the remaining epochs; each worker of a multi-worker run reads only its own shard."""
    if info.name == "multi-worker":
        shard = (info.worker_index, info.num_workers)
        dataset = info.strategy.distribute_datasets_from_function(lambda ctx: data.stream(initial_epoch, shard))
        patch_keras_for_multi_worker(data.train_model, info.strategy, next(iter(data.stream(initial_epoch, shard))))
    else:
        dataset = data.stream(initial_epoch)
    # Progress is EpochProgress's: a bar per epoch in a terminal, one short line per epoch.
    guard = next(c for c in callbacks if isinstance(c, cb.StopOnNonFinite))
    try:
        data.train_model.fit(dataset, epochs=config.epochs, initial_epoch=initial_epoch, steps_per_epoch=data.steps,
                             callbacks=callbacks, verbose=0, shuffle=False)
    except tf.errors.InvalidArgumentError as exc:
        if NON_FINITE_PARAMETERS not in str(exc):
            raise
        raise guard.diverged("the spatial transformer's zoom or shift, or its gradient, is not finite") from exc


def finish_without_fit(callbacks, model):
    """A run stopped after its last epoch but before its end: write what ``on_train_end`` writes."""
    for callback in callbacks:
        callback.set_model(model)
    for callback in callbacks:
        callback.on_train_end()


def best_epoch_summary(history_rows, best_epoch):
    """Validation AUC per task at ``best_epoch`` (NaN when unknown)."""
    hist = pd.DataFrame(history_rows)
    if not len(hist) or not best_epoch or best_epoch not in set(hist["epoch"]):
        return {t: float("nan") for t in TASK_NAMES}
    row = hist[hist["epoch"] == best_epoch].iloc[0]
    return {t: float(row.get(f"val_{t}_auc", float("nan"))) for t in TASK_NAMES}


def write_validation_outputs(run, data, frame, model, history_rows):
    """``val_predictions.csv`` of the best model and ``training_curves.png``."""
    config, paths = run.config, run.paths
    best_path = paths.best_model
    if best_path.is_file():
        best = keras.models.load_model(best_path, compile=False)
        model.set_weights(best.get_weights())
        del best
    probabilities = cb.predict_batches(data.train_model, data.val_x, batch_size=max(config.batch_size, 64))
    val_frame = frame.loc[data.val_positions].reset_index(drop=True)
    atomic.write_csv(paths.val_predictions, predictions_frame(val_frame, probabilities))
    if history_rows:
        plot_training_curves(pd.DataFrame(history_rows), paths.curves, title=curves_title(config, run.synthetic))


def curves_title(config, synthetic=False):
    """The title of ``training_curves.png``: the variant, which trunk blocks trained when some did,
    and whether the photos were the synthetic demo's, so a figure read apart from its run folder
    still says what it shows.

    >>> curves_title(TrainConfig(variant="P", fine_tune_blocks=1))
    'VGG-16P, block 5 trained, blocks 1–4 frozen'
    """
    title = f"VGG-16{config.variant}"
    if config.pretrained and config.fine_tune_blocks:
        title += ", " + trained_blocks_text(config.fine_tune_blocks)
    return title + (" (synthetic demo data)" if synthetic else "")


def calibrate_best_model(run, data, frame, model):
    """``--calibration sigmoid`` (the default) on the study's heads: Platt maps fitted on the best model's
    validation predictions and folded into its sigmoid layers (:mod:`skin_cnn.training.head_calibration`);
    ``best.keras`` and ``val_predictions.csv`` are rewritten from the calibrated model and the maps
    written to ``calibration.json``."""
    from skin_cnn.training import head_calibration

    config, paths = run.config, run.paths
    run.echo("Platt scaling the heads on the validation predictions of the best epoch (--calibration sigmoid)")
    maps, notes = head_calibration.calibrate_heads(model, pd.read_csv(paths.val_predictions), TASK_NAMES,
                                                   echo=run.echo, min_per_class=head_calibration.MIN_PHOTOS_PER_CLASS)
    cb.save_model_atomic(model, paths.best_model)
    probabilities = cb.predict_batches(data.train_model, data.val_x, batch_size=max(config.batch_size, 64))
    val_frame = frame.loc[data.val_positions].reset_index(drop=True)
    atomic.write_csv(paths.val_predictions, predictions_frame(val_frame, probabilities))
    atomic.write_json(paths.calibration, {
        "what": "Platt scaling sigmoid(a * logit(p) + b) per task, fitted on the validation predictions of the "
                "best epoch and folded into the task's sigmoid layer; val_predictions.csv holds the calibrated "
                "model's predictions",
        "tasks": maps, "notes": notes})


def has_converged(best_epoch, epochs_run, max_epochs):
    """False when the best epoch is the last of all allowed epochs: the score was still rising."""
    return not (best_epoch == epochs_run == max_epochs and epochs_run > 1)


@dataclass
class ThresholdFit:
    """The predictions a run's thresholds are fitted on (``threshold`` setting)."""

    path: Path
    description: str

    @classmethod
    def from_file(cls, path, description):
        return cls(Path(path), description)


def fit_heads(run, data, frame, model):
    """Gradient descent on the heads (or the whole model): epochs, callbacks, best epoch kept."""
    config, info = run.config, run.info
    compile_for(config, data, info)
    initial_epoch, restored = restore(run, data)
    callbacks, checkpoint, history, state = make_callbacks(run, data, frame, model, initial_epoch, restored)
    stopped = bool(restored and restored.get("stop_training"))
    if initial_epoch < config.epochs and not stopped:
        fit(config, data, info, callbacks, initial_epoch)
    else:
        finish_without_fit([checkpoint, state], data.train_model)
    result = RunResult(run_dir=run.run_dir, best_epoch=int(checkpoint.best_epoch),
                       epochs_run=max([int(r["epoch"]) for r in history.rows], default=initial_epoch),
                       val_aucs=best_epoch_summary(history.rows, int(checkpoint.best_epoch)))
    if info.is_chief:
        write_validation_outputs(run, data, frame, model, history.rows)
        if config.calibration != "none":
            calibrate_best_model(run, data, frame, model)
        result.threshold_fit = ThresholdFit.from_file(run.paths.val_predictions,
                                                      "validation predictions of the best epoch")
    return result


def fit_linear(run, data, frame, model):
    """``--head linear``: logistic regressions on the cached features of train and val together."""
    from skin_cnn.training.linear import calibrate_fits, fit_linear_heads, group_ids, set_linear_heads

    paths, echo = run.paths, run.echo
    train_x = np.asarray(data.train_features, dtype=np.float32)  # (views, n_train, d)
    val_x = np.asarray(data.val_x, dtype=np.float32)
    positions = np.concatenate([data.train_positions, data.val_positions])
    rows = frame.loc[positions].reset_index(drop=True)
    views = train_x.shape[0]
    # every view of a training image is a row; validation images contribute their clean view
    x = np.concatenate([train_x.reshape(-1, train_x.shape[-1]), val_x])
    image_of_row = np.concatenate([np.tile(np.arange(train_x.shape[1]), views),
                                   train_x.shape[1] + np.arange(len(val_x))])
    clean = np.concatenate([np.arange(views * train_x.shape[1]) < train_x.shape[1], np.ones(len(val_x), bool)])
    echo(f"fitting the linear heads on {len(rows)} train + val images ({views} view(s) of each training image)")
    fits = fit_linear_heads(x, image_of_row, clean, rows["diagnosis"].to_numpy(), group_ids(rows),
                            seed=run.config.seed)
    calibrate_fits(fits, rows["diagnosis"].to_numpy(), run.config.calibration)
    set_linear_heads(model, fits)
    cb.save_model_atomic(model, paths.best_model)
    probabilities = {task: np.full(len(rows), np.nan) for task in TASK_NAMES}
    for task, fitted in fits.items():
        probabilities[task][fitted.rows] = fitted.oof_probability
    atomic.write_csv(paths.val_predictions, predictions_frame(rows, probabilities))
    atomic.write_json(paths.linear_fit, {
        "what": "one L2 logistic regression per task on standardised pooled features; C chosen by grouped "
                "inner cross-validation (AUC); val_predictions.csv holds its out-of-fold probabilities "
                "of every train and val image",
        "tasks": {task: fitted.to_dict() for task, fitted in fits.items()}})
    for task, fitted in fits.items():
        echo(f"  {task:<22} C={fitted.C:g}  out-of-fold AUC {fitted.inner_auc:.3f} (n={fitted.n})")
    result = RunResult(run_dir=run.run_dir, val_aucs={task: fits[task].inner_auc for task in TASK_NAMES})
    result.threshold_fit = ThresholdFit.from_file(paths.val_predictions,
                                                  "inner out-of-fold predictions of the train and val images")
    return result


def store_fitted_thresholds(config, run_dir, fit):
    """Fit the run's ``threshold`` rule on its validation predictions and store it in ``best.keras``.

    A fixed threshold (the default 0.5) stores nothing: predict and evaluate use 0.5 anyway.
    """
    from skin_cnn.evaluation.threshold import fit_thresholds, parse_threshold
    from skin_cnn.inference.predictor import store_chosen_thresholds

    rule = parse_threshold(str(config.threshold))
    if not rule.needs_validation or fit is None or not RunPaths(run_dir).best_model.is_file():
        return None
    validation = pd.read_csv(fit.path)
    tasks = [t for t in TASK_NAMES if t in set(validation["task"])]
    thresholds, _ = fit_thresholds(rule, tasks, validation, fit.description)
    method = f"{rule.short()} on the {fit.description} ({fit.path.name}) at the end of training"
    store_chosen_thresholds(run_dir, thresholds, rule, method)
    return thresholds


# ----------------------------------------------------------------------------------------------
# The steps :func:`skin_cnn.app.train_run.train` composes


def checked_config(config):
    """``config`` once validated: a :class:`TrainConfig` whose settings fit together."""
    if not isinstance(config, TrainConfig):
        raise TypeError("config must be a TrainConfig")
    config.validate()
    return config


def training_lock(config, info):
    """One training per run folder: the chief holds ``.lock`` (:func:`run_folder.run_lock`), so a
    second training into the same ``-o`` stops at once with one line; workers hold nothing."""
    return run_folder.run_lock(config.out) if info.is_chief else contextlib.nullcontext()


def announced_precision(run):
    """The run's compute precision (:func:`run_precision`), said in one line."""
    precision = run_precision(run.config, run.resume)
    run.echo(precision.describe())
    return precision


def prepare_training_data(run, frame, model, work, shared=None):
    """:func:`training_data`, with the images that could not be read said and written
    (``skipped_images.csv``)."""
    data = training_data(run, frame, model, work, shared=shared)
    if data.skipped:
        run.echo(f"{len(data.skipped)} image(s) could not be read or used and are left out "
                 "(skipped_images.csv gives the reason of each)")
    write_skipped(run.paths.skipped, data.skipped)
    return data


def fit_model(run, data, frame, model):
    """Fit the run's heads (linear: closed form; else gradient descent) and return its :class:`RunResult`."""
    if run.config.head == "linear":
        result = fit_linear(run, data, frame, model)
    else:
        result = fit_heads(run, data, frame, model)
    result.skipped = list(data.skipped)
    result.feature_cache = os.fspath(data.cache.path) if data.cache is not None else None
    result.cache_reused = bool(data.cache is not None and data.cache.reused)
    return result


def finish_fit(run, result):
    """Store the thresholds fitted on the run's validation predictions, mark the run finished
    (``status.json``) and drop what only a run that may resume needs (``backup/``)."""
    store_fitted_thresholds(run.config, run.run_dir, result.threshold_fit)
    run_folder.mark_finished(run.run_dir, result.best_epoch, result.epochs_run)
    shutil.rmtree(run.paths.backup, ignore_errors=True)


def finished_result(run):
    """The :class:`RunResult` of a run that already finished (``--resume`` of it): best epoch,
    epochs run and validation AUCs from its folder; nothing trained."""
    finished = run_folder.is_finished(run.run_dir)
    rows = run_folder.read_history(run.run_dir).to_dict("records")
    return RunResult(run_dir=run.run_dir, best_epoch=int(finished["best_epoch"]),
                     epochs_run=int(finished["epochs_run"]),
                     val_aucs=best_epoch_summary(rows, int(finished["best_epoch"])),
                     skipped=read_skipped(run.paths.skipped))
