"""Run a trained model on new photos with exactly the preprocessing it was trained with.

A model is only as good as the match between what it saw in training and what it is shown
afterwards: a photo that is cropped differently, or stretched instead of padded, is a different
input, and a probability turned into a class at another threshold than the one chosen on
validation is a different answer. :func:`load_predictor` therefore takes the
:class:`~skin_cnn.core.specs.Preprocessing`, the task classes and the thresholds from the
model itself (its :class:`~skin_cnn.models.info.ModelInfo` layer, written by training and by
``skin-cnn evaluate --threshold youden|sens:…|spec:…``), and every path through this module — :class:`Predictor`,
:func:`predict_frame` (used by ``skin-cnn evaluate``), ``skin-cnn predict`` and ``skin-cnn
serve`` — turns a photo into the model's input with
:func:`skin_cnn.data.preprocessing.model_input`, the function training prepared its images with:
decode, crop (a frame's own ``crop_*`` columns when present, as in training), resize, round to
uint8, then float32 RGB in [0, 255] to the model (whose first layer normalises).

Models saved before that layer existed carry no such record. Their preprocessing comes from the
run folder they sit in (``runs/NAME/config.json``, entry ``preprocessing``) or, for a ``.keras``
file on its own, is assumed: ``image_size`` from the input shape, the study's hue crop on,
``resize="stretch"`` (``Predictor.preprocessing_source`` says which). Their threshold is 0.5.

Every task answers a *conditional* question, "if the photo shows one of these two diseases,
which one?": the model has no output for "neither", so a photo of psoriasis still gets an acne
vs rosacea answer. :data:`CONDITIONAL_NOTE` and :func:`task_question` give the wording every
output (table, page, JSON) uses.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from skin_cnn.core.io import PathLike
from skin_cnn.core.specs import Preprocessing


if TYPE_CHECKING:
    import pandas as pd
from skin_cnn.data.preprocessing import crop_box, model_input, run_over_photos
from skin_cnn.data.reading import DEFAULT_MAX_PIXELS, read_image
from skin_cnn.core.tasks import TASKS
from skin_cnn.core.progress import progress_bar

logger = logging.getLogger(__name__)

#: Files looked for, in this order, when a run folder is given instead of a model file.
RUN_MODEL_FILES = ("best.keras", "last.keras")
#: The pre-specified threshold, used for every task whose model stores no chosen one.
DEFAULT_THRESHOLD = 0.5
#: What every task's answer means, said wherever answers are shown.
CONDITIONAL_NOTE = (
    "Each task answers only \"if the photo shows one of these two diseases, which one?\". It does "
    "not say whether either disease is present: a photo of something else still gets an answer. "
    "Read only the task that matches the question you are asking."
)

#: Said wherever a model trained on the demo's synthetic images answers (``ModelInfo.synthetic``).
SYNTHETIC_MODEL_WARNING = (
    "This model was trained on SYNTHETIC images drawn by a program (skin-cnn demo), not on photos "
    "of patients: its answers say nothing about real photos."
)


def display_class(name):
    """A class name as people write it (``ctcl`` → ``CTCL``, ``acne`` → ``Acne``)."""
    return "CTCL" if name.lower() == "ctcl" else name[:1].upper() + name[1:]


def cutoff_reading(probability, threshold, positive):
    """The positive class's probability read against the model's cut-off.

    E.g. ``30% — above this model's cut-off of 29% for psoriasis``. Fitted cut-offs lie far from
    50%, so a bare "P(psoriasis) = 30%" answered "psoriasis" reads wrong; side by side with the
    cut-off it reads right. Percentages get the decimals (up to two) it takes to tell the two
    apart.
    """
    p, t = float(probability), float(threshold)
    digits = 0
    while digits < 2 and p != t and f"{p:.{digits}%}" == f"{t:.{digits}%}":
        digits += 1
    side = "above" if p > t else "at" if p == t else "below"
    name = display_class(positive) if positive.lower() == "ctcl" else positive
    return f"{p:.{digits}%} — {side} this model's cut-off of {t:.{digits}%} for {name}"


def task_question(positive, negative):
    """The conditional question a task answers, e.g. "If it is psoriasis or eczema: which one?"."""
    return f"If it is {display_class(positive)} or {display_class(negative)}: which one?"


@dataclass(frozen=True)
class TaskThreshold:
    """The threshold a task's positive-class probability is compared with (``>=``: positive).

    Attributes
    ----------
    value : float
    rule : str
        ``"default"`` for the pre-specified 0.5; otherwise how it was chosen on validation
        predictions (``youden``, ``sensitivity >= 0.9``, …).
    method : str
        The full description recorded with it (the method and the validation predictions).
    """

    value: float = DEFAULT_THRESHOLD
    rule: str = "default"
    method: str = "pre-specified default"

    @property
    def chosen(self):
        """True when the threshold was chosen on validation predictions."""
        return self.rule not in ("default", "fixed")

    def describe(self):
        """``0.5 (default)``, ``0.3 (fixed)``, or a fitted threshold with the method stored with it,
        e.g. ``0.29 (youden (…) on the inner out-of-fold predictions of the train and val images
        …)``: where it was fitted is said as recorded, never assumed; a cross-validation
        ensemble's threshold fitted on single-model scores says so instead."""
        if self.rule in ("default", "fixed"):
            return f"{self.value:g} ({self.rule})"
        if "not validated" in self.rule:
            return f"{self.value:.3g} ({self.rule})"
        return f"{self.value:.3g} ({self.method or self.rule})"

    def to_dict(self):
        return {"value": self.value, "rule": self.rule, "method": self.method}

    @classmethod
    def from_value(cls, value):
        """A TaskThreshold from itself, a number (a fixed threshold) or a stored entry."""
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls(float(value["value"]), str(value.get("rule") or "fixed"),
                       str(value.get("method") or ""))
        return cls(float(value), "fixed", "given")


def task_thresholds(tasks: Sequence[str], stored: Mapping[str, Any] | None = None,
                    overrides: Mapping[str, Any] | None = None) -> dict[str, TaskThreshold]:
    """The :class:`TaskThreshold` of every task in ``tasks``: ``overrides`` first, then the
    ``stored`` entries (a model's ``ModelInfo.thresholds``), else the pre-specified 0.5.

    One rule for every place that answers with a model, so a :class:`Predictor` and an export of
    the same model state the same thresholds.
    """
    chosen = dict(stored or {})
    chosen.update(overrides or {})
    return {task: TaskThreshold.from_value(chosen[task]) if task in chosen else TaskThreshold()
            for task in tasks}


# ---------------------------------------------------------------------------------------------
# preprocessing settings


def read_run_preprocessing(run_dir):
    """The :class:`Preprocessing` recorded in ``run_dir/config.json``."""
    path = Path(run_dir) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: run folder has no config.json") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if "preprocessing" not in config:
        raise ValueError(
            f"{path}: no 'preprocessing' entry; cannot repeat the training preprocessing"
        )
    return Preprocessing.from_dict(config["preprocessing"], source=os.fspath(path))


def resolve_model_path(path):
    """Return ``(model_file, run_dir or None)`` for a run folder or a ``.keras`` file."""
    path = Path(path)
    if path.is_dir():
        for name in RUN_MODEL_FILES:
            if (path / name).is_file():
                return path / name, path
        from skin_cnn.inference.export_info import is_savedmodel

        if is_savedmodel(path):
            raise export_refusal(path, "a SavedModel export", "skin_cnn.inference.export.run_savedmodel or TF "
                                 "Serving runs it")
        raise FileNotFoundError(f"{path}: run folder holds none of {', '.join(RUN_MODEL_FILES)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file or run folder")
    if path.suffix.lower() == ".tflite":
        raise export_refusal(path, "a TFLite export", "skin_cnn.inference.export.run_tflite runs it",
                             expects="what its export check file says")
    if path.suffix != ".keras":
        raise ValueError(f"{path}: expected a .keras model file or a run folder")
    run_dir = path.parent if (path.parent / "config.json").is_file() else None
    return path, run_dir


def export_refusal(path: PathLike, kind: str, runner: str, expects: str | None = None) -> ValueError:
    """The one-line refusal of an export given where a ``.keras`` model is needed.

    Says what the file is and what runs it, then what the export's own entry records
    (:func:`skin_cnn.inference.export_info.read_export_info`): the photo it expects (``expects``
    is said when the entry does not say) and, for a model trained on synthetic images,
    :data:`SYNTHETIC_MODEL_WARNING`, so that the warning reaches whoever holds only the export.
    """
    from skin_cnn.inference.export_info import read_export_info, says_synthetic

    recorded = read_export_info(path) or {}
    text = (f"{path}: {kind}, which skin-cnn predict does not run (give its run folder or .keras file; "
            f"{runner})")
    said = recorded.get("expects", expects)
    if said:
        text += f"; it expects {said}"
    if says_synthetic(recorded):
        text += f". {SYNTHETIC_MODEL_WARNING}"
    return ValueError(text)


# ---------------------------------------------------------------------------------------------
# the predictor


class Predictor:
    """A loaded model and its preprocessing: decode, crop, resize, predict, explain.

    Safe to share between threads (``skin-cnn serve`` does): model calls run one at a time under
    a lock, so concurrent requests queue instead of multiplying memory use; decoding and cropping
    run outside it.

    Parameters
    ----------
    model : keras.Model
        Takes float32 RGB in [0, 255] of shape (batch, H, W, 3); returns ``{task: (batch, 1)}``.
    preprocessing : Preprocessing or mapping
        A run's ``preprocessing`` (:meth:`Preprocessing.from_dict` reads a mapping); its
        ``image_size`` must match the model's input.
    name : str, optional
        Shown by ``skin-cnn serve`` (``/healthz``).
    max_pixels : int or None
        Images with more pixels are refused before decoding (decompression bombs).
    thresholds : mapping, optional
        ``{task: threshold}`` (a number, a stored entry or a :class:`TaskThreshold`) overriding
        the thresholds stored in the model; tasks with neither use 0.5.
    preprocessing_source : str, optional
        Where the preprocessing came from, for people (``model file``, ``run config.json``, …).
    precision : str or Precision, optional
        What the trunk computes in (``auto``, ``float32``, ``bfloat16``, ``float16``;
        :mod:`skin_cnn.models.precision_policy`): set on the model's trunk layers here. None keeps the
        model's layers as they are.

    Attributes
    ----------
    thresholds : dict of str -> TaskThreshold
        The threshold of every task, used by :meth:`predicted_class` and shown by ``predict``
        and ``serve``.
    classes : dict of str -> (str, str)
        ``(positive, negative)`` class names of every task, from the model when it stores them.
    precision : Precision
        What the trunk computes in (``precision.describe()`` is the line commands print).
    synthetic : bool
        The model was trained on synthetic images (:data:`SYNTHETIC_MODEL_WARNING` is shown
        beside its answers).
    """

    def __init__(self, model, preprocessing, *, name=None, max_pixels=DEFAULT_MAX_PIXELS,
                 thresholds=None, preprocessing_source=None, precision=None):
        from skin_cnn.core.compute_precision import Precision
        from skin_cnn.models.precision_policy import apply_precision, model_precision, resolve_precision
        from skin_cnn.models.info import model_info

        if precision is None:
            self.precision = Precision(model_precision(model), "as loaded", "the model's own layers")
        else:
            self.precision = resolve_precision(precision)
            apply_precision(model, self.precision)
        self.model = model
        self.preprocessing = Preprocessing.from_dict(preprocessing)
        self.preprocessing_source = preprocessing_source or "given"
        self.name = name or model.name
        self.max_pixels = max_pixels
        self.tasks = tuple(model.output_names)
        info = model_info(model) or {}
        self.synthetic = bool(info.get("synthetic"))
        stored = {t["name"]: (t["positive"], t["negative"]) for t in info.get("tasks", [])}
        self.classes = {
            task: stored.get(task) or ((TASKS[task].positive, TASKS[task].negative)
                                       if task in TASKS else ("positive", "negative"))
            for task in self.tasks
        }
        self.thresholds = task_thresholds(self.tasks, info.get("thresholds"), thresholds)
        self._lock = threading.Lock()
        height, width = self.preprocessing.image_size
        expected = tuple(model.inputs[0].shape[1:3])
        if None not in expected and expected != (height, width):
            raise ValueError(
                f"preprocessing.image_size is {height}×{width} but model {self.name!r} takes "
                f"{expected[0]}×{expected[1]}"
            )
        self._forward = None

    @property
    def image_size(self):
        """``(height, width)`` of the model input."""
        return tuple(self.preprocessing.image_size)

    def predicted_class(self, task, probability):
        """The class a positive-class probability stands for at the task's threshold."""
        positive, negative = self.classes[task]
        return positive if probability >= self.thresholds[task].value else negative

    def question(self, task):
        """The conditional question ``task`` answers (:func:`task_question`)."""
        return task_question(*self.classes[task])

    # -- single images ------------------------------------------------------------------------

    def read(self, source, name=None):
        """Decode a path or bytes to uint8 RGB; :class:`ImageReadError` for a bad file."""
        return read_image(source, name=name, max_pixels=self.max_pixels)

    def crop_box(self, image):
        """The crop box ``(left, top, right, bottom)`` of a photo; the whole photo if crop is off."""
        return crop_box(np.asarray(image), self.preprocessing)

    def preprocess(self, image, box=None):
        """Turn a decoded photo into the model's input (:func:`~skin_cnn.data.preprocessing.model_input`).

        Parameters
        ----------
        image : numpy.ndarray
            uint8 RGB (H, W, 3), the full photo as :func:`read_image` returns it.
        box : tuple of 4 int, optional
            A crop box computed earlier (a frame's ``crop_*`` columns); computed here when
            cropping is on and no box is given.

        Returns
        -------
        tensor : numpy.ndarray
            float32 (height, width, 3), whole numbers in [0, 255], at the model's input size.
        crop_box : tuple of 4 int
            ``(left, top, right, bottom)`` in the photo's pixels (right/bottom exclusive); the
            whole photo when cropping is off.
        """
        pixels, box = model_input(image, self.preprocessing, box)
        return pixels.astype(np.float32), box

    # -- model calls ----------------------------------------------------------------------------

    def _call(self, batch):
        import tensorflow as tf

        if self._forward is None:
            height, width = self.image_size
            model = self.model
            spec = tf.TensorSpec((None, height, width, 3), tf.float32, name="images")
            self._forward = tf.function(
                lambda x: model(x, training=False), input_signature=[spec], autograph=False
            )
        outputs = self._forward(tf.convert_to_tensor(batch, dtype=tf.float32))
        return self.checked({
            task: np.asarray(outputs[task]).reshape(-1).astype(np.float32) for task in self.tasks
        })

    def checked(self, probabilities):
        """``probabilities`` (``{task: values}``) when every value is a number, else an error.

        NaN lies below every cut-off, so an unchecked NaN would be reported as the task's negative
        class with a probability of "nan%"; no answer is better than that one.
        """
        for task, values in probabilities.items():
            values = np.asarray(values, dtype=np.float64).reshape(-1)
            bad = int(values.size - np.count_nonzero(np.isfinite(values)))
            if bad:
                raise FloatingPointError(f"{self.name}: the model answered NaN or infinity for {bad} of "
                                         f"{values.size} photo(s) on {task}; no answer is given rather than a "
                                         "wrong one")
        return probabilities

    def predict_tensors(self, batch):
        """Probabilities for a batch already preprocessed: ``{task: (n,)}`` float32."""
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or tuple(batch.shape[1:]) != (*self.image_size, 3):
            raise ValueError(
                f"expected a batch of shape (n, {self.image_size[0]}, {self.image_size[1]}, 3); "
                f"got {batch.shape}"
            )
        if len(batch) == 0:
            return {task: np.zeros((0,), np.float32) for task in self.tasks}
        with self._lock:
            return self._call(batch)

    def predict_images(self, images, batch_size=32):
        """Probabilities for decoded photos (uint8 RGB arrays of any size).

        Returns
        -------
        dict of str -> numpy.ndarray of shape (n,)
            The positive-class probability of every task, in the order of ``images``.
        """
        tensors = [self.preprocess(image)[0] for image in images]
        return _batched(self, tensors, batch_size)

    def explain(self, tensors, tasks=None, target="predicted"):
        """Grad-CAM maps and probabilities for preprocessed images (see :func:`gradcam_batch`)."""
        from skin_cnn.inference.gradcam import gradcam_batch

        tasks = self.tasks if tasks is None else tuple(tasks)
        thresholds = {task: self.thresholds[task].value for task in tasks}
        with self._lock:
            heatmaps, probabilities = gradcam_batch(self.model, tensors, tasks, target=target, thresholds=thresholds)
        return heatmaps, self.checked(probabilities)

    def explain_photo(self, photo, tasks=None, *, name="", max_side=None, prepared=None):
        """Grad-CAM pictures of a decoded photo, one per task, for people to look at.

        Each is the heat map of the task's reported class on the whole photo at its own
        resolution (:func:`skin_cnn.inference.gradcam.gradcam_figure`), captioned with the task's
        conditional question, the answer, the probability and the threshold.

        Parameters
        ----------
        photo : numpy.ndarray
            uint8 RGB (H, W, 3), as :meth:`read` returns it.
        tasks : sequence of str, optional
            Default: every task.
        name : str
            The file name, written in the caption.
        max_side : int, optional
            Shrink larger photos to this longer side first (web previews).
        prepared : tuple, optional
            ``(tensor, box)`` from :meth:`preprocess` of this photo, when already computed.

        Returns
        -------
        pictures : dict of str -> numpy.ndarray
            uint8 RGB per task.
        probabilities : dict of str -> float
            The positive-class probability of each task.
        """
        from skin_cnn.inference.gradcam import Caption, gradcam_figure

        tasks = self.tasks if tasks is None else tuple(tasks)
        tensor, box = prepared if prepared is not None else self.preprocess(photo)
        heatmaps, probs = self.explain(tensor[None], tasks)
        pictures, probabilities = {}, {}
        whole = tuple(box) == (0, 0, photo.shape[1], photo.shape[0])
        for task in tasks:
            p = float(probs[task][0])
            positive, _ = self.classes[task]
            answer = display_class(self.predicted_class(task, p))
            where = "" if whole else " (white box: the region the model sees)"
            caption = Caption(
                title=f"{self.question(task)} → {answer}",
                lines=(f"{name + ' · ' if name else ''}P({display_class(positive)}) "
                       f"{cutoff_reading(p, self.thresholds[task].value, positive)} · model {self.name}",),
                bar_label=f"Grad-CAM: where the photo speaks for {answer}{where}",
            )
            pictures[task] = gradcam_figure(photo, heatmaps[task][0], box, resize=self.preprocessing.resize,
                                            max_side=max_side, caption=caption)
            probabilities[task] = p
        return pictures, probabilities


def _batched(predictor, tensors, batch_size):
    probs = {task: [] for task in predictor.tasks}
    for start in range(0, len(tensors), batch_size):
        out = predictor.predict_tensors(np.stack(tensors[start : start + batch_size]))
        for task in predictor.tasks:
            probs[task].append(out[task])
    return {
        task: (np.concatenate(p) if p else np.zeros((0,), np.float32)) for task, p in probs.items()
    }


def load_predictor(model_or_run_path: PathLike, preprocessing: Preprocessing | Mapping[str, Any] | None = None, *,
                   max_pixels: int | None = DEFAULT_MAX_PIXELS, precision: Any = "auto") -> Predictor:
    """Load a model once (``safe_mode=True``) with the preprocessing it was trained with.

    Parameters
    ----------
    model_or_run_path : str or Path
        A run folder (``best.keras`` is used, else ``last.keras``) or a ``.keras`` file.
    preprocessing : mapping, optional
        Overrides what the model stores. Without it: the model's stored preprocessing, else
        (models saved without one) the run folder's ``config.json``, else the model's input
        size, the study's hue crop on, ``resize="stretch"``.
    max_pixels : int or None
        Refuse larger photos before decoding them.
    precision : str or Precision
        What the trunk computes in (:func:`skin_cnn.models.precision_policy.resolve_precision`);
        ``auto``: bfloat16 on a CPU with bf16 instructions, whatever the model was trained in.
    """
    from skin_cnn.models.info import model_info
    from skin_cnn.models.saving import load_keras_model

    model_file, run_dir = resolve_model_path(model_or_run_path)
    model = load_keras_model(model_file)
    stored = (model_info(model) or {}).get("preprocessing")
    if preprocessing is not None:
        source = "given"
    elif stored is not None:
        preprocessing, source = Preprocessing.from_dict(stored, source=f"{model_file}"), "model file"
        if run_dir is not None:
            _warn_if_config_differs(run_dir, preprocessing, model_file)
    elif run_dir is not None:
        preprocessing, source = read_run_preprocessing(run_dir), "run config.json"
    else:
        size = tuple(model.inputs[0].shape[1:3])
        if None in size:
            raise ValueError(
                f"{model_file}: the model stores no preprocessing, its input size is not fixed and "
                "there is no run folder config.json; pass preprocessing={'image_size': [H, W], ...}"
            )
        preprocessing = Preprocessing(image_size=size)
        source = "assumed (the model stores none)"
        logger.info("%s: stores no preprocessing and is not in a run folder; assuming %s",
                    model_file, preprocessing.describe())
    name = run_dir.name if run_dir is not None else model_file.stem
    return Predictor(model, preprocessing, name=name, max_pixels=max_pixels,
                     preprocessing_source=source, precision=precision)


def _warn_if_config_differs(run_dir, stored, model_file):
    try:
        recorded = read_run_preprocessing(run_dir)
    except (OSError, ValueError):
        return
    if recorded != stored:
        logger.warning("%s: the run's config.json says %s but the model stores %s; using the model's",
                       model_file, recorded.describe(), stored.describe())


def store_chosen_thresholds(run_dir, thresholds, rule, method):
    """Write thresholds chosen on a run's validation predictions into the run's model file.

    ``skin-cnn evaluate RUN --threshold youden|sens:X|spec:X`` calls this, so that ``predict``
    and ``serve`` answer at the threshold the evaluation reported, with or without the run
    folder around the ``.keras`` file (:func:`skin_cnn.models.saving.store_thresholds`).

    Parameters
    ----------
    run_dir : str or Path
        The run folder; its ``best.keras`` (else ``last.keras``) is updated.
    thresholds : dict of str -> float
    rule : skin_cnn.evaluation.threshold.ThresholdRule
        How they were chosen (``youden``, ``sensitivity`` with a target, …).
    method : str
        The full description (``metrics.json``'s ``threshold_method``).

    Returns
    -------
    pathlib.Path or None
        The model file written; None when the run folder holds no model file (predictions made
        elsewhere), which is logged.
    """
    from skin_cnn.models.saving import store_thresholds

    try:
        model_file, run_dir = resolve_model_path(run_dir)
    except (FileNotFoundError, ValueError) as exc:
        logger.warning("thresholds not stored in a model: %s", exc)
        return None
    label = rule.label()
    try:
        recorded = read_run_preprocessing(run_dir).to_dict() if run_dir is not None else None
    except (OSError, ValueError):
        recorded = None
    store_thresholds(model_file, {task: {"value": float(value), "rule": label, "method": method}
                                  for task, value in thresholds.items()}, preprocessing=recorded)
    logger.info("%s: thresholds chosen on validation stored (%s)", model_file, label)
    return model_file


# ---------------------------------------------------------------------------------------------
# frames of images (manifest and split frames)


class FramePredictions(dict):
    """``{task: numpy.ndarray of shape (n,)}`` for the rows of a frame, plus what was skipped.

    A plain dict of probabilities aligned with the frame's rows, so it can go straight to
    :func:`skin_cnn.core.predictions.predictions_frame` once skipped rows are dropped
    (:meth:`kept`). Rows whose image could not be read hold ``NaN``.

    Attributes
    ----------
    ok : numpy.ndarray of bool, shape (n,)
        True where the image was predicted.
    skipped : list of dict
        One ``{"image_path", "split", "reason"}`` (the columns of ``skipped_images.csv``) plus
        ``"index"`` (the frame's row label) per unreadable image, in frame order.
    """

    def __init__(self, probabilities, ok, skipped):
        super().__init__(probabilities)
        self.ok = np.asarray(ok, dtype=bool)
        self.skipped = list(skipped)

    def kept(self, frame):
        """``(frame rows that were predicted, {task: their probabilities})``."""
        return frame[self.ok], {task: prob[self.ok] for task, prob in self.items()}


def predict_frame(model: Any, frame: pd.DataFrame, preprocessing: Preprocessing | Mapping[str, Any] | None = None, *,
                  batch_size: int = 32, progress: bool = True, workers: int | None = None,
                  precision: Any = None) -> FramePredictions:
    """Predict every image of a manifest or split frame, skipping unreadable files.

    Parameters
    ----------
    model : keras.Model or Predictor
        With a bare ``keras.Model``, ``preprocessing`` is required (a run's ``config.json``
        ``preprocessing`` entry); a :class:`Predictor` brings its own.
    frame : pandas.DataFrame
        ``image_path`` absolute (the manifest frame contract); optional ``crop_left, crop_top,
        crop_right, crop_bottom`` columns are used as the crop boxes when cropping is on and their
        ``crop_method`` is the predictor's (:func:`~skin_cnn.data.preprocessing.box_from_row`).
    preprocessing : mapping, optional
    batch_size : int
        Images per model call.
    progress : bool
        Report progress (:func:`skin_cnn.core.progress.progress_bar`).
    workers : int, optional
        Photos decoded and cropped at once while the model runs (default: one per CPU;
        :func:`skin_cnn.data.preprocessing.photo_batches`).
    precision : str or Precision, optional
        What the trunk computes in (:mod:`skin_cnn.models.precision_policy`); None keeps the
        predictor's (a bare model's layers as they are).

    Returns
    -------
    FramePredictions
        A dict ``{task: float32 array of shape (len(frame),)}``, positive-class probabilities in
        frame order, ``NaN`` for skipped rows; ``.ok`` (bool mask of predicted rows) and
        ``.skipped`` (``[{"index", "image_path", "reason"}]``, also logged at INFO level).
        ``result.kept(frame)`` gives the predicted rows and their probabilities.
    """
    if not isinstance(model, Predictor):
        if preprocessing is None:
            raise ValueError(
                "predict_frame needs the run's preprocessing when given a bare keras model"
            )
        model = Predictor(model, preprocessing, precision=precision)
    elif preprocessing is not None or precision is not None:
        model = Predictor(model.model, preprocessing or model.preprocessing, name=model.name,
                          max_pixels=model.max_pixels, thresholds=model.thresholds,
                          precision=precision if precision is not None else model.precision)
    predictor = model
    if "image_path" not in frame.columns:
        raise ValueError("frame has no image_path column")
    n = len(frame)
    rows = frame.to_dict("records")
    probs = {task: np.full((n,), np.nan, dtype=np.float32) for task in predictor.tasks}
    ok = np.zeros((n,), dtype=bool)

    def predict(idx, pixels):
        out = predictor.predict_tensors(pixels.astype(np.float32))
        for task in predictor.tasks:
            probs[task][idx] = out[task]
        ok[idx] = True

    bar = progress_bar(total=n, desc="predict", unit="img", disable=not progress)
    unreadable = run_over_photos(rows, predictor.preprocessing, predict, batch_size=batch_size,
                                 max_pixels=predictor.max_pixels, parallel=workers, progress=bar)
    bar.close()
    skipped = []
    for i, reason in unreadable:
        skipped.append({"image_path": str(rows[i]["image_path"]), "split": str(rows[i].get("split", "")),
                        "reason": reason, "index": frame.index[i]})
        logger.info("skipped %s: %s", rows[i]["image_path"], reason)
    return FramePredictions(probs, ok, skipped)


def predicted_class(task, probability, threshold=DEFAULT_THRESHOLD):
    """The class name a probability of the positive class stands for (``>= threshold``: positive).

    For one of the study's tasks; :meth:`Predictor.predicted_class` uses the model's own classes
    and threshold.
    """
    spec = TASKS[task]
    return spec.positive if probability >= threshold else spec.negative
