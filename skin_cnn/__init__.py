"""skin-cnn: a multi-task VGG-16 diagnostic aid for look-alike skin diseases.

Importing the package is cheap: TensorFlow and Keras load only when a model-related function is
first used. The custom Keras layers are registered as soon as Keras is imported (now, if it
already is, or right after the first ``import keras``), so ``keras.models.load_model`` opens a
skin-cnn ``.keras`` file in a fresh process once ``import skin_cnn`` has run.
"""
import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

# Modules that define registered Keras objects; importing them registers the objects.
_KERAS_OBJECT_MODULES = ("skin_cnn.models.registry",)


def register_keras_objects():
    """Import every module that registers a custom Keras object (idempotent)."""
    for name in _KERAS_OBJECT_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


class _RegisterAfterKerasImport(importlib.abc.MetaPathFinder):
    """Runs :func:`register_keras_objects` once the top-level ``keras`` module has loaded."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None:
            return spec
        original_exec = spec.loader.exec_module

        def exec_module(module):
            original_exec(module)
            register_keras_objects()

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    register_keras_objects()
elif not any(isinstance(f, _RegisterAfterKerasImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKerasImport())
