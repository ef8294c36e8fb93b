"""Export a trained model that takes a photo: SavedModel (TF Serving) or TFLite (phones).

An export takes what a camera gives, a uint8 RGB photo of any size ``(H, W, 3)`` under the
input name ``photo``, and repeats inside the graph what :func:`skin_cnn.inference.predictor.load_predictor`
does in Python (:func:`skin_cnn.data.preprocessing.model_input`): the run's hue crop, the
antialiased bilinear resize to the model size, rounding to whole numbers, then the model. It
returns one positive-class probability per task, shape ``(1,)``, under the task's name.

* **SavedModel**: the whole path, crop included (:mod:`skin_cnn.data.crop_tf`, equal box for
  box to :func:`~skin_cnn.data.crop.hue_crop_box`), the resize by the very TensorFlow op
  training used; it also returns the crop box as ``crop_box`` (int32 ``left, top, right,
  bottom``; the whole photo when the run does not crop). Beside this one-photo signature
  (``serving_default``) it has a batch signature for serving systems, ``predict_images``: a
  1-D string tensor ``images`` of encoded photos (JPEG, PNG, GIF, BMP bytes), each decoded
  with ``tf.io.decode_image`` to RGB and put through the same preprocessing; outputs
  ``{task: (n,)}`` and ``crop_box`` ``(n, 4)``. ``tf.io.decode_image`` does not apply EXIF
  orientation: send photos upright. Only the study's crop method exists
  in TensorFlow ops: a model trained with the circular crop is refused (export TFLite and crop
  in Python).
* **TFLite**: resize and model only. The exact crop needs float64 arithmetic (float32 moves
  hue cluster boundaries, hence crop edges) and a loop over tensor lists; TFLite's built-in
  kernels have neither (the converter asks for Flex ops, which a phone app would have to ship),
  so a phone app crops first, with the box a SavedModel or :func:`~skin_cnn.data.crop.hue_crop_box`
  gives, or sends the whole photo when the run does not crop. The antialiased resize is
  written as two matrix products with TensorFlow's triangle-kernel weights, so the file needs
  only built-in ops.

An export is float32 by default, the portable choice. ``precision="bfloat16"`` writes a
SavedModel whose VGG-16 trunk computes in bfloat16 (fast on CPUs with AVX512-BF16 or AMX; TFLite
has no bfloat16 kernels, so a bfloat16 TFLite file is refused); ``precision="float16"`` writes a
SavedModel with a float16 trunk (GPUs) or a TFLite file with float16 weights (TFLite's float16
quantisation: half the size, dequantised to float32 on CPUs, computed in float16 on GPU
delegates). Variables, heads and outputs stay float32 (:mod:`skin_cnn.models.precision_policy`).

An export is only trusted once it gives ``skin-cnn predict``'s numbers: every export is run on
sample photos next to :class:`~skin_cnn.inference.predictor.Predictor` in float32 and the largest absolute
probability difference (and, for a SavedModel, whether every crop box is equal) is printed and
written to ``PATH.check.json`` with the tolerance it is held to (:func:`tolerance`). Goals:
below 1e-4 for a float32 SavedModel (the same TensorFlow ops), below 1e-2 for a float32 TFLite
file (other kernels; its resize rounds a pixel differently now and then), and below 5e-2 for
the bfloat16 and float16 exports (8 and 11 significant bits in every convolution; measured
differences are in ``docs/models.md``).
Sample photos are the run's own test photos when the model comes from a run folder with a
``split.csv``; otherwise seeded random photos of several sizes (stated in the check file).

An export is a file of its own, often used far from its run: it carries what the model's
:class:`~skin_cnn.models.info.ModelInfo` says that its user needs (:func:`model_facts`: whether the
model learnt from synthetic images, with :data:`~skin_cnn.inference.predictor.SYNTHETIC_MODEL_WARNING`,
the tasks and every task's threshold), in the TFLite metadata and in a SavedModel's
``assets.extra/skin_cnn.json`` (:mod:`skin_cnn.inference.export_info`). The check file and its
summary line repeat the warning, read back from the written file.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from skin_cnn.core.compute_precision import POLICIES
from skin_cnn.core.io import PathLike, atomic_path, write_json
from skin_cnn.models.precision_policy import float32_layers, trunk_precision
from skin_cnn.data.crop import crop_image
from skin_cnn.data.masking import mask_photo_tf
from skin_cnn.core.specs import Preprocessing
from skin_cnn.data.preprocessing import photo_size_limits, resize_tensor
from skin_cnn.inference.export_info import read_export_info, says_synthetic, write_savedmodel_info
from skin_cnn.inference.predictor import SYNTHETIC_MODEL_WARNING, load_predictor, resolve_model_path, task_thresholds
from skin_cnn.inference.tflite_metadata import METADATA_NAME, read_tflite_metadata, with_metadata  # noqa: F401
from skin_cnn.data.split import load_split

try:  # LiteRT, the successor of TensorFlow's own TFLite interpreter; optional
    from ai_edge_litert.interpreter import Interpreter as LiteRTInterpreter
except ImportError:
    LiteRTInterpreter = None

logger = logging.getLogger(__name__)

FORMATS = ("savedmodel", "tflite")
#: Precisions an export can compute in (``auto`` is not one: an export is made for other machines).
EXPORT_PRECISIONS = tuple(POLICIES)
#: Largest accepted absolute probability difference between a float32 export and ``skin-cnn predict``.
TOLERANCES = {"savedmodel": 1e-4, "tflite": 1e-2}
#: The same for the (format, precision) pairs that compute in fewer bits (compared with float32).
REDUCED_PRECISION_TOLERANCES = {("savedmodel", "bfloat16"): 5e-2, ("savedmodel", "float16"): 5e-2,
                                ("tflite", "float16"): 5e-2}


def tolerance(fmt, precision="float32"):
    """The largest accepted |Δp| of an export in ``precision`` against ``skin-cnn predict`` in float32."""
    if precision == "float32":
        return TOLERANCES[fmt]
    return REDUCED_PRECISION_TOLERANCES[(fmt, precision)]
SIGNATURE = "serving_default"
INPUT_NAME = "photo"
#: The SavedModel signature for serving systems (TF Serving, Vertex-style clients): a batch of
#: encoded photos, ``images`` a 1-D string tensor of JPEG/PNG/GIF/BMP bytes.
BATCH_SIGNATURE = "predict_images"
BATCH_INPUT_NAME = "images"
#: Output of a SavedModel holding the crop box it cut.
BOX_NAME = "crop_box"
#: What the check file says about cropping in each format.
CROP_NOTES = {
    "savedmodel": "in the export: the hue crop runs inside the graph (output crop_box)",
    "tflite": (
        "not in the export: the exact hue crop needs float64 ops and tensor lists that TFLite's "
        "built-in kernels lack; send the photo cut to hue_crop_box (or a SavedModel's crop_box)"
    ),
}


def tflite_expectation(preprocessing):
    """The metadata entry of a TFLite export: whether it needs a photo cropped beforehand."""
    preprocessing = Preprocessing.from_dict(preprocessing)
    if preprocessing.crop:
        expects = ("a photo already hue-cropped: this export resizes only; cut the photo to "
                   "skin_cnn.data.crop.hue_crop_box (or a SavedModel export's crop_box) first")
    else:
        expects = "the whole photo (the model was trained without the hue crop)"
    return {"input": INPUT_NAME, "crop_in_export": False, "needs_cropped_photo": bool(preprocessing.crop),
            "expects": expects, "preprocessing": preprocessing.to_dict()}


def model_facts(model: keras.Model) -> dict[str, Any]:
    """What the model's :class:`~skin_cnn.models.info.ModelInfo` says that whoever holds only the
    export needs, as JSON: written into every export (:mod:`skin_cnn.inference.export_info`).

    ``synthetic`` (bool) and ``synthetic_model`` (:data:`SYNTHETIC_MODEL_WARNING` or None, as
    ``skin-cnn serve`` answers), so that a model that learnt from drawn images never answers
    without saying so; ``tasks`` (each output's name, positive and negative class) and
    ``thresholds`` (every task's, as :class:`~skin_cnn.inference.predictor.Predictor` uses it:
    the stored one, else the pre-specified 0.5), so that an app turns probabilities into the
    classes ``skin-cnn predict`` would. A model saved without the record counts as not synthetic.
    """
    from skin_cnn.models.info import model_info, task_entries

    info = model_info(model) or {}
    tasks = tuple(model.output_names)
    synthetic = info.get("synthetic") is True
    return {"synthetic": synthetic, "synthetic_model": SYNTHETIC_MODEL_WARNING if synthetic else None,
            "tasks": info.get("tasks") or task_entries(tasks),
            "thresholds": {task: threshold.to_dict()
                           for task, threshold in task_thresholds(tasks, info.get("thresholds")).items()}}


def check_path(out):
    """Where the numerical check of the export at ``out`` is written: ``OUT.check.json``."""
    out = Path(out)
    return out.with_name(out.name + ".check.json")


# ---------------------------------------------------------------------------------------------
# photo -> model input, in TensorFlow ops


def _to_model_pixels(resized):
    """Round half to even and clip to 0..255, as :func:`resize_to_model` does before the model."""
    return tf.cast(tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8), tf.float32)


def graph_model_input(photo, preprocessing):
    """``(pixels, box)``: :func:`~skin_cnn.data.preprocessing.model_input` in TensorFlow ops.

    ``pixels`` is float32 ``(height, width, 3)`` holding whole numbers, ``box`` int32
    ``(left, top, right, bottom)``. The crop is :func:`skin_cnn.data.crop_tf.hue_crop_box`; the
    resize is :func:`~skin_cnn.data.preprocessing.resize_tensor`, the resize of every path, so
    the result is equal, not merely close.
    """
    from skin_cnn.data.crop_tf import hue_crop_box

    photo = tf.convert_to_tensor(photo, tf.uint8)
    shape = tf.shape(photo)
    if preprocessing.crop:
        box = hue_crop_box(photo, **preprocessing.crop_params)
        photo = mask_photo_tf(photo, preprocessing)[box[1]:box[3], box[0]:box[2]]
    else:
        box = tf.stack([0, 0, shape[1], shape[0]])
        photo = mask_photo_tf(photo, preprocessing)
    return tf.cast(resize_tensor(photo, preprocessing), tf.float32), box


def _triangle_weights(in_size, out_size):
    """``(out_size, in_size)`` float32 weights of TensorFlow's antialiased bilinear resize.

    ``tf.image.resize(..., antialias=True)`` is the ``ScaleAndTranslate`` op with a triangle
    kernel widened by the shrink factor; it is not a TFLite built-in, but its weights are plain
    arithmetic on the sizes, and the resize is then two matrix products. Same formula as the op
    (sample at ``(i + 0.5) / scale``, kernel ``max(0, 1 - |x| / max(1 / scale, 1))``, weights
    normalised by their sum); the sums run in another order, so an output can differ from the
    op's in the last bits.
    """
    in_f = tf.cast(in_size, tf.float32)
    inv_scale = 1.0 / (tf.cast(out_size, tf.float32) / in_f)
    inv_kernel_scale = 1.0 / tf.maximum(inv_scale, 1.0)
    sample = (tf.cast(tf.range(out_size), tf.float32) + 0.5) * inv_scale
    position = tf.cast(tf.range(in_size), tf.float32)[None, :] + 0.5 - sample[:, None]
    weight = tf.maximum(0.0, 1.0 - tf.abs(position * inv_kernel_scale))
    # A division, not a product with the reciprocal the op uses: TFLite's XNNPACK delegate
    # computes ``1 / tensor`` wrongly on dynamically shaped inputs (seen in TF 2.21).
    return weight / tf.reduce_sum(weight, axis=1, keepdims=True)


def _padded_weights(in_size, out_size, offset, target):
    """Triangle weights to ``out_size`` placed at ``offset`` in ``target`` rows (zeros elsewhere)."""
    weight = _triangle_weights(in_size, out_size)
    return tf.pad(weight, [[offset, target - offset - out_size], [0, 0]])


def _pad_layout(height, width, target_height, target_width):
    """Resized size and offsets of ``tf.image.resize_with_pad``, computed as it does (float32)."""
    f_height, f_width = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    ratio = tf.maximum(f_width / float(target_width), f_height / float(target_height))
    resized_h, resized_w = f_height / ratio, f_width / ratio
    top = tf.maximum(0, tf.cast(tf.floor((float(target_height) - resized_h) / 2), tf.int32))
    left = tf.maximum(0, tf.cast(tf.floor((float(target_width) - resized_w) / 2), tf.int32))
    return (tf.cast(tf.floor(resized_h), tf.int32), tf.cast(tf.floor(resized_w), tf.int32), top, left)


def builtin_resize(photo, preprocessing):
    """The resize of :func:`graph_model_input` (no crop) in TFLite built-in ops; float32 pixels.

    Without antialiasing ``tf.image`` already maps to TFLite's bilinear resize; with it, the
    image is multiplied by :func:`_triangle_weights` along columns, then rows (the order of
    ``ScaleAndTranslate``).
    """
    pixels = tf.cast(mask_photo_tf(tf.convert_to_tensor(photo, tf.uint8), preprocessing), tf.float32)
    target_h, target_w = preprocessing.image_size
    if not preprocessing.antialias:
        if preprocessing.resize == "pad":
            resized = tf.image.resize_with_pad(pixels, target_h, target_w, method="bilinear")
        else:
            resized = tf.image.resize(pixels, (target_h, target_w), method="bilinear")
        return _to_model_pixels(resized)
    shape = tf.shape(pixels)
    height, width = shape[0], shape[1]
    if preprocessing.resize == "pad":
        out_h, out_w, top, left = _pad_layout(height, width, target_h, target_w)
        rows = _padded_weights(height, out_h, top, target_h)
        cols = _padded_weights(width, out_w, left, target_w)
    else:
        rows = _triangle_weights(height, target_h)
        cols = _triangle_weights(width, target_w)
    # columns: (target_w, W) @ (W, H * 3)
    by_column = tf.reshape(tf.transpose(pixels, [1, 0, 2]), [width, height * 3])
    by_column = tf.transpose(tf.reshape(tf.matmul(cols, by_column), [target_w, height, 3]), [1, 0, 2])
    # rows: (target_h, H) @ (H, target_w * 3)
    resized = tf.matmul(rows, tf.reshape(by_column, [height, target_w * 3]))
    return _to_model_pixels(tf.reshape(resized, [target_h, target_w, 3]))


# ---------------------------------------------------------------------------------------------
# writing


def _photo_spec():
    return tf.TensorSpec((None, None, 3), tf.uint8, name=INPUT_NAME)


def _images_spec():
    return tf.TensorSpec((None,), tf.string, name=BATCH_INPUT_NAME)


def decode_photo(data):
    """Encoded bytes (JPEG, PNG, GIF, BMP) to a uint8 RGB ``(H, W, 3)`` photo, in TensorFlow ops.

    Grey photos are repeated to three channels and an alpha channel is dropped, as
    :func:`skin_cnn.data.reading.open_rgb` does; an animated GIF gives its first frame.
    """
    photo = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    photo.set_shape((None, None, 3))
    return photo


def _write_savedmodel(model, preprocessing, directory, *, builtin_only=False):
    """Write a SavedModel whose ``serving_default`` maps ``photo`` to ``{task: (1,)}``.

    ``builtin_only`` writes the TFLite graph (no crop, :func:`builtin_resize`, no box output);
    otherwise the full :func:`graph_model_input` path and a ``crop_box`` output, and the batch
    signature ``predict_images`` (encoded photos in, ``{task: (n,)}`` and ``crop_box`` out).
    """
    tasks = tuple(model.output_names)

    def serve(photo):
        if builtin_only:
            pixels, box = builtin_resize(photo, preprocessing), None
        else:
            pixels, box = graph_model_input(photo, preprocessing)
        outputs = model(pixels[None], training=False)
        result = {task: tf.reshape(outputs[task], [1]) for task in tasks}
        if box is not None:
            result[BOX_NAME] = box
        return result

    def serve_images(images):
        height, width = preprocessing.image_size

        def one(data):
            return graph_model_input(decode_photo(data), preprocessing)

        pixels, boxes = tf.map_fn(one, images, fn_output_signature=(
            tf.TensorSpec((height, width, 3), tf.float32), tf.TensorSpec((4,), tf.int32)))
        outputs = model(pixels, training=False)
        result = {task: tf.reshape(outputs[task], [-1]) for task in tasks}
        result[BOX_NAME] = boxes
        return result

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name=SIGNATURE, fn=serve, input_signature=[_photo_spec()])
    if not builtin_only:
        archive.add_endpoint(name=BATCH_SIGNATURE, fn=serve_images, input_signature=[_images_spec()])
    archive.write_out(os.fspath(directory), verbose=False)


def export_savedmodel(model, preprocessing, out, precision="float32"):
    """Export ``model`` with its photo preprocessing as a SavedModel folder at ``out``.

    The trunk computes in ``precision`` inside the exported graph (float32 by default). The
    folder also holds :data:`~skin_cnn.inference.export_info.SAVEDMODEL_INFO`, the model's
    facts (:func:`model_facts`) and preprocessing, for readers without skin-cnn. Written beside
    ``out``, then renamed, so an interrupted export never leaves half a folder.
    """
    preprocessing = Preprocessing.from_dict(preprocessing)
    method = preprocessing.crop_params["method"]
    if preprocessing.crop and method != "study":
        raise ValueError(f"the model crops with the {method} hue crop, which has no TensorFlow version: a "
                         "SavedModel cannot take whole photos; export --format tflite and crop with "
                         "skin_cnn.data.crop.hue_crop_box before it")
    check_export_precision("savedmodel", precision)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with trunk_precision(model, precision):
            _write_savedmodel(model, preprocessing, staging / "model")
        write_savedmodel_info(staging / "model", {**model_facts(model), "preprocessing": preprocessing.to_dict(),
                                                  "photo_limits": photo_size_limits()})
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging / "model", out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _tflite_converter(saved, precision, select_ops=False):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[SIGNATURE])
    if precision == "float16":  # float16 weights, dequantised (CPU) or used as is (GPU delegate)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    if select_ops:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    return converter


def check_export_precision(fmt, precision):
    """``precision`` when ``fmt`` can be written in it; else a ValueError saying what can."""
    if precision not in EXPORT_PRECISIONS:
        raise ValueError(f"export precision must be one of {', '.join(EXPORT_PRECISIONS)}; got {precision!r}")
    if precision != "float32" and (fmt, precision) not in REDUCED_PRECISION_TOLERANCES:
        raise ValueError(f"{fmt} cannot be written in {precision}: TFLite has no bfloat16 kernels; "
                         "use --precision float16 (float16 weights) or float32, or --format savedmodel")
    return precision


def export_tflite(model, preprocessing, out, precision="float32"):
    """Convert ``model`` with its resize (no crop) to a TFLite flat buffer at ``out``.

    The file's metadata (:data:`METADATA_NAME`, :func:`tflite_expectation`) records that it
    expects a photo already hue-cropped when the run crops, and the model's facts
    (:func:`model_facts`: whether it learnt from synthetic images, tasks, thresholds);
    :func:`read_tflite_metadata` reads it back, ``skin-cnn predict`` and :func:`run_tflite` say so.

    Converted from a SavedModel with the serving signature, so the TFLite file keeps the named
    input (``photo``) and the task-named outputs. ``precision="float16"`` stores the weights in
    float16 (TFLite's float16 quantisation); the default keeps them float32. Ops TFLite lacks
    (none in the four variants, but a custom layer might add some) fall back to TensorFlow ops,
    which need the Flex delegate at run time; a warning says so.
    """
    preprocessing = Preprocessing.from_dict(preprocessing)
    if preprocessing.crop and preprocessing.masked:
        raise ValueError("the model masks parts of the whole photo and crops it: a TFLite export takes the photo "
                         "already cropped, where the masks cannot be placed; export --format savedmodel")
    check_export_precision("tflite", precision)
    with tempfile.TemporaryDirectory(prefix="skin-cnn-export-") as tmp, float32_layers(model):
        saved = os.fspath(Path(tmp) / "saved")
        _write_savedmodel(model, preprocessing, saved, builtin_only=True)
        try:
            flat = _tflite_converter(saved, precision).convert()
        except Exception as exc:  # noqa: BLE001 (the converter raises several types for a missing op)
            logger.warning(
                "TFLite builtins could not express the model (%s); using TF select ops", exc
            )
            flat = _tflite_converter(saved, precision, select_ops=True).convert()
    flat = with_metadata(flat, {**tflite_expectation(preprocessing), **model_facts(model),
                                "photo_limits": photo_size_limits()})
    with atomic_path(out) as tmp_path:
        Path(tmp_path).write_bytes(flat)
    return Path(out)


# ---------------------------------------------------------------------------------------------
# running an export


def _photo_array(photo):
    photo = np.asarray(photo)
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB photo of shape (H, W, 3); got {photo.dtype} {photo.shape}")
    return np.ascontiguousarray(photo)


def warn_if_synthetic(path, recorded=None) -> bool:
    """Log :data:`SYNTHETIC_MODEL_WARNING` when the export at ``path`` says its model learnt from
    synthetic images (``recorded``: its entry, when already read); True when it did.

    Whoever runs an export without skin-cnn's predictor would otherwise never be told.
    """
    recorded = read_export_info(path) if recorded is None else recorded
    if not says_synthetic(recorded):
        return False
    logger.warning("%s: %s", path, SYNTHETIC_MODEL_WARNING)
    return True


def run_savedmodel(path, photos, warn_synthetic=True):
    """``(probabilities {task: (n,)}, boxes (n, 4) int)`` from a SavedModel, one photo per call.

    Logs :data:`SYNTHETIC_MODEL_WARNING` when the export says its model learnt from synthetic
    images, unless ``warn_synthetic`` is False (the export's own check: the command says it once).
    """
    if warn_synthetic:
        warn_if_synthetic(path)
    fn = tf.saved_model.load(os.fspath(path)).signatures[SIGNATURE]
    results, boxes = {}, []
    for photo in photos:
        out = fn(**{INPUT_NAME: tf.constant(_photo_array(photo))})
        boxes.append(np.asarray(out.pop(BOX_NAME)).reshape(4))
        for task, value in out.items():
            results.setdefault(task, []).append(float(np.asarray(value).reshape(-1)[0]))
    probabilities = {task: np.asarray(v, np.float32) for task, v in results.items()}
    return probabilities, np.asarray(boxes, np.int64).reshape(-1, 4)


def run_savedmodel_batch(path, encoded, warn_synthetic=True):
    """``(probabilities {task: (n,)}, boxes (n, 4) int)`` from a SavedModel's batch signature,
    all encoded photos (bytes) in one call; warns as :func:`run_savedmodel` does."""
    if warn_synthetic:
        warn_if_synthetic(path)
    fn = tf.saved_model.load(os.fspath(path)).signatures[BATCH_SIGNATURE]
    out = fn(**{BATCH_INPUT_NAME: tf.constant(list(encoded), dtype=tf.string)})
    boxes = np.asarray(out.pop(BOX_NAME), np.int64).reshape(-1, 4)
    return {task: np.asarray(value, np.float32).reshape(-1) for task, value in out.items()}, boxes


def png_bytes(photo):
    """A photo as PNG bytes: lossless, so its decoded pixels are the photo's own."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(_photo_array(photo)).save(buffer, format="PNG")
    return buffer.getvalue()


def tflite_interpreter(path):
    """A TFLite interpreter: LiteRT's when installed, else TensorFlow's own (deprecated)."""
    if LiteRTInterpreter is not None:
        return LiteRTInterpreter(model_path=os.fspath(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return tf.lite.Interpreter(model_path=os.fspath(path))


def run_tflite(path, photos, cropped=None, warn_synthetic=True):
    """Probabilities ``{task: (n,)}`` from a TFLite file, one photo (already cropped) per call.

    ``cropped``: whether the photos were cut to their crop boxes; when not said and the file's
    metadata says it needs cropped photos, a warning says so; so does one when the metadata says
    the model learnt from synthetic images (:data:`SYNTHETIC_MODEL_WARNING`), unless
    ``warn_synthetic`` is False.
    """
    recorded = read_tflite_metadata(path) or {}
    if warn_synthetic:
        warn_if_synthetic(path, recorded)
    if cropped is None and recorded.get("needs_cropped_photo"):
        logger.warning("%s expects %s", path, recorded["expects"])
    runner = tflite_interpreter(path).get_signature_runner(SIGNATURE)
    results = {}
    for photo in photos:
        out = runner(**{INPUT_NAME: _photo_array(photo)})
        for task, value in out.items():
            results.setdefault(task, []).append(float(np.asarray(value).reshape(-1)[0]))
    return {task: np.asarray(v, np.float32) for task, v in results.items()}


# ---------------------------------------------------------------------------------------------
# sample photos for the check


def random_photos(n, image_size, seed=0):
    """``n`` seeded photos of several sizes around ``image_size`` (odd sizes, wide and tall).

    Smooth colour fields with a differently coloured patch, so the hue crop has two clusters
    to find, plus noise; sizes are not multiples of the crop's downscale factor.
    """
    rng = np.random.default_rng(seed)
    height, width = image_size
    photos = []
    for i in range(n):
        h = max(3, int(height * rng.uniform(0.6, 2.2)) | 1)
        w = max(3, int(width * rng.uniform(0.6, 2.2)) | 1)
        photo = np.empty((h, w, 3), np.float64)
        photo[:] = rng.uniform(40, 220, size=3)
        top, left = rng.integers(0, h // 3 + 1), rng.integers(0, w // 3 + 1)
        photo[top:top + h // 2 + 1, left:left + w // 2 + 1] = rng.uniform(40, 220, size=3)
        photo += rng.normal(0, 12, size=photo.shape)
        photos.append(np.clip(np.round(photo), 0, 255).astype(np.uint8))
    return photos


def sample_photos(predictor, n, run_dir=None, seed=0):
    """``(photos, source)``: ``n`` uint8 photos, as decoded, for the numerical check.

    The run's test (else any) photos from ``run_dir/split.csv`` when they can be read, topped
    up with :func:`random_photos`.
    """
    photos, source = [], None
    split = Path(run_dir) / "split.csv" if run_dir is not None else None
    if split is not None and split.is_file() and n > 0:
        frame = load_split(split)
        if (frame["split"] == "test").any():
            frame = frame[frame["split"] == "test"]
        for path in frame["image_path"]:
            try:
                photos.append(predictor.read(path))
            except ValueError as exc:  # ImageReadError is a ValueError
                logger.warning("check image skipped: %s", exc)
            if len(photos) == n:
                break
        if photos:
            source = f"{split} ({len(photos)} images)"
    if len(photos) < n:
        extra = random_photos(n - len(photos), predictor.image_size, seed)
        photos.extend(extra)
        random_note = f"{len(extra)} seeded random photos (seed {seed})"
        source = f"{source} + {random_note}" if source else random_note
    return photos, source


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


def check_export(predictor, fmt, path, photos):
    """Compare an export with ``predictor`` on decoded photos, as ``skin-cnn predict`` runs them.

    Returns
    -------
    dict
        ``max_abs_diff`` per task, ``max_abs_diff_all``, and for a SavedModel
        ``crop_boxes_equal`` (photos whose ``crop_box`` equals the predictor's box) and
        ``crop_box_mismatches`` (up to 10 ``{index, expected, got}``), and the batch signature's
        ``batch_max_abs_diff_all`` (the photos sent as PNG bytes in one call) and
        ``batch_crop_boxes_equal``.
    """
    boxes = [predictor.crop_box(photo) for photo in photos]
    reference = predictor.predict_images(photos)
    result = {}
    if fmt == "savedmodel":
        got, got_boxes = run_savedmodel(path, photos, warn_synthetic=False)
        mismatches = [
            {"index": i, "expected": list(map(int, box)), "got": got_boxes[i].tolist()}
            for i, box in enumerate(boxes)
            if tuple(int(v) for v in got_boxes[i]) != tuple(int(v) for v in box)
        ]
        result.update(crop_boxes_equal=len(photos) - len(mismatches), crop_box_mismatches=mismatches[:10])
        batch, batch_boxes = run_savedmodel_batch(path, [png_bytes(photo) for photo in photos],
                                                 warn_synthetic=False)
        result.update(
            batch_max_abs_diff_all=compare(reference, batch)[1],
            batch_crop_boxes_equal=int(sum(tuple(int(v) for v in got) == tuple(int(v) for v in box)
                                           for got, box in zip(batch_boxes, boxes))),
        )
    else:
        got = run_tflite(path, [crop_image(photo, box) for photo, box in zip(photos, boxes)], cropped=True,
                         warn_synthetic=False)
    per_task, worst = compare(reference, got)
    result.update(max_abs_diff=per_task, max_abs_diff_all=worst)
    return result


def export_model(model_or_run_path: PathLike, fmt: str, out: PathLike, check_images: int = 8, seed: int = 0,
                 precision: str = "float32") -> Any:
    """Export a run's model (or a ``.keras`` file) with its preprocessing, and check it.

    Parameters
    ----------
    model_or_run_path : str or Path
        A run folder or a ``.keras`` file (loaded with ``safe_mode=True``); the preprocessing
        is the one ``skin-cnn predict`` uses (:func:`~skin_cnn.inference.predictor.load_predictor`).
    fmt : {"savedmodel", "tflite"}
    out : str or Path
        A folder for a SavedModel, a file for TFLite.
    check_images : int
        Sample photos for the check (0 skips it; not recommended).
    seed : int
        Seed of the random sample photos.
    precision : {"float32", "bfloat16", "float16"}
        What the export computes in (module notes); the check compares it with
        ``skin-cnn predict --precision float32``.

    Returns
    -------
    dict
        The check written to ``OUT.check.json``: ``format``, ``precision``, ``path``, ``input``,
        ``crop`` (whether and where the crop happens), ``preprocessing``, ``n_images``, ``images``
        (where they came from), ``reference`` (what it was compared with), ``max_abs_diff`` per
        task, ``max_abs_diff_all``, ``crop_boxes_equal`` (SavedModel), ``tolerance``, ``passed``,
        and what the written file records (:func:`recorded_in_export`): ``synthetic``,
        ``synthetic_model`` (:data:`SYNTHETIC_MODEL_WARNING` for a model trained on synthetic
        images, else None) and, for TFLite, ``expects``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    check_export_precision(fmt, precision)
    predictor = load_predictor(model_or_run_path, precision="float32")
    _, run_dir = resolve_model_path(model_or_run_path)
    out = Path(out)
    if fmt == "savedmodel":
        export_savedmodel(predictor.model, predictor.preprocessing, out, precision)
    else:
        export_tflite(predictor.model, predictor.preprocessing, out, precision)
    check = {
        "format": fmt,
        "precision": precision,
        "reference": "skin-cnn predict --precision float32",
        "path": os.fspath(out),
        "model": os.fspath(model_or_run_path),
        "input": {"name": INPUT_NAME, "shape": [None, None, 3], "dtype": "uint8"},
        "crop": CROP_NOTES[fmt] if predictor.preprocessing.crop else "the run does not crop",
        "preprocessing": predictor.preprocessing.to_dict(),
        "preprocessing_source": getattr(predictor, "preprocessing_source", None),
        "tolerance": tolerance(fmt, precision),
    }
    if check_images > 0:
        photos, source = sample_photos(predictor, int(check_images), run_dir, seed)
        check.update(n_images=len(photos), images=source)
        check.update(check_export(predictor, fmt, out, photos))
        boxes_ok = all(check.get(k, len(photos)) == len(photos) for k in ("crop_boxes_equal", "batch_crop_boxes_equal"))
        worst = max(check["max_abs_diff_all"], check.get("batch_max_abs_diff_all", 0.0))
        check["passed"] = bool(worst < check["tolerance"] and boxes_ok)
    else:
        check.update(n_images=0, images=None, max_abs_diff={}, max_abs_diff_all=None, passed=None)
    check.update(recorded_in_export(fmt, out))
    write_json(check_path(out), check)
    return check


def recorded_in_export(fmt: str, out: PathLike) -> dict[str, Any]:
    """What the export at ``out`` says of itself, read back from the file as an app would: whether
    its model learnt from synthetic images (``synthetic``, and ``synthetic_model``, the warning
    or None) and, for TFLite, the photo it ``expects``."""
    recorded = read_export_info(out) or {}
    synthetic = says_synthetic(recorded)
    found = {"synthetic": synthetic, "synthetic_model": SYNTHETIC_MODEL_WARNING if synthetic else None}
    if fmt == "tflite":
        found["expects"] = recorded.get("expects")
    return found


def describe_check(check: dict[str, Any]) -> str:
    """One line for people: what was compared, the largest difference and the crop boxes; then,
    for an export of a model trained on synthetic images, a line ``warning: …`` with
    :data:`SYNTHETIC_MODEL_WARNING` (the export carries it; whoever exports is told too)."""
    warning = f"\nwarning: {check['synthetic_model']}" if check.get("synthetic_model") else ""
    return _check_line(check) + warning


def _check_line(check):
    if not check["n_images"]:
        expects = f"; it expects {check['expects']}" if check.get("expects") else ""
        return f"{check['format']} written to {check['path']} (not checked){expects}"
    verdict = "ok" if check["max_abs_diff_all"] < check["tolerance"] else "ABOVE the tolerance"
    boxes = ""
    if "crop_boxes_equal" in check:
        equal = check["crop_boxes_equal"] == check["n_images"]
        boxes = f"; crop boxes equal {check['crop_boxes_equal']}/{check['n_images']}{'' if equal else ' (DIFFER)'}"
    if "batch_max_abs_diff_all" in check:
        equal, n_equal = check["batch_crop_boxes_equal"] == check["n_images"], check["batch_crop_boxes_equal"]
        boxes += (f"; batch signature {BATCH_SIGNATURE} (PNG bytes) max |Δp| = {check['batch_max_abs_diff_all']:.2e}, "
                  f"crop boxes equal {n_equal}/{check['n_images']}{'' if equal else ' (DIFFER)'}")
    expects = f"; it expects {check['expects']}" if check.get("expects") else ""
    precision = check.get("precision", "float32")
    return (
        f"{check['format']} ({precision}) written to {check['path']}; "
        f"max |Δp| vs skin-cnn predict over {check['n_images']} photos in float32 "
        f"= {check['max_abs_diff_all']:.2e} ({verdict}, tolerance {check['tolerance']:g}){boxes}{expects}; "
        f"details in {check_path(check['path'])}"
    )


__all__ = [
    "BATCH_INPUT_NAME",
    "BATCH_SIGNATURE",
    "BOX_NAME",
    "EXPORT_PRECISIONS",
    "FORMATS",
    "INPUT_NAME",
    "REDUCED_PRECISION_TOLERANCES",
    "TOLERANCES",
    "builtin_resize",
    "check_export",
    "check_export_precision",
    "check_path",
    "describe_check",
    "export_model",
    "export_savedmodel",
    "decode_photo",
    "export_tflite",
    "graph_model_input",
    "model_facts",
    "random_photos",
    "png_bytes",
    "recorded_in_export",
    "run_savedmodel",
    "run_savedmodel_batch",
    "run_tflite",
    "tolerance",
    "warn_if_synthetic",
]
