"""The training loop: split → images → (feature cache) → fit → run folder → evaluation.

Determinism and resume rest on one rule: **everything random during training is a function of
(seed, epoch)**. The order of the training images in epoch ``e`` is
``numpy.random.default_rng([seed, e]).permutation(n)``; the augmentation of batch ``b`` of
epoch ``e`` reseeds the augmentation layers from ``(seed, e, b)``; with the feature cache, the
stored view each image shows in epoch ``e`` comes from ``(seed, e)`` too. Nothing depends on how
many epochs this process has already run, so a run resumed at epoch ``k`` (weights, optimizer and
callback counters restored from ``backup/state.npz``) replays exactly what an uninterrupted run
would have done. The data of all remaining epochs is one tf.data stream consumed with
``steps_per_epoch``, so Keras never restarts it between epochs.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from skin_cnn import atomic
from skin_cnn.diseases import TASK_NAMES, task_targets
from skin_cnn.training import run_folder
from skin_cnn.training.config import TrainConfig, resolve_config, run_config_document, sha256_file

SPLITS = ("train", "val", "test")


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

    @property
    def val_mean_auc(self):
        values = [v for v in self.val_aucs.values() if not math.isnan(v)]
        return float(np.mean(values)) if values else float("nan")


# ----------------------------------------------------------------------------------------------
# Randomness as a function of (seed, epoch)


def set_determinism(seed):
    """Seed Python, NumPy and TensorFlow and ask TensorFlow for deterministic kernels."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed))
    with contextlib.suppress(RuntimeError, AttributeError):
        tf.config.experimental.enable_op_determinism()


def derive_seed(*parts):
    """A 31-bit seed from integers, stable across processes and platforms."""
    blob = ",".join(str(int(p)) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little") & 0x7FFFFFFF


def epoch_order(seed, epoch, n, groups=None):
    """Training image indices for ``epoch``: a permutation, or balanced oversampling.

    Parameters
    ----------
    groups : array of str, optional
        The disease of every training image; when given, each disease is drawn as often as the
        most frequent one (random oversampling with replacement), then the lot is shuffled.
    """
    rng = np.random.default_rng([int(seed), int(epoch)])
    if groups is None:
        return rng.permutation(n)
    groups = np.asarray(groups)
    labels = sorted(set(groups.tolist()))
    size = max(int((groups == g).sum()) for g in labels)
    parts = []
    for g in labels:
        members = np.flatnonzero(groups == g)
        extra = rng.choice(members, size=size - len(members), replace=True) if size > len(members) else []
        parts.append(np.concatenate([members, np.asarray(extra, dtype=members.dtype)]))
    return rng.permutation(np.concatenate(parts))


class SeededAugmenter:
    """Apply Keras augmentation layers with seeds that depend only on the given key.

    Keras' random layers draw from their own :class:`keras.random.SeedGenerator`, whose state
    advances with every call; a resumed run would continue from a different state. Before every
    batch this sets each generator's state from ``(seed, *key, layer)``, so the augmentation of
    batch ``b`` of epoch ``e`` is the same in every process.
    """

    def __init__(self, layers, seed):
        import keras

        self.layers = layers
        self.seed = int(seed)
        self._generators = []
        if layers is not None:
            for i, layer in enumerate(_flat_layers(layers)):
                for value in vars(layer).values():
                    if isinstance(value, keras.random.SeedGenerator):
                        self._generators.append((i, value))

    def __call__(self, images, *key):
        if self.layers is None:
            return images
        for i, generator in self._generators:
            state = np.array([derive_seed(self.seed, *key, i), 0])
            generator.state.assign(state.astype(generator.state.dtype))
        return np.asarray(self.layers(np.asarray(images, dtype="float32"), training=True), dtype="float32")


def _flat_layers(model):
    layers = getattr(model, "layers", None)
    if layers is None:
        return [model]
    out = []
    for layer in layers:
        out.extend(_flat_layers(layer) if getattr(layer, "layers", None) else [layer])
    return out


# ----------------------------------------------------------------------------------------------
# Data


def augmentation_settings(config):
    """The augmentation settings of a run, as recorded in the feature-cache key."""
    return {"zoom": config.zoom, "rotation": config.rotation, "translation": config.translation,
            "flip": config.flip, "image_size": config.image_size}


def augmentation_enabled(config):
    return bool(config.flip or config.zoom or config.rotation or config.translation)


def make_augmenter(config):
    """A :class:`SeededAugmenter` over :func:`skin_cnn.data.augment.augmentation_layers` (or None)."""
    if not augmentation_enabled(config):
        return None
    from skin_cnn.data.augment import AugmentConfig, augmentation_layers

    settings = AugmentConfig.from_dict({"zoom": config.zoom, "rotation": config.rotation,
                                        "translation": config.translation, "flip": config.flip})
    return SeededAugmenter(augmentation_layers(settings, seed=config.seed), config.seed)


def crop_params(config):
    from skin_cnn.data.crop import DEFAULT_CROP_PARAMS

    return dict(DEFAULT_CROP_PARAMS) if config.crop else {}


def image_fingerprints(frame):
    """Per row ``[path, size, mtime_ns, crop box, split]`` for the feature-cache key."""
    from skin_cnn.data.crop import BOX_COLUMNS

    out = []
    has_box = all(c in frame.columns for c in BOX_COLUMNS)
    for row in frame.itertuples(index=False):
        path = str(row.image_path)
        try:
            st = os.stat(path)
            stat = [int(st.st_size), int(st.st_mtime_ns)]
        except OSError:
            stat = [None, None]
        box = [getattr(row, c) for c in BOX_COLUMNS] if has_box else None
        if box is not None:
            box = None if any(v != v for v in box) else [int(v) for v in box]
        out.append([path] + stat + [box, row.split])
    return out


def prepare_images(frame, predictor, folder, progress=True, workers=2):
    """Decode, crop and resize every image of ``frame`` once, into memory-mapped float32 arrays.

    Uses :class:`skin_cnn.predict.Predictor`'s ``read`` and ``preprocess``, the same code path
    ``skin-cnn predict``, ``serve`` and ``evaluate`` use, so training sees exactly the pixels a
    saved model will be shown later.

    Returns
    -------
    images : dict of split -> (array, positions)
        ``positions`` are the frame row labels the array rows belong to.
    skipped : list of dict
        ``{"image_path", "split", "reason"}`` for every image that could not be read.
    """
    from tqdm.auto import tqdm

    from skin_cnn.data.crop import BOX_COLUMNS
    from skin_cnn.data.reading import ImageReadError

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    height, width = predictor.image_size
    has_box = all(c in frame.columns for c in BOX_COLUMNS)

    def load(row):
        try:
            image = predictor.read(str(row["image_path"]))
            box = None
            if has_box and not any(row[c] != row[c] for c in BOX_COLUMNS):
                box = tuple(int(row[c]) for c in BOX_COLUMNS)
            return predictor.preprocess(image, box)[0], None
        except (ImageReadError, ValueError, OSError) as exc:
            return None, getattr(exc, "reason", str(exc))

    images, skipped = {}, []
    bar = tqdm(total=len(frame), desc="prepare images", unit="img", disable=not progress)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for split in SPLITS:
            part = frame[frame["split"] == split]
            array = np.lib.format.open_memmap(folder / f"{split}.npy", mode="w+", dtype="float32",
                                              shape=(len(part), height, width, 3))
            positions = []
            for label, (tensor, reason) in zip(part.index, pool.map(load, part.to_dict("records"))):
                if tensor is None:
                    skipped.append({"image_path": str(part.at[label, "image_path"]), "split": split, "reason": reason})
                else:
                    array[len(positions)] = tensor
                    positions.append(int(label))
                bar.update(1)
            array.flush()
            images[split] = (array[:len(positions)], np.asarray(positions, dtype=np.int64))
    bar.close()
    return images, skipped


def targets(frame, positions):
    """Per-task labels and masks (arrays of shape (n,)) for the rows at ``positions``."""
    labels, masks = task_targets(frame.loc[positions, "diagnosis"].tolist())
    return ({t: np.asarray(labels[t], dtype="float32") for t in TASK_NAMES},
            {t: np.asarray(masks[t], dtype="float32") for t in TASK_NAMES})


# Cached features up to this size are gathered inside TensorFlow; larger ones (e.g. the
# block outputs cached with ``fine_tune_blocks``) stream from their memory map.
IN_MEMORY_FEATURES_BYTES = 1 << 30


def training_dataset(x, labels, masks, *, config, initial_epoch, steps_per_epoch, groups=None,
                     augmenter=None, views=None, in_memory_limit=IN_MEMORY_FEATURES_BYTES):
    """The batches of epochs ``initial_epoch .. config.epochs - 1`` as one tf.data stream.

    ``x`` holds images (n, H, W, 3), or cached features with a leading view axis
    (1 + K, n, ...) when ``views`` is True. Cached features that fit in ``in_memory_limit``
    bytes go through :func:`cached_feature_dataset`; everything else through a generator.
    """
    if views and x.nbytes <= in_memory_limit:
        return cached_feature_dataset(x, labels, masks, config=config, initial_epoch=initial_epoch,
                                      steps_per_epoch=steps_per_epoch, groups=groups)
    import tensorflow as tf

    from skin_cnn.training.feature_cache import epoch_views

    n = x.shape[1] if views else x.shape[0]
    sample_shape = tuple(x.shape[2:] if views else x.shape[1:])
    bs = int(config.batch_size)

    def generate():
        for epoch in range(initial_epoch, config.epochs):
            order = epoch_order(config.seed, epoch, n, groups)
            chosen = epoch_views(config.seed, epoch, n, x.shape[0]) if views else None
            for b in range(steps_per_epoch):
                idx = order[b * bs:(b + 1) * bs]
                if views:
                    batch = np.asarray(x[chosen[idx], idx], dtype="float32")
                else:
                    sorted_idx = np.sort(idx)  # memmap reads in file order, then back to batch order
                    batch = np.asarray(x[sorted_idx], dtype="float32")[np.searchsorted(sorted_idx, idx)]
                    if augmenter is not None:
                        batch = augmenter(batch, 0, epoch, b)
                yield (batch, {t: labels[t][idx].reshape(-1, 1) for t in TASK_NAMES},
                       {t: masks[t][idx] for t in TASK_NAMES})

    signature = (
        tf.TensorSpec((None,) + sample_shape, tf.float32),
        {t: tf.TensorSpec((None, 1), tf.float32) for t in TASK_NAMES},
        {t: tf.TensorSpec((None,), tf.float32) for t in TASK_NAMES},
    )
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)
    return _with_training_options(dataset)


def cached_feature_dataset(features, labels, masks, *, config, initial_epoch, steps_per_epoch, groups=None):
    """Batches of cached features, gathered by TensorFlow from in-memory tensors.

    The same batches as the generator of :func:`training_dataset`: the image order and the
    stored view of every image are still drawn in NumPy from (seed, epoch), for all remaining
    epochs up front (a few integers per image and epoch), and tf.data only gathers rows. With no
    Python call per batch, an epoch on cached features costs little more than the head's
    arithmetic, which is the point of the cache.
    """
    import tensorflow as tf

    from skin_cnn.training.feature_cache import epoch_views

    n_views, n = int(features.shape[0]), int(features.shape[1])
    epochs = range(initial_epoch, config.epochs)
    orders = np.stack([epoch_order(config.seed, e, n, groups) for e in epochs]).astype(np.int64)
    chosen = np.stack([epoch_views(config.seed, e, n, n_views)[order] for e, order in zip(epochs, orders)])
    bs = int(config.batch_size)
    if math.ceil(orders.shape[1] / bs) != steps_per_epoch:
        raise ValueError(f"{steps_per_epoch} steps per epoch do not cover {orders.shape[1]} images "
                         f"in batches of {bs}")
    table = tf.constant(np.asarray(features, dtype="float32"))
    label_table = {t: tf.constant(np.asarray(labels[t], dtype="float32")) for t in TASK_NAMES}
    mask_table = {t: tf.constant(np.asarray(masks[t], dtype="float32")) for t in TASK_NAMES}

    def epoch_batches(order, view):
        return tf.data.Dataset.from_tensor_slices((order, view)).batch(bs)

    def gather(order, view):
        x = tf.gather_nd(table, tf.stack([view, order], axis=1))
        return (x, {t: tf.reshape(tf.gather(label_table[t], order), (-1, 1)) for t in TASK_NAMES},
                {t: tf.gather(mask_table[t], order) for t in TASK_NAMES})

    dataset = tf.data.Dataset.from_tensor_slices((orders, chosen.astype(np.int64)))
    dataset = dataset.flat_map(epoch_batches).map(gather).prefetch(2)
    return _with_training_options(dataset)


def _with_training_options(dataset):
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return dataset.with_options(options)


def steps_for(config, n_train, groups=None):
    if groups is not None:
        g = np.asarray(groups)
        n_train = len(set(g.tolist())) * max(int((g == v).sum()) for v in set(g.tolist()))
    return max(1, math.ceil(n_train / config.batch_size))


# ----------------------------------------------------------------------------------------------
def load_resume_config(run_dir):
    """The TrainConfig a run was started with (``--resume``), pointing at the same folder."""
    document = run_folder.read_run_config(run_dir)
    settings = dict(document.get("train", {}))
    settings["out"] = os.fspath(run_dir)
    return resolve_config(settings, source=f"{Path(run_dir) / 'config.json'}")


def tensorboard_available():
    """Keras' TensorBoard callback needs the ``tensorboard`` package, which tensorflow-cpu lacks."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _check_frame(frame, path):
    counts = frame["split"].value_counts()
    for split in ("train", "val"):
        if counts.get(split, 0) == 0:
            raise ValueError(f"{path}: the {split} split is empty; training needs train and val images")


def train(config, *, resume=False, progress=True, echo=print, synthetic=False):
    """Train one model into a run folder and return a :class:`RunResult`.

    Parameters
    ----------
    config : TrainConfig
        Resolved settings (:func:`skin_cnn.training.config.resolve_config`).
    resume : bool
        Continue the interrupted run in ``config.out`` from its last completed epoch.
    progress : bool
        Keras progress bars per epoch and tqdm bars for the preparation steps.
    echo : callable
        Where one-line messages go (``click.echo`` from the CLI).
    synthetic : bool
        Label the model card as trained on synthetic demo data.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError("config must be a TrainConfig")
    config.validate()
    t0 = time.time()
    from skin_cnn.training.distribute import make_strategy, output_dir_for

    info = make_strategy(config.strategy)  # before any other TensorFlow work (multi-worker)
    import keras

    from skin_cnn.training import callbacks as cb
    from skin_cnn.training.callbacks import TaskAUC, has_state, restore_state, state_path

    out = Path(config.out)
    if not resume and info.is_chief:
        run_folder.check_new_run_folder(out)
    run_dir = Path(output_dir_for(info, out))
    run_dir.mkdir(parents=True, exist_ok=True)
    set_determinism(config.seed)

    from skin_cnn.split import load_split, write_split

    split_path = Path(config.split)
    if not split_path.is_file():
        raise FileNotFoundError(f"{split_path}: split file not found")
    frame = load_split(split_path)
    _check_frame(frame, split_path)
    use_cache = config.use_feature_cache()
    preprocessing = config.preprocessing(crop_params(config))

    # -- model ------------------------------------------------------------------------------
    from skin_cnn.models import build_model, compile_model, parameter_counts, split_at_frozen_boundary
    from skin_cnn.predict import Predictor

    with info.strategy.scope():
        model = build_model(config.variant, input_shape=(config.image_size, config.image_size, 3),
                            weights=config.model_weights(), fine_tune_blocks=config.fine_tune_blocks,
                            seed=config.seed)
    predictor = Predictor(model, preprocessing)
    resolved = {"feature_cache": use_cache, "strategy": info.name, "replicas": info.num_replicas,
                "workers": info.num_workers, "parameters": parameter_counts(model)}
    if not resume:  # other workers write the same files into their temporary folder
        document = run_config_document(config, split_sha256=sha256_file(split_path),
                                       crop_params=preprocessing["crop_params"], resolved=resolved)
        document["split"] = os.fspath(split_path.resolve())
        write_split(frame, run_dir / "split.csv")
        atomic.write_json(run_dir / "config.json", document)
    else:
        document = run_folder.read_run_config(out)
        if document.get("split_sha256") and document["split_sha256"] != sha256_file(split_path):
            raise ValueError(f"{split_path}: changed since the run started (SHA-256 differs); "
                             "a resumed run must train on the same split")

    # -- data: feature cache or images --------------------------------------------------------
    work = Path(tempfile.mkdtemp(prefix=".prepared-", dir=run_dir))
    cache_info = None
    try:
        augmenter = make_augmenter(config)
        if use_cache:
            from skin_cnn.training.feature_cache import build_cache, cache_key, find_cache, weights_digest

            feature_model, head_model = split_at_frozen_boundary(model)
            views = int(config.cache_views) if augmenter is not None else 0
            key = cache_key(image_fingerprints(frame), preprocessing=preprocessing,
                            trunk_digest=weights_digest(feature_model),
                            augmentation=augmentation_settings(config) if views else {},
                            views=views, seed=config.seed)
            cache_dir = Path(config.cache_dir) if config.cache_dir else run_dir / "feature_cache"
            cache = find_cache(cache_dir, key)
            if cache is not None:
                echo(f"reusing feature cache {cache.path}")
                skipped = cache.index.get("skipped", [])
            else:
                echo(f"building feature cache {cache_dir / key} (1 clean + {views} augmented views per training image)")
                images, skipped = prepare_images(frame, predictor, work, progress)
                cache = build_cache(cache_dir, key, feature_model, images, augment=augmenter, views=views,
                                    batch_size=32, progress=progress, extra_index={"skipped": skipped})
                del images
            positions = {s: np.asarray(cache.index["positions"][s], dtype=np.int64) for s in SPLITS}
            data = {"train": cache.train, "val": cache.val, "test": cache.test}
            train_model = head_model
            cache_info = os.fspath(cache.path)
        else:
            images, skipped = prepare_images(frame, predictor, work, progress)
            positions = {s: images[s][1] for s in SPLITS}
            data = {s: images[s][0] for s in SPLITS}
            train_model = model
        if skipped:
            echo(f"{len(skipped)} image(s) could not be read and are left out (skipped_images.csv)")
        run_folder.write_skipped(run_dir / "skipped_images.csv", skipped)
        for split in ("train", "val"):
            if len(positions[split]) == 0:
                raise ValueError(f"{split_path}: no readable image in the {split} split")

        y_train, m_train = targets(frame, positions["train"])
        y_val, m_val = targets(frame, positions["val"])
        groups = frame.loc[positions["train"], "diagnosis"].to_numpy() if config.balanced else None
        steps = steps_for(config, len(positions["train"]), groups)

        with info.strategy.scope():
            # On cached features a step is tiny next to a Python round trip: run a whole epoch per
            # call (one device only: collectives inside Keras' step loop fail across workers).
            whole_epoch = use_cache and info.name == "default"
            compile_model(train_model, optimizer=config.optimizer, learning_rate=config.learning_rate,
                          steps_per_execution=steps if whole_epoch else 1)

        # -- resume ---------------------------------------------------------------------------
        initial_epoch, restored = 0, None
        # Every worker restores the chief's state (multi-worker resume needs a shared run folder).
        if resume and has_state(out):
            restored = restore_state(state_path(out), train_model, info.strategy)
            initial_epoch = int(restored["epoch"])
            echo(f"resuming {run_dir} after epoch {initial_epoch}")
        elif resume:
            echo(f"{run_dir}: no saved state yet; starting from epoch 1")

        # -- callbacks ------------------------------------------------------------------------
        early = keras.callbacks.EarlyStopping(monitor="val_mean_auc", mode="max", patience=config.patience)
        plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_mean_auc", mode="max", factor=config.lr_factor,
                                                    patience=config.lr_patience, min_lr=1e-7, verbose=0)
        checkpoint = cb.AtomicCheckpoint(model, run_dir, defer_best=use_cache)
        history = cb.HistoryCSV(run_dir / "history.csv",
                                cb.HistoryCSV.read_rows(out / "history.csv", initial_epoch))
        state = cb.TrainingState(state_path(run_dir),
                                 tracked={"early_stopping": early, "reduce_lr": plateau, "checkpoint": checkpoint},
                                 restore=restored, enabled=True)
        val_batch = 1024 if use_cache and data["val"].ndim == 2 else max(config.batch_size, 64)  # pooled: tiny rows
        callbacks = [TaskAUC((data["val"], y_val, m_val), batch_size=val_batch, echo=echo),
                     early, plateau, checkpoint, history]
        if config.tensorboard and not tensorboard_available():
            echo("TensorBoard is not installed (pip install tensorboard); no TensorBoard logs written")
        elif config.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=os.fspath(run_dir / "tensorboard"),
                                                         histogram_freq=0, write_graph=False,
                                                         update_freq="epoch", profile_batch=0))
        callbacks.append(state)

        finished = bool(restored and (restored.get("finished") or restored.get("stop_training")))
        if initial_epoch < config.epochs and not finished:
            dataset = training_dataset(data["train"], y_train, m_train, config=config, initial_epoch=initial_epoch,
                                       steps_per_epoch=steps, groups=groups, augmenter=augmenter, views=use_cache)
            if info.name == "multi-worker":
                from skin_cnn.training.distribute import patch_keras_for_multi_worker

                patch_keras_for_multi_worker(train_model, info.strategy, next(iter(dataset)))
            train_model.fit(dataset, epochs=config.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                            callbacks=callbacks, verbose=(1 if progress else 0), shuffle=False)
        import pandas as pd

        hist = pd.DataFrame(history.rows)
        epochs_run = int(hist["epoch"].max()) if len(hist) else initial_epoch
        best_epoch = int(checkpoint.best_epoch)
        if len(hist) and best_epoch:
            best_row = hist[hist["epoch"] == best_epoch].iloc[0]
            val_aucs = {t: float(best_row.get(f"val_{t}_auc", float("nan"))) for t in TASK_NAMES}
        else:
            val_aucs = {t: float("nan") for t in TASK_NAMES}

        result = RunResult(run_dir=run_dir, best_epoch=best_epoch, epochs_run=epochs_run, val_aucs=val_aucs,
                           skipped=list(skipped), feature_cache=cache_info,
                           cache_reused=bool(use_cache and cache.reused))
        if not info.is_chief:
            result.wall_s = time.time() - t0
            return result

        # -- outputs of the best model ----------------------------------------------------------
        from skin_cnn.predictions import predictions_frame
        from skin_cnn.training.callbacks import predict_batches

        best_path = run_dir / "best.keras"
        if best_path.is_file():
            best = keras.models.load_model(best_path, compile=False)
            model.set_weights(best.get_weights())
            del best
        val_probs = predict_batches(train_model, data["val"], batch_size=max(config.batch_size, 64))
        val_frame = frame.loc[positions["val"]].reset_index(drop=True)
        atomic.write_csv(run_dir / "val_predictions.csv", predictions_frame(val_frame, val_probs))
        if len(hist):
            from skin_cnn.training.curves import plot_training_curves

            plot_training_curves(hist, run_dir / "training_curves.png",
                                 title=f"VGG-16{config.variant}" + (" (synthetic demo data)" if synthetic else ""))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if config.evaluate and (frame["split"] == "test").any():
        result.eval_dir, result.test_metrics = _evaluate_test(run_dir, predictor, progress, echo)
    result.wall_s = time.time() - t0
    atomic.write_text(run_dir / "model_card.md", run_folder.model_card(
        config=config, frame=frame, val_aucs=val_aucs, best_epoch=best_epoch, epochs_run=epochs_run,
        skipped=skipped, test_metrics=result.test_metrics, synthetic=synthetic))
    result.summary = run_folder.summary_text(
        run_dir=run_dir, config=config, epochs_run=epochs_run, best_epoch=best_epoch, val_aucs=val_aucs,
        wall_s=result.wall_s, skipped=skipped, feature_cache=cache_info, eval_dir=result.eval_dir,
        test_metrics=result.test_metrics)
    echo(result.summary)
    return result


def _evaluate_test(run_dir, predictor, progress, echo):
    """Evaluate the best model on the test split into ``run_dir/eval_test`` (if available)."""
    try:
        from skin_cnn.evaluation.report import evaluate_run
    except ImportError:
        echo("evaluation module not available; skipped the test-split evaluation")
        return None, None
    out = Path(run_dir) / "eval_test"
    metrics = evaluate_run(run_dir, split="test", out=out, val_predictions=Path(run_dir) / "val_predictions.csv",
                           predictor=predictor, progress=progress)
    return out, metrics
