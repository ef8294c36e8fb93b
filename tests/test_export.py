"""``skin-cnn export``: photo-in SavedModel and TFLite files that give ``skin-cnn predict``'s numbers."""

import json

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from model_fixtures import shared_run

from skin_cnn.cli import cli
from skin_cnn.data.crop import crop_image, hue_crop_box
from skin_cnn.core.specs import Preprocessing
from skin_cnn.data.preprocessing import model_input, resize_to_model
from skin_cnn.inference.export import builtin_resize, check_path, describe_check, export_model
from skin_cnn.inference.predictor import load_predictor
from skin_cnn.models.saving import load_keras_model


@pytest.fixture(scope="module")
def run():
    return shared_run()


@pytest.fixture(scope="module")
def keras_model(run):
    return load_keras_model(run / "best.keras")


def _photo(height=45, width=58, seed=11):
    """A blue photo with a noisy skin-coloured patch: two hue clusters, so the crop cuts."""
    rng = np.random.default_rng(seed)
    photo = np.empty((height, width, 3), np.int16)
    photo[:] = (50, 80, 190)
    photo[9:37, 13:44] = (200, 140, 110)
    return np.clip(photo + rng.integers(-12, 13, size=photo.shape), 0, 255).astype(np.uint8)


def _keras_on(keras_model, photo, size=32):
    """The probabilities of the Keras model on the NumPy preprocessing (crop, resize, round)."""
    pixels, box = model_input(photo, Preprocessing(image_size=(size, size)))
    out = keras_model.predict(pixels[None].astype(np.float32), verbose=0)
    return {task: float(np.asarray(v).reshape(-1)[0]) for task, v in out.items()}, box


def test_savedmodel_takes_a_photo_and_reproduces_predict(run, keras_model, tmp_path):
    out = tmp_path / "export" / "savedmodel"
    result = CliRunner().invoke(
        cli, ["export", str(run), "--format", "savedmodel", "-o", str(out), "--check-images", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "vs skin-cnn predict over 3 photos" in result.output
    assert "crop boxes equal 3/3" in result.output

    # Load it the way TF Serving does: by signature, with the named input, a raw photo.
    signature = tf.saved_model.load(str(out)).signatures["serving_default"]
    photo = _photo()
    got = signature(photo=tf.constant(photo))
    expected, box = _keras_on(keras_model, photo)
    assert box == hue_crop_box(photo) and box != (0, 0, 58, 45)  # the photo is really cropped
    assert tuple(got["crop_box"].numpy().tolist()) == box
    assert set(got) == set(expected) | {"crop_box"}
    for task, value in expected.items():
        assert got[task].shape == (1,)
        assert float(got[task][0]) == pytest.approx(value, abs=1e-5)

    check = json.loads((tmp_path / "export" / "savedmodel.check.json").read_text())
    assert check["n_images"] == 3 and check["passed"] is True and check["crop_boxes_equal"] == 3
    assert "split.csv (2 images)" in check["images"]  # the run's two test photos, then random ones
    assert check["input"] == {"name": "photo", "shape": [None, None, 3], "dtype": "uint8"}
    assert check["max_abs_diff_all"] < 1e-4
    assert check["max_abs_diff_all"] == max(check["max_abs_diff"].values())


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_tflite_resizes_a_cropped_photo_and_reproduces_predict(run, keras_model, tmp_path, caplog):
    from skin_cnn.inference.export import describe_check, read_tflite_metadata, run_tflite

    out = tmp_path / "model.tflite"
    check = export_model(run, "tflite", out, check_images=2)
    assert check["passed"] is True and check["max_abs_diff_all"] < 1e-2
    written = json.loads(check_path(out).read_text())
    assert written["format"] == "tflite" and written["crop"].startswith("not in the export")
    assert "crop_boxes_equal" not in written
    # the file itself records that it wants a cropped photo, and whoever uses it is told
    recorded = read_tflite_metadata(out)
    assert recorded["needs_cropped_photo"] is True and recorded["crop_in_export"] is False
    assert recorded["preprocessing"] == load_predictor(run).preprocessing.to_dict()
    assert "already hue-cropped" in describe_check(check) and written["expects"] == recorded["expects"]
    with caplog.at_level("WARNING", logger="skin_cnn.inference.export"):
        run_tflite(out, [_photo()])
    assert any("already hue-cropped" in r.getMessage() for r in caplog.records)
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(_photo()).save(photo)
    refused = CliRunner().invoke(cli, ["predict", str(out), str(photo)])
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    assert "a TFLite export" in refused.output and "already hue-cropped" in refused.output

    runner = tf.lite.Interpreter(model_path=str(out)).get_signature_runner("serving_default")
    for photo in (_photo(), _photo(31, 77, seed=2)):  # different sizes through one file
        expected, box = _keras_on(keras_model, photo)
        got = runner(photo=np.ascontiguousarray(crop_image(photo, box)))
        assert set(got) == set(expected)
        for task, value in expected.items():
            assert float(got[task].reshape(-1)[0]) == pytest.approx(value, abs=1e-3)


@pytest.mark.parametrize("resize", ["stretch", "pad"])
def test_builtin_resize_matches_the_training_resize(resize):
    # TFLite's resize is two matrix products with the antialiasing weights; against the op
    # training used, at most a rare rounding step of one grey level.
    rng = np.random.default_rng(5)
    preprocessing = Preprocessing(image_size=(32, 32), crop=False, resize=resize)
    for shape in [(45, 58), (20, 17), (32, 32), (101, 37)]:
        photo = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
        expected = resize_to_model(photo, preprocessing).astype(int)
        got = builtin_resize(photo, preprocessing).numpy()
        assert np.array_equal(got, np.round(got))
        assert np.abs(got - expected).max() <= 1 and np.mean(got != expected) < 0.01


def test_a_run_without_crop_exports_the_whole_photo_box(keras_model, tmp_path):
    from model_fixtures import preprocessing_for, write_run_folder

    run = write_run_folder(tmp_path / "run", keras_model, preprocessing_for(32, crop=False))
    check = export_model(run, "savedmodel", tmp_path / "sm", check_images=1)
    assert check["passed"] is True and check["crop"] == "the run does not crop"
    got = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"](photo=tf.constant(_photo()))
    assert got["crop_box"].numpy().tolist() == [0, 0, 58, 45]
    predictor = load_predictor(run, precision="float32")
    expected = predictor.predict_images([_photo()])
    for task, value in expected.items():
        assert float(got[task][0]) == pytest.approx(float(value[0]), abs=1e-5)


def test_unknown_format_is_refused(run, tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'onnx'"):
        export_model(run, "onnx", tmp_path / "m.onnx")


def _encoded(photo, fmt):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def test_the_batch_signature_takes_encoded_photos_and_answers_as_the_one_photo_signature(run, tmp_path):
    out = tmp_path / "sm"
    check = export_model(run, "savedmodel", out, check_images=2)
    assert check["passed"] and check["batch_crop_boxes_equal"] == 2 and check["batch_max_abs_diff_all"] < 1e-4
    loaded = tf.saved_model.load(str(out))
    one, batch = loaded.signatures["serving_default"], loaded.signatures["predict_images"]
    photos = [_photo(45, 58, seed=11), _photo(61, 40, seed=12), _photo(50, 50, seed=13)]
    encoded = [_encoded(photos[0], "PNG"), _encoded(photos[1], "JPEG"), _encoded(photos[2], "PNG")]
    got = batch(images=tf.constant(encoded))
    assert got["crop_box"].shape == (3, 4)
    for i, data in enumerate(encoded):
        # the one-photo signature on the pixels the batch signature decoded (PNG: the photo itself)
        pixels = tf.io.decode_image(data, channels=3, expand_animations=False)
        if i != 1:
            assert np.array_equal(pixels.numpy(), photos[i])
        single = one(photo=pixels)
        assert got["crop_box"][i].numpy().tolist() == single["crop_box"].numpy().tolist()
        for task in single:
            if task != "crop_box":
                assert got[task].shape == (3,)
                assert float(got[task][i]) == pytest.approx(float(single[task][0]), abs=1e-6)


def test_a_bfloat16_savedmodel_computes_its_trunk_in_bfloat16_and_states_its_tolerance(run, tmp_path):
    out = tmp_path / "bf16"
    check = export_model(run, "savedmodel", out, check_images=2, precision="bfloat16")
    assert check["precision"] == "bfloat16" and check["reference"] == "skin-cnn predict --precision float32"
    assert check["tolerance"] == 5e-2 and check["passed"] is True and check["crop_boxes_equal"] == 2
    assert 0 < check["max_abs_diff_all"] < 5e-2  # not float32 (it would agree within 1e-4 or better)
    graph = tf.saved_model.load(str(out)).signatures["serving_default"].graph.as_graph_def()
    assert any(node.op == "Conv2D" and node.attr["T"].type == tf.bfloat16.as_datatype_enum
               for node in list(graph.node) + [n for f in graph.library.function for n in f.node_def])


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_a_float16_tflite_file_holds_half_size_weights_and_agrees_within_its_tolerance(run, tmp_path):
    full, half = tmp_path / "f32.tflite", tmp_path / "f16.tflite"
    export_model(run, "tflite", full, check_images=0)
    check = export_model(run, "tflite", half, check_images=2, precision="float16")
    assert check["precision"] == "float16" and check["tolerance"] == 5e-2 and check["passed"] is True
    # VGG-16's 14.7 million conv weights dominate the file: float16 halves it
    assert 0.45 < half.stat().st_size / full.stat().st_size < 0.55
    assert "(float16)" in describe_check(check) and "tolerance 0.05" in describe_check(check)


def test_a_bfloat16_tflite_file_is_refused_with_the_reason(run, tmp_path):
    result = CliRunner().invoke(cli, ["export", str(run), "--format", "tflite", "-o", str(tmp_path / "m.tflite"),
                                      "--precision", "bfloat16"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "TFLite has no bfloat16 kernels" in result.output


# ---------------------------------------------------------------------------------------------
# what an export says about its model

#: Each task's classes, as the study names them (written out, not read from the package).
TASK_CLASSES = {"psoriasis_vs_eczema": ("psoriasis", "eczema"), "acne_vs_rosacea": ("acne", "rosacea"),
                "ctcl_vs_eczema": ("ctcl", "eczema")}


def _saved(folder, name, model):
    path = folder / f"{name}.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def info_models(tmp_path_factory):
    """Tiny 32×32 random-weight models: one trained on synthetic images with a fitted threshold,
    one with the record but not synthetic, one saved before models carried a record."""
    from model_fixtures import plain_model

    from skin_cnn.models import with_model_info

    folder = tmp_path_factory.mktemp("info-models")
    no_crop = {"image_size": [32, 32], "crop": False}
    fitted = {"acne_vs_rosacea": {"value": 0.3, "rule": "youden", "method": "youden on the val split"}}
    return {
        "synthetic": _saved(folder, "synthetic", with_model_info(plain_model(), preprocessing=no_crop,
                                                                  thresholds=fitted, synthetic=True)),
        "real": _saved(folder, "real", with_model_info(plain_model(), preprocessing=no_crop)),
        "older": _saved(folder, "older", plain_model()),
    }


def _photo_file(folder):
    from PIL import Image

    path = folder / "photo.png"
    Image.fromarray(_photo()).save(path)
    return path


def _refusal(export, folder):
    """What `skin-cnn predict EXPORT photo.png` says (it runs .keras models only)."""
    result = CliRunner().invoke(cli, ["predict", str(export), str(_photo_file(folder))])
    assert result.exit_code != 0 and "Traceback" not in result.output
    return result.output


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
@pytest.mark.parametrize("fmt, name", [("savedmodel", "sm"), ("tflite", "m.tflite")])
def test_an_export_of_a_synthetic_trained_model_carries_the_flag_tasks_and_thresholds(info_models, tmp_path,
                                                                                      fmt, name, caplog):
    from skin_cnn.data.preprocessing import MAX_ENLARGEMENT, MAX_SHAPE_RATIO
    from skin_cnn.inference.export import read_tflite_metadata
    from skin_cnn.inference.export_info import export_synthetic
    from skin_cnn.inference.predictor import SYNTHETIC_MODEL_WARNING

    out = tmp_path / name
    check = export_model(info_models["synthetic"], fmt, out, check_images=1)
    assert check["passed"] is True
    if fmt == "savedmodel":  # a JSON file any reader can open, beside a graph that serves as before
        recorded = json.loads((out / "assets.extra" / "skin_cnn.json").read_text())
        assert set(tf.saved_model.load(str(out)).signatures) == {"serving_default", "predict_images"}
    else:
        recorded = read_tflite_metadata(out)
        assert recorded["needs_cropped_photo"] is False  # the entry it had before, kept
    assert recorded["synthetic"] is True and recorded["synthetic_model"] == SYNTHETIC_MODEL_WARNING
    limits = recorded["photo_limits"]  # what an app running the export alone must refuse
    assert (limits["max_enlargement"], limits["max_shape_ratio"]) == (MAX_ENLARGEMENT, MAX_SHAPE_RATIO)
    assert {t["name"]: (t["positive"], t["negative"]) for t in recorded["tasks"]} == TASK_CLASSES
    thresholds = recorded["thresholds"]
    assert thresholds["acne_vs_rosacea"]["value"] == 0.3 and thresholds["acne_vs_rosacea"]["rule"] == "youden"
    assert {t: (e["value"], e["rule"]) for t, e in thresholds.items() if t != "acne_vs_rosacea"} == {
        "psoriasis_vs_eczema": (0.5, "default"), "ctcl_vs_eczema": (0.5, "default")}
    assert export_synthetic(out) is True
    # the check, returned, written and printed, says it; so does predict when handed the export
    assert check["synthetic"] is True and check["synthetic_model"] == SYNTHETIC_MODEL_WARNING
    assert json.loads(check_path(out).read_text())["synthetic_model"] == SYNTHETIC_MODEL_WARNING
    assert describe_check(check).splitlines()[-1] == f"warning: {SYNTHETIC_MODEL_WARNING}"
    assert SYNTHETIC_MODEL_WARNING in _refusal(out, tmp_path)
    # whoever runs the export with skin-cnn's runners, not its predictor, is told as well
    caplog.clear()
    with caplog.at_level("WARNING", logger="skin_cnn.inference.export"):
        export_model(info_models["synthetic"], fmt, tmp_path / f"again-{name}", check_images=1)
    # the export's own check runs it silently: the command says it once (TensorFlow's own
    # warnings, e.g. about retracing after many models in one process, are not skin-cnn's)
    assert not [r for r in caplog.records if r.name.startswith("skin_cnn")]
    with caplog.at_level("WARNING", logger="skin_cnn.inference.export"):
        _run_export(out, fmt)
    assert [r.getMessage() for r in caplog.records if "SYNTHETIC" in r.getMessage()] == [
        f"{out}: {SYNTHETIC_MODEL_WARNING}"] * (2 if fmt == "savedmodel" else 1)


def _run_export(out, fmt):
    """Run an export through every runner of its format (SavedModel: one-photo and batch)."""
    from skin_cnn.inference.export import png_bytes, run_savedmodel, run_savedmodel_batch, run_tflite

    photo = _photo()
    if fmt == "savedmodel":
        run_savedmodel(out, [photo])
        run_savedmodel_batch(out, [png_bytes(photo)])
    else:
        run_tflite(out, [photo], cropped=True)


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
@pytest.mark.parametrize("fmt, name", [("savedmodel", "sm"), ("tflite", "m.tflite")])
def test_exports_of_models_without_the_flag_and_exports_older_than_the_entry_read_as_not_synthetic(
        info_models, tmp_path, fmt, name, caplog):
    from skin_cnn.inference.export import read_tflite_metadata, tflite_expectation, with_metadata
    from skin_cnn.inference.export_info import export_synthetic, read_export_info

    for model in ("real", "older"):
        out = tmp_path / model / name
        check = export_model(info_models[model], fmt, out, check_images=1)
        assert read_export_info(out)["synthetic"] is False and read_export_info(out)["synthetic_model"] is None
        assert check["synthetic"] is False and check["synthetic_model"] is None
        assert "SYNTHETIC" not in describe_check(check) and len(describe_check(check).splitlines()) == 1
    # an export written before the entry existed: the TFLite metadata held only what photo it
    # expects, the SavedModel folder no skin_cnn.json
    if fmt == "savedmodel":
        (out / "assets.extra" / "skin_cnn.json").unlink()
        assert read_export_info(out) is None
    else:
        expected = tflite_expectation(load_predictor(info_models["older"]).preprocessing)
        out.write_bytes(with_metadata(out.read_bytes(), expected))
        assert "synthetic" not in read_tflite_metadata(out)
    assert export_synthetic(out) is False
    refused = _refusal(out, tmp_path)
    assert f"a {'SavedModel' if fmt == 'savedmodel' else 'TFLite'} export" in refused
    assert "SYNTHETIC" not in refused
    with caplog.at_level("WARNING", logger="skin_cnn.inference.export"):
        _run_export(out, fmt)
    assert not [r for r in caplog.records if "SYNTHETIC" in r.getMessage()]


def test_the_export_command_prints_the_warning_for_a_synthetic_trained_model_only(info_models, tmp_path):
    from skin_cnn.inference.predictor import SYNTHETIC_MODEL_WARNING

    for model, warned in (("synthetic", True), ("real", False)):
        out = tmp_path / model
        result = CliRunner().invoke(cli, ["export", str(info_models[model]), "--format", "savedmodel", "-o",
                                          str(out), "--check-images", "1"])
        assert result.exit_code == 0, result.output
        assert (f"warning: {SYNTHETIC_MODEL_WARNING}" in result.output) is warned
        assert ("SYNTHETIC" in result.output) is warned


def _tiny_tflite():
    """A two-op TFLite file (``y = 2x + 1``) straight from the converter."""
    @tf.function(input_signature=[tf.TensorSpec([3], tf.float32)])
    def affine(x):
        return {"y": 2.0 * x + 1.0}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([affine.get_concrete_function()], affine)
    return converter.convert()


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_rewriting_the_metadata_entry_replaces_its_bytes_and_keeps_the_rest_of_the_file(tmp_path):
    from tensorflow.lite.python import schema_py_generated as schema

    from skin_cnn.inference.export import tflite_interpreter
    from skin_cnn.inference.tflite_metadata import METADATA_NAME, read_tflite_metadata, with_metadata

    flat = _tiny_tflite()
    names = lambda data: [schema.Model.GetRootAsModel(data, 0).Metadata(i).Name().decode()  # noqa: E731
                          for i in range(schema.Model.GetRootAsModel(data, 0).MetadataLength())]
    first = with_metadata(flat, {"entry": "FIRST-ENTRY-0123456789" * 20})
    second = with_metadata(first, {"entry": "second"})
    out = tmp_path / "m.tflite"
    out.write_bytes(second)
    assert read_tflite_metadata(out) == {"entry": "second"}
    assert b"FIRST-ENTRY-0123456789" not in second  # the replaced entry's bytes are gone
    assert len(second) < len(first)
    assert names(second).count(METADATA_NAME) == 1
    assert sorted(names(second)) == sorted(names(flat) + [METADATA_NAME])  # the converter's entries stay
    interpreter = tflite_interpreter(out)  # and the graph still runs
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.array([0.0, 1.0, -2.0], np.float32))
    interpreter.invoke()
    np.testing.assert_allclose(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]),
                               [1.0, 3.0, -3.0])
