"""skin-cnn: a multi-task VGG-16 diagnostic aid for look-alike skin diseases.

Importing the package is cheap: TensorFlow and Keras load only when a model-related function is
first used. The custom Keras layers are registered as soon as Keras is imported (now, if it
already is, or right after the first ``import keras``), so ``keras.models.load_model`` opens a
skin-cnn ``.keras`` file in a fresh process once ``import skin_cnn`` has run.

"Right after the first ``import keras``" needs an import hook, since Python has no post-import
callback. The hook is kept small and checkable: it sees only the top-level ``keras`` import,
removes itself from ``sys.meta_path`` at that moment, and wraps the loader Python found for Keras
in a delegating loader instead of changing that loader. Nothing of Keras is patched. The test
suite checks, in a fresh process, that the layers are registered after ``import skin_cnn, keras``
and that no hook is left behind, so a change in how Keras or Python imports packages shows up
there.

skin-cnn runs on the TensorFlow backend of Keras only (``tf.data`` pipelines, ``tf.distribute``,
SavedModel and TFLite export). A ``KERAS_BACKEND`` naming another backend is refused at import
with one line saying so, rather than failing later inside a model.
"""
import importlib
import importlib.abc
import importlib.util
import os
import sys

__version__ = "0.1.0"

#: The only Keras backend skin-cnn runs on.
KERAS_BACKEND = "tensorflow"

# Modules that define registered Keras objects; importing them registers the objects.
_KERAS_OBJECT_MODULES = ("skin_cnn.models.registry",)


class BackendError(ImportError):
    """Keras is set to a backend other than TensorFlow."""


def check_keras_backend(backend=None):
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


def register_keras_objects():
    """Import every module that registers a custom Keras object (idempotent)."""
    check_keras_backend()
    for name in _KERAS_OBJECT_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def _register_quietly():
    """Register at import time, unless Keras runs another backend (then the first skin-cnn
    function that needs a model raises :class:`BackendError`, not ``import keras``)."""
    try:
        check_keras_backend()
    except BackendError:
        return
    register_keras_objects()


class _RegisteringLoader(importlib.abc.Loader):
    """Delegates to Keras' own loader, then registers skin-cnn's layers."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _register_quietly()

    def __getattr__(self, name):  # get_resource_reader, is_package, … of the real loader
        return getattr(self._loader, name)


class _RegisterAfterKerasImport(importlib.abc.MetaPathFinder):
    """Wraps the loader of the top-level ``keras`` module once, then leaves ``sys.meta_path``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _RegisteringLoader(spec.loader)
        return spec


if os.environ.get("KERAS_BACKEND", "").strip() not in ("", KERAS_BACKEND):
    check_keras_backend(os.environ["KERAS_BACKEND"].strip())
if "keras" in sys.modules:
    _register_quietly()
elif not any(isinstance(f, _RegisterAfterKerasImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKerasImport())
