"""``--calibration sigmoid`` on the study's heads: Platt maps fitted on the best epoch's
validation predictions and folded into each task's sigmoid layer."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from skin_cnn.core.tasks import TASK_NAMES


def _platt_by_hand(y, p):
    """Slope and intercept minimising the log-loss of sigmoid(a·logit(p) + b), by Nelder–Mead."""
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    logit = np.log(p / (1 - p))
    y = np.asarray(y, dtype=float)

    def loss(ab):
        z = ab[0] * logit + ab[1]
        return np.sum(np.logaddexp(0, z) - y * z)

    return minimize(loss, [1.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-12}).x


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same seeded run of the study's heads without and with Platt scaling (the default).

    The tiny split's validation photos are fewer than the 10 per class a map normally needs, so
    the rule is lowered to 1 here; its own test is below."""
    from test_training import tiny_config, tiny_split

    from skin_cnn.app.train_run import train
    from skin_cnn.training import head_calibration

    base = tmp_path_factory.mktemp("calibrated")
    split = tiny_split(base, patients=6)
    out = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(head_calibration, "MIN_PHOTOS_PER_CLASS", 1)
        for calibration in ("none", "auto"):
            out[calibration] = base / calibration
            train(tiny_config(split, out[calibration], epochs=2, calibration=calibration, threshold="youden",
                              feature_cache="on"), progress=False, echo=lambda *_: None)
    out["sigmoid"] = out.pop("auto")
    return out


def test_the_study_heads_are_platt_scaled_by_default_and_the_linear_heads_are_not():
    from skin_cnn.training import TrainConfig

    assert TrainConfig().calibration == "sigmoid"
    assert TrainConfig(head="linear").calibration == "none"
    assert TrainConfig(head="linear", calibration="sigmoid").calibration == "sigmoid"
    assert TrainConfig(calibration="none").calibration == "none"


def test_the_maps_are_the_platt_fit_of_the_predictions_they_are_given_and_fold_into_the_heads():
    from skin_cnn.models import build_model
    from skin_cnn.training.head_calibration import calibrate_heads, fold_into_heads

    model = build_model("P", input_shape=(32, 32, 3), weights=None, seed=0)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (80, 32, 32, 3)).astype("float32")
    raw = model.predict(x, verbose=0)
    # random weights answer within a hair of 0.5: spread each task's logits to about unit scale
    spread = {t: np.log(raw[t] / (1 - raw[t])).std() for t in TASK_NAMES}
    fold_into_heads(model, {t: {"a": 1 / spread[t], "b": 0.0} for t in TASK_NAMES})
    raw = model.predict(x, verbose=0)
    rows = []
    for task in TASK_NAMES:
        p = raw[task][:, 0].astype(float)
        z = np.log(p / (1 - p))
        z = (z - z.mean()) / z.std()  # labels that follow the model's ranking, noisily
        y = rng.uniform(size=p.size) < 1 / (1 + np.exp(-2 * z))
        rows.append(pd.DataFrame({"task": task, "y_true": y.astype(int), "y_prob": p}))
    validation = pd.concat(rows, ignore_index=True)
    maps, _ = calibrate_heads(model, validation, TASK_NAMES, echo=lambda *_: None)
    answered = model.predict(x, verbose=0)
    for task in TASK_NAMES:
        part = validation[validation["task"] == task]
        a, b = _platt_by_hand(part["y_true"], part["y_prob"])
        assert maps[task]["a"] == pytest.approx(a, rel=1e-3) and a > 0
        assert maps[task]["b"] == pytest.approx(b, rel=1e-3, abs=1e-4)
        p = part["y_prob"].to_numpy()
        m = maps[task]  # folded into the sigmoid layer, the map is exactly what the model answers
        expected = 1 / (1 + np.exp(-(m["a"] * np.log(p / (1 - p)) + m["b"])))
        np.testing.assert_allclose(answered[task][:, 0], expected, atol=2e-5)


def test_a_map_that_would_reverse_the_ranking_is_not_applied():
    from skin_cnn.training.head_calibration import platt_maps

    frame = pd.DataFrame({"task": "acne_vs_rosacea", "y_true": [1, 1, 0, 0, 1, 0],
                          "y_prob": [0.40, 0.45, 0.60, 0.55, 0.52, 0.50]})
    maps, skipped = platt_maps(frame, ["acne_vs_rosacea"], min_per_class=3)
    assert maps == {} and "would reverse the model's ranking" in skipped[0]
    maps, notes = platt_maps(frame.assign(y_prob=[0.6, 0.7, 0.4, 0.3, 0.55, 0.5]), ["acne_vs_rosacea"], min_per_class=3)
    assert set(maps) == {"acne_vs_rosacea"} and "perfectly separated" in notes[0]


def test_calibrated_validation_predictions_are_the_map_applied_to_the_uncalibrated_ones(runs):
    raw = pd.read_csv(runs["none"] / "val_predictions.csv")
    calibrated = pd.read_csv(runs["sigmoid"] / "val_predictions.csv")
    maps = json.loads((runs["sigmoid"] / "calibration.json").read_text())["tasks"]
    assert maps, "the fixture should give at least one task a map"
    merged = raw.merge(calibrated, on=["image_path", "task"], suffixes=("_raw", "_cal"))
    assert len(merged) == len(raw) == len(calibrated)
    logit = np.log(merged["y_prob_raw"] / (1 - merged["y_prob_raw"]))
    a = merged["task"].map(lambda t: maps[t]["a"] if t in maps else 1.0)  # uncalibrated: unchanged
    b = merged["task"].map(lambda t: maps[t]["b"] if t in maps else 0.0)
    np.testing.assert_allclose(merged["y_prob_cal"], 1 / (1 + np.exp(-(a * logit + b))), atol=1e-5)
    for task, m in maps.items():  # each map is the Platt fit of the uncalibrated predictions
        part = raw[raw["task"] == task]
        assert m["n"] == len(part)


def test_the_saved_model_answers_what_its_validation_predictions_say(runs):
    from skin_cnn.core.specs import Preprocessing
    from skin_cnn.data.preprocessing import load_model_input
    from skin_cnn.models.saving import load_keras_model

    out = runs["sigmoid"]
    model = load_keras_model(out / "best.keras")
    pre = Preprocessing.from_dict(json.loads((out / "config.json").read_text())["preprocessing"])
    preds = pd.read_csv(out / "val_predictions.csv")
    paths = preds["image_path"].drop_duplicates().head(6).tolist()
    x = np.stack([load_model_input(p, pre)[0] for p in paths]).astype("float32")
    answered = model.predict(x, verbose=0)
    for i, path in enumerate(paths):
        for _, row in preds[preds["image_path"] == path].iterrows():
            assert float(answered[row["task"]][i, 0]) == pytest.approx(row["y_prob"], abs=1e-4)


def test_the_stored_threshold_is_chosen_on_the_calibrated_predictions(runs):
    from skin_cnn.models import read_file_info
    from skin_cnn.stats.threshold import choose_threshold

    preds = pd.read_csv(runs["sigmoid"] / "val_predictions.csv")
    stored = read_file_info(runs["sigmoid"] / "best.keras")["thresholds"]
    for task, part in preds.groupby("task"):
        assert stored[task]["value"] == pytest.approx(choose_threshold(part["y_true"], part["y_prob"]))


def test_the_model_card_names_the_calibration_of_the_study_heads(runs):
    method = (runs["sigmoid"] / "model_card.md").read_text().split("### Method")[1]
    assert "Calibration: Platt scaling" in method and "validation predictions of the best epoch" in method
    method = (runs["none"] / "model_card.md").read_text().split("### Method")[1]
    assert "Calibration: none: the heads' own sigmoid outputs" in method


def test_a_task_with_one_validation_class_is_left_uncalibrated_and_said():
    from skin_cnn.training.head_calibration import platt_maps

    frame = pd.DataFrame({"task": ["acne_vs_rosacea"] * 4 + ["ctcl_vs_eczema"] * 4,
                          "y_true": [0, 1, 0, 1, 1, 1, 1, 1], "y_prob": [0.2, 0.7, 0.4, 0.6, 0.5, 0.6, 0.7, 0.8]})
    maps, skipped = platt_maps(frame, ["acne_vs_rosacea", "ctcl_vs_eczema", "psoriasis_vs_eczema"], min_per_class=2)
    assert set(maps) == {"acne_vs_rosacea"}
    assert any(s.startswith("ctcl_vs_eczema") and "hold 0 photo(s) of one class" in s for s in skipped)
    assert any(s.startswith("psoriasis_vs_eczema") and "hold 0 photo(s)" in s for s in skipped)


def test_a_task_with_fewer_than_ten_validation_photos_of_a_class_is_left_as_it_was():
    from skin_cnn.training.head_calibration import MIN_PHOTOS_PER_CLASS, platt_maps

    rng = np.random.default_rng(0)
    y = np.array([1] * 30 + [0] * MIN_PHOTOS_PER_CLASS)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, y.size), 0.01, 0.99)
    frame = pd.DataFrame({"task": "acne_vs_rosacea", "y_true": y, "y_prob": p})
    assert set(platt_maps(frame, ["acne_vs_rosacea"])[0]) == {"acne_vs_rosacea"}
    maps, notes = platt_maps(frame.iloc[:-1], ["acne_vs_rosacea"])
    assert maps == {} and f"hold {MIN_PHOTOS_PER_CLASS - 1} photo(s) of one class" in notes[0]


def test_the_model_card_lists_the_maps_that_were_applied_and_the_tasks_left_as_they_were(runs):
    maps = json.loads((runs["sigmoid"] / "calibration.json").read_text())["tasks"]
    card = (runs["sigmoid"] / "model_card.md").read_text()
    row = next(line for line in card.splitlines() if line.startswith("- Platt maps: "))
    for task in TASK_NAMES:
        if task in maps:
            assert f"{task} a={maps[task]['a']:.2f} b={maps[task]['b']:+.2f}" in row
        else:
            assert task in row.split("left as it was:")[1]
    assert "Platt maps" not in (runs["none"] / "model_card.md").read_text()


def test_a_run_whose_every_task_was_too_small_says_no_map_was_fitted():
    from skin_cnn.evaluation.method import platt_maps_text

    assert platt_maps_text({}) == ("none fitted; left as it was: psoriasis_vs_eczema, acne_vs_rosacea, "
                                   "ctcl_vs_eczema")
