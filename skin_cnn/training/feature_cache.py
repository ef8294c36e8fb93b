"""Frozen-trunk feature cache: run the frozen VGG-16 layers once, then train the heads for free.

With the convolutional trunk frozen and no spatial transformer before it (variant P), everything
up to the first trainable layer is a fixed function of the input image. Its output is computed
once for the clean view of every training and validation image and for ``K`` augmented views of
every training image, stored as ``.npy`` files, and the trainable part of the model
(:func:`skin_cnn.models.split_at_frozen_boundary`'s ``head_model``) is trained on them. The test
split is never read. The images come from the one preparation path
(:func:`skin_cnn.data.preprocessing.prepare_images`); view ``v`` of image ``i`` is augmented by
:func:`skin_cnn.data.augment.augmentation_params` with the key ``(CACHED_VIEW, v)``, and every
epoch draws one stored view per image from (seed, epoch) (:func:`skin_cnn.data.pipeline.epoch_views`).

On a 2-core CPU this turns VGG-16P training from ~3 images/s into thousands of images/s after
the one-off extraction. The price: augmentation is limited to the ``K`` stored views instead of a
fresh random view every epoch. Training gathers the stored features in memory when they fit
(:func:`skin_cnn.data.pipeline.feature_stream`) and reads them row by row otherwise.

A cache is identified by a hash of everything its contents depend on (:func:`cache_key`): the
images (path, size, modification time, crop box), the preprocessing, the frozen layers' weights,
the augmentation settings, ``K`` and the seed. An unchanged cache is reused (``reusing feature
cache``); any change gives a new key and a new cache. A cache is built in a temporary folder and
renamed into place when complete, so a killed extraction never leaves a cache that looks valid.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from skin_cnn.core.progress import progress_bar

from skin_cnn.core import io as atomic
from skin_cnn.data.pipeline import view_images
from skin_cnn.data.preprocessing import box_from_row

INDEX_FILE = "index.json"
CACHE_FORMAT = 2
SPLITS = ("train", "val")


# ----------------------------------------------------------------------------------------------
def file_fingerprint(path):
    """``(path, size, mtime_ns)`` of a file: cheap, and changes whenever the file is rewritten."""
    st = os.stat(path)
    return [os.fspath(path), int(st.st_size), int(st.st_mtime_ns)]


def image_fingerprints(frame, splits=SPLITS):
    """Per row of ``splits``: ``[path, size, mtime_ns, crop box or None, split]`` for the cache key."""
    out = []
    for row in frame[frame["split"].isin(splits)].to_dict("records"):
        path = str(row["image_path"])
        try:
            stat = file_fingerprint(path)[1:]
        except OSError:
            stat = [None, None]
        try:
            box = box_from_row(row)
        except ValueError as exc:
            box = str(exc)
        out.append([path] + stat + [list(box) if isinstance(box, tuple) else box, row["split"]])
    return out


def weights_digest(model):
    """SHA-256 of a feature model: its layers in order and its weights (values, shapes, dtypes).

    The layers count because one set of weights gives different features when pooled
    differently (block 5 alone or blocks 4 and 5, with or without mirror views).
    """
    digest = hashlib.sha256()
    structure = [(layer.__class__.__name__, layer.name) for layer in model.layers]
    digest.update(json.dumps([structure, list(model.outputs[0].shape)], default=str).encode())
    for w in model.get_weights():
        w = np.ascontiguousarray(w)
        digest.update(str((w.shape, w.dtype.str)).encode())
        digest.update(w.tobytes())
    return digest.hexdigest()


def cache_key(images, *, preprocessing, trunk_digest, augmentation, views, seed):
    """Hex key of a feature cache: changes whenever anything its contents depend on changes.

    Parameters
    ----------
    images : list
        Per image ``[path, size, mtime_ns, crop_box or None, split]`` in order.
    preprocessing : dict
        The run's ``preprocessing`` entry (image size, crop settings, resize).
    trunk_digest : str
        :func:`weights_digest` of the frozen feature model.
    augmentation : dict
        Augmentation settings used for the stored views.
    views, seed : int
        Number of augmented views per training image and the seed that made them.
    """
    document = {
        "format": CACHE_FORMAT,
        "images": images,
        "preprocessing": preprocessing,
        "trunk": trunk_digest,
        "augmentation": augmentation,
        "views": int(views),
        "seed": int(seed),
    }
    blob = json.dumps(document, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


# ----------------------------------------------------------------------------------------------
@dataclass
class FeatureCache:
    """An opened cache: memory-mapped arrays and the index of which images they hold.

    Attributes
    ----------
    path : Path
    train : numpy.ndarray, shape (1 + K, n_train, ...)
        View 0 is the clean image, views 1..K the augmented ones.
    val : numpy.ndarray, shape (n_val, ...)
        Clean views only.
    index : dict
        ``key``, ``feature_shape``, per split the positions (row labels of the split frame) the
        arrays' rows belong to, and the images that could not be read (``skipped``).
    reused : bool
        True when the cache existed and was opened rather than built.
    """

    path: Path
    train: np.ndarray
    val: np.ndarray
    index: dict
    reused: bool = False

    @property
    def num_views(self):
        return int(self.train.shape[0])


def open_cache(path, reused=True):
    """Open a complete cache folder (memory-mapped, read-only)."""
    path = Path(path)
    with open(path / INDEX_FILE, encoding="utf-8") as fh:
        index = json.load(fh)
    arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in SPLITS}
    return FeatureCache(path, arrays["train"], arrays["val"], index, reused)


def find_cache(cache_dir, key):
    """The complete cache with ``key`` under ``cache_dir``, or None."""
    folder = Path(cache_dir) / key
    if (folder / INDEX_FILE).is_file():
        try:
            return open_cache(folder)
        except (OSError, ValueError, KeyError):
            return None
    return None


def remove_stale_partials(cache_dir):
    """Delete ``.<key>.partial-<pid>-*`` folders left by extractions whose process is gone."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    removed = []
    for folder in cache_dir.glob(".*.partial-*"):
        if not pid_alive(_pid_of(folder.name)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _pid_of(name):
    try:
        return int(name.rsplit(".partial-", 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return None


def pid_alive(pid):
    """True when a process with ``pid`` exists on this machine (None: unknown, so False)."""
    if pid is None:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def view_batches(store, view, *, seed, augment, batch_size=32):
    """Batches ``(start, float32 images)`` of stored view ``view`` of every row of ``store``."""
    for start in range(0, len(store), batch_size):
        idx = np.arange(start, min(start + batch_size, len(store)))
        yield start, view_images(store, idx, view, seed=seed, augment=augment)


def build_cache(cache_dir, key, feature_model, prepared, *, augment, views=0, seed=0, batch_size=32,
                progress=True, extra_index=None):
    """Extract features of the training and validation images into a complete cache folder.

    Parameters
    ----------
    cache_dir : path
        Parent folder; the cache becomes ``cache_dir/key``.
    feature_model : keras.Model
        The frozen part of the model: images in, features out.
    prepared : dict of split -> PreparedSplit
        The prepared uint8 images of ``train`` and ``val``.
    augment : AugmentConfig
        Augmentation of the stored views 1..K.
    views : int
        Augmented views per training image (``K``).
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}.partial-{os.getpid()}-", dir=cache_dir))
    forward = tf.function(lambda x: feature_model(x, training=False), reduce_retracing=True)
    try:
        height, width = prepared["val"].store.row_shape[:2]
        feature_shape = tuple(int(s) for s in forward(tf.zeros((1, height, width, 3))).shape[1:])
        n_views = 1 + (int(views) if augment.enabled else 0)
        sizes = {s: len(prepared[s].store) for s in SPLITS}
        bar = progress_bar(total=sizes["val"] + n_views * sizes["train"], desc="feature cache", unit="img",
                   disable=not progress)
        for split in SPLITS:
            store = prepared[split].store
            shape = ((n_views, sizes[split]) if split == "train" else (sizes[split],)) + feature_shape
            out = np.lib.format.open_memmap(work / f"{split}.npy", mode="w+", dtype="float32", shape=shape)
            for view in range(n_views if split == "train" else 1):
                target = out[view] if split == "train" else out
                for start, images in view_batches(store, view, seed=seed, augment=augment, batch_size=batch_size):
                    target[start:start + len(images)] = np.asarray(forward(tf.constant(images)))
                    bar.update(len(images))
            out.flush()
            del out
        bar.close()
        index = {"key": key, "format": CACHE_FORMAT, "feature_shape": list(feature_shape), "views": n_views - 1,
                 "positions": {s: [int(p) for p in prepared[s].positions] for s in SPLITS}}
        index.update(extra_index or {})
        atomic.write_json(work / INDEX_FILE, index)
        final = cache_dir / key
        if final.exists():  # built meanwhile by another run with the same key
            shutil.rmtree(work, ignore_errors=True)
        else:
            os.replace(work, final)
        return open_cache(final, reused=False)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
