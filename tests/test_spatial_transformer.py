"""SpatialTransformer: identity at initialisation, bilinear sampling against scipy, no shear,
gradients into the localisation network, serialisation."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from skin_cnn.models import SpatialTransformer
from skin_cnn.models.spatial_transformer import NON_FINITE_PARAMETERS, Localization


def _images(shape=(2, 40, 56, 3), seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def _set_parameters(layer, sx, sy, tx, ty):
    """Make the layer predict the same (s_x, s_y, t_x, t_y) for every image."""
    layer.loc_theta.kernel.assign(np.zeros(layer.loc_theta.kernel.shape, "float32"))
    layer.loc_theta.bias.assign(np.array([sx, sy, tx, ty], "float32"))


def _reference_warp(images, sx, sy, tx, ty, out_size, mode):
    """Bilinear resampling written independently with scipy.ndimage.map_coordinates.

    Output pixel (i, j) has normalised coordinates y_i = -1 + 2i/(out_h-1),
    x_j = -1 + 2j/(out_w-1) and reads input pixel ((s·y + t + 1)(size-1)/2) on each axis.
    """
    batch, height, width, channels = images.shape
    out_h, out_w = out_size
    yy, xx = np.meshgrid(np.linspace(-1, 1, out_h), np.linspace(-1, 1, out_w), indexing="ij")
    rows = (sy * yy + ty + 1) * (height - 1) / 2
    cols = (sx * xx + tx + 1) * (width - 1) / 2
    out = np.empty((batch, out_h, out_w, channels), "float64")
    for b in range(batch):
        for c in range(channels):
            out[b, :, :, c] = ndimage.map_coordinates(
                images[b, :, :, c].astype("float64"), [rows, cols], order=1, mode=mode, cval=0.0
            )
    return out


@pytest.mark.parametrize("fill_mode", ["nearest", "constant"])
def test_identity_at_initialisation_returns_the_input(fill_mode):
    x = _images()
    layer = SpatialTransformer(fill_mode=fill_mode, seed=0)
    y = np.asarray(layer(x))
    assert y.shape == x.shape
    assert np.max(np.abs(y - x)) < 1e-4
    theta = np.asarray(layer.affine_matrix(x))
    np.testing.assert_array_equal(theta, np.tile([[1, 0, 0], [0, 1, 0]], (2, 1, 1)))


@pytest.mark.parametrize(
    "params, out_size, fill_mode, scipy_mode",
    [
        ((0.5, 0.5, 0.2, -0.3), None, "nearest", "nearest"),
        ((1.3, 0.8, -0.4, 0.1), (24, 30), "nearest", "nearest"),
        ((1.5, 1.5, 0.3, 0.0), None, "constant", "grid-constant"),
    ],
)
def test_sampling_matches_scipy_bilinear_reference(params, out_size, fill_mode, scipy_mode):
    x = _images()
    layer = SpatialTransformer(output_size=out_size, fill_mode=fill_mode, seed=0)
    layer.build(x.shape)
    _set_parameters(layer, *params)
    y = np.asarray(layer(x))
    expected = _reference_warp(x, *params, out_size or x.shape[1:3], scipy_mode)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, atol=2e-3)


def test_known_zoom_and_shift_move_a_square_where_expected():
    size = 65  # odd: normalised coordinate 0 falls on pixel 32
    img = np.zeros((1, size, size, 3), "float32")
    # Square on normalised x ∈ [0.25, 0.75], y ∈ [-0.25, 0.25] → pixels 40..56 × 24..40.
    img[0, 24:41, 40:57, :] = 255.0
    layer = SpatialTransformer(seed=0)
    layer.build(img.shape)
    # Zoom ×2 on the region centred at x = 0.5: output (x, y) reads input (0.5x + 0.5, 0.5y).
    _set_parameters(layer, 0.5, 0.5, 0.5, 0.0)
    out = np.asarray(layer(img))[0, :, :, 0]
    # The square must now span normalised [-0.5, 0.5] on both axes: pixels 16..48, centred.
    rows, cols = np.nonzero(out > 127.5)
    assert rows.min() == 16 and rows.max() == 48
    assert cols.min() == 16 and cols.max() == 48
    assert np.mean(out[20:45, 20:45]) == pytest.approx(255.0)
    assert out[0, 0] == 0.0 and out[-1, -1] == 0.0


def test_shear_stays_zero_while_training_moves_scale_and_translation():
    x = _images((4, 32, 32, 3), seed=1)
    target = np.roll(x, 4, axis=2)  # a shifted copy: the transform has to move
    layer = SpatialTransformer(seed=0, name="stn")
    layer.build(x.shape)
    optimizer = keras.optimizers.Adam(1e-2)
    for _ in range(5):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((layer(x) - target) ** 2)
        grads = tape.gradient(loss, layer.trainable_weights)
        optimizer.apply_gradients(zip(grads, layer.trainable_weights))
    theta = np.asarray(layer.affine_matrix(x))
    np.testing.assert_array_equal(theta[:, 0, 1], 0.0)
    np.testing.assert_array_equal(theta[:, 1, 0], 0.0)
    identity = np.array([[1, 0, 0], [0, 1, 0]], "float32")
    assert np.max(np.abs(theta - identity)) > 1e-3


def test_gradients_reach_the_localisation_network():
    x = _images((2, 32, 32, 3), seed=2)
    layer = SpatialTransformer(seed=0)
    layer.build(x.shape)
    weights = {
        "theta": layer.loc_theta.kernel,
        "dense": layer.loc_dense.kernel,
        "conv1": layer.loc_conv1.kernel,
        "conv2": layer.loc_conv2.kernel,
    }
    target = tf.constant(np.flip(x, axis=2).copy())

    def grads():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((layer(x) - target) ** 2)
        g = tape.gradient(loss, list(weights.values()))
        return {name: float(tf.reduce_max(tf.abs(v))) for name, v in zip(weights, g)}

    first = grads()
    # The last kernel starts at zero, so only it receives a gradient at step 0 …
    assert first["theta"] > 0
    assert first["dense"] == 0 and first["conv1"] == 0 and first["conv2"] == 0
    # … and once it has moved, the gradient flows back into the earlier layers.
    optimizer = keras.optimizers.SGD(1e-6)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((layer(x) - target) ** 2)
    optimizer.apply_gradients(
        zip(tape.gradient(loss, layer.trainable_weights), layer.trainable_weights)
    )
    second = grads()
    assert second["dense"] > 0 and second["conv1"] > 0 and second["conv2"] > 0


def test_parameter_count_is_independent_of_the_input_size():
    # By hand: conv 3→16 (3·3·3·16+16) + conv 16→32 (3·3·16·32+32)
    # + dense 8·8·32→100 (+100) + dense 100→4 (+4).
    expected = (
        (3 * 3 * 3 * 16 + 16) + (3 * 3 * 16 * 32 + 32) + (8 * 8 * 32 * 100 + 100) + (100 * 4 + 4)
    )
    for size in (32, 64, 250):
        layer = SpatialTransformer()
        layer.build((None, size, size, 3))
        assert layer.count_params() == expected
    # Classical flatten (localization_grid=None): the first dense layer grows with the image.
    layer = SpatialTransformer(localization_grid=None)
    layer.build((None, 64, 64, 3))
    flat = 16 * 16 * 32  # 64 → pool 32 → pool 16, 'same' convs
    assert layer.count_params() == expected - (8 * 8 * 32 * 100) + flat * 100


def test_config_round_trip_rebuilds_the_same_layer():
    layer = SpatialTransformer(
        output_size=(20, 24),
        localization_grid=4,
        fill_mode="constant",
        fill_value=7.0,
        seed=3,
        name="stn",
    )
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, SpatialTransformer)
    assert clone.get_config() == layer.get_config()
    x = _images((1, 32, 32, 3))
    assert clone(x).shape == (1, 20, 24, 3)


def test_localization_settings_as_one_object_equal_the_flat_keywords():
    grouped = SpatialTransformer(localization=Localization(filters=(4, 8), units=10, grid=2), seed=1, name="stn")
    flat = SpatialTransformer(localization_filters=(4, 8), localization_units=10, localization_grid=2, seed=1,
                              name="stn")
    assert grouped.get_config() == flat.get_config()
    assert grouped.localization == flat.localization == Localization((4, 8), 10, 2)
    # a flat keyword replaces that one setting of the object
    mixed = SpatialTransformer(localization=Localization(units=10), localization_grid=None)
    assert (mixed.localization_units, mixed.localization_grid, mixed.localization_filters) == (10, None, (16, 32))


def test_a_layer_config_written_with_flat_keys_still_loads():
    # the layer's entry as a .keras file stores it (get_config's keys, JSON values)
    saved = {
        "module": "skin_cnn.models.spatial_transformer",
        "class_name": "SpatialTransformer",
        "registered_name": "skin_cnn>SpatialTransformer",
        "config": {
            "name": "spatial_transformer", "trainable": True, "dtype": "float32",
            "output_size": [20, 24], "localization_filters": [8, 16], "localization_units": 50,
            "localization_grid": 4, "input_scale": 0.5, "fill_mode": "constant", "fill_value": 7.0, "seed": 3,
        },
    }
    layer = keras.saving.deserialize_keras_object(saved)
    assert layer.localization == Localization(filters=(8, 16), units=50, grid=4, input_scale=0.5)
    assert (layer.output_size, layer.fill_mode, layer.fill_value, layer.seed) == ((20, 24), "constant", 7.0, 3)
    config = layer.get_config()
    assert {k: config[k] for k in saved["config"] if k != "dtype"} == {
        k: v for k, v in saved["config"].items() if k != "dtype"}
    assert layer(_images((1, 32, 32, 3))).shape == (1, 20, 24, 3)


def test_constant_fill_value_fills_samples_outside_the_image():
    x = _images((1, 32, 32, 3))
    layer = SpatialTransformer(fill_mode="constant", fill_value=100.0, seed=0)
    layer.build(x.shape)
    _set_parameters(layer, 1.0, 1.0, 3.0, 0.0)  # every sample far to the right of the image
    np.testing.assert_allclose(np.asarray(layer(x)), 100.0, atol=1e-4)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="fill_mode"):
        SpatialTransformer(fill_mode="reflect")
    with pytest.raises(ValueError, match="output_size"):
        SpatialTransformer(output_size=(0, 10))
    with pytest.raises(ValueError, match="localization_grid"):
        SpatialTransformer(localization_grid=0)
    with pytest.raises(ValueError, match="localization_filters"):
        SpatialTransformer(localization=Localization(filters=(8,)))


def test_the_transformer_checks_its_zoom_and_its_gradient_only_when_asked():
    layer = SpatialTransformer()
    images = tf.random.uniform((2, 8, 8, 3), seed=0)
    finite = tf.constant([[1.0, 1.0, 0.0, 0.0], [0.9, 1.1, 0.1, -0.1]])
    np.testing.assert_allclose(layer.transform(images, finite[:1], check_finite=True)[0], images[0], atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match=NON_FINITE_PARAMETERS):
        layer.transform(images, tf.constant([[np.nan, 1.0, 0.0, 0.0]] * 2), check_finite=True)

    with tf.GradientTape() as tape:  # finite parameters, an infinite gradient reaching them
        tape.watch(finite)
        loss = tf.reduce_sum(layer.transform(images, finite, check_finite=True) * np.inf)
    with pytest.raises(tf.errors.InvalidArgumentError, match=NON_FINITE_PARAMETERS):
        tape.gradient(loss, finite)

    with tf.GradientTape() as tape:  # unchecked (inference, export): the gradient is left as it is
        tape.watch(finite)
        loss = tf.reduce_sum(layer.transform(images, finite) * np.inf)
    assert not np.isfinite(tape.gradient(loss, finite).numpy()).all()
