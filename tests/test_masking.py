"""Border and box masks: which pixels they paint, and that training, prediction and export paint the same."""
import json

import numpy as np
import pandas as pd
import pytest

from skin_cnn.core.specs import DERMNET_WATERMARK_BOX, MASK_FILL, Preprocessing
from skin_cnn.data.masking import mask_photo, mask_photo_tf


def _painted(image):
    return (image == np.array(MASK_FILL, np.uint8)).all(axis=-1)


def _random_photo(height, width, seed=0):
    # values 200..255 never equal the fill colour, so a painted pixel is recognisable
    return np.random.default_rng(seed).integers(200, 256, (height, width, 3), dtype=np.uint8)


def test_a_ten_percent_border_of_a_10_by_20_photo_paints_one_row_and_two_columns_per_side():
    painted = _painted(mask_photo(_random_photo(10, 20), Preprocessing(image_size=8, mask_border=0.1)))
    expected = np.zeros((10, 20), bool)
    expected[[0, 9], :] = True
    expected[:, [0, 1, 18, 19]] = True
    np.testing.assert_array_equal(painted, expected)


def test_a_box_paints_the_pixels_whose_centres_lie_inside_it():
    # box x 0.25-0.75 of 8 columns: centres 2.5/8 .. 5.5/8 -> columns 2..5; y 0.5-1 of 6 rows -> rows 3..5
    painted = _painted(mask_photo(_random_photo(6, 8), Preprocessing(image_size=8, mask_boxes=((0.25, 0.5, 0.75, 1),))))
    expected = np.zeros((6, 8), bool)
    expected[3:, 2:6] = True
    np.testing.assert_array_equal(painted, expected)


def test_no_mask_leaves_the_photo_untouched():
    photo = _random_photo(7, 9)
    assert mask_photo(photo, Preprocessing(image_size=8)) is photo


@pytest.mark.parametrize("shape", [(37, 53), (240, 320), (101, 67), (3, 5)])
def test_the_tensorflow_mask_paints_exactly_the_numpy_masks_pixels(shape):
    boxes = (DERMNET_WATERMARK_BOX, (0.5, 0, 1, 0.3))
    pre = Preprocessing(image_size=8, crop=False, mask_border=0.13, mask_boxes=boxes)
    photo = _random_photo(*shape, seed=sum(shape))
    np.testing.assert_array_equal(mask_photo_tf(photo, pre).numpy(), mask_photo(photo, pre))


def test_masks_travel_in_the_preprocessing_entry_and_an_entry_without_masks_is_unchanged():
    plain = Preprocessing().to_dict()
    assert "mask_border" not in plain and "mask_boxes" not in plain  # the feature cache's keys stay valid
    pre = Preprocessing(mask_border=0.05, mask_boxes=(DERMNET_WATERMARK_BOX,))
    entry = json.loads(json.dumps(pre.to_dict()))
    assert entry["mask_boxes"] == [list(DERMNET_WATERMARK_BOX)]
    assert Preprocessing.from_dict(entry) == pre
    assert "border 5% masked" in pre.describe()


@pytest.mark.parametrize("settings, message", [
    ({"mask_border": 0.5}, "mask_border must lie in"),
    ({"mask_border": "wide"}, "mask_border=.wide.: expected a number"),
    ({"mask_boxes": ((0.5, 0.2, 0.4, 0.9),)}, "needs 0 <= left < right"),
    ({"mask_boxes": ((0.1, 0.2),)}, "must be four fractions"),
])
def test_bad_masks_are_one_error_naming_the_setting(settings, message):
    from skin_cnn.training.config import resolve_config

    with pytest.raises(ValueError, match=message):
        resolve_config(settings)


def test_the_cli_reads_a_named_box_and_refuses_three_numbers():
    from click.testing import CliRunner

    from skin_cnn.cli import cli

    result = CliRunner().invoke(cli, ["train", "x.csv", "-o", "r", "--mask-box", "0.1,0.2,0.3"])
    assert result.exit_code == 2 and "expected four fractions" in result.output
    assert "Traceback" not in result.output
    from skin_cnn.cli.options import MaskBox

    assert MaskBox().convert("dermnet-watermark", None, None) == DERMNET_WATERMARK_BOX


def test_the_batched_path_of_training_paints_the_same_pixels_as_model_input(tmp_path):
    from PIL import Image

    from skin_cnn.data.preprocessing import model_input, photo_batches

    pre = Preprocessing(image_size=(16, 16), crop=True, mask_border=0.1, mask_boxes=(DERMNET_WATERMARK_BOX,))
    rows = []
    for i, shape in enumerate([(40, 48), (33, 61)]):
        photo = _random_photo(*shape, seed=i)
        Image.fromarray(photo).save(tmp_path / f"{i}.png")
        rows.append({"image_path": str(tmp_path / f"{i}.png"), "crop_left": 2, "crop_top": 3,
                     "crop_right": shape[1] - 1, "crop_bottom": shape[0] - 4})
    batched = next(iter(photo_batches(rows, pre, batch_size=2)))[1].numpy()
    for row, pixels in zip(rows, batched):
        photo = np.asarray(Image.open(row["image_path"]))
        box = (row["crop_left"], row["crop_top"], row["crop_right"], row["crop_bottom"])
        expected, _ = model_input(photo, pre, box)
        np.testing.assert_array_equal(pixels, expected)


@pytest.fixture(scope="module")
def masked_run(tmp_path_factory):
    from test_training import tiny_config, tiny_split

    from skin_cnn import train

    base = tmp_path_factory.mktemp("masked")
    split = tiny_split(base, patients=4, broken=False)
    out = base / "run"
    train(tiny_config(split, out, head="linear", crop=False, cache_views=0, mask_border=0.1,
                      mask_boxes=(DERMNET_WATERMARK_BOX,)), progress=False, echo=lambda *_: None)
    return out


def _repaint_masked_area(photo, pre, seed):
    """The photo with every masked pixel replaced by noise (unmasked pixels as they were)."""
    inside = _painted(mask_photo(photo, pre)) & ~_painted(photo)
    noise = np.random.default_rng(seed).integers(0, 256, photo.shape, dtype=np.uint8)
    return np.where(inside[..., None], noise, photo), inside


def test_a_masked_models_answer_ignores_the_masked_area_in_predict_and_in_its_savedmodel(masked_run, tmp_path):
    from skin_cnn.data.reading import read_image
    from skin_cnn.inference.export import export_savedmodel
    from skin_cnn.inference.predictor import load_predictor

    config = json.loads((masked_run / "config.json").read_text())
    assert config["preprocessing"]["mask_border"] == 0.1
    predictor = load_predictor(masked_run, precision="float32")
    assert predictor.preprocessing == Preprocessing.from_dict(config["preprocessing"])
    split = pd.read_csv(masked_run / "split.csv")
    photo = read_image(split.loc[split["split"] == "test", "image_path"].iloc[0])
    changed, inside = _repaint_masked_area(photo, predictor.preprocessing, seed=1)
    assert inside.mean() > 0.3
    # one photo per call: within one batch oneDNN may round rows differently (seen on AVX2 CPUs)
    alone = [predictor.predict_images([x]) for x in (photo, changed)]
    probabilities = {task: np.concatenate([a[task] for a in alone]) for task in alone[0]}
    for task, p in probabilities.items():
        assert p[0] == p[1], task
    # outside the mask the same noise does change the answer: the test can fail
    outside = np.where(inside[..., None], photo, np.random.default_rng(2).integers(0, 256, photo.shape, dtype=np.uint8))
    moved = predictor.predict_images([outside])
    assert max(abs(float(moved[task][0]) - float(p[0])) for task, p in probabilities.items()) > 1e-4
    import tensorflow as tf

    export_savedmodel(predictor.model, predictor.preprocessing, tmp_path / "sm")
    serve = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    for task, p in probabilities.items():
        exported = [float(serve(photo=tf.constant(x))[task].numpy()[0]) for x in (photo, changed)]
        assert exported[0] == exported[1], task
        assert exported[0] == pytest.approx(float(p[0]), abs=1e-5), task


def test_a_tflite_export_of_a_cropping_masked_model_is_refused_and_the_method_names_the_masks(tmp_path):
    import keras

    from skin_cnn.evaluation.method import method_rows
    from skin_cnn.inference.export import export_tflite

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="masks parts of the whole photo and crops it"):
        export_tflite(model, Preprocessing(image_size=(8, 8), mask_border=0.1), tmp_path / "m.tflite")
    rows = {name: value for _, name, value in method_rows({"crop": False, "mask_border": 0.1,
                                                           "mask_boxes": [list(DERMNET_WATERMARK_BOX)]})}
    assert rows["Masks"].startswith("10% of every side; box 0.07, 0.67, 0.43, 0.92 of every photo")
    assert "Masks" not in {name for _, name, _ in method_rows({"crop": False})}
