"""skin-cnn: a multi-task VGG-16 diagnostic aid for look-alike skin diseases.

Importing the package is cheap: TensorFlow and Keras load only when a model-related module is
imported. The custom Keras layers are registered by importing :mod:`skin_cnn.models` (which
imports Keras), and :func:`skin_cnn.models.load_model` opens a skin-cnn ``.keras`` file in a
fresh process; ``keras.models.load_model`` does too once ``skin_cnn.models`` is imported.

skin-cnn runs on the TensorFlow backend of Keras only (``tf.data`` pipelines, ``tf.distribute``,
SavedModel and TFLite export). A ``KERAS_BACKEND`` naming another backend is refused at import
with one line saying so, rather than failing later inside a model.

The functions a notebook runs a whole step with are exported here, imported when first used::

    from skin_cnn import evaluate_run, resolve_config, run_cv, run_demo, train
"""
from __future__ import annotations

import importlib
import os
import sys

from skin_cnn.core.lazy_exports import lazy_exports

__version__ = "0.1.0"

#: The only Keras backend skin-cnn runs on.
KERAS_BACKEND = "tensorflow"


#: What ``skin_cnn`` exports, by the module it comes from (imported on first use: cheap import).
EXPORTS = {
    "train": "skin_cnn.app.train_run",
    "evaluate_run": "skin_cnn.app.evaluate_run",
    "run_cv": "skin_cnn.app.cv_run",
    "run_demo": "skin_cnn.app.demo",
    "resolve_config": "skin_cnn.training.config",
    "load_resume_config": "skin_cnn.training",
}


class BackendError(ImportError):
    """Keras is set to a backend other than TensorFlow."""


def check_keras_backend(backend: str | None = None) -> None:
    """Raise :class:`BackendError` unless Keras uses (or will use) the TensorFlow backend.

    Parameters
    ----------
    backend : str, optional
        The backend to check; by default ``keras.backend.backend()`` when Keras is imported,
        else the ``KERAS_BACKEND`` environment variable (unset means TensorFlow, or what
        ``~/.keras/keras.json`` says, which is checked once Keras is imported).
    """
    if backend is None:
        keras = sys.modules.get("keras")
        backend_module = getattr(keras, "backend", None)
        if backend_module is not None and hasattr(backend_module, "backend"):
            backend = backend_module.backend()
        else:
            backend = os.environ.get("KERAS_BACKEND", "").strip() or KERAS_BACKEND
    if backend != KERAS_BACKEND:
        raise BackendError(
            f"skin-cnn needs the TensorFlow backend of Keras, but Keras is set to {backend!r} "
            "(KERAS_BACKEND or ~/.keras/keras.json); unset KERAS_BACKEND or set KERAS_BACKEND=tensorflow"
        )


def register_keras_objects() -> None:
    """Register every custom Keras object of skin-cnn (idempotent): import :mod:`skin_cnn.models`.

    Importing ``skin_cnn.models`` does the same; this function is for code that loads models
    through Keras without importing anything of ``skin_cnn.models`` itself.
    """
    check_keras_backend()
    importlib.import_module("skin_cnn.models")


if os.environ.get("KERAS_BACKEND", "").strip() not in ("", KERAS_BACKEND):
    check_keras_backend(os.environ["KERAS_BACKEND"].strip())


__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
