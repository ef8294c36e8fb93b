"""Frozen-trunk feature cache: trunk features stored per photo, found again by the photo's content.

With the convolutional trunk frozen and no spatial transformer before it (variant P), everything
up to the first trainable layer is a fixed function of the input image. Its output is computed
once for the clean view of every image and for ``K`` augmented views of every training image,
and the trainable part of the model (:func:`skin_cnn.models.split_at_frozen_boundary`'s
``head_model``) is trained on the stored features. ``train``, ``cv`` and anything else that runs
the same trunk with the same preprocessing and precision share one cache, so a photo's features
are computed once.

**Where.** One folder per user, :func:`default_cache_dir` (``$SKIN_CNN_CACHE_DIR``, else
``$XDG_CACHE_HOME/skin-cnn/features``, else ``~/.cache/skin-cnn/features``); ``--cache-dir``
moves it, ``--no-feature-cache`` skips it. Its size is bounded (:func:`max_cache_bytes`, 5 GB
unless ``$SKIN_CNN_CACHE_MAX_GB`` says otherwise): beyond the bound the least recently used whole
entries are deleted. Deleting the folder is always safe; it is rebuilt when needed.

**Layout.** ``<cache dir>/<entry key>/`` holds the features of one feature extractor
(:class:`FeatureSettings`: the trunk's layers and weights, the preprocessing, the precision)::

    entry.json                 the settings the key was made from (precision included)
    chunks/<id>/index.json     per chunk: format, views, augmentation key, SHA-256 of every file
    chunks/<id>/rows.csv       which image each stored row is: array, row, image_path, sha256,
                               box, diagnosis
    chunks/<id>/train.npy      float32 (1 + K, n, ...): the clean view and K augmented views
    chunks/<id>/val.npy        float32 (n, ...): the clean view only

**Identity, never position.** A stored row belongs to the image ``(image_path, SHA-256 of the
file's bytes, crop box, diagnosis)``. On reuse every row of the current frame is looked up by
that identity; rows not found (a new photo, one whose file changed, one whose diagnosis changed)
are computed into a new chunk, with one line saying how many and why. The arrays handed to
training are gathered in the current frame's order, with the current frame's row labels, so a
split that lost or gained rows can never attach one photo's features to another's label.

**Damage.** Every chunk file's SHA-256 is recorded when the chunk is written and checked when it
is opened; a chunk whose files differ (overwritten, truncated, missing) is deleted with a line
naming the file, and its images are recomputed into the same entry. A chunk is written in a
``.partial-<pid>-*`` folder and renamed into place when complete, so a killed extraction never
leaves a chunk that looks valid.

**Augmented views.** View ``v`` of a photo is augmented with parameters drawn from
``(seed, v, photo key)`` (:func:`skin_cnn.data.pipeline.view_images`), the key a number taken
from the photo's SHA-256: a photo's stored views do not depend on its place in a split, and a
chunk's augmented views are reused only for the same augmentation settings and seed
(:meth:`FeatureSettings.views_key`). Every epoch draws one stored view per image from
(seed, epoch) (:func:`skin_cnn.data.pipeline.epoch_views`).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from skin_cnn.core import io as atomic
from skin_cnn.core.io import sha256_file
from skin_cnn.core.progress import progress_bar
from skin_cnn.data.pipeline import view_images
from skin_cnn.data.preprocessing import box_from_row, prepare_images

CACHE_FORMAT = 3
ENTRY_FILE = "entry.json"
INDEX_FILE = "index.json"
ROWS_FILE = "rows.csv"
CHUNKS = "chunks"
USED_STAMP = ".last_used"
ARRAYS = ("train", "val")
ROW_COLUMNS = ("array", "row", "image_path", "sha256", "box", "diagnosis", "reason")
#: The ``array`` of a stored row for a photo that could not be read (``reason`` says why).
UNREADABLE = "unreadable"
#: Environment variables that move the cache and bound its size.
CACHE_DIR_ENV = "SKIN_CNN_CACHE_DIR"
MAX_GB_ENV = "SKIN_CNN_CACHE_MAX_GB"
DEFAULT_MAX_GB = 5.0
#: Gathered training features above this size go to a file in the run's preparation folder.
IN_MEMORY_BYTES = 1 << 30


class CacheDamaged(ValueError):
    """A cache file that is not what was written; the message names the file."""


# ----------------------------------------------------------------------------------------------
# Where, and how big


def default_cache_dir() -> Path:
    """The per-user cache folder: ``$SKIN_CNN_CACHE_DIR``, else the platform cache folder.

    The platform cache folder is ``$XDG_CACHE_HOME`` or ``~/.cache`` (the XDG convention that
    pip and Hugging Face follow); features go to ``skin-cnn/features`` inside it.
    """
    explicit = os.environ.get(CACHE_DIR_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join("~", ".cache")
    return Path(base).expanduser() / "skin-cnn" / "features"


def resolve_cache_dir(cache_dir=None) -> Path:
    """``cache_dir`` when given (``--cache-dir``), else :func:`default_cache_dir`."""
    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()


def max_cache_bytes() -> int:
    """The size bound of a cache folder in bytes: ``$SKIN_CNN_CACHE_MAX_GB`` (GB, 10⁹ bytes), else 5 GB."""
    text = os.environ.get(MAX_GB_ENV, "").strip()
    if not text:
        return int(DEFAULT_MAX_GB * 1e9)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"${MAX_GB_ENV}={text!r}: expected a size in GB, a number >= 0")
    return int(value * 1e9)


# ----------------------------------------------------------------------------------------------
# What a stored row is


_SHA256_MEMO: dict = {}


def file_sha256(path) -> str:
    """SHA-256 of a file's bytes, remembered per (path, size, mtime, inode) within the process.

    Hashing is what makes the cache content-addressed; remembering it lets the folds of a
    cross-validation look their rows up without reading every photo again.
    """
    st = os.stat(path)
    memo_key = (os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if memo_key not in _SHA256_MEMO:
        _SHA256_MEMO[memo_key] = sha256_file(path)
    return _SHA256_MEMO[memo_key]


def _box_text(row):
    try:
        box = box_from_row(row)
    except ValueError as exc:
        return f"invalid: {exc}"
    return "" if box is None else ",".join(str(int(v)) for v in box)


def image_identities(frame) -> pd.DataFrame:
    """The identity of every row of ``frame``: ``image_path, sha256, box, diagnosis`` (same index).

    ``sha256`` is empty for a file that cannot be read (it is never found in the cache and its
    preparation reports why); ``box`` is the frame's crop box as ``left,top,right,bottom`` or
    empty. ``aug_key`` is the number the photo's augmented views are drawn from.
    """
    records = frame.to_dict("records")
    paths, digests, boxes = [], [], []
    for row in records:
        path = str(row["image_path"])
        try:
            digest = file_sha256(path)
        except OSError:
            digest = ""
        paths.append(path)
        digests.append(digest)
        boxes.append(_box_text(row))
    has_diagnosis = "diagnosis" in frame.columns
    diagnosis = frame["diagnosis"].fillna("").astype(str).tolist() if has_diagnosis else [""] * len(frame)
    out = pd.DataFrame({"image_path": paths, "sha256": digests, "box": boxes, "diagnosis": diagnosis},
                       index=frame.index)
    out["aug_key"] = [int(d[:15], 16) if d else 0 for d in digests]
    return out


def identity_of(record) -> tuple:
    """``(image_path, sha256, box, diagnosis)`` of a row of :func:`image_identities` or of a chunk."""
    return (str(record["image_path"]), str(record["sha256"]), str(record["box"]), str(record["diagnosis"]))


# ----------------------------------------------------------------------------------------------
# Keys


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


def _short_hash(document, length):
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()[:length]


def cache_key(*, trunk_digest: str, preprocessing: dict, precision: str = "float32") -> str:
    """Hex key of a cache entry: everything a photo's clean-view features depend on besides the photo.

    Parameters
    ----------
    trunk_digest : str
        :func:`weights_digest` of the frozen feature model (its layers, pooling and weights).
    preprocessing : dict
        The run's ``preprocessing`` entry (image size, crop settings, resize, antialias).
    precision : str
        The compute precision the trunk runs in (``"float32"``, ``"bfloat16"``, ...): the same
        weights give slightly different features in another precision.

    The photo size limits are part of the key too: a photo refused under one limit is recorded as
    unreadable, and under another may have features.
    """
    return _short_hash({"format": CACHE_FORMAT, "trunk": trunk_digest, "preprocessing": preprocessing,
                        "precision": str(precision), "photo_limits": _admitted_photos()}, 24)


def _admitted_photos():
    """The photo size limits (:func:`~skin_cnn.data.preprocessing.photo_size_problem`): an entry
    holds features only of the photos they admit, so other limits need another entry."""
    from skin_cnn.data import preprocessing

    return [preprocessing.MAX_ENLARGEMENT, preprocessing.MAX_SHAPE_RATIO]


@dataclass(frozen=True)
class FeatureSettings:
    """What stored features depend on besides the photo itself.

    Attributes
    ----------
    trunk_digest : str
        :func:`weights_digest` of the feature model.
    preprocessing : dict
        ``Preprocessing.to_dict()`` of the run.
    precision : str
        Compute precision of the trunk.
    augmentation : dict
        ``AugmentConfig.to_dict()`` of the augmented views (empty: no augmented views).
    seed : int
        The seed the augmented views are drawn from.
    """

    trunk_digest: str
    preprocessing: dict
    precision: str = "float32"
    augmentation: dict = field(default_factory=dict)
    seed: int = 0

    def entry_key(self) -> str:
        """The entry folder: features of the clean view are shared by every run with this key."""
        return cache_key(trunk_digest=self.trunk_digest, preprocessing=self.preprocessing, precision=self.precision)

    def views_key(self) -> str:
        """Augmented views of a chunk serve only runs with the same augmentation and seed."""
        return _short_hash({"augmentation": self.augmentation, "seed": int(self.seed)}, 16)

    def document(self) -> dict:
        return {"format": CACHE_FORMAT, "key": self.entry_key(), "trunk": self.trunk_digest,
                "preprocessing": self.preprocessing, "precision": str(self.precision)}


# ----------------------------------------------------------------------------------------------
# Chunks: written once, checked on every opening


@dataclass
class Chunk:
    """One complete chunk of an entry: its arrays (memory-mapped) and which image each row is."""

    path: Path
    index: dict
    rows: pd.DataFrame
    arrays: dict

    @property
    def views(self) -> int:
        return int(self.index.get("views", 0))


def _load_array(path):
    """Open a ``.npy`` read-only (memory-mapped unless it is empty); CacheDamaged naming it otherwise."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, _ = read_header(fh)
        if int(np.prod(shape)) == 0:
            return np.load(path)
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        raise CacheDamaged(f"{path}: unreadable ({exc})") from None


def open_chunk(path) -> Chunk:
    """Open a chunk, checking every file against the SHA-256 recorded when it was written.

    Raises
    ------
    CacheDamaged
        Naming the first file that is missing, unreadable or not what was written.
    """
    path = Path(path)
    index_path = path / INDEX_FILE
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        checksums = dict(index["checksums"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CacheDamaged(f"{index_path}: unreadable ({exc})") from None
    if index.get("format") != CACHE_FORMAT:
        raise CacheDamaged(f"{index_path}: format {index.get('format')!r}, expected {CACHE_FORMAT}")
    for name in (ROWS_FILE,) + tuple(f"{a}.npy" for a in ARRAYS):
        file = path / name
        if name not in checksums:
            raise CacheDamaged(f"{index_path}: no checksum recorded for {name}")
        try:
            actual = sha256_file(file)
        except OSError as exc:
            raise CacheDamaged(f"{file}: unreadable ({exc.strerror or exc})") from None
        if actual != checksums[name]:
            size = file.stat().st_size
            raise CacheDamaged(f"{file}: SHA-256 differs from the one recorded when it was written "
                               f"({size} bytes; overwritten, truncated or corrupted)")
    rows = pd.read_csv(path / ROWS_FILE, dtype=str, keep_default_na=False)
    arrays = {a: _load_array(path / f"{a}.npy") for a in ARRAYS}
    return Chunk(path, index, rows, arrays)


def open_entry(entry, *, echo=print):
    """The intact chunks of an entry; damaged chunks are deleted (their images get recomputed)."""
    chunks = []
    folder = Path(entry) / CHUNKS
    if not folder.is_dir():
        return chunks
    for path in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            chunks.append(open_chunk(path))
        except CacheDamaged as exc:
            echo(f"feature cache: {exc}; its images are recomputed")
            shutil.rmtree(path, ignore_errors=True)
    return chunks


def _write_array(path, shape, fill):
    """A float32 ``.npy`` of ``shape`` filled batch by batch by ``fill(out)``."""
    if int(np.prod(shape)) == 0:
        np.save(path, np.zeros(shape, dtype="float32"))
        return
    out = np.lib.format.open_memmap(path, mode="w+", dtype="float32", shape=shape)
    fill(out)
    out.flush()
    del out


class CleanViews:
    """Clean-view features computed batch by batch while the next photos are decoded.

    Passed as ``on_batch`` to :func:`~skin_cnn.data.preprocessing.prepare_images`: each batch of
    prepared images goes through the trunk as soon as it exists, so decoding, cropping and
    resizing (on ``tf.data`` threads) overlap the forward pass instead of preceding it.
    """

    def __init__(self, feature_model):
        self.forward = tf.function(lambda x: feature_model(x, training=False), reduce_retracing=True)
        self.parts = {array: [] for array in ARRAYS}

    def __call__(self, array, rows, pixels):
        features = np.asarray(self.forward(tf.constant(pixels, tf.float32)), dtype=np.float32)
        self.parts[array].append((np.asarray(rows), features))

    def arrays(self, prepared):
        """``{array: features of store rows 0..n-1}`` for the arrays whose every stored row was seen."""
        out = {}
        for array, parts in self.parts.items():
            n = len(prepared[array].store) if array in prepared else 0
            if not parts or sum(len(r) for r, _ in parts) != n:
                continue
            first = parts[0][1]
            features = np.empty((n,) + first.shape[1:], np.float32)
            for rows, values in parts:
                features[rows] = values
            out[array] = features
        return out


@dataclass(frozen=True)
class Extraction:
    """How missing features are computed and reported.

    Attributes
    ----------
    batch_size : int
        Images per forward pass of the trunk.
    progress : bool
        Show a progress bar while features are extracted.
    echo : callable
        Where the cache's one-line messages go (``print``; the CLI passes ``click.echo``).
    """

    batch_size: int = 32
    progress: bool = True
    echo: Any = print


@dataclass
class ChunkImages:
    """What one new chunk stores.

    Attributes
    ----------
    prepared : dict of {"train", "val"} -> PreparedSplit
        ``train``: images stored with the augmented views; ``val``: clean view only.
    unreadable : list of (frame label, reason)
        Photos that could not be prepared: recorded by content, so they are not tried again.
    clean : dict of {"train", "val"} -> numpy.ndarray, optional
        Clean-view features already computed while the images were prepared (:class:`CleanViews`),
        one row per stored image; view 0 of those arrays is taken from here.
    """

    prepared: dict
    unreadable: Any = ()
    clean: Any = None


def build_chunk(entry, feature_model, images, identities, settings, *, views, augment, extraction=None):
    """Extract the features of ``images`` into a new complete chunk of ``entry``.

    Parameters
    ----------
    entry : path
        The entry folder (``<cache dir>/<entry key>``).
    feature_model : keras.Model
        The frozen part of the model: images in, features out.
    images : ChunkImages
        The prepared images, the unreadable ones, and clean views already computed.
    identities : pandas.DataFrame
        :func:`image_identities` of (at least) the prepared rows, indexed by their frame labels.
    settings : FeatureSettings
    views : int
        Augmented views per ``train`` image (``K``).
    augment : AugmentConfig
    extraction : Extraction, optional
        Batch size and progress bar (the defaults of :class:`Extraction`).
    """
    extraction = extraction or Extraction()
    prepared, clean = images.prepared, images.clean or {}
    chunks = Path(entry) / CHUNKS
    chunks.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".partial-{os.getpid()}-", dir=chunks))
    forward = tf.function(lambda x: feature_model(x, training=False), reduce_retracing=True)
    try:
        height, width = next(iter(prepared.values())).store.row_shape[:2]
        known = next(iter(clean.values()), None)
        feature_shape = (tuple(known.shape[1:]) if known is not None
                         else tuple(int(s) for s in forward(tf.zeros((1, height, width, 3))).shape[1:]))
        n_views = {"train": 1 + int(views), "val": 1}
        total = sum(n_views[a] * len(prepared[a].store) for a in ARRAYS)
        bar = progress_bar(total=total, desc="feature cache", unit="img", disable=not extraction.progress)
        views_of = _ViewFeatures(forward, bar, extraction.batch_size, settings.seed, augment)
        for array in ARRAYS:
            store, positions = prepared[array].store, prepared[array].positions
            keys = identities.loc[positions, "aug_key"].to_numpy()
            shape = ((n_views[array], len(store)) if array == "train" else (len(store),)) + feature_shape
            _write_array(work / f"{array}.npy", shape,
                         lambda out, a=array, s=store, k=keys: views_of.fill(out, a, (s, k), n_views[a], clean))
        bar.close()
        rows = _chunk_rows(prepared, identities, images.unreadable)
        rows.to_csv(work / ROWS_FILE, index=False)
        checksums = {name: sha256_file(work / name) for name in (ROWS_FILE,) + tuple(f"{a}.npy" for a in ARRAYS)}
        index = {"format": CACHE_FORMAT, "views": int(views), "views_key": settings.views_key(),
                 "augmentation": settings.augmentation, "seed": int(settings.seed), "precision": settings.precision,
                 "feature_shape": list(feature_shape), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                 "checksums": checksums}
        atomic.write_json(work / INDEX_FILE, index)
        final = chunks / f"{time.time_ns()}-{os.getpid()}"
        os.replace(work, final)
        return open_chunk(final)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


@dataclass
class _ViewFeatures:
    """Fills a chunk's array with the trunk's features of every view of its stored images."""

    forward: Any
    bar: Any
    batch_size: int
    seed: int
    augment: Any

    def fill(self, out, array, stored, n_views, clean):
        """Write view 0 (clean; taken from ``clean`` when computed already) to ``n_views - 1``
        of the images ``stored`` (``(store, augmentation keys)``) into ``out``."""
        store, keys = stored
        for view in range(n_views):
            target = out[view] if array == "train" else out
            if view == 0 and array in clean:
                target[:] = clean[array]
                self.bar.update(len(store))
                continue
            for start in range(0, len(store), self.batch_size):
                idx = np.arange(start, min(start + self.batch_size, len(store)))
                images = view_images(store, idx, view, seed=self.seed, augment=self.augment, keys=keys[idx])
                target[start:start + len(idx)] = np.asarray(self.forward(tf.constant(images)))
                self.bar.update(len(idx))


def _chunk_rows(prepared, identities, unreadable):
    """The chunk's ``rows.csv``: which photo (by content) each array row is, then the unreadable ones."""
    records = []
    for array in ARRAYS:
        for row, label in enumerate(prepared[array].positions):
            ident = identities.loc[label]
            records.append({"array": array, "row": row, "image_path": ident["image_path"],
                            "sha256": ident["sha256"], "box": ident["box"], "diagnosis": ident["diagnosis"]})
    for label, reason in unreadable:
        ident = identities.loc[label]
        records.append({"array": UNREADABLE, "row": -1, "image_path": ident["image_path"],
                        "sha256": ident["sha256"], "box": ident["box"], "diagnosis": ident["diagnosis"],
                        "reason": reason})
    return pd.DataFrame(records, columns=list(ROW_COLUMNS))


# ----------------------------------------------------------------------------------------------
# Finding rows by identity


def _locate(chunks, identities, need_views, views_key):
    """``(chunk number, array, row)`` of every identity with at least ``need_views`` stored views, else None."""
    table = {}
    for c, chunk in enumerate(chunks):
        augmented_ok = chunk.index.get("views_key") == views_key and 1 + chunk.views >= need_views
        for record in chunk.rows.to_dict("records"):
            array = record["array"]
            if need_views > 1 and not (array in ("train", UNREADABLE) and augmented_ok):
                continue
            table.setdefault(identity_of(record), (c, array, int(record["row"]), record.get("reason", "")))
    return [table.get(identity_of(r)) if r["sha256"] else None for r in identities.to_dict("records")]


def miss_reasons(chunks, missing) -> Counter:
    """Why rows were not found: ``not cached``, ``file changed since cached``, ``other diagnosis``."""
    by_path = {}
    for chunk in chunks:
        for record in chunk.rows.to_dict("records"):
            by_path.setdefault(record["image_path"], set()).add((record["sha256"], record["diagnosis"]))
    reasons = Counter()
    for record in missing.to_dict("records"):
        seen = by_path.get(record["image_path"], set())
        if not seen:
            reasons["not cached"] += 1
        elif not any(s == record["sha256"] for s, _ in seen):
            reasons["file changed since cached"] += 1
        elif not any(d == record["diagnosis"] for s, d in seen if s == record["sha256"]):
            reasons["another diagnosis than cached"] += 1
        else:
            reasons["cached without these views"] += 1
    return reasons


def _feature_shape(chunks, located, feature_model):
    """Shape of one image's features: from the stored arrays, else from the feature model."""
    if located:
        c, array = located[0][:2]
        stored = chunks[c].arrays[array].shape
        return tuple(int(v) for v in (stored[2:] if array == "train" else stored[1:]))
    return tuple(int(v) for v in feature_model.outputs[0].shape[1:])


def _gather(chunks, located, n_views, out):
    """Fill ``out`` ((n_views, n, ...) or (n, ...)) with the located rows, chunk by chunk."""
    groups = {}
    for i, (c, array, row, *_) in enumerate(located):
        groups.setdefault((c, array), ([], []))
        groups[(c, array)][0].append(i)
        groups[(c, array)][1].append(row)
    for (c, array), (targets, rows) in groups.items():
        source = chunks[c].arrays[array]
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")  # memory-mapped rows read in file order
        targets, rows = np.asarray(targets)[order], rows[order]
        if array == "val":  # clean view only: serves a request for the clean view alone
            (out if n_views is None else out[0])[targets] = source[rows]
        elif n_views is None:
            out[targets] = source[0, rows]
        else:
            out[:, targets] = source[:n_views, rows]
    return out


@dataclass
class CachedFeatures:
    """Features of a frame's rows, aligned to the frame as it is now.

    Attributes
    ----------
    path : Path
        The cache entry they came from.
    arrays : dict of split -> numpy.ndarray
        Per split, ``(n_views, n, ...)`` for ``train`` and any split asked for more than the clean
        view, else ``(n, ...)``;
        row ``i`` is the image of frame row label ``positions[split][i]``.
    positions : dict of split -> numpy.ndarray
        Frame row labels of the rows found or computed (in frame order); unreadable images are
        left out and listed in ``skipped``.
    skipped : list of dict
        ``image_path``, ``split``, ``reason`` of every image that could not be read.
    reused : bool
        True when every row was found in the cache and nothing was computed.
    computed : int
        Images whose features were computed in this call.
    files : dict of split -> Path
        Splits whose gathered array was written to a file (too large for memory).
    """

    path: Path
    arrays: dict
    positions: dict
    skipped: list
    reused: bool
    computed: int = 0
    files: dict = field(default_factory=dict)

    @property
    def train(self):
        return self.arrays.get("train")

    @property
    def val(self):
        return self.arrays.get("val")


def cached_features(frame, needs, feature_model, settings, *, cache_dir=None, work=None, max_bytes=None,
                    **extraction) -> CachedFeatures:
    """Features of the rows of ``frame``, taken from the cache by identity and computed where missing.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows with ``image_path``, ``split``, ``diagnosis`` (and optional ``crop_*``).
    needs : dict of split -> int
        Views wanted per split: ``{"train": 1 + K, "val": 1}``. Splits not named are not read.
    feature_model : keras.Model
        The frozen feature model (only run for rows not in the cache).
    settings : FeatureSettings
        Its ``augmentation`` and ``seed`` make the augmented views.
    cache_dir : path, optional
        Default :func:`default_cache_dir`.
    work : path, optional
        A scratch folder (prepared images; gathered arrays too large for memory).
    max_bytes : int, optional
        Size bound of the cache folder (default :func:`max_cache_bytes`).
    **extraction
        ``batch_size``, ``progress`` and ``echo``: the fields of :class:`Extraction`.
    """
    from skin_cnn.data.augment import AugmentConfig

    extraction = Extraction(**extraction)
    echo = extraction.echo
    augment = AugmentConfig.from_dict(settings.augmentation) if settings.augmentation else None
    if any(n > 1 for n in needs.values()) and not (augment and augment.enabled):
        raise ValueError("augmented views need the augmentation settings (FeatureSettings.augmentation)")
    cache_dir = resolve_cache_dir(cache_dir)
    entry = _ready_entry(cache_dir, settings)
    chunks = open_entry(entry, echo=echo)

    wanted = {s: frame[frame["split"] == s] for s in needs}
    identities = image_identities(pd.concat(list(wanted.values())) if wanted else frame.iloc[:0])
    located = {s: _locate(chunks, identities.loc[part.index], needs[s], settings.views_key())
               for s, part in wanted.items()}
    missing = {s: part.index[[loc is None for loc in located[s]]] for s, part in wanted.items()}
    n_missing = sum(len(m) for m in missing.values())
    found = sum(len(part) for part in wanted.values()) - n_missing
    failed = {}
    if n_missing:
        reasons = miss_reasons(chunks, identities.loc[np.concatenate([m.to_numpy() for m in missing.values()])])
        why = ", ".join(f"{n} {r}" for r, n in reasons.most_common())
        verb = "building feature cache" if not found else "extending feature cache"
        echo(f"{verb} {entry}: computing {n_missing} image(s) ({why}); {found} found by content")
        job = _Extraction(entry, feature_model, settings, augment, work, extraction)
        failed = _compute_missing(job, frame, missing, needs, identities)
        chunks = open_entry(entry, echo=echo)
        located = {s: _locate(chunks, identities.loc[part.index], needs[s], settings.views_key())
                   for s, part in wanted.items()}
    else:
        echo(f"reusing feature cache {entry} ({found} images found by content)")

    arrays, positions, files, skipped = {}, {}, {}, []
    for split, part in wanted.items():
        keep = []
        for i, (label, loc) in enumerate(zip(part.index, located[split])):
            path = str(part.loc[label, "image_path"])
            if loc is None and label not in failed:
                raise CacheDamaged(f"{entry}: {path} was computed but is not in the cache afterwards")
            if loc is None or loc[1] == UNREADABLE:
                skipped.append({"image_path": path, "split": split, "reason": failed.get(label) or loc[3]})
            else:
                keep.append(i)
        positions[split] = np.asarray(part.index[keep], dtype=np.int64)
        hits = [located[split][i] for i in keep]
        n_views = needs[split] if needs[split] > 1 or split == "train" else None
        arrays[split], files[split] = _gathered_split(chunks, hits, n_views, feature_model,
                                                      None if work is None else Path(work) / f"features-{split}.npy")
    files = {split: path for split, path in files.items() if path is not None}
    evict(cache_dir, max_cache_bytes() if max_bytes is None else max_bytes, keep=(entry,), echo=echo)
    return CachedFeatures(entry, arrays, positions, skipped, reused=not n_missing, computed=n_missing, files=files)


def _ready_entry(cache_dir, settings):
    """The entry folder of ``settings`` below ``cache_dir``, created and described when new, marked
    as used now, and without partial chunks left by dead processes."""
    entry = cache_dir / settings.entry_key()
    (entry / CHUNKS).mkdir(parents=True, exist_ok=True)
    if not (entry / ENTRY_FILE).is_file():
        atomic.write_json(entry / ENTRY_FILE, settings.document())
    touch_entry(entry)
    remove_stale_partials(entry / CHUNKS)
    return entry


def _gathered_split(chunks, hits, n_views, feature_model, spill):
    """The features of ``hits`` in one array, and the file holding it (None: in memory).

    Arrays over :data:`IN_MEMORY_BYTES` are written to ``spill`` (memory-mapped) when a scratch
    file is given.
    """
    feature_shape = _feature_shape(chunks, hits, feature_model)
    shape = ((n_views, len(hits)) if n_views else (len(hits),)) + feature_shape
    if 4 * int(np.prod(shape)) > IN_MEMORY_BYTES and spill is not None:
        out = np.lib.format.open_memmap(spill, mode="w+", dtype="float32", shape=shape)
        gathered = _gather(chunks, hits, n_views, out)
        out.flush()
        return gathered, spill
    return _gather(chunks, hits, n_views, np.empty(shape, dtype="float32")), None


@dataclass(frozen=True)
class _Extraction:
    """What stays the same while one call of :func:`cached_features` fills its entry."""

    entry: Path
    feature_model: Any
    settings: FeatureSettings
    augment: Any
    work: Any
    extraction: Extraction


def _compute_missing(job, frame, missing, needs, identities):
    """Prepare and extract the missing rows into one new chunk; returns ``{frame label: reason}`` of unreadable ones.

    Photos that cannot be decoded are recorded in the chunk by content, so the next run reports
    them without trying again; files that cannot even be opened (no content to key) are not.
    """
    views = max([needs[s] - 1 for s in missing if len(missing[s])] + [0])
    parts = []
    for split, labels in missing.items():
        array = "train" if needs[split] > 1 else "val"
        parts.append(frame.loc[labels].assign(split=array, _split=split))
    todo = pd.concat(parts)
    if todo.index.duplicated().any():  # one frame row asked for under two splits: prepare it once
        todo = todo[~todo.index.duplicated()]
    progress = job.extraction.progress
    with tempfile.TemporaryDirectory(prefix="skin-cnn-features-", dir=job.work) as scratch:
        from skin_cnn.core.specs import Preprocessing

        preprocessing = Preprocessing.from_dict(job.settings.preprocessing)
        clean = CleanViews(job.feature_model)  # the trunk runs while the next photos are decoded
        prepared, failed = prepare_images(todo, preprocessing, scratch, splits=ARRAYS, progress=progress,
                                          on_batch=clean)
        reason_of = {f["image_path"]: f["reason"] for f in failed}
        done = {int(p) for part in prepared.values() for p in part.positions}
        unreadable = {label: reason_of.get(str(path), "unreadable")
                      for label, path in todo["image_path"].items() if label not in done}
        recordable = [(label, reason) for label, reason in unreadable.items() if identities.loc[label, "sha256"]]
        if done or recordable:
            build_chunk(job.entry, job.feature_model, ChunkImages(prepared, recordable, clean.arrays(prepared)),
                        identities, job.settings, views=views, augment=job.augment, extraction=job.extraction)
        for p in prepared.values():
            p.store.close()
    return unreadable


# ----------------------------------------------------------------------------------------------
# Reading features for other parts of the package


def features_for(frame, feature_model, preprocessing, *, precision=None, cache_dir=None, compute=False,
                 progress=False, echo=None) -> np.ndarray:
    """Clean-view trunk features of every row of ``frame``, aligned to its rows (NaN where unavailable).

    The read interface of the cache for analyses over photos (a leakage audit, an evaluation on
    a frozen trunk): rows are found by identity (path, content, crop box, diagnosis), whichever
    command stored them.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows with ``image_path`` (and ``diagnosis``, optional ``crop_*`` columns).
    feature_model : keras.Model
        The frozen feature model (:func:`skin_cnn.models.split_at_frozen_boundary`'s first part).
    preprocessing : Preprocessing or dict
        The preprocessing the features were made with (a run's ``config.json`` entry).
    precision : str, optional
        The precision the trunk runs in; default: what ``feature_model``'s trunk layers compute in.
    compute : bool
        Compute and store the rows not in the cache; False leaves them NaN (unreadable images are
        NaN either way).

    Returns
    -------
    numpy.ndarray, float32 ``(len(frame), ...)``
    """
    from skin_cnn.core.specs import Preprocessing
    from skin_cnn.models.precision_policy import model_precision

    preprocessing = Preprocessing.from_dict(preprocessing)
    settings = FeatureSettings(trunk_digest=weights_digest(feature_model), preprocessing=preprocessing.to_dict(),
                               precision=str(precision or model_precision(feature_model)))
    echo = echo or (lambda message: None)
    rows = frame.reset_index(drop=True).assign(split="val")
    if compute:
        with tempfile.TemporaryDirectory(prefix="skin-cnn-features-") as work:
            got = cached_features(rows, {"val": 1}, feature_model, settings, cache_dir=cache_dir, work=work,
                                  progress=progress, echo=echo)
            return _aligned(len(rows), got.positions["val"], got.val)
    entry = resolve_cache_dir(cache_dir) / settings.entry_key()
    chunks = open_entry(entry, echo=echo)
    identities = image_identities(rows)
    located = _locate(chunks, identities, 1, settings.views_key())
    keep = [i for i, loc in enumerate(located) if loc is not None and loc[1] != UNREADABLE]
    shape = (len(keep),) + _feature_shape(chunks, [located[i] for i in keep], feature_model)
    values = _gather(chunks, [located[i] for i in keep], None, np.empty(shape, dtype="float32"))
    if len(keep):
        touch_entry(entry)
    return _aligned(len(rows), np.asarray(keep), values)


def cached_frame_predictions(predictor, frame, *, progress=True, cache_dir=None, echo=None):
    """:func:`~skin_cnn.inference.predictor.predict_frame` of a frozen-trunk model, its trunk read from the cache.

    A model whose layers up to some point are all frozen (variant P, a cross-validation
    ensemble) is its trunk followed by its heads; the trunk's features of photos any command
    has seen are taken from the cache, the others computed and stored, and the heads run on
    them. The answer is the full model's to float rounding. Other models are predicted whole.

    Parameters
    ----------
    predictor : skin_cnn.inference.predictor.Predictor
    frame : pandas.DataFrame
        ``image_path`` (and ``diagnosis``, ``crop_*``) of the photos to predict.

    Returns
    -------
    FramePredictions
        Aligned with ``frame``'s rows; unreadable photos ``NaN`` and listed in ``skipped``.
    """
    from skin_cnn.inference.predictor import FramePredictions, predict_frame
    from skin_cnn.models import split_at_frozen_boundary
    from skin_cnn.models.precision_policy import model_precision
    from skin_cnn.training.callbacks import predict_batches

    try:
        trunk, head = split_at_frozen_boundary(predictor.model)
    except ValueError:
        return predict_frame(predictor, frame, progress=progress)
    rows = frame.reset_index(drop=True).assign(split="predict")
    # the key holds the precision the predictor's trunk computes in (``--precision`` of evaluate)
    settings = FeatureSettings(trunk_digest=weights_digest(trunk), preprocessing=predictor.preprocessing.to_dict(),
                               precision=model_precision(trunk))
    with tempfile.TemporaryDirectory(prefix="skin-cnn-features-") as work:
        got = cached_features(rows, {"predict": 1}, trunk, settings, cache_dir=cache_dir, work=work,
                              progress=progress, echo=echo or (lambda message: None))
        outputs = predict_batches(head, got.arrays["predict"], batch_size=256)
    positions = got.positions["predict"]
    probabilities = {task: np.full(len(rows), np.nan, dtype=np.float32) for task in predictor.tasks}
    for task in predictor.tasks:
        probabilities[task][positions] = outputs[task]
    ok = np.zeros(len(rows), dtype=bool)
    ok[positions] = True
    split_of = frame["split"].astype(str).tolist() if "split" in frame.columns else [""] * len(frame)
    position_of = {}
    for i, path in enumerate(rows["image_path"].astype(str)):
        position_of.setdefault(path, []).append(i)
    skipped = []
    for entry in got.skipped:
        for i in position_of.get(entry["image_path"], []):
            if not ok[i]:
                skipped.append({"image_path": entry["image_path"], "split": split_of[i], "reason": entry["reason"],
                                "index": frame.index[i]})
    skipped.sort(key=lambda s: frame.index.get_loc(s["index"]))
    return FramePredictions(probabilities, ok, list({s["index"]: s for s in skipped}.values()))


def run_frame_predictions(run_dir, *, echo=None):
    """The way to predict a run's photos: through the feature cache when the run trained on it, else None.

    For ``evaluate_run(..., frame_predictions=...)``: a run whose ``config.json`` says it used
    the feature cache reads the trunk's features from the same cache folder.
    """
    import functools

    path = Path(run_dir) / "config.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (document.get("resolved") or {}).get("feature_cache"):
        return None
    settings = document.get("train") or {}
    return functools.partial(cached_frame_predictions, cache_dir=settings.get("cache_dir"), echo=echo)


def _aligned(n, positions, values):
    out = np.full((n,) + values.shape[1:], np.nan, dtype="float32")
    out[np.asarray(positions, dtype=np.int64)] = values
    return out


# ----------------------------------------------------------------------------------------------
# Housekeeping: leftovers of killed processes, size bound


def touch_entry(entry, when=None):
    """Mark an entry as used now (or at ``when``, seconds since the epoch): the LRU order of :func:`evict`."""
    stamp = Path(entry) / USED_STAMP
    stamp.touch()
    if when is not None:
        os.utime(stamp, (when, when))


def entry_size(entry) -> int:
    """Bytes of every file under an entry folder."""
    return sum(f.stat().st_size for f in Path(entry).rglob("*") if f.is_file())


def _is_entry(path):
    """A folder this cache wrote (an entry, or one of the single-folder caches of format 2); nothing else is evicted."""
    path = Path(path)
    if not path.is_dir() or path.name.startswith("."):
        return False
    return (path / ENTRY_FILE).is_file() or ((path / INDEX_FILE).is_file() and (path / "train.npy").is_file())


def _last_used(entry):
    stamp = Path(entry) / USED_STAMP
    return (stamp if stamp.exists() else Path(entry)).stat().st_mtime


def evict(cache_dir, max_bytes, *, keep=(), echo=print):
    """Delete the least recently used whole entries until the folder holds at most ``max_bytes``.

    Entries in ``keep`` (the one in use) are never deleted, even when they alone exceed the bound.
    Returns the deleted entry folders.
    """
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    keep = {Path(k).resolve() for k in keep}
    entries = [p for p in cache_dir.iterdir() if _is_entry(p)]
    sizes = {p: entry_size(p) for p in entries}
    total = sum(sizes.values())
    removed = []
    for entry in sorted(entries, key=_last_used):
        if total <= max_bytes:
            break
        if entry.resolve() in keep:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        total -= sizes[entry]
        removed.append(entry)
    if removed:
        echo(f"feature cache {cache_dir}: removed {len(removed)} least recently used entr"
             f"{'y' if len(removed) == 1 else 'ies'} to stay under {max_bytes / 1e9:g} GB")
    return removed


def remove_stale_partials(folder):
    """Delete ``.partial-<pid>-*`` folders left by extractions whose process is gone."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.glob(".*partial-*"):
        if not pid_alive(_pid_of(path.name)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _pid_of(name):
    try:
        return int(name.rsplit("partial-", 1)[1].split("-", 1)[0])
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
