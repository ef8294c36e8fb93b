"""The single input path: Preprocessing, model_input, ImageStore/prepare_images, epoch order,
augmentation parameters and transforms, and the image and feature training streams.

Every expectation here is computed independently of the code under test: hand-derived values,
images built so the right answer is known (constant colours, image ``i`` filled with ``i``,
features encoding ``(view, image)``), properties and round trips.
"""
import json
import math
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from broken_files import gradient_rgb, text_as_jpg, truncated_jpeg, valid_png
from skin_cnn.data.augment import (
    CACHED_VIEW,
    EPOCH,
    NO_AUGMENTATION,
    AugmentConfig,
    apply_augmentation,
    augmentation_params,
)
from skin_cnn.data.pipeline import (
    ViewRows,
    epoch_order,
    epoch_views,
    feature_stream,
    image_stream,
    steps_per_epoch,
    targets,
    view_images,
)
from skin_cnn.data.preprocessing import (
    SKIPPED_COLUMNS,
    ImageStore,
    box_from_row,
    load_model_input,
    model_input,
    prepare_images,
)
from skin_cnn.data.reading import ImageReadError
from skin_cnn.core.specs import Preprocessing
from skin_cnn.core.tasks import TASK_NAMES

# Hand-written from the study's task definitions: disease -> task -> (mask, label).
# psoriasis_vs_eczema: psoriasis positive, eczema negative; acne_vs_rosacea: acne positive,
# rosacea negative; ctcl_vs_eczema: ctcl positive, eczema negative. Outside a task: mask 0, label 0.
EXPECTED_TARGETS = {
    "acne": {"acne_vs_rosacea": (1, 1), "psoriasis_vs_eczema": (0, 0), "ctcl_vs_eczema": (0, 0)},
    "rosacea": {"acne_vs_rosacea": (1, 0), "psoriasis_vs_eczema": (0, 0), "ctcl_vs_eczema": (0, 0)},
    "psoriasis": {"psoriasis_vs_eczema": (1, 1), "acne_vs_rosacea": (0, 0), "ctcl_vs_eczema": (0, 0)},
    "eczema": {"psoriasis_vs_eczema": (1, 0), "ctcl_vs_eczema": (1, 0), "acne_vs_rosacea": (0, 0)},
    "ctcl": {"ctcl_vs_eczema": (1, 1), "psoriasis_vs_eczema": (0, 0), "acne_vs_rosacea": (0, 0)},
}
TEN_DISEASES = ["acne", "rosacea", "psoriasis", "eczema", "ctcl", "eczema", "acne", "ctcl", "psoriasis", "rosacea"]
SKIN = (224, 172, 140)
BLUE = (40, 70, 170)


def _write_rows(path, array):
    """A raw row file as ImageStore reads it, written with plain NumPy."""
    array = np.ascontiguousarray(array)
    array.tofile(path)
    return ImageStore(path, array.shape[1:], array.dtype, len(array))


def _collect(dataset):
    """Every batch of a stream as NumPy: [(x, labels, masks), ...]."""
    return [(np.asarray(x), {t: np.asarray(v) for t, v in y.items()}, {t: np.asarray(v) for t, v in w.items()})
            for x, y, w in dataset]


def _check_targets(images, labels, masks, diseases):
    """labels/masks of a batch are the hand table's values for the diseases of ``images``."""
    for task in TASK_NAMES:
        assert labels[task].shape == (len(images), 1) and labels[task].dtype == np.float32
        assert masks[task].shape == (len(images),) and masks[task].dtype == np.float32
    for k, image in enumerate(images):
        for task, (mask, label) in EXPECTED_TARGETS[diseases[image]].items():
            assert masks[task][k] == mask, (diseases[image], task)
            assert labels[task][k, 0] == label, (diseases[image], task)


def _bordered_photo(height=160, width=200, border=32):
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = BLUE
    image[border:height - border, border:width - border] = SKIN
    return image


# ----------------------------------------------------------------------------------------------
# Preprocessing


def test_preprocessing_defaults_are_the_studys_settings():
    p = Preprocessing()
    assert p.image_size == (250, 250)
    assert p.crop is True and p.resize == "stretch" and p.antialias is True
    assert p.crop_params == {"method": "study", "downscale": 4, "n_clusters": 2, "ratio_bounds": (0.1, 0.3),
                             "max_scan_height": 1 / 2.3, "max_scan_width": 1 / 2.1}
    assert Preprocessing(image_size=64).image_size == (64, 64)
    assert Preprocessing(image_size=[32, 48]).image_size == (32, 48)


def test_preprocessing_round_trips_through_json():
    p = Preprocessing(image_size=(32, 48), crop=False, crop_params={"downscale": 2, "ratio_bounds": [0.05, 0.2]},
                      resize="pad", antialias=False)
    entry = json.loads(json.dumps(p.to_dict()))
    assert entry == {"image_size": [32, 48], "crop": False, "resize": "pad", "antialias": False,
                     "crop_params": {"method": "study", "downscale": 2, "n_clusters": 2,
                                     "ratio_bounds": [0.05, 0.2], "max_scan_height": 1 / 2.3,
                                     "max_scan_width": 1 / 2.1}}
    again = Preprocessing.from_dict(entry)
    assert again == p
    assert again.image_size == (32, 48) and again.crop_params["ratio_bounds"] == (0.05, 0.2)
    assert Preprocessing.from_dict(json.loads(json.dumps(Preprocessing().to_dict()))) == Preprocessing()


def test_entry_written_before_antialias_existed_still_loads():
    old = {"image_size": [250, 250], "crop": True, "crop_params": {}, "resize": "stretch"}
    p = Preprocessing.from_dict(old)
    assert p.antialias is True and p.image_size == (250, 250) and p.crop is True
    assert Preprocessing.from_dict({"image_size": [40, 40]}) == Preprocessing(image_size=(40, 40))


@pytest.mark.parametrize("entry", [
    {"image_size": [32, 32], "colour": "red"},          # unknown key
    {"image_size": [0, 32]},                             # non-positive size
    {"image_size": [32]},                                # one number
    {"image_size": "big"},                               # not numbers
    {"image_size": [32, 32], "resize": "squash"},        # unknown resize mode
    {"image_size": [32, 32], "crop_params": {"zoom": 2}},  # unknown crop parameter
    {"image_size": [32, 32], "crop_params": {"method": "oval"}},  # unknown crop method
    {"image_size": [32, 32], "crop_params": {"min_saturation": 0.2}},  # circular-only, study's method
    {"crop": True},                                      # no image size
    ["image_size", 32],                                  # not a mapping
])
def test_bad_preprocessing_entries_are_one_value_error_naming_the_source(entry):
    with pytest.raises(ValueError, match="runs/r7/config.json"):
        Preprocessing.from_dict(entry, source="runs/r7/config.json")


# ----------------------------------------------------------------------------------------------
# box_from_row


@pytest.mark.parametrize("row", [
    {"crop_left": float("nan"), "crop_top": 1, "crop_right": 5, "crop_bottom": 6},
    {"crop_left": "", "crop_top": "", "crop_right": "", "crop_bottom": ""},
    {"crop_left": 1, "crop_top": 2, "crop_right": 5, "crop_bottom": "  "},
    {"image_path": "a.jpg"},  # no box columns at all
])
def test_rows_without_a_complete_box_give_none(row):
    assert box_from_row(row) is None


def test_boxes_are_read_from_numbers_strings_series_and_tuples():
    text = {"crop_left": "12", "crop_top": "3", "crop_right": "40", "crop_bottom": "30"}
    assert box_from_row(text) == (12, 3, 40, 30)
    assert box_from_row({"crop_left": 12.0, "crop_top": 0, "crop_right": 40.0, "crop_bottom": 30}) == (12, 0, 40, 30)
    frame = pd.DataFrame({"image_path": ["a.jpg", "b.jpg"], "crop_left": [2, np.nan], "crop_top": [4, np.nan],
                          "crop_right": [9, np.nan], "crop_bottom": [8, np.nan]})
    assert box_from_row(frame.iloc[0]) == (2, 4, 9, 8)
    assert box_from_row(frame.iloc[1]) is None
    assert [box_from_row(r) for r in frame.itertuples()] == [(2, 4, 9, 8), None]
    assert [box_from_row(r) for r in frame.to_dict("records")] == [(2, 4, 9, 8), None]


@pytest.mark.parametrize("values", [
    (10, 0, 10, 5),    # right == left
    (10, 0, 4, 5),     # right < left
    (0, 7, 4, 7),      # bottom == top
    (-1, 0, 4, 5),     # negative left
    (0, -3, 4, 5),     # negative top
    ("a", 0, 4, 5),    # not a number
    ("1x", "2", "3", "4"),
])
def test_invalid_boxes_are_value_errors(values):
    row = dict(zip(("crop_left", "crop_top", "crop_right", "crop_bottom"), values))
    with pytest.raises(ValueError, match="box"):
        box_from_row(row)


# ----------------------------------------------------------------------------------------------
# model_input


def test_model_input_is_uint8_at_the_model_size():
    pixels, box = model_input(gradient_rgb(37, 23), Preprocessing(image_size=(12, 20), crop=False))
    assert pixels.dtype == np.uint8 and pixels.shape == (12, 20, 3)
    assert box == (0, 0, 23, 37)


def test_hue_crop_cuts_the_saturated_border_away():
    photo = _bordered_photo(160, 200, border=32)  # skin occupies columns 32..167, rows 32..127
    pixels, box = model_input(photo, Preprocessing(image_size=(16, 16)))
    assert all(abs(got - want) <= 4 for got, want in zip(box, (32, 32, 168, 128))), box
    assert np.abs(pixels.astype(int) - SKIN).max() <= 2
    # the same photo uncropped still shows the blue border
    whole, whole_box = model_input(photo, Preprocessing(image_size=(16, 16), crop=False))
    assert whole_box == (0, 0, 200, 160)
    assert np.abs(whole[0, 0].astype(int) - BLUE).max() <= 2


def test_a_given_box_is_used_as_is_and_ignored_without_cropping():
    photo = _bordered_photo(160, 200, border=32)
    pixels, box = model_input(photo, Preprocessing(image_size=(8, 8)), box=(0, 0, 32, 160))  # left border strip
    assert box == (0, 0, 32, 160)
    assert (pixels == BLUE).all()
    pixels, box = model_input(photo, Preprocessing(image_size=(8, 8)), box=(40, 40, 120, 100))  # inside the skin
    assert box == (40, 40, 120, 100) and (pixels == SKIN).all()
    _, box = model_input(photo, Preprocessing(image_size=(8, 8), crop=False), box=(0, 0, 32, 160))
    assert box == (0, 0, 200, 160)


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("resize", ["stretch", "pad"])
@pytest.mark.parametrize("size", [(8, 8), (40, 24)])
def test_a_constant_photo_resizes_to_exactly_that_constant(size, resize, antialias):
    photo = np.empty((23, 37, 3), dtype=np.uint8)
    photo[:] = (13, 200, 77)
    pixels, _ = model_input(photo, Preprocessing(image_size=size, crop=False, resize=resize, antialias=antialias))
    assert pixels.shape == size + (3,)
    if resize == "stretch":
        assert (pixels == (13, 200, 77)).all()
    else:  # padding adds black bars, and every other pixel is the constant
        flat = pixels.reshape(-1, 3)
        content = flat[flat.any(axis=1)]
        assert len(content) >= flat.shape[0] // 3 and (content == (13, 200, 77)).all()


def test_pad_keeps_the_aspect_ratio_with_black_bars_of_the_computed_size():
    wide = np.full((20, 40, 3), 200, dtype=np.uint8)
    # scale = min(32/20, 32/40) = 0.8 -> 16 x 32 content, (32 - 16) / 2 = 8 black rows each side
    pixels, _ = model_input(wide, Preprocessing(image_size=(32, 32), crop=False, resize="pad"))
    assert pixels.shape == (32, 32, 3)
    assert (pixels[:8] == 0).all() and (pixels[24:] == 0).all()
    assert (pixels[8:24] == 200).all()
    tall = np.full((40, 20, 3), 90, dtype=np.uint8)
    pixels, _ = model_input(tall, Preprocessing(image_size=(32, 32), crop=False, resize="pad"))
    assert (pixels[:, :8] == 0).all() and (pixels[:, 24:] == 0).all()
    assert (pixels[:, 8:24] == 90).all()
    stretched, _ = model_input(wide, Preprocessing(image_size=(32, 32), crop=False))
    assert (stretched == 200).all()


@pytest.mark.parametrize("bad", [np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8),
                                 np.zeros((8, 8, 4), np.uint8)])
def test_model_input_refuses_anything_but_uint8_rgb(bad):
    with pytest.raises(ValueError, match="uint8 RGB"):
        model_input(bad, Preprocessing(image_size=(4, 4), crop=False))


def test_exif_rotated_photos_are_loaded_upright(tmp_path):
    array = np.empty((20, 40, 3), dtype=np.uint8)
    array[:, :20] = (230, 20, 20)   # left half red
    array[:, 20:] = (20, 20, 230)   # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the left edge becomes the top
    path = tmp_path / "phone.jpg"
    Image.fromarray(array).save(path, exif=exif.tobytes(), quality=95)
    pixels, box = load_model_input(path, Preprocessing(image_size=(40, 20), crop=False))
    assert box == (0, 0, 20, 40)  # upright: 20 wide, 40 high
    assert np.abs(pixels[:16].astype(int) - (230, 20, 20)).max() <= 30
    assert np.abs(pixels[24:].astype(int) - (20, 20, 230)).max() <= 30


def test_unreadable_file_is_an_image_read_error_naming_it(tmp_path):
    path = text_as_jpg(tmp_path / "page.jpg")
    with pytest.raises(ImageReadError, match="page.jpg"):
        load_model_input(path, Preprocessing(image_size=(8, 8)))
    with pytest.raises(ImageReadError, match="missing.jpg"):
        load_model_input(tmp_path / "missing.jpg", Preprocessing(image_size=(8, 8)))


# ----------------------------------------------------------------------------------------------
# ImageStore and prepare_images


def test_store_rows_read_back_in_any_order_with_repeats(tmp_path):
    rows = np.random.default_rng(0).integers(0, 256, size=(7, 3, 5, 3), dtype=np.uint8)
    store = _write_rows(tmp_path / "rows.u8", rows)
    assert len(store) == 7 and store.shape == (7, 3, 5, 3) and store.ndim == 4 and store.nbytes == rows.nbytes
    wanted = [6, 0, 3, 3, 6, 1]
    got = store.read(wanted)
    assert got.dtype == np.uint8 and got.shape == (6, 3, 5, 3)
    np.testing.assert_array_equal(got, rows[wanted])
    np.testing.assert_array_equal(store[1:6:2], rows[1:6:2])
    with pytest.raises(IndexError):
        store.read([7])
    with pytest.raises(IndexError):
        store.read([-1])
    store.close()


def test_reading_no_rows_gives_an_empty_array(tmp_path):
    store = _write_rows(tmp_path / "rows.u8", np.ones((4, 3, 5, 3), dtype=np.uint8))
    assert store.read([]).shape == (0, 3, 5, 3)
    assert store[2:2].shape == (0, 3, 5, 3)


def test_store_over_npy_with_two_leading_axes_numbers_rows_view_major(tmp_path):
    array = np.random.default_rng(1).normal(size=(3, 4, 2, 5)).astype("float32")
    np.save(tmp_path / "features.npy", array)
    store = ImageStore.from_npy(tmp_path / "features.npy", leading_axes=2)
    assert store.shape == (12, 2, 5) and store.dtype == np.float32
    for v, i in [(0, 0), (2, 3), (1, 2), (2, 0)]:
        np.testing.assert_array_equal(store.read([v * 4 + i])[0], array[v, i])
    flat = ImageStore.from_npy(tmp_path / "features.npy")
    assert flat.shape == (3, 4, 2, 5)
    np.testing.assert_array_equal(flat.read([2, 0]), array[[2, 0]])


def _colour(i):
    return (20 * i + 5, 250 - 20 * i, 7 * i)


def test_prepare_images_lists_unreadable_files_and_keeps_every_other_row(tmp_path):
    def photo(i):
        array = np.empty((12, 16, 3), dtype=np.uint8)
        array[:] = _colour(i)
        return str(valid_png(tmp_path / f"p{i}.png", array))

    page = str(text_as_jpg(tmp_path / "page.jpg"))
    cut = str(truncated_jpeg(tmp_path / "cut.jpg"))
    missing = str(tmp_path / "missing.jpg")
    frame = pd.DataFrame({
        "image_path": [photo(0), page, photo(1), cut, photo(2), missing, photo(3), photo(4)],
        "split": ["train", "train", "train", "train", "val", "val", "train", "test"],
        "diagnosis": ["acne"] * 8,
    }, index=range(100, 108))
    preprocessing = Preprocessing(image_size=(8, 8), crop=False)
    prepared, skipped = prepare_images(frame, preprocessing, tmp_path / "prep", progress=False)

    assert set(prepared) == {"train", "val"}
    assert not (tmp_path / "prep" / "test.u8").exists()
    assert all(set(s) == set(SKIPPED_COLUMNS) for s in skipped)
    by_path = {s["image_path"]: s for s in skipped}
    assert set(by_path) == {page, cut, missing}
    assert {p: s["split"] for p, s in by_path.items()} == {page: "train", cut: "train", missing: "val"}
    assert all(isinstance(s["reason"], str) and s["reason"].strip() for s in skipped)

    train, val = prepared["train"], prepared["val"]
    assert train.positions.tolist() == [100, 102, 106]
    assert val.positions.tolist() == [104]
    assert train.store.shape == (3, 8, 8, 3) and train.store.dtype == np.uint8
    got = train.store.read([2, 0, 1, 0])
    for k, colour in enumerate([_colour(3), _colour(0), _colour(1), _colour(0)]):
        assert (got[k] == colour).all(), k
    assert (val.store.read([0])[0] == _colour(2)).all()


def test_prepare_images_with_rows_prepares_only_the_requested_positions(tmp_path):
    paths = []
    for i in range(4):
        array = np.empty((10, 10, 3), dtype=np.uint8)
        array[:] = _colour(i)
        paths.append(str(valid_png(tmp_path / f"p{i}.png", array)))
    paths[3] = str(text_as_jpg(tmp_path / "never_read.jpg"))  # broken, but not requested
    paths.append(str(text_as_jpg(tmp_path / "requested.jpg")))  # broken and requested
    frame = pd.DataFrame({"image_path": paths, "split": ["train"] * 5, "diagnosis": ["ctcl"] * 5})
    prepared, skipped = prepare_images(frame, Preprocessing(image_size=(4, 4), crop=False), tmp_path / "prep",
                                       rows={"train": {1, 4}}, progress=False)
    assert [s["image_path"] for s in skipped] == [paths[4]]
    train = prepared["train"]
    assert train.positions.tolist() == [0, 1, 2, 3]  # the requested broken row is dropped
    rows = train.store.read([0, 1, 2, 3])
    assert (rows[1] == _colour(1)).all()
    assert not rows[[0, 2, 3]].any()  # never decoded: left zero


# ----------------------------------------------------------------------------------------------
# Epoch order and steps


def test_plain_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    diseases = ["acne"] * 30
    order = epoch_order(4, 2, diseases)
    assert sorted(order.tolist()) == list(range(30))
    np.testing.assert_array_equal(order, epoch_order(4, 2, diseases))
    assert not np.array_equal(order, epoch_order(4, 3, diseases))
    assert not np.array_equal(order, epoch_order(5, 2, diseases))
    assert len(epoch_order(0, 0, [])) == 0


BALANCE_COUNTS = {"acne": 12, "rosacea": 2, "psoriasis": 8, "eczema": 3, "ctcl": 1}
BALANCE_DISEASES = np.array([d for d, k in BALANCE_COUNTS.items() for _ in range(k)])


@pytest.mark.parametrize("epoch", range(6))
def test_balanced_epochs_give_every_disease_an_equal_share(epoch):
    order = epoch_order(11, epoch, BALANCE_DISEASES, balanced=True)
    assert len(order) == 26  # as many images as a plain epoch
    shares = Counter(BALANCE_DISEASES[order].tolist())
    assert set(shares) == set(BALANCE_COUNTS)
    assert set(shares.values()) <= {5, 6} and sum(shares.values()) == 26  # 26 = 5 * 5 + 1
    assert sorted(shares.values()) == [5, 5, 5, 5, 6]
    shown = Counter(order.tolist())
    for disease, count in BALANCE_COUNTS.items():
        share = shares[disease]
        members = np.flatnonzero(BALANCE_DISEASES == disease)
        # shown in full rounds: every image floor(share / count) or ceil(share / count) times
        times = [shown.get(int(i), 0) for i in members]
        assert sum(times) == share
        assert set(times) <= {share // count, -(-share // count)}, (disease, times)
    assert shown[25] == shares["ctcl"]                      # the single ctcl image, 5 or 6 times
    assert max(shown[i] for i in range(12)) == 1            # 12 acne images, share <= 12: no repeat
    np.testing.assert_array_equal(order, epoch_order(11, epoch, BALANCE_DISEASES, balanced=True))


def test_balanced_epochs_have_as_many_steps_as_plain_ones():
    assert steps_per_epoch(26, 4) == 7
    balanced = epoch_order(0, 1, BALANCE_DISEASES, balanced=True)
    assert steps_per_epoch(len(balanced), 4) == steps_per_epoch(len(BALANCE_DISEASES), 4) == 7
    assert steps_per_epoch(8, 4) == 2 and steps_per_epoch(9, 4) == 3 and steps_per_epoch(0, 4) == 1


def test_epoch_views_depend_on_seed_and_epoch_only():
    views = epoch_views(0, 3, 600, 3)
    assert views.shape == (600,) and set(views.tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(views, epoch_views(0, 3, 600, 3))
    assert not np.array_equal(views, epoch_views(0, 4, 600, 3))
    assert not epoch_views(0, 3, 10, 1).any()
    assert all(150 < c < 250 for c in Counter(views.tolist()).values())


# ----------------------------------------------------------------------------------------------
# augmentation_params


FULL = AugmentConfig(zoom=0.2, rotation=0.1, translation=0.15, horizontal_flip=True, vertical_flip=True)


def test_augmentation_params_are_a_function_of_seed_key_and_index_only():
    alone = augmentation_params(5, (EPOCH, 2), [7], FULL)
    assert alone.shape == (1, 6) and alone.dtype == np.float32
    batch = augmentation_params(5, (EPOCH, 2), [3, 7, 1, 7], FULL)
    np.testing.assert_array_equal(batch[1], alone[0])
    np.testing.assert_array_equal(batch[3], alone[0])
    reordered = augmentation_params(5, (EPOCH, 2), [1, 7, 3], FULL)
    np.testing.assert_array_equal(reordered[[2, 1, 0]], batch[:3])
    assert not np.array_equal(batch[0], batch[1])  # another index, other numbers
    for other in (augmentation_params(5, (EPOCH, 3), [7], FULL), augmentation_params(5, (CACHED_VIEW, 2), [7], FULL),
                  augmentation_params(6, (EPOCH, 2), [7], FULL)):
        assert not np.array_equal(other[0, :4], alone[0, :4])


def test_switched_off_augmentation_gives_identity_parameters():
    for config in (NO_AUGMENTATION, AugmentConfig(zoom=0, rotation=0, translation=0,
                                                  horizontal_flip=False, vertical_flip=False)):
        assert not config.enabled
        params = augmentation_params(3, (EPOCH, 1), np.arange(20), config)
        np.testing.assert_array_equal(params, np.tile([1, 0, 0, 0, 0, 0], (20, 1)).astype("float32"))


def test_augmentation_params_stay_within_the_configured_strengths():
    config = AugmentConfig(zoom=0.2, rotation=0.1, translation=0.15, horizontal_flip=False, vertical_flip=True)
    p = augmentation_params(9, (EPOCH, 4), np.arange(500), config)
    scale, angle, sx, sy, fx, fy = p.T
    eps = 1e-6
    assert (scale >= 0.8 - eps).all() and (scale <= 1.2 + eps).all()
    assert (scale < 0.95).any() and (scale > 1.05).any()  # zoom both in and out
    assert (np.abs(angle) <= 2 * math.pi * 0.1 + eps).all() and (angle < -0.3).any() and (angle > 0.3).any()
    assert (np.abs(sx) <= 0.15 + eps).all() and (np.abs(sy) <= 0.15 + eps).all()
    assert (np.abs(sx) > 0.1).any() and (np.abs(sy) > 0.1).any()
    assert (fx == 0).all()  # horizontal flip off: never flipped
    assert set(fy.tolist()) == {0.0, 1.0} and 150 < fy.sum() < 350
    zoom_only = augmentation_params(9, (EPOCH, 4), np.arange(50), AugmentConfig(0.3, 0, 0, False, False))
    assert (zoom_only[:, 1:] == 0).all() and np.ptp(zoom_only[:, 0]) > 0.2


# ----------------------------------------------------------------------------------------------
# apply_augmentation


def _random_batch(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=shape).astype("float32")


def _params(n, scale=1.0, angle=0.0, shift_x=0.0, shift_y=0.0, flip_x=0.0, flip_y=0.0):
    return np.tile(np.array([scale, angle, shift_x, shift_y, flip_x, flip_y], dtype="float32"), (n, 1))


def test_identity_parameters_return_the_batch_bit_for_bit():
    batch = _random_batch((3, 7, 9, 3))
    for fill in ("reflect", "wrap", "constant", "nearest"):
        np.testing.assert_array_equal(np.asarray(apply_augmentation(batch, _params(3), fill)), batch)


def test_pure_flips_are_exact_mirror_images():
    batch = _random_batch((2, 7, 9, 3), seed=1)
    horizontal = np.asarray(apply_augmentation(batch, _params(2, flip_x=1)))
    np.testing.assert_array_equal(horizontal, batch[:, :, ::-1])
    vertical = np.asarray(apply_augmentation(batch, _params(2, flip_y=1)))
    np.testing.assert_array_equal(vertical, batch[:, ::-1])
    both = np.asarray(apply_augmentation(batch, _params(2, flip_x=1, flip_y=1)))
    np.testing.assert_array_equal(both, batch[:, ::-1, ::-1])


def test_quarter_turn_follows_the_documented_sampling_formula():
    # Output p = (x, y) samples the input at c + R(pi/2)(p - c) = (cx - (y - cy), cy + (x - cx));
    # on an N x N image that is in[y_in = x, x_in = N - 1 - y], i.e. out[y, x] = in[x, N-1-y],
    # which is np.rot90 (counter-clockwise) over the (height, width) axes.
    batch = _random_batch((2, 8, 8, 3), seed=2)
    out = np.asarray(apply_augmentation(batch, _params(2, angle=math.pi / 2)))
    np.testing.assert_allclose(out, np.rot90(batch, k=1, axes=(1, 2)), atol=1e-2)
    assert np.abs(out - batch).max() > 50  # it did turn


def test_a_shift_of_k_pixels_moves_a_dot_by_k_pixels():
    image = np.zeros((1, 12, 12, 3), dtype="float32")
    image[0, 5, 3] = 255.0
    # the input is sampled at p - shift: the content moves by +shift (right, down)
    right = np.asarray(apply_augmentation(image, _params(1, shift_x=4 / 12), "constant"))[0]
    expected = np.zeros((12, 12, 3), dtype="float32")
    expected[5, 7] = 255.0
    np.testing.assert_allclose(right, expected, atol=1e-2)
    down = np.asarray(apply_augmentation(image, _params(1, shift_y=2 / 12), "constant"))[0]
    expected = np.zeros((12, 12, 3), dtype="float32")
    expected[7, 3] = 255.0
    np.testing.assert_allclose(down, expected, atol=1e-2)


def test_scale_above_one_shows_more_of_the_photo():
    # scale 2 samples the input at c + 2 (p - c): a dot 4 px right of the centre appears 2 px right
    image = np.zeros((1, 9, 9, 3), dtype="float32")
    image[0, 4, 8] = 255.0
    out = np.asarray(apply_augmentation(image, _params(1, scale=2.0), "constant"))[0]
    expected = np.zeros((9, 9, 3), dtype="float32")
    expected[4, 6] = 255.0
    np.testing.assert_allclose(out, expected, atol=1e-2)


# ----------------------------------------------------------------------------------------------
# targets


def test_masks_give_each_disease_exactly_its_tasks():
    diseases = ["acne", "rosacea", "psoriasis", "eczema", "ctcl", "eczema"]
    labels, masks = targets(diseases)
    assert set(labels) == set(masks) == set(TASK_NAMES)
    for task in TASK_NAMES:
        assert labels[task].shape == (6,) and labels[task].dtype == np.float32
        assert masks[task].shape == (6,) and masks[task].dtype == np.float32
    for i, disease in enumerate(diseases):
        for task, (mask, label) in EXPECTED_TARGETS[disease].items():
            assert masks[task][i] == mask and labels[task][i] == label, (disease, task)
    # eczema in two tasks, negative in both; acne only in acne_vs_rosacea, positive
    assert [masks[t][3] for t in ("psoriasis_vs_eczema", "ctcl_vs_eczema", "acne_vs_rosacea")] == [1, 1, 0]
    assert [labels[t][3] for t in ("psoriasis_vs_eczema", "ctcl_vs_eczema")] == [0, 0]
    assert masks["acne_vs_rosacea"][0] == 1 and labels["acne_vs_rosacea"][0] == 1
    assert masks["psoriasis_vs_eczema"][0] == 0 and masks["ctcl_vs_eczema"][0] == 0


# ----------------------------------------------------------------------------------------------
# image_stream


@pytest.fixture
def numbered_store(tmp_path):
    """Ten 4x4 images, image i filled with the value i."""
    images = np.broadcast_to(np.arange(10, dtype=np.uint8)[:, None, None, None], (10, 4, 4, 3))
    return _write_rows(tmp_path / "numbered.u8", images)


def test_image_stream_shows_each_epochs_order_in_batches_with_a_partial_last_one(numbered_store):
    batches = _collect(image_stream(numbered_store, TEN_DISEASES, seed=3, epochs=range(1, 4), batch_size=4,
                                    augment=NO_AUGMENTATION))
    assert [len(x) for x, _, _ in batches] == [4, 4, 2] * 3  # 10 = 4 + 4 + 2, every epoch
    shown = []
    for x, labels, masks in batches:
        assert x.dtype == np.float32 and x.shape[1:] == (4, 4, 3)
        ids = x[:, 0, 0, 0].astype(int)
        assert (x == ids[:, None, None, None]).all()  # untouched: image i is still all i
        _check_targets(ids, labels, masks, TEN_DISEASES)
        shown.append(ids)
    for k, epoch in enumerate(range(1, 4)):
        order = np.concatenate(shown[3 * k:3 * k + 3])
        assert sorted(order.tolist()) == list(range(10))
        np.testing.assert_array_equal(order, epoch_order(3, epoch, TEN_DISEASES))
    assert len({tuple(np.concatenate(shown[3 * k:3 * k + 3])) for k in range(3)}) == 3


def test_balanced_image_stream_gives_each_disease_its_share(numbered_store):
    diseases = ["acne"] * 7 + ["rosacea"] * 3
    batches = _collect(image_stream(numbered_store, diseases, seed=2, epochs=[0, 5], batch_size=4,
                                    augment=NO_AUGMENTATION, balanced=True))
    assert [len(x) for x, _, _ in batches] == [4, 4, 2] * 2
    for k, epoch in enumerate([0, 5]):
        ids = np.concatenate([x[:, 0, 0, 0] for x, _, _ in batches[3 * k:3 * k + 3]]).astype(int)
        assert Counter(diseases[i] for i in ids.tolist()) == {"acne": 5, "rosacea": 5}
        np.testing.assert_array_equal(ids, epoch_order(2, epoch, diseases, balanced=True))
    for x, labels, masks in batches:
        _check_targets(x[:, 0, 0, 0].astype(int), labels, masks, diseases)


def test_shards_split_every_batch_into_disjoint_parts(numbered_store):
    def ids(shard):
        return [x[:, 0, 0, 0].astype(int) for x, _, _ in _collect(image_stream(
            numbered_store, TEN_DISEASES, seed=1, epochs=range(2), batch_size=4, augment=NO_AUGMENTATION,
            shard=shard))]

    whole, first, second = ids(None), ids((0, 2)), ids((1, 2))
    assert len(whole) == len(first) == len(second) == 6
    for w, a, b in zip(whole, first, second):
        assert not set(a.tolist()) & set(b.tolist())
        assert sorted(a.tolist() + b.tolist()) == sorted(w.tolist())
        assert abs(len(a) - len(b)) <= 1


def test_a_shard_with_no_image_in_the_last_batch_gets_an_empty_batch(tmp_path):
    images = np.broadcast_to(np.arange(9, dtype=np.uint8)[:, None, None, None], (9, 4, 4, 3))
    store = _write_rows(tmp_path / "nine.u8", images)

    def ids(shard):
        return [x[:, 0, 0, 0].astype(int).tolist() for x, _, _ in _collect(image_stream(
            store, ["acne"] * 9, seed=0, epochs=[0], batch_size=4, augment=NO_AUGMENTATION, shard=shard))]

    whole, first, second = ids(None), ids((0, 2)), ids((1, 2))
    assert [len(b) for b in whole] == [4, 4, 1]
    assert [len(b) for b in first] == [2, 2, 1] and [len(b) for b in second] == [2, 2, 0]
    for w, a, b in zip(whole, first, second):
        assert sorted(a + b) == sorted(w)


def test_augmented_stream_is_reproducible_from_its_seed(tmp_path):
    images = np.stack([gradient_rgb(8, 8, seed=i) for i in range(6)])
    store = _write_rows(tmp_path / "gradients.u8", images)
    diseases = ["acne", "rosacea", "psoriasis", "eczema", "ctcl", "acne"]

    def run(seed):
        return _collect(image_stream(store, diseases, seed=seed, epochs=[1, 2], batch_size=4, augment=FULL))

    first, again, other = run(7), run(7), run(8)
    assert len(first) == 4
    for (a, _, _), (b, _, _) in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for (a, _, _), (b, _, _) in zip(first, other))
    stacked = np.concatenate([x for x, _, _ in first])
    assert stacked.min() >= 0 and stacked.max() <= 255
    # the augmentation did change the pictures: no output equals any stored image
    assert all(min(np.abs(out - image.astype("float32")).max() for image in images) > 1 for out in stacked)


# ----------------------------------------------------------------------------------------------
# feature_stream


N_VIEWS, N_IMAGES = 3, 10


def _encoded_features():
    """(views, n, 2) features: channel 0 = 100 * view + image, channel 1 = the same + 0.5."""
    value = np.arange(N_VIEWS)[:, None] * 100 + np.arange(N_IMAGES)[None, :]
    return np.stack([value, value + 0.5], axis=-1).astype("float32")


@pytest.mark.parametrize("path", ["in_memory", "store", "array_over_the_limit", "rows_of_a_larger_array"])
@pytest.mark.parametrize("balanced", [False, True])
def test_feature_batches_are_the_stored_views_drawn_for_each_epoch(tmp_path, balanced, path):
    diseases = ["acne"] * 7 + ["rosacea"] * 3 if balanced else TEN_DISEASES
    features = _encoded_features()
    if path == "store":
        np.save(tmp_path / "features.npy", features)
        source, limit = ImageStore.from_npy(tmp_path / "features.npy", leading_axes=2), 0
        assert len(source) == N_VIEWS * N_IMAGES
    elif path == "array_over_the_limit":
        source, limit = features, 0
    elif path == "rows_of_a_larger_array":  # the run's images interleaved with others' (-1)
        larger = np.full((N_VIEWS, 2 * N_IMAGES, 2), -1, dtype="float32")
        larger[:, 1::2] = features
        source, limit = ViewRows(larger, np.arange(1, 2 * N_IMAGES, 2)), 1 << 30
        assert len(source) == N_VIEWS * N_IMAGES and source.nbytes == features.nbytes
    else:
        source, limit = features, 1 << 30
    seed, epochs = 5, range(1, 4)
    batches = _collect(feature_stream(source, diseases, seed=seed, epochs=epochs, batch_size=4, balanced=balanced,
                                      in_memory_limit=limit))
    assert [len(x) for x, _, _ in batches] == [4, 4, 2] * 3  # partial last batch in every epoch
    drawn_views = set()
    for k, epoch in enumerate(epochs):
        got = np.concatenate([x for x, _, _ in batches[3 * k:3 * k + 3]])
        assert got.shape == (10, 2) and got.dtype == np.float32
        np.testing.assert_array_equal(got[:, 1], got[:, 0] + 0.5)  # one stored row, not a mix
        view, image = got[:, 0].astype(int) // 100, got[:, 0].astype(int) % 100
        order = epoch_order(seed, epoch, diseases, balanced)
        np.testing.assert_array_equal(image, order)
        np.testing.assert_array_equal(view, epoch_views(seed, epoch, N_IMAGES, N_VIEWS)[order])
        drawn_views |= set(view.tolist())
        if balanced:
            assert Counter(diseases[i] for i in image.tolist()) == {"acne": 5, "rosacea": 5}
        else:
            assert sorted(image.tolist()) == list(range(10))
    assert drawn_views == {0, 1, 2}
    for x, labels, masks in batches:
        _check_targets(x[:, 0].astype(int) % 100, labels, masks, diseases)


def test_view_rows_number_rows_as_a_stored_views_file_does(tmp_path):
    features = _encoded_features()
    np.save(tmp_path / "features.npy", features)
    stored = ImageStore.from_npy(tmp_path / "features.npy", leading_axes=2)
    rows = ViewRows(features)
    indices = [29, 0, 10, 10, 15]
    np.testing.assert_array_equal(rows.read(indices), stored.read(indices))
    np.testing.assert_array_equal(rows.read(indices)[:, 0], [209, 0, 100, 100, 105])  # row v * n + i
    assert rows.read([]).shape == (0, 2)
    with pytest.raises(IndexError, match="outside 0..29"):
        rows.read([30])


# ----------------------------------------------------------------------------------------------
# view_images


def test_view_zero_is_the_stored_image_and_flip_views_are_flips_of_it(tmp_path):
    images = np.stack([gradient_rgb(6, 6, seed=i) for i in range(3)])
    store = _write_rows(tmp_path / "views.u8", images)
    stored = images.astype("float32")
    clean = view_images(store, [2, 0, 2], 0, seed=1, augment=FULL)
    assert clean.dtype == np.float32
    np.testing.assert_array_equal(clean, stored[[2, 0, 2]])
    np.testing.assert_array_equal(view_images(store, [1], 3, seed=1, augment=NO_AUGMENTATION), stored[[1]])

    flips_only = AugmentConfig(zoom=0, rotation=0, translation=0, horizontal_flip=True, vertical_flip=True)
    kinds = set()
    for view in range(1, 9):
        out = view_images(store, [0, 1, 2], view, seed=1, augment=flips_only)
        for k in range(3):
            candidates = {"none": stored[k], "h": stored[k][:, ::-1], "v": stored[k][::-1],
                          "hv": stored[k][::-1, ::-1]}
            match = [name for name, c in candidates.items() if np.array_equal(out[k], c)]
            assert match, (view, k)
            kinds.add(match[0])
    assert len(kinds) >= 3  # the flips really are drawn


def test_preprocessing_settings_import_without_tensorflow():
    """Commands that only read a run's settings (split, crop, evaluate) must not load TensorFlow."""
    code = ("import sys, skin_cnn.data.preprocessing, skin_cnn.training.config, skin_cnn.training.run_folder; "
            "print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.stdout.strip() == "False", result.stderr
