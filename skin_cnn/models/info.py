"""What a saved model needs to be used correctly, stored inside the ``.keras`` file itself.

A probability means nothing without the task it answers, the classes it separates, the way the
photo was cropped and resized before the model saw it, and the threshold that turns it into a
class. Kept only in a run's ``config.json`` these are lost as soon as the ``.keras`` file is
copied on its own, and a model used with the wrong crop or threshold gives wrong answers without
any error. :class:`ModelInfo` therefore carries them *in the model*: an identity layer right after
the input whose Keras config holds

* ``tasks``: ``[{"name", "positive", "negative"}, ...]``, one per output;
* ``preprocessing``: the :class:`~skin_cnn.core.specs.Preprocessing` entry (image size,
  crop, crop parameters, resize, antialias) the model was trained with, or None when unknown;
* ``thresholds``: ``{task: {"value", "rule", "method"}}`` (optionally ``claims``: the sensitivity and
  specificity the threshold gives on the scores it was fitted on) for tasks whose threshold was chosen on
  validation predictions (``skin-cnn evaluate RUN --threshold youden``); tasks without an entry
  use the pre-specified 0.5;
* ``precision``: what the trunk computed the training features in (``float32``, ``bfloat16``,
  ``float16``; :mod:`skin_cnn.models.precision_policy`), or None when unknown. The file's layers
  are float32 whatever it says; a loader sets the precision it predicts in;
* ``synthetic``: True when the model was trained on synthetic images (``skin-cnn demo``'s), so
  whatever answers with it can say that its answers mean nothing for real photos.

Being an ordinary registered layer with ``get_config``, it travels with ``model.save`` and comes
back from :func:`skin_cnn.models.load_model` (or ``keras.models.load_model`` once
``skin_cnn.models`` is imported); it does nothing to the tensors, so predictions, Grad-CAM,
export and the feature cache are unchanged.
"""

from __future__ import annotations

import json
import math
import zipfile
import keras

#: Name of the info layer in every model :func:`skin_cnn.models.build_model` returns.
INFO_LAYER = "skin_cnn_info"
#: ``registered_name`` of :class:`ModelInfo` in a ``.keras`` file's ``config.json``.
REGISTERED_NAME = "skin_cnn>ModelInfo"
DEFAULT_THRESHOLD = 0.5


def _check_tasks(tasks, source):
    out = []
    for entry in tasks or ():
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) and entry.get(k) for k in ("name", "positive", "negative")
        ):
            raise ValueError(f"{source}: each task needs a name, a positive and a negative class; got {entry!r}")
        out.append({"name": entry["name"], "positive": entry["positive"], "negative": entry["negative"]})
    return out


def _check_thresholds(thresholds, source):
    out = {}
    for task, entry in (thresholds or {}).items():
        entry = {"value": entry} if isinstance(entry, (int, float)) else dict(entry)
        try:
            value = float(entry["value"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{source}: threshold of {task} has no numeric value ({entry!r})") from None
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"{source}: threshold of {task} must lie in [0, 1]; got {value}")
        out[str(task)] = {"value": value, "rule": str(entry.get("rule", "fixed")),
                          "method": str(entry.get("method", ""))}
        if entry.get("claims"):  # what the threshold gives on the scores it was fitted on
            out[str(task)]["claims"] = {str(k): float(v) for k, v in dict(entry["claims"]).items()}
    return out


def _check_preprocessing(preprocessing, source):
    if preprocessing is None:
        return None
    from skin_cnn.core.specs import Preprocessing

    return Preprocessing.from_dict(preprocessing, source=source).to_dict()


def _check_precision(precision, source):
    if precision is None:
        return None
    from skin_cnn.core.compute_precision import POLICIES

    if precision not in POLICIES:
        raise ValueError(f"{source}: precision must be one of {', '.join(POLICIES)}; got {precision!r}")
    return str(precision)


def _check_synthetic(synthetic, source):
    if not isinstance(synthetic, bool):  # a JSON "false" string would read as true
        raise ValueError(f"{source}: synthetic must be true or false; got {synthetic!r}")
    return synthetic


def task_entries(task_names):
    """``[{"name", "positive", "negative"}]`` of the study's tasks among ``task_names``."""
    from skin_cnn.core.tasks import TASKS

    return [{"name": t, "positive": TASKS[t].positive, "negative": TASKS[t].negative}
            for t in task_names if t in TASKS]


@keras.saving.register_keras_serializable(package="skin_cnn")
class ModelInfo(keras.layers.Layer):
    """Identity layer holding the model's tasks, preprocessing and chosen thresholds.

    Parameters
    ----------
    tasks : list of dict
        ``{"name", "positive", "negative"}`` per output.
    preprocessing : dict, optional
        A :meth:`Preprocessing.to_dict` entry; None when the model was built without one.
    thresholds : dict, optional
        ``{task: {"value", "rule", "method"}}`` (a bare number is accepted as ``value``).
    precision : str, optional
        The precision the training features were computed in (``float32``, ``bfloat16``,
        ``float16``); None when unknown.
    synthetic : bool
        Trained on synthetic images (the demo set's); False for models saved before the entry.
    """

    def __init__(self, tasks=(), preprocessing=None, thresholds=None, precision=None, synthetic=False,
                 **kwargs):
        kwargs.setdefault("name", INFO_LAYER)
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        source = f"layer {self.name}"
        self.tasks = _check_tasks(tasks, source)
        self.preprocessing = _check_preprocessing(preprocessing, source)
        self.thresholds = _check_thresholds(thresholds, source)
        self.precision = _check_precision(precision, source)
        self.synthetic = _check_synthetic(synthetic, source)

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"tasks": [dict(t) for t in self.tasks], "preprocessing": self.preprocessing,
                       "thresholds": {t: dict(v) for t, v in self.thresholds.items()},
                       "precision": self.precision, "synthetic": self.synthetic})
        return config

    def as_dict(self):
        """A JSON-ready copy: ``{"tasks", "preprocessing", "thresholds", "precision", "synthetic"}``."""
        return json.loads(json.dumps({"tasks": self.tasks, "preprocessing": self.preprocessing,
                                      "thresholds": self.thresholds, "precision": self.precision,
                                      "synthetic": self.synthetic}))


def info_layer(model):
    """The model's :class:`ModelInfo` layer, or None (models saved before it existed)."""
    for layer in model.layers:
        if isinstance(layer, ModelInfo):
            return layer
    return None


def model_info(model):
    """``{"tasks", "preprocessing", "thresholds", "precision", "synthetic"}`` stored in ``model``, or None."""
    layer = info_layer(model)
    return layer.as_dict() if layer is not None else None


def with_model_info(model, *, preprocessing=None, thresholds=None, tasks=None, precision=None, synthetic=None):
    """``model`` carrying a :class:`ModelInfo` with the given entries; other entries are kept.

    A model that already has the layer is updated in place and returned. One without it (saved
    before the layer existed) is rebuilt with the layer between its input and the layers that
    read the input; the rebuilt model shares every layer, and so every weight, with ``model``.
    """
    layer = info_layer(model)
    if layer is None:
        if len(model.inputs) != 1:
            raise ValueError(f"model {model.name!r} has {len(model.inputs)} inputs; expected one image input")
        layer = ModelInfo(tasks=task_entries(model.output_names))
        model = _insert_after_input(model, layer)
    source = f"model {model.name!r}"
    if tasks is not None:
        layer.tasks = _check_tasks(tasks, source)
    if preprocessing is not None:
        layer.preprocessing = _check_preprocessing(preprocessing, source)
    if thresholds is not None:
        merged = dict(layer.thresholds)
        merged.update(_check_thresholds(thresholds, source))
        layer.thresholds = merged
    if precision is not None:
        layer.precision = _check_precision(precision, source)
    if synthetic is not None:
        layer.synthetic = _check_synthetic(synthetic, source)
    return model


def _insert_after_input(model, layer):
    outputs = {}

    def call(operation, *args, **kwargs):
        def through_info(tensor):
            history = getattr(tensor, "_keras_history", None)
            if history is not None and isinstance(history.operation, keras.layers.InputLayer):
                if id(tensor) not in outputs:
                    outputs[id(tensor)] = layer(tensor)
                return outputs[id(tensor)]
            return tensor

        return operation(*keras.tree.map_structure(through_info, args), **kwargs)

    return keras.models.clone_model(model, clone_function=lambda op: op, call_function=call)


# ---------------------------------------------------------------------------------------------
# saved files


def read_file_info(path):
    """The :class:`ModelInfo` config stored in a ``.keras`` file, without loading its weights.

    Returns None when the file holds no info layer. A file that is not a ``.keras`` archive is
    a one-line ValueError naming it.
    """
    config = _archive_config(path)
    layer = _info_config(config)
    if layer is None:
        return None
    source = f"{path}: {INFO_LAYER}"
    return {"tasks": _check_tasks(layer.get("tasks"), source),
            "preprocessing": _check_preprocessing(layer.get("preprocessing"), source),
            "thresholds": _check_thresholds(layer.get("thresholds"), source),
            "precision": _check_precision(layer.get("precision"), source),
            "synthetic": _check_synthetic(layer.get("synthetic", False), source)}


def _archive_config(path):
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such model file") from None
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as exc:
        raise ValueError(f"{path}: not a Keras .keras archive ({exc})") from None


def _info_config(config):
    for entry in config.get("config", {}).get("layers", []):
        if entry.get("registered_name") == REGISTERED_NAME:
            return entry.setdefault("config", {})
    return None
