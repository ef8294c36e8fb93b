"""Self-describing models: tasks, classes, preprocessing and chosen thresholds inside the
``.keras`` file, written by training and by ``evaluate --threshold``, used by ``predict``."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from model_fixtures import plain_model
from PIL import Image
from skin_cnn.core.specs import EvalSettings

STUDY_TASKS = [
    {"name": "psoriasis_vs_eczema", "positive": "psoriasis", "negative": "eczema"},
    {"name": "acne_vs_rosacea", "positive": "acne", "negative": "rosacea"},
    {"name": "ctcl_vs_eczema", "positive": "ctcl", "negative": "eczema"},
]
#: A preprocessing unlike the defaults a bare .keras file would be given.
PADDED_NO_CROP = {"image_size": [32, 32], "crop": False, "resize": "pad"}


def _invoke(*args):
    from skin_cnn.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def padded_model_file(tmp_path_factory):
    """A VGG-16P at 32×32 built with a padded, uncropped preprocessing, saved on its own."""
    from skin_cnn.models import build_model

    model = build_model("P", input_shape=(32, 32, 3), weights=None, seed=0,
                        preprocessing=PADDED_NO_CROP)
    path = tmp_path_factory.mktemp("alone") / "model.keras"
    model.save(path)
    return path


@pytest.mark.slow
def test_load_model_in_a_fresh_process_returns_tasks_classes_and_preprocessing(padded_model_file):
    code = (
        "import json, sys\n"
        "from skin_cnn.models import load_model, model_info\n"
        "m = load_model(sys.argv[1])\n"
        "print(json.dumps(model_info(m)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(padded_model_file)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert info["tasks"] == STUDY_TASKS
    assert info["thresholds"] == {}
    stored = info["preprocessing"]
    assert (stored["image_size"], stored["crop"], stored["resize"]) == ([32, 32], False, "pad")


def test_a_keras_file_alone_is_used_with_its_own_preprocessing(padded_model_file):
    from skin_cnn.inference.predictor import load_predictor

    predictor = load_predictor(padded_model_file)
    assert predictor.preprocessing_source == "model file"
    wide = np.full((20, 80, 3), 200, np.uint8)  # 4:1, so padding fills 3/8 of the rows each side
    tensor, box = predictor.preprocess(wide)
    assert box == (0, 0, 80, 20)  # no crop: the whole photo
    assert tensor[:10].max() == 0 and tensor[-10:].max() == 0  # black padding, not stretched
    np.testing.assert_array_equal(tensor[13:19], 200)
    assert {t: th.value for t, th in predictor.thresholds.items()} == {
        "psoriasis_vs_eczema": 0.5, "acne_vs_rosacea": 0.5, "ctcl_vs_eczema": 0.5}


def test_build_refuses_a_preprocessing_of_another_size():
    from skin_cnn.models import build_model

    with pytest.raises(ValueError, match=r"image_size \(64, 64\) differs from the model input \(32, 32\)"):
        build_model("P", input_shape=(32, 32, 3), weights=None, preprocessing={"image_size": [64, 64]})


def test_training_build_stores_the_runs_preprocessing_in_the_model():
    from types import SimpleNamespace

    import tensorflow as tf

    from skin_cnn.models import model_info
    from skin_cnn.training import resolve_config
    from skin_cnn.training.trainer import build

    config = resolve_config(dict(split="split.csv", out="run", variant="N", image_size=32, seed=1, crop=False))
    model = build(config, SimpleNamespace(strategy=tf.distribute.get_strategy()))
    stored = model_info(model)["preprocessing"]
    assert (stored["image_size"], stored["crop"], stored["resize"]) == ([32, 32], False, "stretch")


def test_an_old_model_gets_the_layer_without_changing_its_answers(tmp_path):
    from skin_cnn.models import model_info, with_model_info

    old = plain_model()
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    before = old.predict(x, verbose=0)
    new = with_model_info(old, thresholds={"acne_vs_rosacea": {"value": 0.3, "rule": "youden"}})
    after = new.predict(x, verbose=0)
    for task in before:
        np.testing.assert_array_equal(after[task], before[task])
    new.save(tmp_path / "m.keras")
    from skin_cnn.models.saving import load_keras_model

    info = model_info(load_keras_model(tmp_path / "m.keras"))
    assert info["thresholds"]["acne_vs_rosacea"]["value"] == 0.3
    assert {t["name"] for t in info["tasks"]} == {t["name"] for t in STUDY_TASKS}


def test_storing_thresholds_rewrites_only_the_config_and_keeps_the_weights(padded_model_file, tmp_path):
    from skin_cnn.models import read_file_info, store_thresholds

    path = tmp_path / "m.keras"
    shutil.copy(padded_model_file, path)
    weights = zipfile.ZipFile(path).read("model.weights.h5")
    store_thresholds(path, {"ctcl_vs_eczema": {"value": 0.125, "rule": "youden", "method": "m"}})
    store_thresholds(path, {"acne_vs_rosacea": 0.75})
    assert zipfile.ZipFile(path).read("model.weights.h5") == weights
    stored = read_file_info(path)["thresholds"]
    assert stored == {"ctcl_vs_eczema": {"value": 0.125, "rule": "youden", "method": "m"},
                      "acne_vs_rosacea": {"value": 0.75, "rule": "fixed", "method": ""}}
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]; got 1.5"):
        store_thresholds(path, {"acne_vs_rosacea": 1.5})
    (tmp_path / "bad.keras").write_text("not a zip")
    with pytest.raises(ValueError, match=r"bad\.keras: not a Keras \.keras archive"):
        read_file_info(tmp_path / "bad.keras")


# ---------------------------------------------------------------------------------------------
# evaluate --threshold youden stores what it reports; predict answers with it


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory):
    """A run folder with an old-style model, evaluated with a Youden threshold on its val split."""
    from skin_cnn.app.evaluate_run import evaluate_run

    root = tmp_path_factory.mktemp("youden")
    rng = np.random.default_rng(0)
    rows = []
    for split in ("val", "test"):
        for i, dx in enumerate(("acne", "rosacea", "psoriasis", "eczema", "ctcl") * 3):
            path = root / "img" / f"{split}{i}.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
            rows.append({"image_path": str(path), "patient_id": f"{split}{i}", "diagnosis": dx,
                         "split": split})
    run_dir = root / "run"
    run_dir.mkdir()
    pd.DataFrame(rows).to_csv(run_dir / "split.csv", index=False)
    plain_model().save(run_dir / "best.keras")
    (run_dir / "config.json").write_text(json.dumps({"preprocessing": PADDED_NO_CROP}))
    metrics = evaluate_run(run_dir, threshold="youden", settings=EvalSettings(n_bootstrap=0), progress=False)
    return run_dir, metrics


def test_evaluate_with_youden_stores_the_reported_thresholds_in_the_model(evaluated_run, tmp_path):
    from skin_cnn.models import read_file_info
    from skin_cnn.inference.predictor import load_predictor

    run_dir, metrics = evaluated_run
    reported = {t: e["threshold"] for t, e in metrics["tasks"].items()}
    assert any(abs(v - 0.5) > 1e-6 for v in reported.values())  # a real fitted threshold
    stored = read_file_info(run_dir / "best.keras")
    assert {t: e["value"] for t, e in stored["thresholds"].items()} == pytest.approx(reported)
    assert {e["rule"] for e in stored["thresholds"].values()} == {"youden"}
    # the run's preprocessing travelled into the file too: a copy elsewhere needs no config.json
    alone = tmp_path / "copy.keras"
    shutil.copy(run_dir / "best.keras", alone)
    predictor = load_predictor(alone)
    assert predictor.preprocessing.resize == "pad" and predictor.preprocessing.crop is False
    assert {t: th.value for t, th in predictor.thresholds.items()} == pytest.approx(reported)


def test_predict_answers_at_the_stored_threshold_and_shows_it(tmp_path):
    """Thresholds set on the far side of each probability flip every answer 0.5 would give."""
    from skin_cnn.models import store_thresholds
    from skin_cnn.inference.predictor import load_predictor

    path = tmp_path / "m.keras"
    plain_model().save(path)
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 255, (30, 40, 3), np.uint8)).save(photo)
    probs = load_predictor(path, preprocessing={"image_size": [32, 32], "crop": False})
    p = {t: float(v[0]) for t, v in probs.predict_images([probs.read(photo)]).items()}
    flipped = {t: (v + 1.0) / 2 if v >= 0.5 else v / 2 for t, v in p.items()}
    store_thresholds(path, {t: {"value": v, "rule": "youden", "method": "test"}
                            for t, v in flipped.items()},
                     preprocessing={"image_size": [32, 32], "crop": False})
    out = tmp_path / "out.csv"
    result = _invoke("predict", path, photo, "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out).set_index("task")
    from skin_cnn.core.tasks import TASKS

    for task, value in p.items():
        row = table.loc[task]
        assert row.predicted == (TASKS[task].negative if value >= 0.5 else TASKS[task].positive)
        assert row.threshold == pytest.approx(flipped[task])
        assert row.threshold_rule == "youden"
        assert row.y_prob == pytest.approx(value, abs=1e-6)

    printed = _invoke("predict", path, photo, "--task", "acne_vs_rosacea", "--quiet").stdout
    assert "if the photo shows one of these two diseases, which one?" in printed
    assert f"{flipped['acne_vs_rosacea']:.3g} (test)" in printed  # the method stored with it, not a guess
    assert "chosen on validation" not in printed
    assert str(photo) in printed  # the whole path, never cut


def test_a_model_without_a_record_uses_the_run_config_and_half(tmp_path):
    from skin_cnn.inference.predictor import load_predictor

    run = tmp_path / "run"
    run.mkdir()
    plain_model().save(run / "best.keras")
    (run / "config.json").write_text(json.dumps({"preprocessing": PADDED_NO_CROP}))
    predictor = load_predictor(run)
    assert predictor.preprocessing_source == "run config.json"
    assert predictor.preprocessing.resize == "pad"
    assert {th.describe() for th in predictor.thresholds.values()} == {"0.5 (default)"}
    alone = load_predictor(Path(shutil.copy(run / "best.keras", tmp_path / "alone.keras")))
    assert alone.preprocessing_source.startswith("assumed")
    assert alone.preprocessing.crop is True and alone.preprocessing.resize == "stretch"


def test_a_model_trained_on_synthetic_images_says_so_wherever_it_answers(tmp_path):
    """The flag survives save and load; predict warns and serve's JSON carries the warning only for
    such a model; a string "false" is refused rather than read as true."""
    from fastapi.testclient import TestClient

    from skin_cnn.inference.predictor import SYNTHETIC_MODEL_WARNING, load_predictor
    from skin_cnn.models import load_model, model_info, with_model_info
    from skin_cnn.serve.app import create_app

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(6).integers(0, 255, (30, 40, 3), np.uint8)).save(photo)
    for synthetic in (True, False):
        path = tmp_path / f"{synthetic}.keras"
        with_model_info(plain_model(), synthetic=synthetic,
                        preprocessing={"image_size": [32, 32], "crop": False}).save(path)
        assert model_info(load_model(path))["synthetic"] is synthetic
        predictor = load_predictor(path)
        assert predictor.synthetic is synthetic
        result = _invoke("predict", path, photo, "--quiet")
        assert result.exit_code == 0, result.output
        assert (SYNTHETIC_MODEL_WARNING in result.output) is synthetic
        client = TestClient(create_app(predictor), base_url="http://127.0.0.1")  # a host the app trusts
        expected = SYNTHETIC_MODEL_WARNING if synthetic else None
        assert client.get("/api/info").json()["synthetic_model"] == expected
        answer = client.post("/api/predict", files={"file": ("p.png", photo.read_bytes(), "image/png")})
        assert answer.status_code == 200 and answer.json()["synthetic_model"] == expected
    with pytest.raises(ValueError, match="synthetic must be true or false"):
        with_model_info(plain_model(), synthetic="false")
    assert model_info(with_model_info(plain_model()))["synthetic"] is False  # the default, as for older models


@pytest.mark.parametrize("flags, expected", [((True, True), True), ((False, False), False)])
def test_a_cv_ensemble_of_fold_models_trained_on_synthetic_images_says_so(tmp_path, flags, expected):
    """Fold models that share no trunk are nested in the ensemble, their info layers with them; the
    ensemble carries the flag at its own top level."""
    from skin_cnn.models import model_info, with_model_info
    from skin_cnn.training.cv import build_ensemble

    folds = []
    for k, synthetic in enumerate(flags):
        (tmp_path / f"fold{k}").mkdir()
        with_model_info(plain_model(seed=k), synthetic=synthetic).save(tmp_path / f"fold{k}" / "best.keras")
        folds.append(tmp_path / f"fold{k}")
    ensemble = build_ensemble(folds)
    assert any(layer.name.startswith("fold") for layer in ensemble.layers)  # the nested case
    assert (model_info(ensemble) or {}).get("synthetic", False) is expected
