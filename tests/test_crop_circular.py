"""Circular hue crop: two arcs of the hue circle, pixels without hue left out, study's scans kept."""
import colorsys
import itertools

import numpy as np
import pytest

from skin_cnn.core.specs import CIRCULAR_CROP_PARAMS, DEFAULT_CROP_PARAMS, Preprocessing, resolve_crop_params
from skin_cnn.data.crop import (
    circular_hue_labels,
    circular_two_means,
    compute_crop_boxes,
    hue_crop_box,
    rgb_saturation_value,
)
from skin_cnn.data.preprocessing import model_input

BLUE_HUE = 0.62


def _rgb(hue, saturation=0.5, value=0.85):
    return np.round(np.array(colorsys.hsv_to_rgb(hue, saturation, value)) * 255).astype(np.uint8)


def _scene(left_hue, right_hue, *, grey_border=0, size=(200, 240), skin=(60, 140, 72, 168)):
    """Blue background, a skin rectangle whose left and right halves have the given hues."""
    height, width = size
    top, bottom, left, right = skin
    image = np.empty((height, width, 3), np.uint8)
    image[:] = _rgb(BLUE_HUE, 0.8, 0.8)
    middle = (left + right) // 2
    image[top:bottom, left:middle] = _rgb(left_hue)
    image[top:bottom, middle:right] = _rgb(right_hue)
    if grey_border:
        g = grey_border
        image[:g] = image[-g:] = 128
        image[:, :g] = image[:, -g:] = 128
    return image, (left, top, right, bottom)


def _sse_on_circle(hue, labels):
    points = np.stack([np.cos(2 * np.pi * hue), np.sin(2 * np.pi * hue)], axis=1)
    return sum(((points[labels == c] - points[labels == c].mean(axis=0)) ** 2).sum() for c in (0, 1)
               if (labels == c).any())


# ---------------------------------------------------------------------------------------------
# two-means on the circle


@pytest.mark.parametrize("seed", range(6))
def test_circular_two_means_is_the_optimum_over_every_partition(seed):
    # hues at bin centres, so the binning is exact; brute force over all 2^(n-1) partitions,
    # arcs or not, checks both the search and the claim that the optimum is two arcs
    rng = np.random.default_rng(seed)
    bins = 72
    hue = (rng.choice(bins, size=9, replace=False) + 0.5) / bins
    best = min(_sse_on_circle(hue, np.array((0,) + labels))
               for labels in itertools.product((0, 1), repeat=len(hue) - 1) if any(labels))
    got = circular_two_means(hue, bins=bins)
    assert got.any() and not got.all()
    assert _sse_on_circle(hue, got.astype(int)) == pytest.approx(best, abs=1e-12)


def test_hues_either_side_of_red_are_one_cluster():
    hue = np.array([0.97, 0.98, 0.99, 0.01, 0.02, 0.03, 0.60, 0.62, 0.64])
    inside = circular_two_means(hue)
    assert len(set(inside[:6])) == 1 and len(set(inside[6:])) == 1 and inside[0] != inside[-1]


def test_a_rotated_hue_circle_gives_the_same_partition():
    rng = np.random.default_rng(3)
    hue = np.concatenate([rng.normal(0.0, 0.03, 200), rng.normal(0.45, 0.05, 120)]) % 1.0
    labels = circular_two_means(hue)
    for shift in (0.25, 0.5, 0.8):
        rotated = circular_two_means((hue + shift) % 1.0)
        same = np.mean(rotated == labels)
        assert max(same, 1 - same) > 0.99  # label names may swap; the partition is kept


def test_one_hue_is_one_cluster():
    assert circular_two_means(np.full(50, 0.3)) is None


def test_grey_white_black_and_clipped_pixels_have_no_hue_label():
    pixels = np.array([[[128, 128, 128], [255, 255, 255], [0, 0, 0], [20, 5, 5],
                        [255, 40, 40], [224, 160, 130], [40, 70, 170], [210, 205, 200]]], np.uint8)
    saturation, value = rgb_saturation_value(pixels)
    np.testing.assert_allclose(value[0], pixels[0].max(axis=1) / 255)
    np.testing.assert_allclose(saturation[0, 4], (255 - 40) / 255)
    labels = circular_hue_labels(pixels, **CIRCULAR_CROP_PARAMS)
    # grey, white, black, very dark red, saturated but clipped at 255, near-white: no hue
    assert labels[0, [0, 1, 2, 3, 4, 7]].tolist() == [-1] * 6
    assert sorted(labels[0, [5, 6]].tolist()) == [0, 1]  # skin and blue are the two clusters


# ---------------------------------------------------------------------------------------------
# the crop box


def test_skin_straddling_red_crops_to_the_skin_with_the_circular_method():
    image, skin_box = _scene(0.97, 0.03)
    assert hue_crop_box(image, method="circular") == skin_box
    # the study's line puts hue 0.97 with the blue background, so the scans miss half the skin
    assert hue_crop_box(image) != skin_box


def test_a_grey_border_does_not_stop_the_circular_scans():
    image, skin_box = _scene(0.97, 0.03, grey_border=36)
    assert hue_crop_box(image, method="circular") == skin_box
    plain, _ = _scene(0.97, 0.03)
    assert hue_crop_box(image, method="circular") == hue_crop_box(plain, method="circular")


@pytest.mark.parametrize("skin", [(60, 140, 72, 168), (20, 180, 100, 200), (90, 120, 40, 90), (30, 110, 50, 130)])
@pytest.mark.parametrize("hues", [(0.05, 0.05), (0.04, 0.08)])
def test_both_methods_agree_when_no_hue_wraps(skin, hues):
    # off-centre skin is cropped only partly (scan limits, lines without a mix): the same way
    image, skin_box = _scene(*hues, skin=skin)
    box = hue_crop_box(image)
    assert hue_crop_box(image, method="circular") == box
    if skin == (60, 140, 72, 168):
        assert box == skin_box


def test_an_image_without_hue_is_not_cropped():
    image = np.full((40, 60, 3), 128, np.uint8)
    image[10:30, 20:40] = 250
    assert hue_crop_box(image, method="circular") == (0, 0, 60, 40)


def test_crop_settings_resolve_per_method_and_reject_what_does_not_apply():
    assert resolve_crop_params(None) == DEFAULT_CROP_PARAMS
    assert resolve_crop_params({"method": "circular"}) == {**DEFAULT_CROP_PARAMS, **CIRCULAR_CROP_PARAMS,
                                                           "method": "circular"}
    with pytest.raises(ValueError, match="unknown crop method 'oval'"):
        resolve_crop_params({"method": "oval"})
    with pytest.raises(ValueError, match=r"unknown crop_params \['min_value'\] for the study crop"):
        hue_crop_box(np.zeros((8, 8, 3), np.uint8), min_value=0.2)
    with pytest.raises(ValueError, match="2 arcs"):
        hue_crop_box(np.zeros((8, 8, 3), np.uint8), method="circular", n_clusters=3)


def test_many_files_get_circular_boxes(tmp_path):
    from PIL import Image

    image, skin_box = _scene(0.97, 0.03)
    Image.fromarray(image).save(tmp_path / "a.png")
    boxes, errors = compute_crop_boxes([tmp_path / "a.png"], params={"method": "circular"}, progress=False)
    assert errors.empty
    assert tuple(boxes.iloc[0][["crop_left", "crop_top", "crop_right", "crop_bottom"]]) == skin_box


# ---------------------------------------------------------------------------------------------
# recorded with the model, reproduced by every consumer


def test_the_method_travels_in_the_preprocessing_entry_and_model_input_uses_it():
    import json

    from skin_cnn.training.config import resolve_config

    config = resolve_config({"crop_method": "circular"})
    entry = json.loads(json.dumps(config.preprocessing().to_dict()))
    assert entry["crop_params"]["method"] == "circular"
    assert entry["crop_params"]["min_saturation"] == CIRCULAR_CROP_PARAMS["min_saturation"]
    preprocessing = Preprocessing.from_dict(entry)
    assert "circular hue crop" in preprocessing.describe()
    image, skin_box = _scene(0.97, 0.03)
    _, box = model_input(image, preprocessing)
    assert box == skin_box
    assert model_input(image, Preprocessing(image_size=entry["image_size"]))[1] != skin_box
    # an entry written before there was a choice is the study's method
    old = dict(entry, crop_params={k: v for k, v in entry["crop_params"].items()
                                   if k in DEFAULT_CROP_PARAMS and k != "method"})
    assert Preprocessing.from_dict(old).crop_params["method"] == "study"
    with pytest.raises(ValueError, match="crop_method='square'"):
        resolve_config({"crop_method": "square"})


def test_tensorflow_crop_and_savedmodel_export_refuse_the_circular_method(tmp_path):
    import keras

    from skin_cnn.data.crop_tf import hue_crop_box as tf_hue_crop_box
    from skin_cnn.inference.export import export_savedmodel

    with pytest.raises(ValueError, match="circular hue crop has no TensorFlow version"):
        tf_hue_crop_box(np.zeros((8, 8, 3), np.uint8), method="circular")
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(1)])
    preprocessing = Preprocessing(image_size=(8, 8), crop_params={"method": "circular"})
    with pytest.raises(ValueError, match="circular hue crop, which has no TensorFlow version"):
        export_savedmodel(model, preprocessing, tmp_path / "sm")
    assert not (tmp_path / "sm").exists()
