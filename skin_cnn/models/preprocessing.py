"""The caffe-style VGG-16 input normalisation as the model's first layer.

Putting ``keras.applications.vgg16.preprocess_input`` inside the model means a saved model takes
plain RGB in [0, 255]: the data pipeline, ``predict``, ``serve`` and ``export`` feed images as
they are read and can never apply the normalisation twice or forget it.
"""

import keras
from keras import ops

# ImageNet channel means in BGR order, the values keras.applications.vgg16 subtracts.
IMAGENET_BGR_MEANS = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="skin_cnn")
class VGG16Preprocess(keras.layers.Layer):
    """RGB in [0, 255] → BGR with the ImageNet channel means subtracted.

    Numerically the same as ``keras.applications.vgg16.preprocess_input`` (``mode="caffe"``),
    written with ``keras.ops`` so the model saves without a ``Lambda`` layer and loads with
    ``safe_mode=True``.

    Parameters
    ----------
    means : sequence of 3 floats
        Per-channel means subtracted *after* the RGB → BGR flip, in BGR order.
    """

    def __init__(self, means=IMAGENET_BGR_MEANS, **kwargs):
        super().__init__(**kwargs)
        if len(means) != 3:
            raise ValueError(f"means must have 3 values (B, G, R); got {means!r}")
        self.means = tuple(float(m) for m in means)

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        bgr = ops.flip(x, axis=-1)
        return bgr - ops.convert_to_tensor(self.means, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"means": list(self.means)})
        return config
