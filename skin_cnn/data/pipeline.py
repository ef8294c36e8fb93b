"""The training stream on tf.data: which images an epoch shows, in which order, how augmented.

Everything random in training is a function of ``(seed, epoch)``, never of how many epochs this
process has run:

* :func:`epoch_order` — the training images of epoch ``e``, in order (shuffled, or balanced);
* :func:`skin_cnn.data.augment.augmentation_params` — each image's transformation, from
  ``(seed, epoch, image index)``;
* :func:`epoch_views` — with the feature cache, which stored view each image shows.

:func:`image_stream` turns prepared uint8 images (:func:`skin_cnn.data.preprocessing.
prepare_images`) into batches ``(images, labels, masks)``; :func:`feature_stream` does the same
for cached trunk features. Both cover all remaining epochs in one dataset, consumed by Keras with
``steps_per_epoch``, so a run resumed at epoch ``k`` replays exactly what an uninterrupted run
does, and :func:`skin_cnn.training.preview.training_batch` redraws any batch of any epoch.

Batches are ``(x, labels, masks)``: ``x`` float32 RGB in [0, 255] (the model normalises),
``labels[task]`` float32 ``(B, 1)``, ``masks[task]`` float32 ``(B,)`` (1 when the image belongs to
the task), from :func:`skin_cnn.core.tasks.task_targets`.

**Balanced** epochs (``--balanced``) show as many images as plain ones, ``n``, with an equal
share for every disease present (shares differ by at most one image). A disease's share is
filled with freshly shuffled rounds of its images, so each of its images is shown
``floor(share / count)`` or ``ceil(share / count)`` times, never more; the epoch is then
shuffled as a whole. Equal shares per *disease* balance all three tasks at once, eczema included although
it sits in two of them.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from skin_cnn.data.augment import CACHED_VIEW, EPOCH, apply_augmentation, augmentation_params
from skin_cnn.data.preprocessing import PREFETCH_BATCHES, parallel_calls
from skin_cnn.core.tasks import TASK_NAMES, task_targets

#: Cached features up to this size are gathered inside TensorFlow; larger ones are read row by
#: row (from their file, or from the array they are in).
IN_MEMORY_FEATURES_BYTES = 1 << 30


class ViewRows:
    """The rows of a ``(views, n, ...)`` feature array, read on demand like an ImageStore's.

    Row ``v * len(images) + i`` is ``features[v, images[i]]``, the numbering
    :meth:`~skin_cnn.data.preprocessing.ImageStore.from_npy` gives a stored ``(views, n, ...)``
    file. ``images`` picks a run's images out of a larger array without copying them: the
    features a cross-validation extracts once for all its folds can be gigabytes when blocks
    train (the maps in front of them are cached, not pooled vectors), and each fold reads only
    the rows of its batches. Works on an in-memory array and on a memory map alike.

    Parameters
    ----------
    features : numpy.ndarray
        ``(views, n, ...)``.
    images : array of int, optional
        The images (second axis) to expose, in this order; default all.
    """

    def __init__(self, features, images=None):
        self.features = features
        self.images = np.arange(features.shape[1]) if images is None else np.asarray(images, dtype=np.int64)
        self.row_shape = tuple(int(s) for s in features.shape[2:])
        self.dtype = np.dtype(features.dtype)

    def __len__(self):
        return int(self.features.shape[0]) * len(self.images)

    @property
    def nbytes(self):
        return len(self) * int(np.prod(self.row_shape)) * self.dtype.itemsize

    def read(self, indices):
        """Rows at ``indices`` (any order, repeats allowed) as one array."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) and not (0 <= indices.min() and indices.max() < len(self)):
            raise IndexError(f"feature rows {indices.min()}..{indices.max()} outside 0..{len(self) - 1}")
        views, images = np.divmod(indices, len(self.images))
        return np.asarray(self.features[views, self.images[images]], dtype=self.dtype)


def epoch_order(seed, epoch, diseases, balanced=False):
    """Indices of the training images shown in ``epoch``, in order.

    Parameters
    ----------
    seed, epoch : int
    diseases : array of str
        The disease of every training image (only its length matters unless ``balanced``).
    balanced : bool
        Equal share per disease (see the module docstring) instead of a permutation.
    """
    diseases = np.asarray(diseases)
    n = len(diseases)
    rng = np.random.default_rng([int(seed), int(epoch)])
    if not balanced or n == 0:
        return rng.permutation(n)
    labels = sorted(set(diseases.tolist()))
    shares = np.full(len(labels), n // len(labels))
    shares[rng.permutation(len(labels))[:n % len(labels)]] += 1
    parts = []
    for label, share in zip(labels, shares):
        members = np.flatnonzero(diseases == label)
        rounds = [rng.permutation(members) for _ in range(math.ceil(share / len(members)))]
        parts.append(np.concatenate(rounds)[:share])
    return rng.permutation(np.concatenate(parts))


def epoch_views(seed, epoch, n_images, n_views):
    """Which stored feature-cache view each training image shows in ``epoch`` (0 = clean)."""
    if n_views <= 1:
        return np.zeros(n_images, dtype=np.int64)
    return np.random.default_rng([int(seed), int(epoch), 1]).integers(0, n_views, size=n_images)


def view_images(store, indices, view, *, seed, augment, keys=None):
    """Stored feature-cache view ``view`` of the images at ``indices``, float32 (n, H, W, 3).

    View 0 is the clean image; view ``v > 0`` is augmented with the parameters of
    ``(seed, (CACHED_VIEW, v), key)``, where ``key`` is the image's entry of ``keys`` (the
    feature cache passes a number derived from the photo's content, so a photo's stored views do
    not depend on where it sits in a split) or, without ``keys``, its index. The feature cache
    extracts its views with this, and ``preview`` redraws them with it.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    images = np.asarray(store.read(indices), dtype="float32")
    if view == 0 or not augment.enabled:
        return images
    draws = indices if keys is None else np.asarray(keys, dtype=np.int64).reshape(-1)
    params = augmentation_params(seed, (CACHED_VIEW, int(view)), draws, augment)
    return np.asarray(apply_augmentation(images, params, augment.fill_mode))


def steps_per_epoch(n_images, batch_size):
    """Batches per epoch; balanced epochs have the same number of images as plain ones."""
    return max(1, math.ceil(int(n_images) / int(batch_size)))


def targets(diagnoses):
    """Per-task labels and masks, float32 arrays of shape (n,)."""
    labels, masks = task_targets(list(diagnoses))
    return ({t: np.asarray(labels[t], dtype="float32") for t in TASK_NAMES},
            {t: np.asarray(masks[t], dtype="float32") for t in TASK_NAMES})


def _options(dataset):
    options = tf.data.Options()
    options.deterministic = True
    # Sharding is explicit (``shard=``), by image index, before anything is read.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options)


def _parallel_map(dataset, load):
    """``load`` on several batches at once, batches kept in order, two prepared ahead of the model.

    A fixed number of parallel calls (the CPUs this process may use) rather than ``AUTOTUNE``,
    which on 2 cores sometimes left one idle for a whole epoch.
    """
    calls = parallel_calls()
    return dataset.map(load, num_parallel_calls=calls, deterministic=True).prefetch(PREFETCH_BATCHES)


def _index_batches(orders, extra, batch_size, shard):
    """Per-epoch batches of ``(index, extra)``; with ``shard=(i, k)`` every k-th image from i."""
    def epoch_batches(order, more):
        return tf.data.Dataset.from_tensor_slices((order, more)).batch(batch_size)

    dataset = tf.data.Dataset.from_tensor_slices((orders, extra)).flat_map(epoch_batches)
    if shard is not None:
        index, count = (int(v) for v in shard)
        dataset = dataset.map(lambda i, e: (i[index::count], e[index::count]))
    return dataset


def _gather_targets(labels, masks):
    label_table = {t: tf.constant(np.asarray(labels[t], dtype="float32")) for t in TASK_NAMES}
    mask_table = {t: tf.constant(np.asarray(masks[t], dtype="float32")) for t in TASK_NAMES}

    def gather(idx):
        return ({t: tf.reshape(tf.gather(label_table[t], idx), (-1, 1)) for t in TASK_NAMES},
                {t: tf.gather(mask_table[t], idx) for t in TASK_NAMES})

    return gather


def read_rows(store, indices):
    """``store.read(indices)`` as a TensorFlow op (the rows' shape and dtype kept)."""
    rows = tf.numpy_function(store.read, [indices], tf.as_dtype(store.dtype), stateful=False)
    return tf.ensure_shape(rows, (None,) + tuple(store.row_shape))


def image_stream(store, diseases, *, seed, epochs, batch_size, augment, balanced=False, shard=None):
    """Training batches of prepared images for ``epochs`` (an iterable of epoch numbers).

    Parameters
    ----------
    store : skin_cnn.data.preprocessing.ImageStore
        uint8 (n, H, W, 3) training images, row ``i`` = image ``i``.
    diseases : array of str
        Disease of every row (labels, masks and balancing).
    seed : int
    epochs : iterable of int
        The epochs to stream, e.g. ``range(initial_epoch, config.epochs)``.
    batch_size : int
        Images per batch (the global batch when sharded).
    augment : AugmentConfig
    balanced : bool
    shard : (int, int), optional
        ``(worker index, workers)``: this worker reads only its part of every batch.
    """
    epochs = list(epochs)
    orders = np.stack([epoch_order(seed, e, diseases, balanced) for e in epochs]).astype(np.int64)
    params = np.stack([augmentation_params(seed, (EPOCH, e), order, augment) for e, order in zip(epochs, orders)])
    labels, masks = targets(diseases)
    gather = _gather_targets(labels, masks)
    enabled = augment.enabled

    def load(idx, param):
        images = tf.cast(read_rows(store, idx), tf.float32)
        if enabled:
            images = apply_augmentation(images, param, augment.fill_mode)
        return (images,) + gather(idx)

    dataset = _index_batches(orders, params, int(batch_size), shard)
    return _options(_parallel_map(dataset, load))


def feature_stream(features, diseases, *, seed, epochs, batch_size, balanced=False, shard=None,
                   in_memory_limit=None):
    """Training batches of cached trunk features: one stored view per image and epoch.

    ``features`` is a ``(1 + K, n, ...)`` array (view 0 clean, views 1..K augmented), or an
    :class:`~skin_cnn.data.preprocessing.ImageStore` or :class:`ViewRows` over one with
    ``K+1`` × ``n`` rows. Arrays up to ``in_memory_limit`` bytes (default
    :data:`IN_MEMORY_FEATURES_BYTES`) are gathered inside TensorFlow, so an epoch costs little
    more than the head's arithmetic; larger ones are read row by row.
    """
    if in_memory_limit is None:
        in_memory_limit = IN_MEMORY_FEATURES_BYTES
    epochs = list(epochs)
    diseases = np.asarray(diseases)
    n = len(diseases)
    if hasattr(features, "read"):
        n_views = len(features) // max(n, 1)
    else:
        n_views = int(features.shape[0])
    orders = np.stack([epoch_order(seed, e, diseases, balanced) for e in epochs]).astype(np.int64)
    views = np.stack([epoch_views(seed, e, n, n_views)[order] for e, order in zip(epochs, orders)])
    labels, masks = targets(diseases)
    gather = _gather_targets(labels, masks)
    if not hasattr(features, "read") and features.nbytes <= in_memory_limit:
        table = tf.constant(np.asarray(features, dtype="float32"))

        def load(idx, view):
            return (tf.gather_nd(table, tf.stack([view, idx], axis=1)),) + gather(idx)
    else:
        store = features if hasattr(features, "read") else ViewRows(features)

        def load(idx, view):
            return (tf.cast(read_rows(store, view * n + idx), tf.float32),) + gather(idx)

    dataset = _index_batches(orders, views.astype(np.int64), int(batch_size), shard)
    return _options(_parallel_map(dataset, load))
