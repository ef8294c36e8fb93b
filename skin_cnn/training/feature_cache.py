"""Frozen-trunk feature cache: run the frozen VGG-16 layers once, then train the heads for free.

With the convolutional trunk frozen and no spatial transformer before it (variant P), everything
up to the first trainable layer is a fixed function of the input image. Its output is computed
once for the clean view of every image and for ``K`` augmented views of every training image,
stored as ``.npy`` files (memory-mapped, so sets larger than memory work), and the trainable part
of the model (:func:`skin_cnn.models.split_at_frozen_boundary`'s ``head_model``) is trained on
them. Every epoch draws one stored view per training image, as a function of (seed, epoch).

On a 2-core CPU this turns VGG-16P training from ~3 images/s into thousands of images/s after
the one-off extraction. The price: augmentation is limited to the ``K`` stored views instead of a
fresh random view every epoch. Training reads the stored features into memory when they fit
(:func:`skin_cnn.training.trainer.cached_feature_dataset`) and streams them from the memory map
otherwise.

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

from skin_cnn import atomic

INDEX_FILE = "index.json"
CACHE_FORMAT = 1


# ----------------------------------------------------------------------------------------------
def file_fingerprint(path):
    """``(path, size, mtime_ns)`` of a file: cheap, and changes whenever the file is rewritten."""
    st = os.stat(path)
    return [os.fspath(path), int(st.st_size), int(st.st_mtime_ns)]


def weights_digest(model):
    """SHA-256 of a model's weights (values, shapes and dtypes), whatever file they came from."""
    digest = hashlib.sha256()
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
    val, test : numpy.ndarray, shape (n, ...)
        Clean views only.
    index : dict
        ``key``, ``feature_shape`` and per split the positions (row labels of the split frame)
        the arrays' rows belong to.
    reused : bool
        True when the cache existed and was opened rather than built.
    """

    path: Path
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
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
    arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in ("train", "val", "test")}
    return FeatureCache(path, arrays["train"], arrays["val"], arrays["test"], index, reused)


def find_cache(cache_dir, key):
    """The complete cache with ``key`` under ``cache_dir``, or None."""
    folder = Path(cache_dir) / key
    if (folder / INDEX_FILE).is_file():
        try:
            return open_cache(folder)
        except (OSError, ValueError, KeyError):
            return None
    return None


def build_cache(cache_dir, key, feature_model, images, *, augment=None, views=0, batch_size=32,
                progress=True, extra_index=None):
    """Extract features of every split and store them as a complete cache folder.

    Parameters
    ----------
    cache_dir : path
        Parent folder; the cache becomes ``cache_dir/key``.
    feature_model : keras.Model
        The frozen part of the model: images in, features out.
    images : dict of str -> (array (n, H, W, 3) float32 in [0, 255], positions)
        Preprocessed clean images and their row labels for ``train``, ``val`` and ``test``.
    augment : callable, optional
        ``augment(batch, view, batch_index) -> batch``, deterministic in its arguments.
    views : int
        Augmented views per training image (``K``).
    """
    from tqdm.auto import tqdm

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}.partial-", dir=cache_dir))
    try:
        probe = np.asarray(images["train"][0][:1], dtype="float32") if len(images["train"][0]) else \
            np.zeros((1,) + tuple(images["val"][0].shape[1:]), "float32")
        feature_shape = tuple(int(s) for s in np.asarray(feature_model(probe, training=False)).shape[1:])
        n_views = 1 + (int(views) if augment is not None else 0)
        total = sum(len(images[s][0]) for s in ("val", "test")) + n_views * len(images["train"][0])
        bar = tqdm(total=total, desc="feature cache", unit="img", disable=not progress)
        for split in ("train", "val", "test"):
            array, _ = images[split]
            n = len(array)
            shape = ((n_views, n) if split == "train" else (n,)) + feature_shape
            out = np.lib.format.open_memmap(work / f"{split}.npy", mode="w+", dtype="float32", shape=shape)
            for view in range(n_views if split == "train" else 1):
                for b, start in enumerate(range(0, n, batch_size)):
                    batch = np.asarray(array[start:start + batch_size], dtype="float32")
                    if view > 0:
                        batch = augment(batch, view, b)
                    feats = np.asarray(feature_model(batch, training=False))
                    if split == "train":
                        out[view, start:start + len(batch)] = feats
                    else:
                        out[start:start + len(batch)] = feats
                    bar.update(len(batch))
            out.flush()
            del out
        bar.close()
        index = {
            "key": key,
            "format": CACHE_FORMAT,
            "feature_shape": list(feature_shape),
            "views": n_views - 1,
            "positions": {s: [int(p) for p in images[s][1]] for s in ("train", "val", "test")},
        }
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


def epoch_views(seed, epoch, n_images, n_views):
    """Which stored view each training image shows in ``epoch`` (a function of seed and epoch)."""
    if n_views <= 1:
        return np.zeros(n_images, dtype=np.int64)
    return np.random.default_rng([int(seed), int(epoch), 1]).integers(0, n_views, size=n_images)
