"""Layers between the trunk and the heads: mirror views and power-normalised features.

Test-time augmentation inside the model: each photo and its mirror image, features averaged.

A skin lesion has no left and right, so a photo and its left–right mirror image are equally
valid views of it. :class:`MirrorViews` stacks both along the batch axis in front of the trunk
and :class:`MeanOfViews` averages their pooled features behind it. Because both are layers of
the model, every consumer (training's feature cache, ``evaluate``, ``predict``, ``serve``,
Grad-CAM, the SavedModel and TFLite exports) sees the same averaged answer without knowing
about it; the cost is one more trunk pass per photo.
"""

import keras
from keras import ops


def _doubled(size, views):
    return None if size is None else int(size) * views


@keras.saving.register_keras_serializable(package="skin_cnn")
class MirrorViews(keras.layers.Layer):
    """``(B, H, W, C)`` → ``(2B, H, W, C)``: the batch, then its left–right mirror images."""

    views = 2

    def call(self, inputs):
        return ops.concatenate([inputs, ops.flip(inputs, axis=2)], axis=0)

    def compute_output_shape(self, input_shape):
        return (_doubled(input_shape[0], self.views),) + tuple(input_shape[1:])


@keras.saving.register_keras_serializable(package="skin_cnn")
class MeanOfViews(keras.layers.Layer):
    """``(V·B, d)`` → ``(B, d)``: the mean over the ``views`` stacked by :class:`MirrorViews`.

    Parameters
    ----------
    views : int
        Number of views stacked along the batch axis, view-major (all originals first).
    """

    def __init__(self, views=2, **kwargs):
        super().__init__(**kwargs)
        if int(views) < 1:
            raise ValueError(f"views must be a positive integer; got {views!r}")
        self.views = int(views)

    def call(self, inputs):
        per_view = ops.reshape(inputs, (self.views, -1) + tuple(inputs.shape[1:]))
        return ops.mean(per_view, axis=0)

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        return (None if batch is None else batch // self.views,) + tuple(input_shape[1:])

    def get_config(self):
        config = super().get_config()
        config.update({"views": self.views})
        return config


@keras.saving.register_keras_serializable(package="skin_cnn")
class SquareRootFeatures(keras.layers.Layer):
    """``sign(x) · sqrt(|x|)`` of pooled features ("power normalisation").

    Globally pooled ReLU activations are skewed: a few channels fire strongly on some photos and
    dominate a linear model. The square root compresses them, so a regression weighs many
    moderate cues instead of a few strong ones (Perronnin, Sánchez and Mensink, ECCV 2010, for
    pooled image descriptors; Lin, RoyChowdhury and Maji, ICCV 2015, for CNN activations). The
    sign keeps it defined for any input.
    """

    def call(self, inputs):
        return ops.sign(inputs) * ops.sqrt(ops.abs(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape
