"""Find the photos in a clinical image set that do not show skin, and take them out, visibly.

Clinical photo archives are filed by patient and date, not by content: the series of a visit
often starts with a photo of the yellow patient-identification slip, and a patch-test visit
includes the reading sheet. The study removed such images with a small skin/non-skin CNN trained on
about 200 images of each kind (99% accuracy). This module is that filter:

* :func:`build_skin_classifier` — four small convolution blocks on a low-resolution copy of the
  image (64×64 by default), global average pooling, and one sigmoid unit giving
  **P(non-skin)**: the probability that the image does *not* show skin. The model takes plain RGB
  values 0..255 (a ``Rescaling`` layer inside divides by 255), so a saved ``.keras`` file needs no
  preprocessing code beside it, only the resize to its input size (:func:`prepare_image`).
* :func:`train_skin_classifier` — trains it on a folder (or manifest) of skin photos and a folder of
  non-skin photos (see :mod:`skin_cnn.data.nonskin_examples` to generate those), scores a held-out
  fraction that took no part in training or model selection, and writes the model, ``metrics.json``
  (accuracy with its exact 95% CI, the confusion counts, AUC) and the held-out predictions.
* :func:`cleanse_frame` — scores every image of a manifest frame and splits it into kept rows,
  removed rows (with their score) and unreadable rows (with the reason), so the three together are
  always exactly the input: nothing vanishes unseen.

A package ships a default model trained on real public clinical photos and generated non-skin
examples (:data:`DEFAULT_MODEL_DIR`), so the filter works before anyone has trained one.

TensorFlow/Keras are imported inside the functions that need them, so importing this module (for
help texts, or for the file listing helpers) stays cheap.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from skin_cnn import atomic
from skin_cnn.data.reading import ImageReadError, open_rgb

logger = logging.getLogger(__name__)

#: Files inside a model folder.
MODEL_FILENAME = "skin_classifier.keras"
METRICS_FILENAME = "metrics.json"
PREDICTIONS_FILENAME = "holdout_predictions.csv"
HISTORY_PLOT_FILENAME = "training_curve.png"

#: The model folder shipped with the package (``skin-cnn cleanse apply`` uses it by default).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "skin_classifier"

#: Name of the model's single output: the probability that an image does not show skin.
OUTPUT_NAME = "p_nonskin"

#: Column added to removed rows (and to the held-out predictions).
SCORE_COLUMN = "p_nonskin"

#: File name endings listed as images when a folder is given.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp")

#: The step name written into a flow JSON.
FLOW_STEP = "cleansing"


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
    import keras
    from keras import layers

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


def load_skin_classifier(model_dir=None):
    """Load ``skin_classifier.keras`` from a model folder (or the file itself).

    ``None`` loads the model shipped with the package (:data:`DEFAULT_MODEL_DIR`).
    """
    import keras

    path = Path(DEFAULT_MODEL_DIR if model_dir is None else model_dir)
    if path.is_dir():
        path = path / MODEL_FILENAME
    if not path.is_file():
        where = "the package's default model" if model_dir is None else f"{model_dir}"
        raise FileNotFoundError(
            f"{path}: skin classifier not found ({where}); train one with `skin-cnn cleanse train`"
        )
    model = keras.models.load_model(path, compile=False)
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


def image_paths_from(source, *, max_images=None, seed=0):
    """Image paths from a folder, or from a manifest CSV's ``image_path`` column.

    Parameters
    ----------
    source : str or Path
        A folder (searched recursively) or a manifest ``.csv`` (read with
        :func:`skin_cnn.manifest.load_manifest`).
    max_images : int, optional
        Keep a random sample of at most this many (seeded), so a large archive can train the
        filter in seconds.
    """
    source = Path(source)
    if source.is_dir():
        paths = list_images(source)
    elif source.suffix.lower() == ".csv":
        from skin_cnn.manifest import load_manifest

        paths = list(load_manifest(source)["image_path"])
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
    from tqdm.auto import tqdm

    arrays, ok, reasons = [], np.zeros(len(paths), dtype=bool), {}
    for i, path in enumerate(tqdm(paths, desc=desc, unit="img", disable=not progress)):
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
    wrongly removed, ``tn`` a skin image kept. The entries have the ``{"value", "ci", "method"}``
    layout of ``metrics.json`` (fractions in [0, 1]) and come from :mod:`skin_cnn.evaluation`,
    so they are computed exactly as the diagnostic metrics of the main model are.
    """
    from skin_cnn.evaluation.intervals import clopper_pearson
    from skin_cnn.evaluation.metrics import auc_estimate, confusion_counts

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
        "auc": auc_estimate(y_true, p_nonskin),
    }


def _plot_history(history, path):
    from matplotlib.figure import Figure

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


def train_skin_classifier(
    skin_paths,
    nonskin_paths,
    out_dir,
    *,
    input_size=64,
    epochs=40,
    batch_size=32,
    holdout=0.2,
    learning_rate=1e-3,
    seed=0,
    progress=True,
    verbose=0,
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
    holdout : float
        Fraction held out for the accuracy estimate (0 < holdout < 1).

    Returns
    -------
    TrainingResult
    """
    import keras
    from sklearn.model_selection import train_test_split

    if not 0.0 < float(holdout) < 1.0:
        raise ValueError(f"holdout must be a fraction between 0 and 1, got {holdout}")
    if int(epochs) < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    out_dir = Path(out_dir)
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
    idx_train, idx_hold = train_test_split(
        np.arange(len(y)), test_size=float(holdout), stratify=y, random_state=int(seed), shuffle=True
    )

    keras.utils.set_random_seed(int(seed))
    model = build_skin_classifier(input_size)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy")],
    )
    n_pos, n_neg = float(y[idx_train].sum()), float(len(idx_train) - y[idx_train].sum())
    class_weight = {0: len(idx_train) / (2 * n_neg), 1: len(idx_train) / (2 * n_pos)}
    callbacks = []
    if progress and not verbose:
        from tqdm.keras import TqdmCallback

        callbacks.append(TqdmCallback(verbose=0, desc="training"))
    history = model.fit(
        x[idx_train], y[idx_train], epochs=int(epochs), batch_size=int(batch_size), shuffle=True,
        class_weight=class_weight, verbose=verbose, callbacks=callbacks,
    )

    p_hold = model.predict(x[idx_hold], batch_size=256, verbose=0).ravel()
    metrics = binary_metrics(y[idx_hold], p_hold)
    train_pred = model.predict(x[idx_train], batch_size=256, verbose=0).ravel()
    metrics_train = binary_metrics(y[idx_train], train_pred)
    # Saved without the optimizer's state (a fresh, uncompiled copy with the trained weights):
    # the file is smaller and is only ever used for inference.
    inference = build_skin_classifier(input_size)
    inference.set_weights(model.get_weights())
    model_path = out_dir / MODEL_FILENAME
    with atomic.atomic_path(model_path) as tmp:
        # Keras insists on the .keras suffix, which the temporary name has.
        inference.save(tmp)

    holdout_frame = pd.DataFrame(
        {
            "image_path": paths[idx_hold],
            "label": np.where(y[idx_hold] == 1, "non-skin", "skin"),
            SCORE_COLUMN: p_hold,
        }
    )
    holdout_frame["correct"] = (holdout_frame[SCORE_COLUMN] >= 0.5) == (y[idx_hold] == 1)
    atomic.write_csv(out_dir / PREDICTIONS_FILENAME, holdout_frame)

    report = {
        "model": MODEL_FILENAME,
        "output": f"{OUTPUT_NAME}: sigmoid probability that the image does not show skin",
        "input_size": int(input_size),
        "holdout_fraction": float(holdout),
        "seed": int(seed),
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "learning_rate": float(learning_rate),
        "n_images": {"skin": int(len(skin_x)), "non-skin": int(len(non_x))},
        "n_train": int(len(idx_train)),
        "n_holdout": int(len(idx_hold)),
        "holdout": metrics,
        "train": {k: metrics_train[k] for k in ("n", "tp", "fn", "tn", "fp", "accuracy")},
        "unreadable": [{"image_path": p, "reason": r} for p, r in {**skin_bad, **non_bad}.items()],
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
    }
    atomic.write_json(out_dir / METRICS_FILENAME, report)
    _plot_history(history.history, out_dir / HISTORY_PLOT_FILENAME)
    return TrainingResult(model_path, report, holdout_frame)


# ---------------------------------------------------------------------------------------------
# applying


def score_images(model, paths, *, batch_size=64, progress=True):
    """P(non-skin) for each path (NaN where unreadable) and the reasons for unreadable ones.

    Images are read and scored one batch at a time, so memory stays flat for any manifest size.
    """
    from tqdm.auto import tqdm

    size = model_input_size(model)
    paths = [os.fspath(p) for p in paths]
    scores = np.full(len(paths), np.nan, dtype=np.float64)
    reasons = {}
    with tqdm(total=len(paths), desc="cleansing", unit="img", disable=not progress) as bar:
        for start in range(0, len(paths), int(batch_size)):
            chunk = paths[start:start + int(batch_size)]
            images, ok, bad = load_images(chunk, size, progress=False)
            reasons.update(bad)
            if len(images):
                p = np.asarray(model.predict_on_batch(images)).reshape(-1)
                scores[start + np.flatnonzero(ok)] = p
            bar.update(len(chunk))
    return scores, reasons


@dataclass
class CleanseResult:
    """A manifest frame split three ways; together the parts are exactly the input rows.

    Attributes
    ----------
    kept : pandas.DataFrame
        Rows that show skin (``p_nonskin < threshold``), input columns only.
    removed : pandas.DataFrame
        Rows judged non-skin, with their ``p_nonskin``, lowest (most doubtful) first.
    unreadable : pandas.DataFrame
        Rows whose image could not be read, with the ``reason``.
    threshold : float
    """

    kept: pd.DataFrame
    removed: pd.DataFrame
    unreadable: pd.DataFrame
    threshold: float

    @property
    def n_input(self):
        return len(self.kept) + len(self.removed) + len(self.unreadable)

    def flow_step(self):
        """The cleansing step of a flow diagram (patients: distinct ids, an image without one
        counting as its own patient, as in :func:`skin_cnn.split.patient_units`)."""
        from skin_cnn.split import SPLITS, patient_units

        def patients(frame):
            return int(patient_units(frame).nunique()) if "patient_id" in frame.columns else None

        step = {
            "name": FLOW_STEP,
            "images": int(len(self.kept)),
            "patients": patients(self.kept),
            "excluded": {"non-skin": int(len(self.removed)), "unreadable": int(len(self.unreadable))},
        }
        if "split" in self.kept.columns:  # a split CSV: the same counts per split, as the split step has them
            for name in SPLITS:
                parts = [f[f["split"] == name] if "split" in f.columns else f.iloc[:0]
                         for f in (self.kept, self.removed, self.unreadable)]
                step[name] = {
                    "images": int(len(parts[0])),
                    "patients": patients(parts[0]),
                    "excluded": {"non-skin": int(len(parts[1])), "unreadable": int(len(parts[2]))},
                }
        return step

    def summary(self):
        return (
            f"{self.n_input} images: kept {len(self.kept)}, removed as non-skin {len(self.removed)} "
            f"(p_nonskin >= {self.threshold:g}), unreadable {len(self.unreadable)}"
        )


def cleanse_frame(frame, model, *, threshold=0.5, batch_size=64, progress=True):
    """Split a manifest frame into kept, removed (non-skin) and unreadable rows.

    Parameters
    ----------
    frame : pandas.DataFrame
        A manifest frame (:func:`skin_cnn.manifest.load_manifest`) with absolute ``image_path``.
    model : keras.Model
        A skin classifier (:func:`load_skin_classifier`).
    threshold : float
        Images with ``p_nonskin >= threshold`` are removed.

    Returns
    -------
    CleanseResult
    """
    if "image_path" not in frame.columns:
        raise ValueError("the frame has no image_path column")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    scores, reasons = score_images(model, list(frame["image_path"]), batch_size=batch_size, progress=progress)
    readable = ~np.isnan(scores)
    nonskin = readable & (scores >= float(threshold))
    kept = frame.loc[readable & ~nonskin].reset_index(drop=True)
    # Most doubtful (lowest score) first: the rows worth a look before they are dropped.
    removed = (
        frame.loc[nonskin].assign(**{SCORE_COLUMN: scores[nonskin]})
        .sort_values(SCORE_COLUMN, kind="stable").reset_index(drop=True)
    )
    unreadable = frame.loc[~readable].copy()
    unreadable["reason"] = [reasons.get(os.fspath(p), "unreadable") for p in unreadable["image_path"]]
    return CleanseResult(kept, removed, unreadable.reset_index(drop=True), float(threshold))


def output_paths(out_csv):
    """The files ``cleanse apply`` writes for ``CLEAN.csv``: kept, removed, unreadable, flow."""
    out_csv = Path(out_csv)
    stem = out_csv.with_suffix("")
    return {
        "kept": out_csv,
        "removed": Path(f"{stem}.removed.csv"),
        "unreadable": Path(f"{stem}.unreadable.csv"),
        "flow": Path(f"{stem}.flow.json"),
    }


def flow_path(csv_path):
    """``INPUT.flow.json`` beside ``INPUT.csv``: the flow-diagram counts of earlier steps."""
    return Path(csv_path).with_suffix(".flow.json")


def write_cleansed(result, input_csv, out_csv):
    """Write kept, removed and unreadable lists, and extend the input's flow JSON if it has one.

    Returns
    -------
    dict of str -> Path
        What was written (``flow`` only when ``INPUT.flow.json`` exists).
    """
    import json

    paths = output_paths(out_csv)
    if Path(out_csv).resolve() == Path(input_csv).resolve():
        raise ValueError(f"{out_csv}: the output would overwrite the input manifest; choose another name")
    from skin_cnn.manifest import write_manifest

    for part in ("kept", "removed", "unreadable"):
        write_manifest(getattr(result, part), paths[part])
    written = {k: paths[k] for k in ("kept", "removed", "unreadable")}
    source_flow = flow_path(input_csv)
    if source_flow.is_file():
        try:
            flow = json.loads(source_flow.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{source_flow}: not a readable flow JSON ({exc})") from None
        if not isinstance(flow, dict) or not isinstance(flow.get("steps"), list):
            raise ValueError(f'{source_flow}: a flow JSON must be an object with a "steps" list')
        flow = dict(flow, steps=[*flow["steps"], result.flow_step()])
        atomic.write_json(paths["flow"], flow)
        written["flow"] = paths["flow"]
    return written
