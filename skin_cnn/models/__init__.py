"""The study's four VGG-16 variants, the spatial transformer, the masked loss and weights.

Attributes load on first use (``from skin_cnn.models import build_model``), so importing the
package, e.g. for ``skin_cnn.models.weights.imagenet_weights_available``, does not import Keras.
"""

import importlib

_EXPORTS = {
    "build_model": "skin_cnn.models.vgg",
    "resolve_variant": "skin_cnn.models.vgg",
    "split_at_frozen_boundary": "skin_cnn.models.vgg",
    "parameter_counts": "skin_cnn.models.vgg",
    "model_summary_table": "skin_cnn.models.vgg",
    "trunk_block": "skin_cnn.models.vgg",
    "Variant": "skin_cnn.models.vgg",
    "VARIANTS": "skin_cnn.models.vgg",
    "GLOBAL_POOL": "skin_cnn.models.vgg",
    "SpatialTransformer": "skin_cnn.models.spatial_transformer",
    "VGG16Preprocess": "skin_cnn.models.preprocessing",
    "multitask_heads": "skin_cnn.models.heads",
    "compile_model": "skin_cnn.models.losses",
    "masked_task_losses": "skin_cnn.models.losses",
    "masked_task_metrics": "skin_cnn.models.losses",
    "resolve_weights": "skin_cnn.models.weights",
    "imagenet_weights_available": "skin_cnn.models.weights",
    "fetch_imagenet_weights": "skin_cnn.models.weights",
    "check_weights_file": "skin_cnn.models.weights",
    "WeightsUnavailableError": "skin_cnn.models.weights",
    "WeightsFileError": "skin_cnn.models.weights",
    "WEIGHTS_ENV_VAR": "skin_cnn.models.weights",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'skin_cnn.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
