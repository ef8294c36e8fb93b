"""Blocks 3–5 pooled at two input scales inside one model: column order, file round trip, and a
trained run whose saved model computes, from a photo alone, the features its heads were fitted on."""
import json

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from skin_cnn.core.tasks import TASK_NAMES

SIZE, SECOND = 48, 32
WIDTHS = {3: 256, 4: 512, 5: 512}


def _images(n=3, size=SIZE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _model(size=SIZE, **kwargs):
    from skin_cnn.models import build_model

    return build_model("P", input_shape=(size, size, 3), weights=None, seed=0, head="linear", **kwargs)


def _copy_trunk(source, target):
    for layer in target.layers:
        if layer.name.startswith("block") and layer.get_weights():
            layer.set_weights(source.get_layer(layer.name).get_weights())


def _features(model, x):
    from skin_cnn.models import split_at_frozen_boundary

    return split_at_frozen_boundary(model)[0].predict(x, verbose=0)


def _block_means(model, x):
    """Global averages of blocks 3, 4 and 5 of a one-scale model, read from its pooling layers' maps."""
    maps = keras.Model(model.inputs[0], [model.get_layer(f"block{b}_pool").output for b in (3, 4, 5)])
    return np.concatenate([m.mean(axis=(1, 2)) for m in maps.predict(x, verbose=0)], axis=1)


def test_blocks_3_to_5_are_the_block_averages_in_block_order():
    model = _model(pool_blocks=(3, 4, 5))
    x = _images()
    got = _features(model, x)
    assert got.shape == (3, sum(WIDTHS.values()))
    np.testing.assert_allclose(got, _block_means(model, x), rtol=1e-5, atol=1e-5)


def test_the_second_scale_follows_the_input_scale_and_equals_the_trunk_on_the_resized_photo():
    two = _model(pool_blocks=(3, 4, 5), second_scale=SECOND)
    small = _model(size=SECOND, pool_blocks=(3, 4, 5))
    _copy_trunk(two, small)
    x = _images()
    got = _features(two, x)
    width = sum(WIDTHS.values())
    assert got.shape == (3, 2 * width)
    np.testing.assert_allclose(got[:, :width], _block_means(two, x), rtol=1e-4, atol=1e-4)
    # bilinear resizing commutes with the per-channel affine VGG preprocessing: resize the photo first
    resized = tf.image.resize(x, (SECOND, SECOND), method="bilinear").numpy()
    np.testing.assert_allclose(got[:, width:], _block_means(small, resized), rtol=1e-3, atol=1e-3)


def test_square_rooted_mirror_views_of_two_scales_average_each_views_square_root():
    full = _model(pool_blocks=(3, 4, 5), second_scale=SECOND, mirror=True, sqrt_features=True)
    plain = _model(pool_blocks=(3, 4, 5), second_scale=SECOND)
    plain.set_weights(full.get_weights())
    x = _images()
    expected = (np.sqrt(_features(plain, x)) + np.sqrt(_features(plain, x[:, :, ::-1]))) / 2
    np.testing.assert_allclose(_features(full, x), expected, rtol=1e-4, atol=1e-5)


def test_a_two_scale_model_keeps_one_trunk_and_round_trips_through_its_file(tmp_path):
    from skin_cnn.models import split_at_frozen_boundary
    from skin_cnn.training.feature_cache import weights_digest

    model = _model(pool_blocks=(3, 4, 5), second_scale=SECOND, mirror=True, sqrt_features=True)
    one = _model(pool_blocks=(3, 4, 5), mirror=True, sqrt_features=True)
    assert len(model.get_weights()) == len(one.get_weights())  # the second scale adds no trunk copy
    features, head = split_at_frozen_boundary(model)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 3 * (features.output.shape[-1] + 1)
    x = _images()
    direct = model.predict(x, verbose=0)
    via = head.predict(features.predict(x, verbose=0), verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    again = loaded.predict(x, verbose=0)
    for task in TASK_NAMES:
        np.testing.assert_allclose(via[task], direct[task], atol=1e-6)
        np.testing.assert_allclose(again[task], direct[task], atol=1e-6)
    assert weights_digest(split_at_frozen_boundary(loaded)[0]) == weights_digest(features)
    assert weights_digest(features) != weights_digest(split_at_frozen_boundary(one)[0])
    # Grad-CAM's layer is the input scale's
    assert loaded.get_layer("block5_conv3").output.shape[1:3] == (SIZE // 16, SIZE // 16)


@pytest.mark.parametrize("value", [-1, 16, 4096])
def test_a_second_scale_out_of_range_is_one_clear_error(value):
    from skin_cnn.training import resolve_config

    with pytest.raises(ValueError, match="second_scale"):
        resolve_config(dict(split="s.csv", out="o", second_scale=value))


@pytest.fixture(scope="module")
def two_scale_run(tmp_path_factory):
    from test_training import tiny_config, tiny_split

    from skin_cnn import train

    base = tmp_path_factory.mktemp("two_scale")
    split = tiny_split(base, patients=6)
    out = base / "run"
    train(tiny_config(split, out, head="linear", pool_blocks="3+4+5", mirror=True, sqrt_features=True, crop=False,
                      image_size=SIZE, second_scale=SECOND, threshold="youden", cache_views=0),
          progress=False, echo=lambda *_: None)
    return out


def test_predict_from_the_file_alone_computes_the_features_the_heads_were_fitted_on(two_scale_run):
    """The stored out-of-fold rows are refitted here with scikit-learn on features the *saved* model
    computes from the photos; the same C gives the same regression, so the features are the same."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skin_cnn.core.tasks import TASKS
    from skin_cnn.inference.predictor import predict_frame
    from skin_cnn.models.saving import load_keras_model

    out = two_scale_run
    model = load_keras_model(out / "best.keras")
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["second_scale"] == SECOND and config["train"]["pool_blocks"] == "3+4+5"
    split = pd.read_csv(out / "split.csv")
    fitted = split[split["split"].isin(["train", "val"]) & ~split["image_path"].str.contains("broken")]
    from skin_cnn.core.specs import Preprocessing
    from skin_cnn.data.preprocessing import load_model_input

    pre = Preprocessing.from_dict(config["preprocessing"])
    x = np.stack([load_model_input(p, pre)[0] for p in fitted["image_path"]]).astype("float32")
    features = _features(model, x)
    fits = json.loads((out / "linear_fit.json").read_text())["tasks"]
    task = TASK_NAMES[0]
    labels = fitted["diagnosis"].map(TASKS[task].label)
    rows = labels.notna().to_numpy()
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=fits[task]["C"], max_iter=5000))
    reference.fit(features[rows], labels[rows].astype(int))
    kernel, bias = model.get_layer(task).get_weights()
    np.testing.assert_allclose(features[rows] @ kernel[:, 0] + bias[0], reference.decision_function(features[rows]),
                               rtol=1e-3, atol=1e-3)
    predicted = predict_frame(model, fitted.head(4), pre, progress=False)
    _, probabilities = predicted.kept(fitted.head(4))
    direct = model.predict(x[:4], verbose=0)
    np.testing.assert_allclose(np.asarray(probabilities[task]).ravel(), direct[task].ravel(), atol=1e-5)


def test_the_cv_ensemble_of_two_scale_fold_models_is_their_mean_and_survives_its_file(tmp_path):
    from skin_cnn.training.cv import build_ensemble

    folds = []
    for k in range(2):
        model = _model(pool_blocks=(3, 4, 5), second_scale=SECOND, mirror=True, sqrt_features=True)
        for i, task in enumerate(TASK_NAMES):  # different heads per fold, one trunk
            kernel, bias = model.get_layer(task).get_weights()
            rng = np.random.default_rng(10 * k + i)
            model.get_layer(task).set_weights([rng.normal(0, 0.05, kernel.shape).astype("float32"), bias])
        (tmp_path / f"fold{k + 1}").mkdir()
        model.save(tmp_path / f"fold{k + 1}" / "best.keras")
        folds.append(model)
    ensemble = build_ensemble([tmp_path / "fold1", tmp_path / "fold2"])
    ensemble.save(tmp_path / "ensemble.keras")
    loaded = keras.models.load_model(tmp_path / "ensemble.keras", compile=False)
    x = _images()
    answers = [m.predict(x, verbose=0) for m in folds]
    got = loaded.predict(x, verbose=0)
    for task in TASK_NAMES:
        np.testing.assert_allclose(got[task], (answers[0][task] + answers[1][task]) / 2, atol=1e-6)
    assert len(loaded.get_weights()) == len(folds[0].get_weights()) + 2 * len(TASK_NAMES)  # one trunk


def test_platt_scaling_folded_into_the_head_equals_the_map_applied_to_the_regressions_answers():
    from scipy.optimize import minimize

    from skin_cnn.training.linear import LinearFit, calibrate_fit

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = (x[:, 0] + rng.normal(size=200) > 0).astype(int)
    kernel, bias = np.array([0.3, 0.1, 0, 0, 0]), 0.05  # an over-regularised regression: too close to 0.5
    oof = 1 / (1 + np.exp(-(x @ kernel + bias)))
    fit = LinearFit("t", kernel.copy(), bias, 1.0, 0.5, 200, int(y.sum()), np.arange(200), oof.copy())
    calibrate_fit(fit, y)
    logit = np.log(oof / (1 - oof))

    def loss(ab):  # the log-loss of sigmoid(a·logit + b), minimised independently
        z = ab[0] * logit + ab[1]
        return np.sum(np.logaddexp(0, z) - y * z)

    a, b = minimize(loss, [1.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10}).x
    assert fit.calibration["a"] == pytest.approx(a, rel=1e-3) and a > 1
    assert fit.calibration["b"] == pytest.approx(b, abs=1e-3)
    expected = 1 / (1 + np.exp(-(a * (x @ kernel + bias) + b)))
    np.testing.assert_allclose(1 / (1 + np.exp(-(x @ fit.kernel + fit.bias))), expected, atol=1e-4)
    np.testing.assert_allclose(fit.oof_probability, expected, atol=1e-4)


def test_calibration_must_be_a_known_method():
    from skin_cnn.training import resolve_config

    with pytest.raises(ValueError, match="calibration=.isotonic.: expected one of auto, none, sigmoid"):
        resolve_config(dict(split="s.csv", out="o", head="linear", calibration="isotonic"))
    assert resolve_config(dict(split="s.csv", out="o", calibration="sigmoid")).calibration == "sigmoid"
