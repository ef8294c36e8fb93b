"""Mirror views, block-4 + 5 pooled features, the linear heads and the ``frozen-linear`` recipe."""
import json

import keras
import numpy as np
import pandas as pd
import pytest

from skin_cnn.core.tasks import TASK_NAMES
from skin_cnn.core.specs import EvalSettings


def _images(n=3, size=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _model(**kwargs):
    from skin_cnn.models import build_model

    return build_model("P", input_shape=(32, 32, 3), weights=None, seed=0, **kwargs)


# ---------------------------------------------------------------------------------------------
# the model


def test_a_mirrored_model_answers_the_same_for_a_photo_and_its_mirror_image():
    model = _model(head="linear", pool_blocks=(4, 5), mirror=True)
    x = _images()
    a = model.predict(x, verbose=0)
    b = model.predict(x[:, :, ::-1], verbose=0)
    for task in TASK_NAMES:
        np.testing.assert_allclose(a[task], b[task], atol=1e-6)


def test_mirror_features_are_the_mean_of_the_photo_and_its_mirror_image():
    from skin_cnn.models import split_at_frozen_boundary

    mirrored = _model(head="linear", pool_blocks=(4, 5), mirror=True)
    plain = _model(head="linear", pool_blocks=(4, 5))
    plain.set_weights(mirrored.get_weights())
    features_m, _ = split_at_frozen_boundary(mirrored)
    features_p, _ = split_at_frozen_boundary(plain)
    x = _images()
    expected = (features_p.predict(x, verbose=0) + features_p.predict(x[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(features_m.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)


def test_square_rooted_mirror_features_are_the_mean_of_each_views_square_root():
    from skin_cnn.models import split_at_frozen_boundary

    model = _model(head="linear", pool_blocks=(4, 5), mirror=True, sqrt_features=True)
    plain = _model(head="linear", pool_blocks=(4, 5))
    plain.set_weights(model.get_weights())
    features, _ = split_at_frozen_boundary(model)
    reference, _ = split_at_frozen_boundary(plain)
    x = _images()
    views = [reference.predict(v, verbose=0) for v in (x, x[:, :, ::-1])]
    expected = (np.sqrt(views[0]) + np.sqrt(views[1])) / 2  # pooled ReLU outputs are >= 0
    np.testing.assert_allclose(features.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)


def test_block_4_and_5_features_are_both_global_averages_side_by_side():
    from skin_cnn.models import split_at_frozen_boundary

    model = _model(head="linear", pool_blocks=(4, 5))
    features, _ = split_at_frozen_boundary(model)
    maps = keras.Model(model.inputs[0], [model.get_layer("block4_pool").output,
                                         model.get_layer("block5_pool").output])
    x = _images()
    b4, b5 = maps.predict(x, verbose=0)
    expected = np.concatenate([b4.mean(axis=(1, 2)), b5.mean(axis=(1, 2))], axis=1)
    got = features.predict(x, verbose=0)
    assert got.shape == (3, 1024)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(head="linear"), dict(head="linear", pool_blocks=(4, 5)),
                                    dict(mirror=True), dict(head="linear", pool_blocks=(4, 5), mirror=True),
                                    dict(head="linear", pool_blocks=(4, 5), mirror=True, sqrt_features=True)])
def test_head_on_features_reproduces_the_model_and_the_file_round_trip_too(kwargs, tmp_path):
    from skin_cnn.models import split_at_frozen_boundary

    model = _model(**kwargs)
    features, head = split_at_frozen_boundary(model)
    x = _images()
    direct = model.predict(x, verbose=0)
    via = head.predict(features.predict(x, verbose=0), verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    again = loaded.predict(x, verbose=0)
    for task in TASK_NAMES:
        np.testing.assert_allclose(via[task], direct[task], atol=1e-6)
        np.testing.assert_allclose(again[task], direct[task], atol=1e-6)
    if kwargs.get("head") == "linear":  # one sigmoid Dense per task, nothing else trains
        assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 3 * (features.output.shape[-1] + 1)


def test_mirror_with_trained_blocks_cannot_be_cached():
    from skin_cnn.models import split_at_frozen_boundary

    with pytest.raises(ValueError, match="mirror views"):
        split_at_frozen_boundary(_model(mirror=True, fine_tune_blocks=1))


def test_the_feature_cache_key_changes_with_the_pooling_even_for_the_same_weights():
    from skin_cnn.models import split_at_frozen_boundary
    from skin_cnn.training.feature_cache import weights_digest

    digests = set()
    for kwargs in (dict(), dict(pool_blocks=(4, 5)), dict(mirror=True), dict(sqrt_features=True)):
        features, _ = split_at_frozen_boundary(_model(**kwargs))
        digests.add(weights_digest(features))
    assert len(digests) == 4


def test_gradcam_of_a_mirrored_model_mirrors_with_the_photo():
    from skin_cnn.inference.gradcam import gradcam_batch

    from skin_cnn.models import build_model

    x = _images(2, 64, seed=1)
    model = build_model("P", input_shape=(64, 64, 3), weights=None, seed=0, head="linear", pool_blocks=(4, 5),
                        mirror=True)
    maps, probs = gradcam_batch(model, x, target="positive")
    maps_m, probs_m = gradcam_batch(model, x[:, :, ::-1], target="positive")
    for task in TASK_NAMES:
        assert maps[task].shape == (2, 64, 64)
        np.testing.assert_allclose(maps_m[task], maps[task][:, :, ::-1], atol=1e-5)
        np.testing.assert_allclose(probs_m[task], probs[task], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# fitting


def _blobs(n=80, d=6, shift=1.5, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 20, d) + rng.uniform(-50, 50, d)
    x[:, 0] += shift * y * 10
    return x, y


def test_the_folded_regression_equals_scikit_learns_pipeline_refitted_independently():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skin_cnn.training.linear import C_GRID, fit_task

    x, y = _blobs()
    groups = np.arange(len(y)) // 2  # pairs of rows stay together
    fit = fit_task(x, y, groups, seed=0)
    assert fit.C in C_GRID
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=fit.C, max_iter=5000)).fit(x, y)
    logit = x @ fit.kernel + fit.bias
    np.testing.assert_allclose(1 / (1 + np.exp(-logit)), reference.predict_proba(x)[:, 1], atol=1e-6)


def test_a_given_c_grid_is_searched_in_any_order_and_a_single_value_is_used():
    from skin_cnn.training.linear import fit_task

    x, y = _blobs()
    groups = np.arange(len(y)) // 2
    grid = (1e-3, 1e-2, 0.1, 1.0, 10.0)
    forward = fit_task(x, y, groups, seed=0, c_grid=grid)
    backward = fit_task(x, y, groups, seed=0, c_grid=grid[::-1])
    assert forward.C in grid and backward.C == forward.C
    np.testing.assert_allclose(backward.oof_probability, forward.oof_probability)
    assert fit_task(x, y, groups, seed=0, c_grid=(0.37,)).C == 0.37


def test_out_of_fold_probabilities_do_not_remember_noise():
    from sklearn.metrics import roc_auc_score

    from skin_cnn.training.linear import fit_task

    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 300))  # far more features than rows: any fit memorises the labels
    y = rng.permutation(np.arange(120) % 2)
    fit = fit_task(x, y, np.arange(120), seed=0)
    in_sample = roc_auc_score(y, x @ fit.kernel + fit.bias)
    assert in_sample > 0.9
    assert 0.25 < fit.inner_auc < 0.75


def test_inner_folds_keep_a_group_whole():
    from skin_cnn.training.linear import inner_splits

    y = np.tile([0, 1], 30)
    groups = np.arange(60) // 3
    for train, held in inner_splits(y, groups, seed=0):
        assert not set(groups[train]) & set(groups[held])


def test_views_of_one_image_are_rows_but_the_oof_answer_is_of_its_clean_view():
    from skin_cnn.training.linear import fit_linear_heads

    rng = np.random.default_rng(0)
    diagnoses = np.array(["psoriasis", "eczema", "acne", "rosacea", "ctcl"] * 12)
    n = len(diagnoses)
    clean = rng.normal(size=(n, 5))
    views = np.concatenate([clean, clean + rng.normal(scale=0.1, size=clean.shape)])
    image_of_row = np.concatenate([np.arange(n), np.arange(n)])
    is_clean = np.arange(2 * n) < n
    fits = fit_linear_heads(views, image_of_row, is_clean, diagnoses, np.arange(n), seed=0)
    ps = fits["psoriasis_vs_eczema"]
    assert set(diagnoses[ps.rows]) == {"psoriasis", "eczema"}
    assert len(ps.rows) == 24 and len(ps.oof_probability) == 24
    with pytest.raises(ValueError, match="exactly one clean-view row"):
        fit_linear_heads(views, image_of_row, np.ones(2 * n, bool), diagnoses, np.arange(n))


def test_a_task_without_one_of_its_diseases_is_one_clear_error():
    from skin_cnn.training.linear import fit_linear_heads

    diagnoses = np.array(["psoriasis", "acne", "rosacea", "ctcl", "eczema"] * 4)
    diagnoses[diagnoses == "psoriasis"] = "acne"
    x = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="psoriasis_vs_eczema: the training images hold no psoriasis"):
        fit_linear_heads(x, np.arange(20), np.ones(20, bool), diagnoses, np.arange(20))


# ---------------------------------------------------------------------------------------------
# training and cross-validation with the recipe


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory):
    from test_training import tiny_config, tiny_split

    from skin_cnn.app.train_run import train

    base = tmp_path_factory.mktemp("linear")
    split = tiny_split(base, patients=6)
    out = base / "run"
    result = train(tiny_config(split, out, head="linear", pool_blocks="4+5", mirror=True, sqrt_features=True,
                               threshold="youden", cache_views=1), progress=False, echo=lambda *_: None)
    return result, out


def test_a_linear_run_writes_its_folder_without_epochs(linear_run):
    result, out = linear_run
    for name in ("config.json", "best.keras", "val_predictions.csv", "linear_fit.json", "model_card.md",
                 "status.json", "skipped_images.csv"):
        assert (out / name).is_file(), name
    assert not (out / "history.csv").exists()
    card = (out / "model_card.md").read_text()
    assert "logistic regression" in card and "out-of-fold AUC" in card and "epochs" not in card.split("## Data")[0]
    method = card.split("### Method")[1].split("## Data")[0]
    assert "C chosen: psoriasis_vs_eczema" in method and "Mirror views: each photo" in method
    # one cached augmented view per training image was fitted on, so augmentation did take effect here
    assert "Augmentation: training images only" in method and "1 stored augmented views" in method
    for absent in ("learning rate", "Optimizer", "adam"):
        assert absent not in method
    assert "epochs run" not in result.summary and "out-of-fold AUC" in result.summary
    fit = json.loads((out / "linear_fit.json").read_text())
    assert set(fit["tasks"]) == set(TASK_NAMES)


def test_val_predictions_cover_train_and_val_once_each_and_never_test(linear_run):
    _, out = linear_run
    split = pd.read_csv(out / "split.csv")
    preds = pd.read_csv(out / "val_predictions.csv")
    readable = split[~split["image_path"].str.contains("broken")]
    expected = readable[readable["split"].isin(["train", "val"])]
    n_tasks = expected["diagnosis"].map({"eczema": 2}).fillna(1).sum()
    assert len(preds) == n_tasks
    assert not set(preds["image_path"]) & set(split.loc[split["split"] == "test", "image_path"])


def youden_midpoint(y, p):
    """Youden's cut-off recomputed with scikit-learn's ROC curve: among equal maxima of
    sensitivity + specificity - 1 the highest observed score, then halfway to the next lower one."""
    from sklearn.metrics import roc_curve

    fpr, tpr, cuts = roc_curve(y, p, drop_intermediate=False)
    j = tpr - fpr
    best = cuts[np.flatnonzero(j >= j.max() - 1e-12)].max()
    below = np.asarray(p)[np.asarray(p) < best]
    return (best + below.max()) / 2 if below.size else best


def test_the_stored_thresholds_are_youden_of_the_out_of_fold_predictions(linear_run):
    from skin_cnn.models import read_file_info

    _, out = linear_run
    preds = pd.read_csv(out / "val_predictions.csv")
    stored = read_file_info(out / "best.keras")["thresholds"]
    for task, part in preds.groupby("task"):
        assert stored[task]["value"] == pytest.approx(youden_midpoint(part["y_true"], part["y_prob"]))
        assert stored[task]["rule"] == "youden"


def test_the_saved_model_computes_the_fitted_regressions_on_its_features(linear_run):
    from skin_cnn.data.preprocessing import load_model_input
    from skin_cnn.models import split_at_frozen_boundary
    from skin_cnn.models.saving import load_keras_model

    _, out = linear_run
    model = load_keras_model(out / "best.keras")
    features, _ = split_at_frozen_boundary(model)
    config = json.loads((out / "config.json").read_text())
    from skin_cnn.core.specs import Preprocessing

    pre = Preprocessing.from_dict(config["preprocessing"])
    split = pd.read_csv(out / "split.csv")
    paths = split.loc[split["split"] == "test", "image_path"].head(4)
    x = np.stack([load_model_input(p, pre)[0] for p in paths]).astype("float32")
    f = features.predict(x, verbose=0)
    probs = model.predict(x, verbose=0)
    for task in TASK_NAMES:
        kernel, bias = model.get_layer(task).get_weights()
        np.testing.assert_allclose(probs[task][:, 0], 1 / (1 + np.exp(-(f @ kernel[:, 0] + bias[0]))), atol=1e-5)


def test_the_recipe_flag_sets_its_settings_and_typed_flags_still_win(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from skin_cnn.cli import cli  # through the group, as users run it (a command invoked alone
    from skin_cnn.training import config as config_module  # caches click's help option without -h)

    seen = {}

    def fake_train(config, **_):
        seen["config"] = config

    monkeypatch.setattr("skin_cnn.app.train_run.train", fake_train)
    split = tmp_path / "split.csv"
    split.write_text("image_path,diagnosis,split\n")
    result = CliRunner().invoke(cli, ["train", str(split), "-o", str(tmp_path / "r"), "--recipe", "frozen-linear",
                                      "--pool-blocks", "5"])
    assert result.exit_code == 0, result.output
    config = seen["config"]
    recipe = config_module.RECIPES["frozen-linear"]
    assert config.head == recipe["head"] and config.mirror == recipe["mirror"] and config.crop == recipe["crop"]
    assert config.sqrt_features == recipe["sqrt_features"]
    assert config.threshold == recipe["threshold"]
    assert config.pool_blocks == "5"  # typed on the command line


@pytest.mark.parametrize("settings, message", [
    (dict(head="linear", variant="N"), "needs variant P"),
    (dict(head="linear", fine_tune_blocks=1), "needs variant P"),
    (dict(head="linear", feature_cache="off"), "leave the cache on"),
    (dict(pool_blocks="3+4"), "pool_blocks"),
    (dict(threshold="median"), "threshold"),
])
def test_settings_the_linear_recipe_cannot_honour_are_refused(settings, message):
    from skin_cnn.training import resolve_config

    with pytest.raises(ValueError, match=message):
        resolve_config(dict(split="s.csv", out="o", **settings))


def test_nested_ensemble_scores_average_the_models_trained_without_the_fold_and_one_other():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skin_cnn.training.ensemble_threshold import nested_ensemble_probabilities

    rng = np.random.default_rng(4)
    y = np.tile([0, 1], 15)
    x = rng.normal(size=(2, 30, 4)) + y[None, :, None] * 0.7  # a clean and an augmented view
    folds = np.repeat([1, 2, 3], 10)
    c = {1: 0.1, 2: 1.0, 3: 0.01}
    got = nested_ensemble_probabilities(x, y, folds, c)
    for k in (1, 2, 3):  # a second implementation: a plain loop over the other folds
        members = []
        for j in {1, 2, 3} - {k}:
            train = (folds != k) & (folds != j)
            model = make_pipeline(StandardScaler(), LogisticRegression(C=c[k], max_iter=5000))
            model.fit(np.concatenate([x[0, train], x[1, train]]), np.concatenate([y[train], y[train]]))
            members.append(model.predict_proba(x[0, folds == k])[:, 1])
        np.testing.assert_allclose(got[folds == k], np.mean(members, axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match="one class only"):
        nested_ensemble_probabilities(x, np.where(folds == 1, y, 0), folds, c)


def test_cross_validation_of_the_recipe_stores_youden_of_the_nested_ensemble_scores_it_reproduces(tmp_path):
    from test_training import tiny_split

    from skin_cnn.models import read_file_info
    from skin_cnn.app.cv_run import CVOptions, run_cv

    split = tiny_split(tmp_path, patients=8, broken=False)
    out = tmp_path / "cv"
    run_cv(split, out, 3, dict(image_size=32, weights="none", seed=1, head="linear", pool_blocks="4+5", mirror=True,
                               threshold="youden", cache_views=0, tensorboard=False),
           progress=False, echo=lambda *_: None, options=CVOptions(n_bootstrap=50))
    oof = pd.read_csv(out / "oof_predictions.csv")
    nested = pd.read_csv(out / "oof_ensemble_predictions.csv")
    assert sorted(zip(nested["image_path"], nested["task"])) == sorted(zip(oof["image_path"], oof["task"]))
    stored = read_file_info(out / "ensemble.keras")["thresholds"]
    for task, part in nested.groupby("task"):
        entry = stored[task]
        assert entry["value"] == pytest.approx(youden_midpoint(part["y_true"], part["y_prob"]))
        assert "nested out-of-fold ensemble scores" in entry["method"] and "not validated" not in entry["rule"]
        # the threshold gives, on the scores it was fitted for, the sensitivity and specificity it claims
        called, y = part["y_prob"] >= entry["value"], part["y_true"] == 1
        assert entry["claims"]["sensitivity"] == pytest.approx((called & y).sum() / y.sum())
        assert entry["claims"]["specificity"] == pytest.approx((~called & ~y).sum() / (~y).sum())
    # the ensemble keeps the trunk's layers at its top level, so Grad-CAM finds block5_conv3
    from skin_cnn.inference.gradcam import gradcam_batch, last_conv_layer
    from skin_cnn.models.saving import load_keras_model

    ensemble = load_keras_model(out / "ensemble.keras")
    assert last_conv_layer(ensemble) == "block5_conv3"
    maps, probs = gradcam_batch(ensemble, _images(2))
    direct = ensemble.predict(_images(2), verbose=0)
    for task in TASK_NAMES:
        assert maps[task].shape == (2, 32, 32) and np.isfinite(maps[task]).all()
        np.testing.assert_allclose(probs[task], direct[task][:, 0], atol=1e-4)
    folds = pd.read_csv(out / "cv_folds.csv")
    for k in (1, 2, 3):  # each fold is scored at its own model's stored threshold
        own = read_file_info(out / f"fold{k}" / "best.keras")["thresholds"]
        for task in TASK_NAMES:
            row = folds[(folds["fold"] == k) & (folds["task"] == task)].iloc[0]
            assert row["threshold"] == pytest.approx(own[task]["value"])
    # the pooled evaluation scores each out-of-fold prediction at its own fold model's threshold
    pooled = json.loads((out / "eval_oof" / "metrics.json").read_text())
    assert "fold model stores" in pooled["threshold_method"]
    for task, part in oof.groupby("task"):
        cut = part["fold"].map(lambda k: read_file_info(out / f"fold{k}" / "best.keras")["thresholds"][task]["value"])
        called, y = part["y_prob"] >= cut, part["y_true"] == 1
        entry = pooled["tasks"][task]
        assert (entry["tp"], entry["fn"], entry["tn"], entry["fp"]) == (
            int((called & y).sum()), int((~called & y).sum()), int((~called & ~y).sum()), int((called & ~y).sum()))
        assert set(entry["threshold"]) == {"1", "2", "3"}
        assert entry["threshold_choice"]["fixed"]["specificity"] == pytest.approx(entry["bootstrap"]["specificity"])
        assert "each fold's own val_predictions.csv" in entry["threshold_choice"]["method"]


def test_evaluate_answers_at_the_models_stored_thresholds_on_test_and_at_half_elsewhere(linear_run):
    from skin_cnn.models import read_file_info
    from skin_cnn.app.evaluate_run import evaluate_run

    _, out = linear_run
    stored = read_file_info(out / "best.keras")["thresholds"]
    test = evaluate_run(out, split="test", out=out / "eval_stored", settings=EvalSettings(n_bootstrap=20),
                        progress=False)
    for task, entry in test["tasks"].items():
        assert entry["threshold"] == pytest.approx(stored[task]["value"])
        # the threshold's choice would be redone on resamples of the predictions training fitted
        # it on; this small test split holds fewer than 5 patients per class, so it is not, and says why
        choice = entry["threshold_choice"]
        assert choice["method"] == "not computed" and choice["sensitivity"] is None
        assert "too few units" in choice["too_few_units"]
    assert test["threshold_method"].startswith("stored in the model: youden")
    report = (out / "eval_stored" / "report.md").read_text()
    assert "too few units" in report
    # the report and its checklist rows describe the regression that ran, not the study's optimiser
    assert "C chosen" in report and "Model fitting" in report and "logistic regression" in report
    assert "closed-form logistic regressions, C by grouped inner cross-validation" in report  # its checklist row
    for absent in ("Learning rate", "learning rate", "Optimizer", "adam"):
        assert absent not in report, absent
    val = evaluate_run(out, split="val", out=out / "eval_val", settings=EvalSettings(n_bootstrap=20), progress=False)
    assert all(entry["threshold"] == 0.5 and "threshold_choice" not in entry for entry in val["tasks"].values())
    assert "fitted on predictions of this run's train and validation images" in val["threshold_method"]


def test_stored_thresholds_need_a_model():
    from skin_cnn.evaluation.threshold import resolve_thresholds

    with pytest.raises(ValueError, match="reads the thresholds of a model file"):
        resolve_thresholds("stored", ["acne_vs_rosacea"])


def test_preview_of_a_linear_run_says_it_has_no_epochs(linear_run):
    from skin_cnn.training.preview import run_training_batch

    _, out = linear_run
    with pytest.raises(ValueError, match="no epochs or batches"):
        run_training_batch(out)


def test_cv_takes_the_recipe_flag_too(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from skin_cnn.cli import cli
    from skin_cnn.training.config import RECIPES

    seen = {}
    monkeypatch.setattr("skin_cnn.app.cv_run.run_cv", lambda source, out, folds, settings, **_: seen.update(settings))
    source = tmp_path / "manifest.csv"
    source.write_text("image_path,diagnosis\n")
    result = CliRunner().invoke(cli, ["cv", str(source), "-o", str(tmp_path / "cv"), "--recipe", "frozen-linear",
                                      "--image-size", "224"])
    assert result.exit_code == 0, result.output
    assert seen == dict(RECIPES["frozen-linear"], image_size=224)


def test_the_two_scale_recipe_is_frozen_linear_at_320_with_a_250_view_and_platt_scaling():
    from skin_cnn.training.config import RECIPES, resolve_config

    config = resolve_config(dict(RECIPES["frozen-linear-two-scale"], split="s.csv", out="o"))
    base = resolve_config(dict(RECIPES["frozen-linear"], split="s.csv", out="o"))
    changed = {k for k, v in config.to_dict().items() if base.to_dict()[k] != v}
    assert changed == {"image_size", "second_scale", "calibration"}
    assert (config.image_size, config.second_scale, config.calibration) == (320, 250, "sigmoid")


def test_the_fine_tuned_study_recipe_is_the_study_with_block_5_trained_on_cached_block_4_maps():
    from skin_cnn.training.config import RECIPES, default_learning_rate, resolve_config

    config = resolve_config(dict(RECIPES["study-fine-tuned"], split="s.csv", out="o"))
    study = resolve_config(dict(RECIPES["study"], split="s.csv", out="o"))
    changed = {k: v for k, v in config.to_dict().items() if study.to_dict()[k] != v}
    assert changed == {"crop": False, "fine_tune_blocks": 1, "learning_rate": 1e-4, "epochs": 100,
                       "patience": 10, "threshold": "study"}
    # the study's heads and variant, not the linear ones; its own rate, not the trained-trunk default
    assert (config.variant, config.head) == ("P", study.head)
    assert config.learning_rate != default_learning_rate("P", fine_tune_blocks=1)
    # blocks 1-4 stay frozen, so their outputs (of every augmented view) are computed once and cached
    assert config.trunk_trains() and config.use_feature_cache()


def test_the_regressions_run_on_one_blas_thread_and_fit_what_default_threads_fit():
    from threadpoolctl import threadpool_info

    from skin_cnn.training.linear import fit_task, on_one_blas_thread

    seen = on_one_blas_thread(lambda: [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])()
    assert seen and set(seen) == {1}
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 30)
    x = rng.normal(size=(60, 12)) + y[:, None] * 0.8
    one, default = fit_task(x, y, np.arange(60)), fit_task.__wrapped__(x, y, np.arange(60))
    assert one.C == default.C
    np.testing.assert_allclose(one.kernel, default.kernel, rtol=1e-5, atol=1e-8)
