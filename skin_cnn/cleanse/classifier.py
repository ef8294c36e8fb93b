"""The skin/non-skin classifier: its model, the images it reads, and its training.

Clinical photo archives are filed by patient and date, not by content: the series of a visit
often starts with a photo of the yellow patient-identification slip, and a patch-test visit
includes the reading sheet. The study removed such images with a small skin/non-skin CNN trained on
about 200 images of each kind (99% accuracy). This module is that CNN:

* :func:`build_skin_classifier` — four small convolution blocks on a low-resolution copy of the
  image (64×64 by default), global average pooling, and one sigmoid unit giving
  **P(non-skin)**: the probability that the image does *not* show skin. The model takes plain RGB
  values 0..255 (a ``Rescaling`` layer inside divides by 255), so a saved ``.keras`` file needs no
  preprocessing code beside it, only the resize to its input size (:func:`prepare_image`).
* :func:`load_images` — the filter's own image loading: the whole photo squeezed to the model's
  square input, unreadable files reported rather than fatal. It is unrelated to the training
  input pipeline of the main model (:mod:`skin_cnn.data.pipeline`).
* :func:`train_skin_classifier` — trains it on the user's own skin photos (the training split of
  their manifest) and a folder of non-skin photos (see :mod:`skin_cnn.cleanse.nonskin_examples` to
  generate those), scores a held-out fraction that took no part in training or model selection,
  and writes the model, ``metrics.json`` (accuracy, the false-removal rate of skin photos, each
  with its exact 95% CI, the confusion counts, AUC) and the held-out predictions.

No trained model ships with the package. A filter learnt from somebody else's clinical photos
carries their licence and their idea of what skin looks like; one trained on the user's own
training photos, as the study trained its filter on its own images, has neither problem and fits
the archive it will clean. Applying a model to a manifest is :mod:`skin_cnn.cleanse.apply`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from keras import layers
from matplotlib.figure import Figure
from PIL import Image
from sklearn.model_selection import train_test_split
from skin_cnn.core.progress import progress_bar

from skin_cnn.core import io as atomic
from skin_cnn.data.reading import ImageReadError, open_rgb
from skin_cnn.stats.intervals import clopper_pearson
from skin_cnn.evaluation.metrics import auc_estimate, confusion_counts
from skin_cnn.data.manifest import load_manifest
from skin_cnn.models.saving import check_finite_weights

#: Files inside a model folder.
MODEL_FILENAME = "skin_classifier.keras"
METRICS_FILENAME = "metrics.json"
PREDICTIONS_FILENAME = "holdout_predictions.csv"
HISTORY_PLOT_FILENAME = "training_curve.png"

#: Name of the model's single output: the probability that an image does not show skin.
OUTPUT_NAME = "p_nonskin"

#: Column holding that probability in the held-out predictions (and in removed manifest rows).
SCORE_COLUMN = "p_nonskin"

#: The rows of a split CSV the filter learns from by default.
TRAIN_SPLIT = "train"

#: File name endings listed as images when a folder is given.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp")


# ---------------------------------------------------------------------------------------------
# the model


def build_skin_classifier(input_size=64, *, width=16, dropout=0.3, augment=True):
    """A small CNN that gives P(non-skin) for a plain RGB image resized to ``input_size``².

    Skin, ID slips, printed forms and coloured sheets differ in colour and in texture (smooth
    gradients and pores versus flat paper, sharp text strokes and barcodes), which a few 3×3
    convolution blocks at 64×64 pixels see clearly; a larger network would only make training on
    ~400 images slower and easier to overfit. Global average pooling makes the answer independent
    of where in the frame the slip or sheet lies.

    Parameters
    ----------
    input_size : int
        Side of the square input in pixels (64 or 96 are good choices; at least 16).
    width : int
        Filters in the first block; each further block doubles it, up to ``4 * width``.
    dropout : float
        Dropout before the output unit.
    augment : bool
        Random horizontal and vertical flips during training (inactive at inference).

    Returns
    -------
    keras.Model
        Input ``(None, input_size, input_size, 3)`` float RGB 0..255; output ``p_nonskin``
        ``(None, 1)`` sigmoid probability that the image is **not** skin.
    """
    if int(input_size) < 16:
        raise ValueError(f"input_size must be at least 16 pixels, got {input_size}")
    size = int(input_size)
    inputs = keras.Input(shape=(size, size, 3), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    if augment:
        x = layers.RandomFlip("horizontal_and_vertical", name="flip")(x)
    for block, filters in enumerate((width, 2 * width, 4 * width, 4 * width), start=1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{block}_conv")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name=OUTPUT_NAME)(x)
    return keras.Model(inputs, outputs, name="skin_classifier")


def model_input_size(model):
    """The square side a skin classifier expects, read from its input shape."""
    shape = model.input_shape
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 3:
        raise ValueError(f"expected a model with square RGB input (None, S, S, 3), got {shape}")
    return int(shape[1])


def load_skin_classifier(model_dir):
    """Load ``skin_classifier.keras`` from a model folder (or the file itself).

    There is no default: the package ships no trained filter, so the model is always one the
    user trained (``skin-cnn cleanse train``) and whose training images they know.
    """
    path = Path(model_dir)
    if path.is_dir():
        path = path / MODEL_FILENAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: skin classifier not found; train one with `skin-cnn cleanse train`"
        )
    model = keras.models.load_model(path, compile=False)
    check_finite_weights(model, path)
    model_input_size(model)
    return model


# ---------------------------------------------------------------------------------------------
# images


def list_images(folder):
    """Image files below ``folder`` (recursively), sorted, as absolute paths."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    paths = sorted(
        os.path.abspath(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not paths:
        raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    return paths


def image_paths_from(source, *, max_images=None, seed=0, split=TRAIN_SPLIT):
    """Image paths from a folder, or from a manifest CSV's ``image_path`` column.

    Parameters
    ----------
    source : str or Path
        A folder (searched recursively) or a manifest ``.csv`` (read with
        :func:`skin_cnn.data.manifest.load_manifest`).
    max_images : int, optional
        Keep a random sample of at most this many (seeded), so a large archive can train the
        filter in seconds.
    split : str or None
        For a split CSV (one with a ``split`` column), take only the rows of this split. The
        default, ``"train"``, keeps the validation and test photos out of the filter's training,
        so the false-removal rate can be checked on them and the filter never learns from the
        images the main model is judged on. ``None`` takes every row.
    """
    source = Path(source)
    if source.is_dir():
        paths = list_images(source)
    elif source.suffix.lower() == ".csv":
        frame = load_manifest(source)
        if split is not None and "split" in frame.columns:
            frame = frame[frame["split"].astype(str) == split]
            if frame.empty:
                raise ValueError(f"{source}: no rows with split '{split}'")
        paths = list(frame["image_path"])
        if not paths:
            raise ValueError(f"{source}: the manifest lists no images")
    else:
        raise FileNotFoundError(f"{source}: not a folder of images nor a manifest .csv file")
    if max_images is not None and len(paths) > int(max_images):
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(paths), size=int(max_images), replace=False))
        paths = [paths[i] for i in keep]
    return paths


def prepare_image(image, size):
    """Resize a whole image (no crop) to ``size``×``size`` float32 RGB 0..255.

    The whole frame is squeezed rather than centre-cropped so that a slip lying near the edge of
    the photo is still seen; shape differences are part of what the model learns.
    """
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if image.mode != "RGB":
        image = image.convert("RGB")
    small = image.resize((int(size), int(size)), Image.BILINEAR, reducing_gap=3.0)
    return np.asarray(small, dtype=np.float32)


def load_images(paths, size, *, desc="images", progress=True):
    """Read and resize images; unreadable ones are reported, not fatal.

    Returns
    -------
    images : numpy.ndarray
        ``(n_ok, size, size, 3)`` float32.
    ok : numpy.ndarray of bool
        ``(len(paths),)``: which paths were read.
    reasons : dict of str -> str
        Path -> why it could not be read, for the others.
    """
    arrays, ok, reasons = [], np.zeros(len(paths), dtype=bool), {}
    for i, path in enumerate(progress_bar(paths, desc=desc, unit="img", disable=not progress)):
        try:
            arrays.append(prepare_image(open_rgb(path), size))
            ok[i] = True
        except ImageReadError as exc:
            reasons[os.fspath(path)] = exc.reason
    images = np.stack(arrays) if arrays else np.zeros((0, int(size), int(size), 3), np.float32)
    return images, ok, reasons


# ---------------------------------------------------------------------------------------------
# training


def binary_metrics(y_true, p_nonskin, threshold=0.5):
    """Accuracy and recalls (exact 95% CIs), confusion counts and AUC, non-skin positive.

    ``tp`` is a non-skin image caught, ``fn`` a non-skin image let through, ``fp`` a skin image
    wrongly removed, ``tn`` a skin image kept. ``skin_false_removal`` is ``fp / (fp + tn)``: the
    share of real skin photos the filter would throw away, the error that costs patients' images
    and so the figure to check before applying it. The entries have the ``{"value", "ci", "method"}``
    layout of ``metrics.json`` (fractions in [0, 1]) and come from :mod:`skin_cnn.evaluation`,
    so they are computed exactly as the diagnostic metrics of the main model are.
    """
    y_true = np.asarray(y_true).astype(int).ravel()
    p_nonskin = np.asarray(p_nonskin, dtype=float).ravel()
    if len(y_true) == 0:
        raise ValueError("no held-out images to score")
    tp, fn, tn, fp = confusion_counts(y_true, p_nonskin, threshold)
    n = tp + fn + tn + fp
    return {
        "threshold": float(threshold),
        "positive": "non-skin",
        "n": n,
        "n_nonskin": tp + fn,
        "n_skin": tn + fp,
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
        "accuracy": clopper_pearson(tp + tn, n).as_dict(),
        "nonskin_recall": clopper_pearson(tp, tp + fn).as_dict(),
        "skin_recall": clopper_pearson(tn, tn + fp).as_dict(),
        "skin_false_removal": clopper_pearson(fp, tn + fp).as_dict(),
        "auc": auc_estimate(y_true, p_nonskin),
    }


class EpochBar(keras.callbacks.Callback):
    """One progress step per epoch with the loss (:func:`skin_cnn.core.progress.progress_bar`): a bar on a
    terminal, plain lines in a log file."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs, self._bar = int(epochs), None

    def on_train_begin(self, logs=None):
        self._bar = progress_bar(total=self.epochs, desc="training", unit="epoch")

    def on_epoch_end(self, epoch, logs=None):
        if logs and "loss" in logs:
            self._bar.set_postfix(loss=f"{float(logs['loss']):.3f}", refresh=False)
        self._bar.update(1)

    def on_train_end(self, logs=None):
        self._bar.close()


def _plot_history(history, path):
    fig = Figure(figsize=(8, 3))
    axes = fig.subplots(1, 2)
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, history.get(key, []), marker=".")
        ax.set_xlabel("epoch")
        ax.set_title(f"training {key}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


@dataclass
class TrainingResult:
    """What :func:`train_skin_classifier` wrote and measured."""

    model_path: Path
    metrics: dict
    holdout: pd.DataFrame = field(repr=False)


def training_batches(x, y, class_weight, batch_size, seed):
    """Shuffled (seeded, anew each epoch) batches of ``(images, labels, class weights)``.

    Built here rather than left to ``model.fit`` on arrays: Keras' array adapter maps its batches
    in parallel, and in a process where TensorFlow's op determinism is on (``skin_cnn.training``
    turns it on for reproducible training) TensorFlow rewrites that map and logs an
    ``E0000 … NodeDef mentions attribute use_unbounded_threadpool`` line that reads like an error.
    A plain ``tf.data`` pipeline has no such map. The weights are the class weights per image,
    which is what ``class_weight`` does.
    """
    import tensorflow as tf

    weights = np.where(np.asarray(y) == 1, class_weight[1], class_weight[0]).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((np.asarray(x, np.float32), np.asarray(y, np.float32), weights))
    return data.shuffle(len(weights), seed=seed, reshuffle_each_iteration=True).batch(batch_size)


def predict_batches(model, x, batch_size=256):
    """``model``'s outputs for ``x`` through a plain ``tf.data`` pipeline (see :func:`training_batches`)."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices(np.asarray(x, np.float32)).batch(batch_size)
    return np.asarray(model.predict(data, verbose=0)).ravel()


@dataclass(frozen=True)
class FilterTraining:
    """How the skin/non-skin filter is trained: the settings :func:`train_skin_classifier` takes.

    They are written to ``metrics.json`` together, so they travel as one object.

    Attributes
    ----------
    input_size : int
        Side of the square input the photos are squeezed to.
    epochs, batch_size : int
        Length of training (no early stopping: the held-out part must not choose the model).
    holdout : float
        Fraction held out for the accuracy estimate (0 < holdout < 1).
    learning_rate : float
        Adam's step size.
    seed : int
        Seeds the held-out split, the weights and the batch order.
    """

    input_size: int = 64
    epochs: int = 40
    batch_size: int = 32
    holdout: float = 0.2
    learning_rate: float = 1e-3
    seed: int = 0

    def __post_init__(self):
        if not 0.0 < float(self.holdout) < 1.0:
            raise ValueError(f"holdout must be a fraction between 0 and 1, got {self.holdout}")
        if int(self.epochs) < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")


def train_skin_classifier(
    skin_paths,
    nonskin_paths,
    out_dir,
    settings: FilterTraining | None = None,
    *,
    progress=True,
    verbose=0,
    **changes,
):
    """Train the skin/non-skin filter, score a held-out part, and write a model folder.

    The held-out images are split off first (stratified by class, seeded), take no part in
    training, and are scored once, with the model of the last epoch: no early stopping or model
    choice looks at them, so their accuracy is an honest estimate. Classes are weighted inversely
    to their counts, so an unbalanced pair of folders does not bias the threshold.

    Parameters
    ----------
    skin_paths, nonskin_paths : list of str
        Image files of each class. Unreadable files are skipped and listed in ``metrics.json``.
    out_dir : str or Path
        Model folder; receives ``skin_classifier.keras``, ``metrics.json``,
        ``holdout_predictions.csv`` and ``training_curve.png``.
    settings : FilterTraining, optional
        The training settings (defaults: :class:`FilterTraining`'s).
    **changes
        Any field of :class:`FilterTraining` by name (``epochs=5``, ``holdout=0.3`` …), replacing
        the one in ``settings``.

    Returns
    -------
    TrainingResult
    """
    s = replace(settings if settings is not None else FilterTraining(), **changes)
    out_dir = Path(out_dir)
    images = _read_classes(skin_paths, nonskin_paths, int(s.input_size), progress)
    x, y = images.x, images.y
    idx_train, idx_hold = train_test_split(
        np.arange(len(y)), test_size=float(s.holdout), stratify=y, random_state=int(s.seed), shuffle=True
    )
    model, history = _fit(x[idx_train], y[idx_train], s, progress and not verbose, verbose)

    p_hold = predict_batches(model, x[idx_hold])
    metrics = binary_metrics(y[idx_hold], p_hold)
    metrics_train = binary_metrics(y[idx_train], predict_batches(model, x[idx_train]))
    model_path = _save_for_inference(model, int(s.input_size), out_dir / MODEL_FILENAME)

    holdout_frame = pd.DataFrame(
        {
            "image_path": images.paths[idx_hold],
            "label": np.where(y[idx_hold] == 1, "non-skin", "skin"),
            SCORE_COLUMN: p_hold,
        }
    )
    holdout_frame["correct"] = (holdout_frame[SCORE_COLUMN] >= 0.5) == (y[idx_hold] == 1)
    atomic.write_csv(out_dir / PREDICTIONS_FILENAME, holdout_frame)

    report = {
        "model": MODEL_FILENAME,
        "output": f"{OUTPUT_NAME}: sigmoid probability that the image does not show skin",
        "input_size": int(s.input_size),
        "holdout_fraction": float(s.holdout),
        "seed": int(s.seed),
        "epochs": int(s.epochs),
        "batch_size": int(s.batch_size),
        "learning_rate": float(s.learning_rate),
        "n_images": images.counts,
        "n_train": int(len(idx_train)),
        "n_holdout": int(len(idx_hold)),
        "holdout": metrics,
        "train": {k: metrics_train[k] for k in ("n", "tp", "fn", "tn", "fp", "accuracy")},
        "unreadable": [{"image_path": p, "reason": r} for p, r in images.unreadable.items()],
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
    }
    atomic.write_json(out_dir / METRICS_FILENAME, report)
    _plot_history(history.history, out_dir / HISTORY_PLOT_FILENAME)
    return TrainingResult(model_path, report, holdout_frame)


@dataclass
class _LabelledImages:
    """The readable images of both classes: paths, model inputs, labels (1 = non-skin)."""

    paths: np.ndarray
    x: np.ndarray
    y: np.ndarray
    counts: dict
    unreadable: dict


def _read_classes(skin_paths, nonskin_paths, input_size, progress):
    """Read both classes at ``input_size``; each needs 2 readable images (one to train, one held out)."""
    skin_paths, nonskin_paths = [os.fspath(p) for p in skin_paths], [os.fspath(p) for p in nonskin_paths]
    skin_x, skin_ok, skin_bad = load_images(skin_paths, input_size, desc="skin images", progress=progress)
    non_x, non_ok, non_bad = load_images(nonskin_paths, input_size, desc="non-skin images", progress=progress)
    for name, count in (("skin", len(skin_x)), ("non-skin", len(non_x))):
        if count < 2:
            raise ValueError(f"need at least 2 readable {name} images to train and hold out, found {count}")
    paths = np.array(
        [p for p, ok in zip(skin_paths, skin_ok) if ok] + [p for p, ok in zip(nonskin_paths, non_ok) if ok]
    )
    x = np.concatenate([skin_x, non_x])
    y = np.concatenate([np.zeros(len(skin_x)), np.ones(len(non_x))]).astype("float32")
    counts = {"skin": int(len(skin_x)), "non-skin": int(len(non_x))}
    return _LabelledImages(paths, x, y, counts, {**skin_bad, **non_bad})


def _fit(x, y, s, bar, verbose):
    """A fresh filter (seeded) fitted on ``x, y`` with classes weighted inversely to their counts."""
    keras.utils.set_random_seed(int(s.seed))
    model = build_skin_classifier(s.input_size)
    model.compile(
        optimizer=keras.optimizers.Adam(s.learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy")],
    )
    n_pos, n_neg = float(y.sum()), float(len(y) - y.sum())
    class_weight = {0: len(y) / (2 * n_neg), 1: len(y) / (2 * n_pos)}
    history = model.fit(
        training_batches(x, y, class_weight, int(s.batch_size), int(s.seed)),
        epochs=int(s.epochs), shuffle=False, verbose=verbose, callbacks=[EpochBar(int(s.epochs))] if bar else [],
    )
    return model, history


def _save_for_inference(model, input_size, path):
    """Save a fresh, uncompiled copy of ``model`` with its trained weights at ``path``.

    Without the optimizer's state the file is smaller, and it is only ever used for inference.
    """
    inference = build_skin_classifier(input_size)
    inference.set_weights(model.get_weights())
    with atomic.atomic_path(path) as tmp:
        # Keras insists on the .keras suffix, which the temporary name has.
        inference.save(tmp)
    return path
