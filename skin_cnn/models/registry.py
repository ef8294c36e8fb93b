"""Imports every module that defines a registered Keras object.

``import skin_cnn`` imports this module as soon as Keras is imported, so
``keras.models.load_model(path)`` opens a skin-cnn ``.keras`` file in a fresh process without
``custom_objects``. Keep it to modules defining Keras objects (they import Keras themselves).
"""

from skin_cnn.models import info, preprocessing, spatial_transformer

REGISTERED = (
    info.ModelInfo,
    preprocessing.VGG16Preprocess,
    spatial_transformer.SpatialTransformer,
)
