"""The study's four VGG-16 variants, the spatial transformer, the masked loss and weights.

``from skin_cnn.models import build_model`` imports Keras: the package is only used where a model
is built, trained or loaded. Importing it registers every custom Keras layer of skin-cnn (each is
defined with ``keras.saving.register_keras_serializable`` in a module imported here), so
:func:`load_model`, and ``keras.models.load_model`` as well, open a skin-cnn ``.keras`` file in a
fresh process without ``custom_objects``.
"""
from skin_cnn import check_keras_backend

from skin_cnn.models.heads import multitask_heads
from skin_cnn.models.info import (
    ModelInfo,
    model_info,
    read_file_info,
    with_model_info,
)
from skin_cnn.models.losses import compile_model, masked_task_losses, masked_task_metrics
from skin_cnn.models.preprocessing import VGG16Preprocess
from skin_cnn.models.saving import load_keras_model as load_model
from skin_cnn.models.saving import store_thresholds
from skin_cnn.models.spatial_transformer import Localization, SpatialTransformer
from skin_cnn.models.vgg import (
    GLOBAL_POOL,
    VARIANTS,
    ModelSpec,
    Variant,
    build_model,
    model_summary_table,
    parameter_counts,
    resolve_variant,
    split_at_frozen_boundary,
    trunk_block,
)
from skin_cnn.models.weights import (
    WEIGHTS_ENV_VAR,
    WeightsFileError,
    WeightsUnavailableError,
    check_weights_file,
    fetch_imagenet_weights,
    imagenet_weights_available,
    resolve_weights,
)

# Keras is imported now: a backend set in ~/.keras/keras.json is refused with one line here.
check_keras_backend()

__all__ = [
    "build_model",
    "ModelSpec",
    "load_model",
    "resolve_variant",
    "split_at_frozen_boundary",
    "parameter_counts",
    "model_summary_table",
    "trunk_block",
    "Variant",
    "VARIANTS",
    "GLOBAL_POOL",
    "SpatialTransformer",
    "Localization",
    "VGG16Preprocess",
    "ModelInfo",
    "model_info",
    "with_model_info",
    "read_file_info",
    "store_thresholds",
    "multitask_heads",
    "compile_model",
    "masked_task_losses",
    "masked_task_metrics",
    "resolve_weights",
    "imagenet_weights_available",
    "fetch_imagenet_weights",
    "check_weights_file",
    "WeightsUnavailableError",
    "WeightsFileError",
    "WEIGHTS_ENV_VAR",
]
