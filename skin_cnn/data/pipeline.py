"""The tf.data input pipeline: from a split frame to batches with per-task labels and masks.

One photo's path through the pipeline::

    path ─► decode (TF, or Pillow when TF would get it wrong) ─► crop box ─► resize ─► batch
         ─► augmentation (training only) ─► (images, labels, weights)

* **Decoding.** Files are checked once, before any TensorFlow work, by :func:`prepare_frame`:
  every unreadable row is listed with its reason (never dropped silently) and every readable
  one is routed to a decoder. Plain RGB or greyscale JPEGs without an EXIF rotation are decoded
  by ``tf.io.decode_jpeg`` with ``dct_method="INTEGER_ACCURATE"``, which gives exactly the
  pixels of :func:`skin_cnn.data.reading.read_image` (libjpeg's accurate integer DCT, like
  Pillow) at TensorFlow speed and without the Python lock; 8-bit RGB/grey PNG, BMP and GIF files
  without transparency go to ``tf.io.decode_image``. Anything else — an EXIF orientation other
  than 1 (TensorFlow ignores EXIF, so a portrait phone photo would lie on its side), CMYK,
  16-bit, transparency, TIFF, WebP … — is decoded by :func:`read_image` inside
  ``tf.numpy_function``, so every decoder path shows the model the same upright RGB pixels.
* **Crop.** ``crop_left, crop_top, crop_right, crop_bottom`` columns (``skin-cnn crop``) are cut
  out before resizing; ``crop="hue"`` computes the box on the fly for rows without one.
* **Resize.** ``"stretch"`` to the model size (the study's Keras loader did the same) or
  ``"pad"`` (keep the aspect ratio, pad with black), antialiased bilinear, float32 0..255.
* **Augmentation** (training only): Keras random flip, rotation, zoom in and out and shift
  (:mod:`skin_cnn.data.augment`), applied to whole batches in order, so a seed fixes them.
* **Batches**: ``(images, labels, weights)`` — images float32 RGB 0..255 ``(B, H, W, 3)`` with no
  ``preprocess_input`` (the model's first layer does it); ``labels[task]`` ``(B, 1)`` and
  ``weights[task]`` ``(B,)`` from :func:`skin_cnn.diseases.task_targets`.
* **Balanced** data version: every diagnosis present is drawn equally often
  (``sample_from_datasets`` over per-diagnosis streams), which makes each task's positive and
  negative class equally frequent, eczema included although it sits in two tasks.

TensorFlow is imported inside the functions that need it, so importing this module (for
:class:`PipelineConfig`) stays cheap.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd

from skin_cnn.data.augment import AugmentConfig, augmentation_layers
from skin_cnn.data.crop import BOX_COLUMNS, DEFAULT_CROP_PARAMS, box_values
from skin_cnn.diseases import DISEASES, TASK_NAMES, task_targets

logger = logging.getLogger(__name__)

CROP_MODES = ("none", "boxes", "auto", "hue")
RESIZE_MODES = ("stretch", "pad")
CHECK_MODES = ("decode", "header")
#: Column added by :func:`prepare_frame`: which decoder reads the row.
DECODER_COLUMN = "decoder"
_DECODERS = ("jpeg", "image", "pillow")
#: EXIF tag number of the orientation.
_ORIENTATION = 0x0112


@dataclass
class PipelineConfig:
    """Every setting of the input pipeline.

    Attributes
    ----------
    image_size : (int, int)
        ``(height, width)`` of the model input (the study: 250 × 250).
    batch_size : int
        Images per batch.
    crop : {"auto", "boxes", "hue", "none"} or bool
        ``"boxes"``: cut the frame's ``crop_*`` box out of every image (the columns must exist);
        ``"auto"``: do so when the frame has the columns, otherwise use the whole image;
        ``"hue"``: use the columns where present and compute :func:`hue_crop_box` on the fly
        for the other rows; ``"none"``: never crop. ``True`` means ``"hue"``, ``False``
        ``"none"``.
    crop_params : dict
        Keyword arguments of :func:`~skin_cnn.data.crop.hue_crop_box` for ``crop="hue"``
        (default: the study's).
    resize : {"stretch", "pad"}
        ``"stretch"`` distorts the aspect ratio to the model size, as the study's Keras loader
        did; ``"pad"`` keeps it and pads with black.
    balanced : bool
        Training only: draw every diagnosis equally often (see :func:`balanced_weights`); an
        epoch keeps the number of training images.
    augment : AugmentConfig
        Random transformations for training batches.
    seed : int
        Seeds shuffling, balanced sampling and augmentation: the same seed gives the same
        batches.
    num_parallel_calls : int or "autotune"
        Parallel decode/crop/resize calls. ``"autotune"`` lets tf.data choose; a fixed number
        (2 on a 2-core machine) also turns tf.data's autotuner off, which was steadier on
        small machines where the autotuner sometimes left a core idle.
    prefetch : int or "autotune"
        Batches prepared ahead of the model.
    shuffle_buffer : int or None
        Shuffle buffer in *rows* (paths, not pixels); ``None`` shuffles the whole frame.
    check : {"decode", "header"}
        How :func:`prepare_frame` checks files: decode every file completely (finds truncated
        data), or read only its header (fast, for manifests already checked).
    """

    image_size: tuple = (250, 250)
    batch_size: int = 32
    crop: str = "auto"
    crop_params: dict = field(default_factory=lambda: dict(DEFAULT_CROP_PARAMS))
    resize: str = "stretch"
    balanced: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    num_parallel_calls: object = "autotune"
    prefetch: object = "autotune"
    shuffle_buffer: object = None
    check: str = "decode"

    def __post_init__(self):
        size = self.image_size
        if isinstance(size, (int, np.integer)):
            size = (int(size), int(size))
        size = tuple(int(v) for v in size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"image_size must be (height, width) of positive integers; got {self.image_size!r}")
        self.image_size = size
        if isinstance(self.crop, (bool, np.bool_)):
            self.crop = "hue" if self.crop else "none"
        if self.crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {', '.join(CROP_MODES)}; got {self.crop!r}")
        self.crop_params = dict(DEFAULT_CROP_PARAMS, **(self.crop_params or {}))
        unknown = sorted(set(self.crop_params) - set(DEFAULT_CROP_PARAMS))
        if unknown:
            raise ValueError(f"unknown crop_params {unknown}; expected some of {sorted(DEFAULT_CROP_PARAMS)}")
        self.crop_params["ratio_bounds"] = tuple(float(v) for v in self.crop_params["ratio_bounds"])
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}; got {self.resize!r}")
        if self.check not in CHECK_MODES:
            raise ValueError(f"check must be one of {', '.join(CHECK_MODES)}; got {self.check!r}")
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig.from_dict(self.augment)
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be positive; got {self.batch_size!r}")
        self.batch_size = int(self.batch_size)
        for name in ("num_parallel_calls", "prefetch"):
            value = getattr(self, name)
            if isinstance(value, str):
                if value.lower() != "autotune":
                    raise ValueError(f"{name} must be a positive integer or 'autotune'; got {value!r}")
                setattr(self, name, "autotune")
            elif int(value) < 1:
                raise ValueError(f"{name} must be a positive integer or 'autotune'; got {value!r}")
            else:
                setattr(self, name, int(value))
        self.seed = int(self.seed)
        self.balanced = bool(self.balanced)

    def to_dict(self):
        """Plain JSON-ready values (``image_size`` as a list)."""
        out = asdict(self)
        out["image_size"] = list(self.image_size)
        out["crop_params"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.crop_params.items()}
        return out

    @classmethod
    def from_dict(cls, values):
        """Inverse of :meth:`to_dict`. Also accepts flat augmentation keys (``zoom``,
        ``rotation``, ``translation``, ``flip``, …) as ``skin-cnn train`` spells them."""
        values = dict(values or {})
        names = {f.name for f in fields(cls)}
        aug_keys = set(AugmentConfig.__dataclass_fields__) | {"flip"}
        flat = {k: values.pop(k) for k in list(values) if k in aug_keys and k not in names}
        augment = values.pop("augment", None)
        augment = augment.to_dict() if isinstance(augment, AugmentConfig) else dict(augment or {})
        augment.update(flat)
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown pipeline settings {unknown}; expected some of {sorted(names)}")
        return cls(augment=AugmentConfig.from_dict(augment), **values)

    def preprocessing(self, frame=None):
        """The run's ``preprocessing`` entry (docs/architecture.md) for data read from ``frame``."""
        cropped = resolve_crop(frame, self) != "none" if frame is not None else self.crop != "none"
        return {
            "image_size": list(self.image_size),
            "crop": bool(cropped),
            "crop_params": self.to_dict()["crop_params"] if cropped else {},
            "resize": self.resize,
        }


def _as_config(config):
    if config is None:
        return PipelineConfig()
    if isinstance(config, dict):
        return PipelineConfig.from_dict(config)
    return config


def resolve_crop(frame, config):
    """The crop mode actually used for ``frame``: ``"boxes"``, ``"hue"`` or ``"none"``."""
    config = _as_config(config)
    has_boxes = frame is not None and all(c in frame.columns for c in BOX_COLUMNS)
    if config.crop == "boxes":
        if not has_boxes:
            missing = [c for c in BOX_COLUMNS if frame is None or c not in frame.columns]
            raise ValueError(
                f"crop='boxes' needs the columns {', '.join(BOX_COLUMNS)} (missing: {', '.join(missing)}); "
                "run `skin-cnn crop` first or use crop='hue'"
            )
        return "boxes"
    if config.crop == "auto":
        return "boxes" if has_boxes else "none"
    return config.crop


# ---------------------------------------------------------------------------------------------
# Checking files before TensorFlow sees them


def _inspect(path, check):
    """``(decoder, None)`` for a readable file, ``(None, reason)`` otherwise."""
    from PIL import Image

    from skin_cnn.data.reading import check_image

    if check == "decode":
        reason = check_image(path)
        if reason is not None:
            return None, reason
    try:
        with Image.open(path) as image:
            fmt, mode, info = image.format, image.mode, image.info
            frames = getattr(image, "n_frames", 1)
            try:
                orientation = image.getexif().get(_ORIENTATION, 1)
            except Exception:  # damaged EXIF block: read_image ignores it with a warning
                orientation = "unreadable"
    except Exception as exc:  # not even a header: let the reader say why, in its words
        return None, check_image(path) or f"cannot open image ({type(exc).__name__}: {exc})"
    plain = mode in ("RGB", "L") and "transparency" not in info and orientation == 1
    if fmt == "JPEG" and plain:
        return "jpeg", None
    if fmt in ("PNG", "BMP") and plain:
        return "image", None
    if fmt == "GIF" and frames == 1 and "transparency" not in info:
        return "image", None
    return "pillow", None


def _box_problem(values):
    """Why a row's crop box (float array of 4, NaN for empty) cannot be used, or None."""
    if np.isnan(values).any():
        return "no crop box (crop_* columns empty; see crop_errors.csv of `skin-cnn crop`)"
    left, top, right, bottom = (int(v) for v in values)
    if right <= left or bottom <= top or min(left, top) < 0:
        return f"invalid crop box {(left, top, right, bottom)}"
    return None


def prepare_frame(frame, config=None, *, progress=True, workers=None):
    """Check every row of a split frame before it enters the pipeline.

    Parameters
    ----------
    frame : pandas.DataFrame
        A manifest or split frame (``image_path`` absolute, ``diagnosis``), optionally with
        crop box columns.
    config : PipelineConfig, optional
        Supplies ``check`` (``"decode"`` reads every file completely) and ``crop``.
    progress : bool
        Show a progress bar.
    workers : int, optional
        Threads checking files (Pillow decodes outside Python's lock); default two.

    Returns
    -------
    ok : pandas.DataFrame
        The readable rows, original index kept, plus a ``decoder`` column (``"jpeg"``,
        ``"image"`` or ``"pillow"``) saying how the pipeline decodes each file.
    skipped : pandas.DataFrame
        ``image_path``, ``diagnosis`` and ``reason`` of every row left out: missing, empty,
        truncated or non-image files, unknown diagnoses, missing or invalid crop boxes.
    """
    from tqdm.auto import tqdm

    config = _as_config(config)
    missing = [c for c in ("image_path", "diagnosis") if c not in frame.columns]
    if missing:
        raise ValueError(f"frame needs the columns image_path and diagnosis; missing {', '.join(missing)}")
    crop = resolve_crop(frame, config)
    has_boxes = all(c in frame.columns for c in BOX_COLUMNS)
    n = len(frame)
    reasons = np.full(n, None, dtype=object)
    decoders = np.full(n, None, dtype=object)

    diagnoses = frame["diagnosis"].to_numpy()
    for i in np.flatnonzero(~frame["diagnosis"].isin(DISEASES).to_numpy()):
        reasons[i] = f"unknown diagnosis {diagnoses[i]!r}; expected one of {', '.join(DISEASES)}"
    if crop in ("boxes", "hue") and has_boxes:
        strict = crop == "boxes"
        for i, values in enumerate(box_values(frame)):
            problem = _box_problem(values)
            if problem and (strict or not problem.startswith("no crop box")) and reasons[i] is None:
                reasons[i] = problem

    todo = [i for i in range(n) if reasons[i] is None]
    paths = frame["image_path"].to_numpy()
    with ThreadPoolExecutor(max_workers=workers or 2) as pool:
        results = pool.map(lambda i: _inspect(os.fspath(paths[i]), config.check), todo)
        for i, (decoder, reason) in tqdm(zip(todo, results), total=len(todo), desc="check images",
                                         unit="img", disable=not progress or len(todo) < 50):
            decoders[i], reasons[i] = decoder, reason

    keep = np.array([r is None for r in reasons], dtype=bool)
    ok = frame[keep].copy()
    ok[DECODER_COLUMN] = decoders[keep].astype(str)
    skipped = pd.DataFrame({
        "image_path": frame["image_path"][~keep].astype(str),
        "diagnosis": frame["diagnosis"][~keep],
        "reason": reasons[~keep],
    })
    return ok, skipped


# ---------------------------------------------------------------------------------------------
# Balanced sampling


def balanced_weights(diagnoses):
    """Sampling probability of each diagnosis present so that every task is balanced.

    Every diagnosis present gets the same probability ``1 / k``. Then, for each task whose two
    classes are both present, positive and negative images are drawn equally often: acne as
    often as rosacea, psoriasis as often as eczema and CTCL as often as eczema. Eczema belongs to
    two tasks but needs no special weight: equal per-diagnosis rates balance both at once. (A
    per-task weighting would give eczema double weight and unbalance both of its tasks.)

    Returns
    -------
    dict of str -> float
        Probabilities summing to 1, keyed by the diagnoses present.
    """
    present = [d for d in DISEASES if d in set(diagnoses)]
    if not present:
        raise ValueError("no known diagnosis to balance")
    return {d: 1.0 / len(present) for d in present}


# ---------------------------------------------------------------------------------------------
# TensorFlow graph pieces


def _tf():
    import tensorflow as tf

    return tf


def _read_with_pillow(path):
    from skin_cnn.data.reading import read_image

    return read_image(path.decode("utf-8") if isinstance(path, bytes) else str(path))


def _decode(path, decoder):
    """uint8 (H, W, 3) tensor for ``path`` decoded by decoder index 0 (jpeg), 1 (image), 2 (pillow)."""
    tf = _tf()

    def jpeg():
        return tf.io.decode_jpeg(tf.io.read_file(path), channels=3, dct_method="INTEGER_ACCURATE")

    def generic():
        return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False, dtype=tf.uint8)

    def pillow():
        image = tf.numpy_function(_read_with_pillow, [path], tf.uint8, stateful=False)
        return tf.ensure_shape(image, [None, None, 3])

    image = tf.switch_case(decoder, [jpeg, generic, pillow])
    return tf.ensure_shape(image, [None, None, 3])


def _hue_box(image, params):
    from skin_cnn.data.crop import hue_crop_box

    return np.asarray(hue_crop_box(image, **params), dtype=np.int32)


def _crop(image, box, hue_params=None):
    """Cut ``box`` (left, top, right, bottom; -1 entries = no box) out of ``image``, clipped."""
    tf = _tf()
    if hue_params is not None:
        def compute():
            out = tf.numpy_function(lambda im: _hue_box(im, hue_params), [image], tf.int32, stateful=False)
            return tf.ensure_shape(out, [4])

        box = tf.cond(box[0] < 0, compute, lambda: box)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    has_box = box[0] >= 0
    left = tf.where(has_box, tf.clip_by_value(box[0], 0, width - 1), 0)
    top = tf.where(has_box, tf.clip_by_value(box[1], 0, height - 1), 0)
    right = tf.where(has_box, tf.clip_by_value(box[2], left + 1, width), width)
    bottom = tf.where(has_box, tf.clip_by_value(box[3], top + 1, height), height)
    return image[top:bottom, left:right]


def _resize(image, image_size, resize):
    """float32 (H, W, 3) in 0..255 at ``image_size``: antialiased bilinear, stretched or padded."""
    tf = _tf()
    height, width = int(image_size[0]), int(image_size[1])
    image = tf.cast(image, tf.float32)
    if resize == "pad":
        out = tf.image.resize_with_pad(image, height, width, method="bilinear", antialias=True)
    else:
        out = tf.image.resize(image, (height, width), method="bilinear", antialias=True)
    return tf.clip_by_value(out, 0.0, 255.0)


def preprocess_image(image, image_size=(250, 250), *, resize="stretch"):
    """Resize one decoded (already cropped) image exactly as the pipeline does.

    For ``predict``, ``serve`` and the training feature cache, which hold images in memory.

    Parameters
    ----------
    image : numpy.ndarray
        uint8 RGB (H, W, 3).
    image_size : (int, int) or int
        ``(height, width)`` of the model input.
    resize : {"stretch", "pad"}

    Returns
    -------
    numpy.ndarray
        float32 (height, width, 3) in [0, 255].
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}; got {resize!r}")
    if isinstance(image_size, (int, np.integer)):
        image_size = (int(image_size), int(image_size))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3); got {array.shape}")
    return _resize(array, tuple(image_size), resize).numpy()


def _autotune_or(value):
    tf = _tf()
    return tf.data.AUTOTUNE if value == "autotune" else int(value)


def _element_table(frame, crop):
    """Per-row tensors: path, decoder index, crop box (or -1s), per-task labels and masks."""
    labels, masks = task_targets(frame["diagnosis"].tolist())
    n = len(frame)
    if crop in ("boxes", "hue") and all(c in frame.columns for c in BOX_COLUMNS):
        boxes = box_values(frame)
        boxes = np.where(np.isnan(boxes), -1, boxes).astype(np.int32)
        boxes[(boxes < 0).any(axis=1)] = -1
    else:
        boxes = np.full((n, 4), -1, dtype=np.int32)
    if DECODER_COLUMN in frame.columns:
        decoders = frame[DECODER_COLUMN].map({d: i for i, d in enumerate(_DECODERS)})
        if decoders.isna().any():
            raise ValueError(f"column {DECODER_COLUMN!r} holds values other than {_DECODERS}")
        decoders = decoders.to_numpy(dtype=np.int32)
    else:
        decoders = np.full(n, _DECODERS.index("pillow"), dtype=np.int32)
    return {
        "path": frame["image_path"].astype(str).to_numpy(),
        "decoder": decoders,
        "box": boxes,
        "labels": {t: np.asarray(labels[t], dtype=np.float32).reshape(-1, 1) for t in TASK_NAMES},
        "weights": {t: np.asarray(masks[t], dtype=np.float32) for t in TASK_NAMES},
    }


def _load_element(element, config, crop):
    tf = _tf()
    image = _decode(element["path"], element["decoder"])
    if crop in ("boxes", "hue"):
        hue_params = config.crop_params if crop == "hue" else None
        image = _crop(image, element["box"], hue_params)
    image = _resize(image, config.image_size, config.resize)
    height, width = config.image_size
    image = tf.ensure_shape(image, [height, width, 3])
    return image, element["labels"], element["weights"]


def make_dataset(frame, config=None, *, training, progress=True):
    """Batches of ``(images, labels, weights)`` for Keras ``fit``/``evaluate``/``predict``.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows of one split (the caller selects ``frame[frame.split == "train"]``). Frames not
        yet checked by :func:`prepare_frame` are checked here; skipped rows are logged and kept
        on the returned dataset as ``dataset.skipped`` (a DataFrame with a ``reason`` column).
    config : PipelineConfig or dict, optional
    training : bool
        True: shuffled every epoch, balanced when ``config.balanced``, augmented. False: the
        frame's order, no augmentation, no resampling.
    progress : bool
        Progress bar while files are checked.

    Returns
    -------
    tf.data.Dataset
        ``images`` float32 ``(B, H, W, 3)`` RGB in [0, 255]; ``labels[task]`` float32
        ``(B, 1)``, 1 for the task's positive class; ``weights[task]`` float32 ``(B,)``, 1 when
        the image belongs to the task. One pass is one epoch (``len(frame)`` images, the last
        batch possibly smaller).
    """
    tf = _tf()
    config = _as_config(config)
    crop = resolve_crop(frame, config)
    if DECODER_COLUMN in frame.columns:
        ok = frame
        skipped = pd.DataFrame(columns=["image_path", "diagnosis", "reason"])
    else:
        ok, skipped = prepare_frame(frame, config, progress=progress)
        if len(skipped):
            shown = "; ".join(f"{p}: {r}" for p, r in zip(skipped["image_path"][:5], skipped["reason"][:5]))
            more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
            logger.warning("%d of %d images skipped: %s%s", len(skipped), len(frame), shown, more)
    if len(ok) == 0:
        reasons = "; ".join(f"{p}: {r}" for p, r in zip(skipped["image_path"][:5], skipped["reason"][:5]))
        raise ValueError(f"no readable images among {len(frame)} rows ({reasons})")

    parallel = _autotune_or(config.num_parallel_calls)
    seed = config.seed
    n = len(ok)
    if training and config.balanced:
        weights = balanced_weights(ok["diagnosis"])
        streams = []
        for j, diagnosis in enumerate(weights):
            part = _element_table(ok[ok["diagnosis"] == diagnosis], crop)
            stream = tf.data.Dataset.from_tensor_slices(part)
            stream = stream.shuffle(len(part["path"]), seed=seed + 101 + j, reshuffle_each_iteration=True)
            streams.append(stream.repeat())
        rows = tf.data.Dataset.sample_from_datasets(
            streams, weights=list(weights.values()), seed=seed, rerandomize_each_iteration=True
        ).take(n)
    else:
        rows = tf.data.Dataset.from_tensor_slices(_element_table(ok, crop))
        if training:
            buffer = n if config.shuffle_buffer is None else max(1, int(config.shuffle_buffer))
            rows = rows.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)

    images = rows.map(lambda e: _load_element(e, config, crop), num_parallel_calls=parallel, deterministic=True)
    # A file that changed or vanished after the check must not end a long run: it is dropped
    # with a logged warning naming the error.
    images = images.ignore_errors(log_warning=True)
    batches = images.batch(config.batch_size)
    if training and config.augment.enabled:
        layers = augmentation_layers(config.augment, seed=seed)
        batches = batches.map(lambda x, y, w: (layers(x, training=True), y, w))  # in order: seeded
    batches = batches.prefetch(_autotune_or(config.prefetch))
    options = tf.data.Options()
    options.deterministic = True
    if config.num_parallel_calls != "autotune":
        options.autotune.enabled = False
    batches = batches.with_options(options)
    try:
        batches.skipped = skipped
    except AttributeError:  # pragma: no cover - tf.data objects accept attributes today
        pass
    return batches


def load_images(frame, config=None, *, progress=True):
    """Decode, crop and resize a small frame into memory (no augmentation, frame order).

    Returns
    -------
    numpy.ndarray
        float32 ``(len(frame), H, W, 3)`` in [0, 255].

    Raises
    ------
    ValueError
        When any row cannot be used; the message names every file and its reason.
    """
    config = _as_config(config)
    ok, skipped = prepare_frame(frame, config, progress=progress)
    if len(skipped):
        listed = "; ".join(f"{p}: {r}" for p, r in zip(skipped["image_path"], skipped["reason"]))
        raise ValueError(f"{len(skipped)} of {len(frame)} images cannot be loaded: {listed}")
    dataset = make_dataset(ok, config, training=False)
    parts = [images.numpy() for images, _, _ in dataset]
    height, width = config.image_size
    return np.concatenate(parts) if parts else np.zeros((0, height, width, 3), np.float32)
