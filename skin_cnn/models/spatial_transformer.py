"""A spatial transformer (Jaderberg et al., 2015) restricted to scale and translation.

The layer looks at the whole image with a small localisation network, predicts an affine
transform without shear or rotation,

    θ = [[s_x, 0,   t_x],
         [0,   s_y, t_y]],

and resamples the image through θ with differentiable bilinear interpolation, so the network
can learn to zoom into the lesions and move them to the centre before VGG-16 sees them.
"""

from dataclasses import dataclass, replace
from typing import ClassVar

import keras
import tensorflow as tf
from keras import ops

FILL_MODES = ("nearest", "constant")
# Output of the last localisation dense layer at initialisation: s_x, s_y, t_x, t_y.
IDENTITY_PARAMETERS = (1.0, 1.0, 0.0, 0.0)
#: The start of the error raised when the zoom and shift (or their gradient) are NaN or infinite:
#: sampling at such positions would read no pixel at all.
NON_FINITE_PARAMETERS = "SpatialTransformer: the localisation network's zoom or shift is not finite"


def _glorot(seed, offset):
    """Glorot-uniform initialiser, seeded with ``seed + offset`` when a seed is given."""
    return keras.initializers.GlorotUniform(seed=None if seed is None else int(seed) + offset)


def _localization_conv(filters, name, initializer):
    """A 3×3 ReLU convolution of the localisation network (spatial size kept)."""
    return keras.layers.Conv2D(
        filters, 3, padding="same", activation="relu", name=name, kernel_initializer=initializer
    )


@dataclass(frozen=True)
class Localization:
    """Settings of the spatial transformer's localisation network (they only make sense together).

    Attributes
    ----------
    filters : (int, int)
        Filters of the two localisation convolutions.
    units : int
        Units of the hidden localisation dense layer.
    grid : int or None
        Side of the grid the localisation features are pooled to (``None``: flatten them).
    input_scale : float
        Factor applied to the input before the localisation network only (the resampled image
        keeps its values). The default maps RGB in [0, 255] to [0, 1] so the randomly
        initialised localisation convolutions see inputs of unit scale.
    """

    filters: tuple = (16, 32)
    units: int = 100
    grid: int | None = 8
    input_scale: float = 1.0 / 255.0

    #: The name of each setting in a layer's config (and as a keyword of the layer).
    CONFIG_NAMES: ClassVar[dict] = {"filters": "localization_filters", "units": "localization_units",
                    "grid": "localization_grid", "input_scale": "input_scale"}

    def __post_init__(self):
        if self.grid is not None and int(self.grid) < 1:
            raise ValueError(f"localization_grid must be ≥ 1 or None; got {self.grid!r}")
        filters = tuple(int(f) for f in self.filters)
        if len(filters) != 2:
            raise ValueError(f"localization_filters must have 2 values; got {self.filters!r}")
        object.__setattr__(self, "filters", filters)
        object.__setattr__(self, "units", int(self.units))
        object.__setattr__(self, "grid", None if self.grid is None else int(self.grid))
        object.__setattr__(self, "input_scale", float(self.input_scale))

    @classmethod
    def merged(cls, localization, flat):
        """``localization`` (or the defaults) with the flat config names found in ``flat`` put in.

        The flat names are removed from ``flat`` (a layer's keyword arguments), so what remains
        goes to ``keras.layers.Layer``.
        """
        given = {field: flat.pop(name) for field, name in cls.CONFIG_NAMES.items() if name in flat}
        return replace(localization if localization is not None else cls(), **given)

    def config(self):
        """The settings under their flat config names, as JSON values."""
        return {"localization_filters": list(self.filters), "localization_units": self.units,
                "localization_grid": self.grid, "input_scale": self.input_scale}


@keras.saving.register_keras_serializable(package="skin_cnn")
class SpatialTransformer(keras.layers.Layer):
    """Learned zoom and shift of the input image (no shear, no rotation).

    Localisation network: 2×2 max-pool → 3×3 conv (16, ReLU) → 2×2 max-pool → 3×3 conv
    (32, ReLU) → average pooling to a ``localization_grid`` × ``localization_grid`` grid →
    flatten → dense (100, ReLU) → dense (4) with a zero kernel and the bias
    ``[1, 1, 0, 0]``, so the layer starts as the identity transform and gradients still reach
    that last layer. Its 4 outputs are ``s_x, s_y, t_x, t_y``; shear and rotation are not
    parametrised at all, so they are exactly zero whatever the training does (the study's "dense
    6 with shear disabled").

    Why a grid pooling instead of the classical flatten: flattening the conv features makes the
    first dense layer grow with the image (12.3 M parameters at 250×250, 84% of the VGG-16
    trunk, for a sub-network trained from scratch on a few thousand photos), and ties the layer
    to one input size. An antialiased bilinear resize of the features to a fixed small grid
    (8×8 → 204,900 parameters in that dense layer) keeps the coarse spatial layout the network
    needs to decide where to zoom, and works for any input size. ``localization_grid=1`` is
    global average pooling; ``localization_grid=None`` is the classical flatten.

    Sampling uses normalised coordinates in [-1, 1] with the align-corners convention: -1 and
    +1 are the centres of the first and last pixels, so the identity transform samples exactly
    the pixel centres and returns the input unchanged.

    Parameters
    ----------
    output_size : (int, int), optional
        Height and width of the resampled image; defaults to the input's.
    localization : Localization, optional
        The localisation network's settings. Each may also be given by its flat name
        (``localization_filters``, ``localization_units``, ``localization_grid``,
        ``input_scale``), as :meth:`get_config` writes them.
    fill_mode : {"nearest", "constant"}
        Value of samples that fall outside the image: the nearest edge pixel, or ``fill_value``.
    fill_value : float
        Used with ``fill_mode="constant"``.
    seed : int, optional
        Seed of the localisation network's kernel initialisers.
    """

    def __init__(self, output_size=None, localization=None, fill_mode="nearest", fill_value=0.0, seed=None,
                 **kwargs):
        localization = Localization.merged(localization, kwargs)  # takes the flat keys out of kwargs
        super().__init__(**kwargs)
        if output_size is not None:
            output_size = tuple(int(s) for s in output_size)
            if len(output_size) != 2 or min(output_size) < 1:
                raise ValueError(f"output_size must be (height, width) ≥ 1; got {output_size!r}")
        if fill_mode not in FILL_MODES:
            raise ValueError(f"fill_mode must be one of {FILL_MODES}; got {fill_mode!r}")
        self.output_size = output_size
        self.localization = localization
        self.localization_filters = localization.filters
        self.localization_units = localization.units
        self.localization_grid = localization.grid
        self.input_scale = localization.input_scale
        self.fill_mode = fill_mode
        self.fill_value = float(fill_value)
        self.seed = seed

        self.loc_pool1 = keras.layers.MaxPooling2D(2, name="loc_pool1")
        self.loc_conv1 = _localization_conv(localization.filters[0], "loc_conv1", _glorot(seed, 0))
        self.loc_pool2 = keras.layers.MaxPooling2D(2, name="loc_pool2")
        self.loc_conv2 = _localization_conv(localization.filters[1], "loc_conv2", _glorot(seed, 1))
        self.loc_flatten = keras.layers.Flatten(name="loc_flatten")
        self.loc_dense = keras.layers.Dense(
            self.localization_units,
            activation="relu",
            name="loc_dense",
            kernel_initializer=_glorot(seed, 2),
        )
        self.loc_theta = keras.layers.Dense(
            len(IDENTITY_PARAMETERS),
            name="loc_theta",
            kernel_initializer="zeros",
            bias_initializer=keras.initializers.Constant(list(IDENTITY_PARAMETERS)),
        )

    # ------------------------------------------------------------------------------------
    # Keras plumbing

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"SpatialTransformer expects (batch, height, width, channels); got {input_shape}"
            )
        shape = tuple(input_shape)
        for layer in (self.loc_pool1, self.loc_conv1, self.loc_pool2, self.loc_conv2):
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        if self.localization_grid is not None:
            shape = (shape[0], self.localization_grid, self.localization_grid, shape[3])
        elif None in shape[1:3]:
            raise ValueError(
                "SpatialTransformer with localization_grid=None (flatten) needs a fixed input "
                f"height and width; got {input_shape}"
            )
        self.loc_flatten.build(shape)
        shape = self.loc_flatten.compute_output_shape(shape)
        self.loc_dense.build(shape)
        self.loc_theta.build(self.loc_dense.compute_output_shape(shape))

    def compute_output_shape(self, input_shape):
        height, width = self.output_size or tuple(input_shape[1:3])
        return (input_shape[0], height, width, input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "output_size": None if self.output_size is None else list(self.output_size),
                **self.localization.config(),
                "fill_mode": self.fill_mode,
                "fill_value": self.fill_value,
                "seed": self.seed,
            }
        )
        return config

    # ------------------------------------------------------------------------------------
    # The transform

    def affine_parameters(self, inputs):
        """``(batch, 4)`` tensor of ``s_x, s_y, t_x, t_y`` predicted for ``inputs``."""
        x = ops.cast(inputs, self.compute_dtype) * self.input_scale
        x = self.loc_conv1(self.loc_pool1(x))
        x = self.loc_conv2(self.loc_pool2(x))
        if self.localization_grid is not None:
            grid = (self.localization_grid, self.localization_grid)
            x = ops.image.resize(x, grid, interpolation="bilinear", antialias=True)
        return self.loc_theta(self.loc_dense(self.loc_flatten(x)))

    def affine_matrix(self, inputs):
        """``(batch, 2, 3)`` matrices θ; the shear/rotation entries are exactly zero."""
        return self.parameters_to_matrix(self.affine_parameters(inputs))

    @staticmethod
    def parameters_to_matrix(parameters):
        """Map ``(batch, 4)`` ``s_x, s_y, t_x, t_y`` to ``(batch, 2, 3)`` affine matrices."""
        sx, sy, tx, ty = (parameters[:, i] for i in range(4))
        zero = ops.zeros_like(sx)
        rows = [ops.stack([sx, zero, tx], axis=-1), ops.stack([zero, sy, ty], axis=-1)]
        return ops.stack(rows, axis=1)

    def _source_positions(self, scale, shift, size, out_size):
        """``(batch, out_size)`` input pixel coordinates sampled along one axis."""
        size_f = ops.cast(size, "float32")
        half = (size_f - 1.0) / 2.0
        steps = ops.cast(ops.arange(out_size), "float32")
        if isinstance(out_size, int) and out_size == 1:
            step, start = 0.0, 0.0
        else:
            step = (size_f - 1.0) / (ops.cast(out_size, "float32") - 1.0)
            start = -1.0
        scale = ops.reshape(scale, (-1, 1))
        shift = ops.reshape(shift, (-1, 1))
        return scale * (steps * step)[None, :] + (scale * start + shift + 1.0) * half

    def call(self, inputs, training=None):
        return self.transform(inputs, self.affine_parameters(inputs), check_finite=bool(training))

    def transform(self, images, parameters, check_finite=False):
        """Resample ``images`` through the scale/translation ``parameters`` (``(batch, 4)``).

        Output pixel (i, j) with normalised coordinates (x, y) reads the input at
        ``(s_x·x + t_x, s_y·y + t_y)``; a scale below 1 therefore zooms in. Coordinates and
        interpolation run in float32 whatever the dtype policy (pixel indices of a 250×250
        image do not fit float16's precision).

        With ``check_finite`` (in training) NaN or infinite parameters, or a NaN or infinite
        gradient reaching them, raise ``InvalidArgumentError`` starting with
        :data:`NON_FINITE_PARAMETERS` before any weight is updated from them; otherwise they
        would become positions outside the image and fail in the pixel lookup with an error that
        names no cause.
        """
        images = ops.cast(images, "float32")
        parameters = ops.cast(parameters, "float32")
        if check_finite:
            parameters = tf.debugging.check_numerics(parameters, NON_FINITE_PARAMETERS)
        shape = ops.shape(images)
        batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
        out_h, out_w = self.output_size or (height, width)

        # Source position, in input pixels, of every output pixel. Output pixel j has the
        # normalised coordinate x_j = -1 + 2j/(out_w-1) (0 for a single pixel) and reads the
        # input at pixel (s_x·x_j + t_x + 1)(width-1)/2 (align corners: -1 → 0, +1 → width-1).
        # Expanded as s_x·j·(width-1)/(out_w-1) + (t_x - s_x + 1)(width-1)/2, the identity
        # lands on exact integers in float32, so it reproduces the input exactly.
        px = self._source_positions(parameters[:, 0], parameters[:, 2], width, out_w)
        py = self._source_positions(parameters[:, 1], parameters[:, 3], height, out_h)
        px = ops.broadcast_to(ops.reshape(px, (-1, 1, out_w)), (batch, out_h, out_w))
        py = ops.broadcast_to(ops.reshape(py, (-1, out_h, 1)), (batch, out_h, out_w))
        w_f = ops.cast(width, "float32")
        h_f = ops.cast(height, "float32")
        x0 = ops.floor(px)
        y0 = ops.floor(py)
        wx1 = px - x0
        wy1 = py - y0
        wx0 = 1.0 - wx1
        wy0 = 1.0 - wy1

        flat = ops.reshape(images, (batch, -1, channels))
        result = 0.0
        outside_weight = 0.0
        for xc, wx in ((x0, wx0), (x0 + 1.0, wx1)):
            for yc, wy in ((y0, wy0), (y0 + 1.0, wy1)):
                weight = wx * wy
                xi = ops.clip(xc, 0.0, w_f - 1.0)
                yi = ops.clip(yc, 0.0, h_f - 1.0)
                if self.fill_mode == "constant":
                    inside = ops.cast(
                        ops.logical_and(ops.equal(xi, xc), ops.equal(yi, yc)), weight.dtype
                    )
                    outside_weight = outside_weight + weight * (1.0 - inside)
                    weight = weight * inside
                index = ops.cast(yi * w_f + xi, "int32")
                index = ops.reshape(index, (batch, -1, 1))
                values = ops.take_along_axis(flat, index, axis=1)  # (batch, out_h*out_w, channels)
                result = result + values * ops.reshape(weight, (batch, -1, 1))
        if self.fill_mode == "constant" and self.fill_value != 0.0:
            result = result + self.fill_value * ops.reshape(outside_weight, (batch, -1, 1))
        return ops.cast(ops.reshape(result, (batch, out_h, out_w, channels)), self.compute_dtype)
