"""Run a trained model on new photos with exactly the preprocessing it was trained with.

A model is only as good as the match between what it saw in training and what it is shown
afterwards: a photo that is cropped differently, or stretched instead of padded, is a different
input. :func:`load_predictor` therefore reads the :class:`~skin_cnn.data.preprocessing.Preprocessing`
from the run folder the model was trained in (``runs/NAME/config.json``, entry
``preprocessing``), and every path through this module — :class:`Predictor`,
:func:`predict_frame` (used by ``skin-cnn evaluate``), ``skin-cnn predict`` and ``skin-cnn
serve`` — turns a photo into the model's input with
:func:`skin_cnn.data.preprocessing.model_input`, the function training prepared its images with:
decode, crop (a frame's own ``crop_*`` columns when present, as in training), resize, round to
uint8, then float32 RGB in [0, 255] to the model (whose first layer normalises).

A ``.keras`` file outside a run folder carries no record of its preprocessing. It is then taken
from the model itself: ``image_size`` from its input shape, the study's hue crop on,
``resize="stretch"``. Pass ``preprocessing=`` to :func:`load_predictor` when the model was
trained otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from skin_cnn.data.preprocessing import Preprocessing, box_from_row, crop_box, model_input
from skin_cnn.data.reading import DEFAULT_MAX_PIXELS, ImageReadError, read_image
from skin_cnn.diseases import TASKS

logger = logging.getLogger(__name__)

#: Files looked for, in this order, when a run folder is given instead of a model file.
RUN_MODEL_FILES = ("best.keras", "last.keras")


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
        raise FileNotFoundError(f"{path}: run folder holds none of {', '.join(RUN_MODEL_FILES)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file or run folder")
    if path.suffix != ".keras":
        raise ValueError(f"{path}: expected a .keras model file or a run folder")
    run_dir = path.parent if (path.parent / "config.json").is_file() else None
    return path, run_dir


def load_keras_model(path):
    """Load a ``.keras`` file with ``safe_mode=True`` (no arbitrary code from the file)."""
    import keras

    import skin_cnn

    skin_cnn.register_keras_objects()
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: cannot load the model ({exc})") from exc


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
    """

    def __init__(self, model, preprocessing, *, name=None, max_pixels=DEFAULT_MAX_PIXELS):
        self.model = model
        self.preprocessing = Preprocessing.from_dict(preprocessing)
        self.name = name or model.name
        self.max_pixels = max_pixels
        self.tasks = tuple(model.output_names)
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
        return {
            task: np.asarray(outputs[task]).reshape(-1).astype(np.float32) for task in self.tasks
        }

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
        from skin_cnn.explain import gradcam_batch

        tasks = self.tasks if tasks is None else tuple(tasks)
        with self._lock:
            return gradcam_batch(self.model, tensors, tasks, target=target)


def _batched(predictor, tensors, batch_size):
    probs = {task: [] for task in predictor.tasks}
    for start in range(0, len(tensors), batch_size):
        out = predictor.predict_tensors(np.stack(tensors[start : start + batch_size]))
        for task in predictor.tasks:
            probs[task].append(out[task])
    return {
        task: (np.concatenate(p) if p else np.zeros((0,), np.float32)) for task, p in probs.items()
    }


def load_predictor(model_or_run_path, preprocessing=None, *, max_pixels=DEFAULT_MAX_PIXELS):
    """Load a model once (``safe_mode=True``) with the preprocessing it was trained with.

    Parameters
    ----------
    model_or_run_path : str or Path
        A run folder (``best.keras`` is used, else ``last.keras``) or a ``.keras`` file. For a
        file inside a run folder the folder's ``config.json`` gives the preprocessing.
    preprocessing : mapping, optional
        Overrides what the run folder says. Without it and without a run folder: the model's
        input size, the study's hue crop on, ``resize="stretch"``.
    max_pixels : int or None
        Refuse larger photos before decoding them.
    """
    model_file, run_dir = resolve_model_path(model_or_run_path)
    model = load_keras_model(model_file)
    if preprocessing is None:
        if run_dir is not None:
            preprocessing = read_run_preprocessing(run_dir)
        else:
            size = tuple(model.inputs[0].shape[1:3])
            if None in size:
                raise ValueError(
                    f"{model_file}: the model's input size is not fixed and there is no run folder "
                    "config.json; pass preprocessing={'image_size': [H, W], ...}"
                )
            preprocessing = Preprocessing(image_size=size)
            logger.info("%s: no run folder; assuming %s", model_file, preprocessing)
    name = run_dir.name if run_dir is not None else model_file.stem
    return Predictor(model, preprocessing, name=name, max_pixels=max_pixels)


# ---------------------------------------------------------------------------------------------
# frames of images (manifest and split frames)


class FramePredictions(dict):
    """``{task: numpy.ndarray of shape (n,)}`` for the rows of a frame, plus what was skipped.

    A plain dict of probabilities aligned with the frame's rows, so it can go straight to
    :func:`skin_cnn.predictions.predictions_frame` once skipped rows are dropped
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


def predict_frame(model, frame, preprocessing=None, *, batch_size=32, progress=True, workers=2):
    """Predict every image of a manifest or split frame, skipping unreadable files.

    Parameters
    ----------
    model : keras.Model or Predictor
        With a bare ``keras.Model``, ``preprocessing`` is required (a run's ``config.json``
        ``preprocessing`` entry); a :class:`Predictor` brings its own.
    frame : pandas.DataFrame
        ``image_path`` absolute (the manifest frame contract); optional ``crop_left, crop_top,
        crop_right, crop_bottom`` columns are used as the crop boxes when cropping is on.
    preprocessing : mapping, optional
    batch_size : int
        Images per model call.
    progress : bool
        Show a tqdm progress bar.
    workers : int
        Threads decoding and cropping images while the model runs.

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
        model = Predictor(model, preprocessing)
    elif preprocessing is not None:
        model = Predictor(model.model, preprocessing, name=model.name, max_pixels=model.max_pixels)
    predictor = model
    if "image_path" not in frame.columns:
        raise ValueError("frame has no image_path column")
    n = len(frame)
    rows = frame.to_dict("records")

    def load(row):
        path = str(row["image_path"])
        try:
            image = predictor.read(path)
            return predictor.preprocess(image, box_from_row(row))[0], None
        except (ImageReadError, ValueError) as exc:
            return None, getattr(exc, "reason", str(exc))

    probs = {task: np.full((n,), np.nan, dtype=np.float32) for task in predictor.tasks}
    ok = np.zeros((n,), dtype=bool)
    skipped = []
    bar = tqdm(total=n, desc="predict", unit="img", disable=not progress)
    starts = list(range(0, n, batch_size))
    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:

        def submit(start):
            positions = range(start, min(start + batch_size, n))
            return [(i, pool.submit(load, rows[i])) for i in positions]

        # Decode the next batch while the model works on the current one.
        pending = submit(starts[0]) if starts else []
        for k in range(len(starts)):
            current = pending
            pending = submit(starts[k + 1]) if k + 1 < len(starts) else []
            good = []
            for i, future in current:
                tensor, reason = future.result()
                if tensor is None:
                    skipped.append(
                        {
                            "image_path": str(rows[i]["image_path"]),
                            "split": str(rows[i].get("split", "")),
                            "reason": reason,
                            "index": frame.index[i],
                        }
                    )
                    logger.info("skipped %s: %s", rows[i]["image_path"], reason)
                else:
                    good.append((i, tensor))
            if good:
                out = predictor.predict_tensors(np.stack([t for _, t in good]))
                idx = np.array([i for i, _ in good])
                for task in predictor.tasks:
                    probs[task][idx] = out[task]
                ok[idx] = True
            bar.update(len(current))
    bar.close()
    return FramePredictions(probs, ok, skipped)


def predicted_class(task, probability, threshold=0.5):
    """The class name a probability of the positive class stands for (``>= threshold``: positive)."""
    spec = TASKS[task]
    return spec.positive if probability >= threshold else spec.negative
