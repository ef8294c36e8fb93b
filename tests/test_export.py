"""``skin-cnn export``: SavedModel and TFLite files that reproduce the Keras model's probabilities."""

import json

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from model_fixtures import shared_run

from skin_cnn.cli import cli
from skin_cnn.export import check_path, export_model
from skin_cnn.predict import load_keras_model


@pytest.fixture(scope="module")
def run():
    return shared_run()


@pytest.fixture(scope="module")
def keras_model(run):
    return load_keras_model(run / "best.keras")


def _images(n=3, seed=11):
    return np.random.default_rng(seed).uniform(0, 255, size=(n, 32, 32, 3)).astype(np.float32)


def test_savedmodel_serving_signature_reproduces_the_keras_model(run, keras_model, tmp_path):
    out = tmp_path / "export" / "savedmodel"
    result = CliRunner().invoke(
        cli, ["export", str(run), "--format", "savedmodel", "-o", str(out), "--check-images", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "max |Δp| vs Keras over 3 images" in result.output

    # Load it the way TF Serving does: by signature, with the named input.
    signature = tf.saved_model.load(str(out)).signatures["serving_default"]
    images = _images()
    got = signature(images=tf.constant(images))
    expected = keras_model.predict(images, verbose=0)
    assert set(got) == set(expected)
    for task in expected:
        np.testing.assert_allclose(got[task].numpy(), expected[task], atol=1e-5)

    check = json.loads((tmp_path / "export" / "savedmodel.check.json").read_text())
    assert check["n_images"] == 3 and check["passed"] is True
    assert "split.csv (2 images)" in check["images"]  # the run's two test photos, then random ones
    assert check["max_abs_diff_all"] < 1e-4
    assert check["max_abs_diff_all"] == max(check["max_abs_diff"].values())


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_tflite_file_reproduces_the_keras_model(run, keras_model, tmp_path):
    out = tmp_path / "model.tflite"
    check = export_model(run, "tflite", out, check_images=2)
    assert check["passed"] is True and check["max_abs_diff_all"] < 1e-2
    assert json.loads(check_path(out).read_text())["format"] == "tflite"

    interpreter = tf.lite.Interpreter(model_path=str(out))
    runner = interpreter.get_signature_runner("serving_default")
    expected = keras_model.predict(_images(2), verbose=0)
    for i, image in enumerate(_images(2)):
        got = runner(images=image[None])
        for task in expected:
            assert float(got[task].reshape(-1)[0]) == pytest.approx(
                float(expected[task][i, 0]), abs=1e-3
            )


def test_unknown_format_is_refused(run, tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'onnx'"):
        export_model(run, "onnx", tmp_path / "m.onnx")
