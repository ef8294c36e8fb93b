"""Export a trained model for TF Serving (SavedModel) or phones and edge devices (TFLite).

Both exports take what the Keras model takes, float32 RGB in [0, 255] of shape
``(batch, H, W, 3)`` (the VGG-16 normalisation is inside the model), and return one
``(batch, 1)`` positive-class probability per task under the task's name. They do not crop or
resize: callers repeat the run's ``preprocessing`` (``config.json``) themselves, as
:class:`skin_cnn.predict.Predictor` does.

An export is only trusted once it gives the Keras model's numbers: every export is run on sample
images next to the Keras model and the largest absolute probability difference is printed and
written to ``PATH.check.json``. Goals: below 1e-4 for a SavedModel (the same TensorFlow graph)
and below 1e-2 for TFLite (a different kernel library). Sample images are the run's own test
photos, preprocessed as in training, when the model comes from a run folder with a
``split.csv``; otherwise seeded random images (stated in the check file).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from skin_cnn.atomic import atomic_path, write_json
from skin_cnn.predict import load_predictor, resolve_model_path
from skin_cnn.split import load_split

try:  # LiteRT, the successor of TensorFlow's own TFLite interpreter; optional
    from ai_edge_litert.interpreter import Interpreter as LiteRTInterpreter
except ImportError:
    LiteRTInterpreter = None

logger = logging.getLogger(__name__)

FORMATS = ("savedmodel", "tflite")
#: Largest accepted absolute probability difference between export and Keras model.
TOLERANCES = {"savedmodel": 1e-4, "tflite": 1e-2}
SIGNATURE = "serving_default"
INPUT_NAME = "images"


def check_path(out):
    """Where the numerical check of the export at ``out`` is written: ``OUT.check.json``."""
    out = Path(out)
    return out.with_name(out.name + ".check.json")


def _input_spec(model):
    shape = tuple(model.inputs[0].shape[1:])
    return tf.TensorSpec((None, *shape), tf.float32, name=INPUT_NAME)


def _write_savedmodel(model, directory):
    """Write a SavedModel with a ``serving_default`` signature: ``images`` → ``{task: (B, 1)}``."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE,
        fn=lambda images: model(images, training=False),
        input_signature=[_input_spec(model)],
    )
    archive.write_out(os.fspath(directory), verbose=False)


def export_savedmodel(model, out):
    """Export ``model`` as a SavedModel folder at ``out`` (written beside it, then renamed)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_savedmodel(model, staging / "model")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging / "model", out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def export_tflite(model, out):
    """Convert ``model`` to a float32 TFLite flat buffer at ``out``.

    Converted from a SavedModel with the serving signature, so the TFLite file keeps the named
    input (``images``) and the task-named outputs. Ops TFLite lacks (none in the four variants,
    but a custom layer might add some) fall back to TensorFlow ops, which need the Flex
    delegate at run time; a warning says so.
    """
    with tempfile.TemporaryDirectory(prefix="skin-cnn-export-") as tmp:
        _write_savedmodel(model, Path(tmp) / "saved")
        converter = tf.lite.TFLiteConverter.from_saved_model(
            os.fspath(Path(tmp) / "saved"), signature_keys=[SIGNATURE]
        )
        try:
            flat = converter.convert()
        except Exception as exc:  # noqa: BLE001 (the converter raises several types for a missing op)
            logger.warning(
                "TFLite builtins could not express the model (%s); using TF select ops", exc
            )
            converter = tf.lite.TFLiteConverter.from_saved_model(
                os.fspath(Path(tmp) / "saved"), signature_keys=[SIGNATURE]
            )
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS,
                tf.lite.OpsSet.SELECT_TF_OPS,
            ]
            flat = converter.convert()
    with atomic_path(out) as tmp_path:
        Path(tmp_path).write_bytes(flat)
    return Path(out)


# ---------------------------------------------------------------------------------------------
# running an export


def run_savedmodel(path, images):
    """Probabilities ``{task: (n,)}`` from a SavedModel's serving signature."""
    loaded = tf.saved_model.load(os.fspath(path))
    fn = loaded.signatures[SIGNATURE]
    out = fn(**{INPUT_NAME: tf.convert_to_tensor(np.asarray(images, np.float32))})
    return {task: np.asarray(v).reshape(-1) for task, v in out.items()}


def run_tflite(path, images):
    """Probabilities ``{task: (n,)}`` from a TFLite file, one image per invocation."""
    if LiteRTInterpreter is not None:
        interpreter = LiteRTInterpreter(model_path=os.fspath(path))
    else:  # TensorFlow's own interpreter, deprecated in favour of LiteRT
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            interpreter = tf.lite.Interpreter(model_path=os.fspath(path))
    runner = interpreter.get_signature_runner(SIGNATURE)
    results = {}
    for image in np.asarray(images, np.float32):
        out = runner(**{INPUT_NAME: image[None]})
        for task, value in out.items():
            results.setdefault(task, []).append(float(np.asarray(value).reshape(-1)[0]))
    return {task: np.asarray(v, np.float32) for task, v in results.items()}


# ---------------------------------------------------------------------------------------------
# sample images for the check


def sample_images(predictor, n, run_dir=None, seed=0):
    """``(images, source)``: ``n`` model-ready images for the numerical check.

    The run's test (else any) images from ``run_dir/split.csv`` when they can be read, else
    seeded uniform random images in [0, 255].
    """
    images, source = [], None
    split = Path(run_dir) / "split.csv" if run_dir is not None else None
    if split is not None and split.is_file() and n > 0:
        frame = load_split(split)
        if (frame["split"] == "test").any():
            frame = frame[frame["split"] == "test"]
        for path in frame["image_path"]:
            try:
                images.append(predictor.preprocess(predictor.read(path))[0])
            except ValueError as exc:  # ImageReadError is a ValueError
                logger.warning("check image skipped: %s", exc)
            if len(images) == n:
                break
        if images:
            source = f"{split} ({len(images)} images)"
    if len(images) < n:
        rng = np.random.default_rng(seed)
        height, width = predictor.image_size
        extra = rng.uniform(0, 255, size=(n - len(images), height, width, 3)).astype(np.float32)
        images.extend(extra)
        random_note = f"{len(extra)} seeded random images (seed {seed})"
        source = f"{source} + {random_note}" if source else random_note
    return np.stack(images).astype(np.float32), source


def compare(reference, candidate):
    """Largest absolute difference per task and overall, over the tasks of ``reference``."""
    per_task = {}
    for task, ref in reference.items():
        if task not in candidate:
            raise ValueError(f"export has no output {task!r}; it has {', '.join(candidate)}")
        per_task[task] = float(
            np.max(np.abs(np.asarray(ref, np.float64) - np.asarray(candidate[task], np.float64)))
        )
    return per_task, max(per_task.values()) if per_task else 0.0


def export_model(model_or_run_path, fmt, out, check_images=8, seed=0):
    """Export a run's model (or a ``.keras`` file) and check it against the Keras model.

    Parameters
    ----------
    model_or_run_path : str or Path
        A run folder or a ``.keras`` file (loaded with ``safe_mode=True``).
    fmt : {"savedmodel", "tflite"}
    out : str or Path
        A folder for a SavedModel, a file for TFLite.
    check_images : int
        Sample images for the check (0 skips it; not recommended).
    seed : int
        Seed of the random sample images.

    Returns
    -------
    dict
        The check written to ``OUT.check.json``: ``format``, ``path``, ``n_images``,
        ``images`` (where they came from), ``max_abs_diff`` per task, ``max_abs_diff_all``,
        ``tolerance`` and ``passed``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    predictor = load_predictor(model_or_run_path)
    _, run_dir = resolve_model_path(model_or_run_path)
    model = predictor.model
    out = Path(out)
    if fmt == "savedmodel":
        export_savedmodel(model, out)
        runner = run_savedmodel
    else:
        export_tflite(model, out)
        runner = run_tflite
    check = {
        "format": fmt,
        "path": os.fspath(out),
        "model": os.fspath(model_or_run_path),
        "input": {
            "name": INPUT_NAME,
            "shape": [None, *predictor.image_size, 3],
            "dtype": "float32",
            "range": [0, 255],
        },
        "preprocessing": predictor.preprocessing.to_dict(),
        "tolerance": TOLERANCES[fmt],
    }
    if check_images > 0:
        images, source = sample_images(predictor, int(check_images), run_dir, seed)
        reference = predictor.predict_tensors(images)
        per_task, worst = compare(reference, runner(out, images))
        check.update(
            n_images=len(images),
            images=source,
            max_abs_diff=per_task,
            max_abs_diff_all=worst,
            passed=bool(worst < TOLERANCES[fmt]),
        )
    else:
        check.update(n_images=0, images=None, max_abs_diff={}, max_abs_diff_all=None, passed=None)
    write_json(check_path(out), check)
    return check


def describe_check(check):
    """One line for people: what was compared and the largest difference."""
    if not check["n_images"]:
        return f"{check['format']} written to {check['path']} (not checked)"
    verdict = "ok" if check["passed"] else "ABOVE the tolerance"
    return (
        f"{check['format']} written to {check['path']}; "
        f"max |Δp| vs Keras over {check['n_images']} images "
        f"= {check['max_abs_diff_all']:.2e} ({verdict}, tolerance {check['tolerance']:g}); "
        f"details in {check_path(check['path'])}"
    )


__all__ = [
    "FORMATS",
    "TOLERANCES",
    "check_path",
    "describe_check",
    "export_model",
    "export_savedmodel",
    "export_tflite",
    "run_savedmodel",
    "run_tflite",
]
