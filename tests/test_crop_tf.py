"""The hue crop in TensorFlow ops equals the NumPy/Pillow reference, box for box."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from skin_cnn.data import crop, crop_tf

PHOTO = tf.TensorSpec((None, None, 3), tf.uint8)


@pytest.fixture(scope="module")
def tf_box():
    """One traced graph for photos of every size, as in an export."""
    return tf.function(lambda photo: crop_tf.hue_crop_box(photo), input_signature=[PHOTO])


def _box(fn, photo):
    return tuple(int(v) for v in fn(tf.constant(photo)).numpy())


def _two_colour_photo(height, width, patch, background=(40, 90, 200), skin=(205, 140, 110)):
    photo = np.empty((height, width, 3), np.uint8)
    photo[:] = background
    top, left, bottom, right = patch
    photo[top:bottom, left:right] = skin
    return photo


def test_hand_built_photo_gives_the_patch_box(tf_box):
    # 40×48 blue photo with a skin-coloured 24×24 patch on 4-pixel blocks: the reduced grid is
    # 10×12 with the patch on rows 2..7 and columns 3..8; those lines hold 50% and 60% skin,
    # above the ratio 0.3 (the patch's share), so the box is the patch itself.
    photo = _two_colour_photo(40, 48, (8, 12, 32, 36))
    assert _box(tf_box, photo) == (12, 8, 36, 32)
    assert crop.hue_crop_box(photo) == (12, 8, 36, 32)


@pytest.mark.parametrize("downscale", [1, 2, 3, 4, 5])
def test_block_means_equal_pillow_reduce_with_odd_sizes(downscale):
    rng = np.random.default_rng(downscale)
    fn = tf.function(lambda p: crop_tf.block_mean_downscale(p, downscale), input_signature=[PHOTO])
    for height, width in [(1, 1), (3, 2), (7, 9), (17, 13), (32, 30)]:
        photo = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        expected = np.asarray(Image.fromarray(photo).reduce(downscale)) if downscale > 1 else photo
        np.testing.assert_array_equal(fn(tf.constant(photo)).numpy(), expected)


def test_hue_equals_the_reference_on_every_channel_pattern():
    levels = np.array([0, 1, 2, 127, 128, 254, 255], np.uint8)
    rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    np.testing.assert_array_equal(crop_tf.rgb_hue(tf.constant(rgb)).numpy(), crop.rgb_hue(rgb))


def test_pairwise_sum_is_numpys_sum_to_the_last_bit():
    fn = tf.function(crop_tf.pairwise_sum, input_signature=[tf.TensorSpec([None], tf.float64)])
    for n in [1, 7, 8, 9, 128, 129, 136, 300, 1031, 20_011]:
        # Values of very different magnitudes make the summation order visible in the last bits.
        x = np.sort(np.random.default_rng(n).standard_normal(n) * 10.0 ** (np.arange(n) % 7 - 3))
        assert fn(tf.constant(x)).numpy() == np.sum(x), n


def test_two_means_threshold_equals_the_reference_and_says_one_cluster():
    fn = tf.function(crop_tf.two_means_threshold, input_signature=[tf.TensorSpec([None], tf.float64)])
    rng = np.random.default_rng(3)
    for values in (rng.random(500), np.r_[rng.random(40) * 0.1, 0.6 + rng.random(90) * 0.1], [0.2, 0.7]):
        threshold, found = fn(tf.constant(np.asarray(values, np.float64)))
        assert bool(found) and float(threshold) == crop.two_means_threshold(values)
    # three equally spaced, equally large groups: two cuts tie exactly; rounding decides
    tied = np.repeat([0.1, 0.4, 0.7], 1000)
    assert float(fn(tf.constant(tied))[0]) == crop.two_means_threshold(tied)
    _, found = fn(tf.constant(np.full(9, 0.25)))
    assert not bool(found) and crop.two_means_threshold(np.full(9, 0.25)) is None


def test_boxes_equal_the_reference_on_photos_of_many_shapes(tf_box):
    rng = np.random.default_rng(0)
    checked = cropped = 0
    for i in range(60):
        height, width = (int(v) for v in rng.integers(1, 70, size=2))
        kind = i % 4
        if kind == 0:  # noise
            photo = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        elif kind == 1:  # background, a patch and noise: two hue clusters, a real crop
            patch = (height // 5, width // 4, height - height // 6, width - width // 3)
            photo = _two_colour_photo(height, width, patch).astype(np.int16)
            photo = np.clip(photo + rng.integers(-15, 16, size=photo.shape), 0, 255).astype(np.uint8)
        elif kind == 2:  # grey: every hue is 0, one cluster
            photo = np.repeat(rng.integers(0, 256, size=(height, width, 1), dtype=np.uint8), 3, axis=2)
        else:  # one flat colour: one cluster
            photo = np.empty((height, width, 3), np.uint8)
            photo[:] = rng.integers(0, 256, size=3)
        expected = crop.hue_crop_box(photo)
        assert _box(tf_box, photo) == expected, (height, width, kind)
        checked += 1
        cropped += expected != (0, 0, width, height)
        if kind in (2, 3):
            assert expected == (0, 0, width, height)
    assert checked == 60 and cropped >= 10  # the comparison covered real crops, not only whole photos


def test_parameters_are_passed_and_checked():
    photo = _two_colour_photo(37, 45, (6, 10, 30, 33))
    params = {"downscale": 3, "ratio_bounds": (0.05, 0.2), "max_scan_height": 0.3, "max_scan_width": 0.5}
    got = tuple(int(v) for v in crop_tf.hue_crop_box(tf.constant(photo), **params).numpy())
    assert got == crop.hue_crop_box(photo, **params)
    with pytest.raises(ValueError, match="n_clusters=2 only"):
        crop_tf.hue_crop_box(tf.constant(photo), n_clusters=3)
    with pytest.raises(ValueError, match="max_scan_width must lie in"):
        crop_tf.hue_crop_box(tf.constant(photo), max_scan_width=0.7)
