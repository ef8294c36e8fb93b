"""skin-cnn cv: patient-grouped folds, one out-of-fold prediction per image, features extracted once."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from test_training import tiny_split

SETTINGS = {"image_size": 32, "epochs": 2, "batch_size": 4, "weights": "none", "cache_views": 1, "seed": 3,
            "precision": "float32",
            "tensorboard": False}


def test_folds_keep_groups_whole_and_stratify_diseases():
    from skin_cnn.training.cv import assign_folds, fold_split

    rng = np.random.default_rng(0)
    diseases = np.repeat(["acne", "rosacea", "psoriasis", "eczema", "ctcl"], 30)
    groups = np.concatenate([np.repeat(np.arange(d * 100, d * 100 + 10), 3) for d in range(5)])
    order = rng.permutation(len(diseases))
    diseases, groups = diseases[order], groups[order]
    folds = assign_folds(diseases, groups, 5, seed=1)
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]
    for g in np.unique(groups):  # a patient lies in exactly one fold
        assert len(set(folds[groups == g])) == 1
    table = pd.crosstab(folds, diseases)
    assert (table == 6).all().all()  # 10 patients of 3 images per disease: 2 patients per fold
    frame = pd.DataFrame({"diagnosis": diseases, "image_path": [f"i{i}" for i in range(len(diseases))]})
    split = fold_split(frame, groups, folds, 2, 5, seed=1)
    assert (split["split"] == "test").to_numpy().tolist() == (folds == 2).tolist()
    train_groups = set(groups[split["split"] == "train"])
    val_groups = set(groups[split["split"] == "val"])
    assert val_groups and not (train_groups & val_groups)
    assert set(split.loc[split["split"] == "val", "diagnosis"]) == set(diseases)  # every disease validated
    with pytest.raises(ValueError, match="at least 5 patients"):
        assign_folds(["acne"] * 4, [0, 1, 2, 3], 5)


def test_a_diagnosis_from_fewer_patients_than_folds_is_refused_with_the_counts_and_the_source():
    from skin_cnn.training.cv import assign_folds

    diseases = ["acne"] * 10 + ["rosacea"] * 6  # rosacea: 6 photos but only 3 patients
    groups = list(range(10)) + [20, 20, 21, 21, 22, 22]
    with pytest.raises(ValueError, match=r"^m.csv: 5 folds need at least 5 patients \(groups\) of each diagnosis"
                                         r".*too few: rosacea 3\. Use fewer --folds"):
        assign_folds(diseases, groups, 5, source="m.csv")
    folds = assign_folds(diseases, groups, 3, seed=0)  # three folds: each holds one rosacea patient
    assert set(folds[np.asarray(diseases) == "rosacea"].tolist()) == {0, 1, 2}


def test_folds_group_patients_sharing_a_photo_whatever_the_ids_say(tmp_path):
    from PIL import Image

    from skin_cnn.training.cv import group_labels

    rng = np.random.default_rng(1)
    rows = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).resize((64, 64)).save(path)
        rows.append({"image_path": str(path), "patient_id": f"p{i}", "diagnosis": "acne"})
    Image.open(tmp_path / "0.png").save(tmp_path / "again.jpg", quality=92)  # patient p3 holds p0's photo
    rows.append({"image_path": str(tmp_path / "again.jpg"), "patient_id": "p3", "diagnosis": "acne"})
    frame = pd.DataFrame(rows)
    labels = group_labels(frame)
    assert labels[0] == labels[3] == labels[6] and len(set(labels.tolist())) == 5
    apart = group_labels(frame, group_near_duplicates=False)
    assert len(set(apart.tolist())) == 6 and apart[3] == apart[6] != apart[0]


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    from skin_cnn.app.cv_run import CVOptions, run_cv

    tmp = tmp_path_factory.mktemp("cv")
    split = tiny_split(tmp, patients=5)  # one unreadable training photo included
    messages = []
    settings = dict(SETTINGS, cache_dir=str(tmp / "feature-cache"))
    result = run_cv(split, tmp / "cv", 3, settings, progress=False, echo=messages.append,
                    options=CVOptions(n_bootstrap=50))
    return tmp, split, result, messages


def test_every_readable_image_gets_exactly_one_out_of_fold_prediction(cv_run):
    from skin_cnn.core.tasks import tasks_for_disease
    from skin_cnn.data.split import load_split

    tmp, split, result, _ = cv_run
    oof = pd.read_csv(result.oof_predictions)
    folds = pd.read_csv(tmp / "cv" / "folds.csv")
    readable = load_split(split)
    readable = readable[~readable["image_path"].astype(str).str.endswith("broken.jpg")]
    expected_rows = sum(len(tasks_for_disease(d)) for d in readable["diagnosis"])
    assert len(oof) == expected_rows
    assert oof.groupby("image_path")["fold"].nunique().eq(1).all()
    assert set(oof["image_path"]) == set(readable["image_path"].astype(str))
    fold_of = dict(zip(folds["image_path"].astype(str), folds["fold"]))
    assert (oof["fold"] == oof["image_path"].map(fold_of)).all()  # predicted by the model that held it out
    assert (tmp / "cv" / "eval_oof" / "metrics.json").is_file()
    summary = pd.read_csv(tmp / "cv" / "cv_summary.csv")
    assert set(summary["task"]) == {"psoriasis_vs_eczema", "acne_vs_rosacea", "ctcl_vs_eczema"}


def test_features_are_extracted_once_and_oof_equals_each_fold_model_on_its_images(cv_run):
    tmp, _, result, messages = cv_run
    assert sum("extracting features once" in m for m in messages) == 1
    # the trunk ran once, before the folds: no fold computed features of its own
    assert sum(("building feature cache" in m or "extending feature cache" in m) for m in messages) == 1
    assert len([p for p in (tmp / "feature-cache").iterdir() if not p.name.startswith(".")]) == 1
    _assert_oof_is_the_fold_model_on_its_photos(result, tmp / "cv", fold=2)


def _assert_oof_is_the_fold_model_on_its_photos(result, cv_dir, fold):
    """The out-of-fold probabilities of ``fold`` equal its saved model run on its held-out photos."""
    import keras

    from skin_cnn.inference.predictor import predict_frame
    from skin_cnn.data.split import load_split

    oof = pd.read_csv(result.oof_predictions)
    config = json.loads((cv_dir / f"fold{fold}" / "config.json").read_text())
    model = keras.models.load_model(cv_dir / f"fold{fold}" / "best.keras", compile=False)
    held = load_split(cv_dir / f"fold{fold}_split.csv")
    held = held[(held["split"] == "test") & ~held["image_path"].astype(str).str.endswith("broken.jpg")]
    probs = predict_frame(model, held, config["preprocessing"], progress=False)
    for task, part in oof[oof["fold"] == fold].groupby("task"):
        by_path = dict(zip(held["image_path"].astype(str), probs[task]))
        np.testing.assert_allclose(part["y_prob"], [by_path[p] for p in part["image_path"]], atol=1e-4)


def test_folds_that_train_block_5_read_the_shared_maps_row_by_row_when_they_are_large(tmp_path, monkeypatch):
    """With a trained block the cached features are the maps in front of it, gigabytes for a few
    hundred photos; each fold then reads its batches' rows instead of copying its share."""
    from skin_cnn.app.cv_run import CVOptions, run_cv
    from skin_cnn.data import pipeline

    monkeypatch.setattr(pipeline, "IN_MEMORY_FEATURES_BYTES", 0)  # every array counts as large
    rows_read = []
    read = pipeline.ViewRows.read
    monkeypatch.setattr(pipeline.ViewRows, "read", lambda self, idx: rows_read.append(len(idx)) or read(self, idx))
    split = tiny_split(tmp_path, patients=5)
    settings = dict(SETTINGS, fine_tune_blocks=1, cache_dir=str(tmp_path / "feature-cache"))
    result = run_cv(split, tmp_path / "cv", 3, settings, progress=False, echo=lambda m: None,
                    options=CVOptions(n_bootstrap=20))
    assert rows_read and sum(rows_read) >= 3 * SETTINGS["epochs"]  # every fold's epochs came through it
    _assert_oof_is_the_fold_model_on_its_photos(result, tmp_path / "cv", fold=1)


def test_the_ensemble_is_the_mean_of_the_fold_models(cv_run):
    import keras

    from skin_cnn.inference.predictor import load_predictor

    tmp, _, result, _ = cv_run
    ensemble = load_predictor(result.ensemble, precision="float32")
    assert ensemble.preprocessing.image_size == (32, 32)
    x = np.random.default_rng(0).uniform(0, 255, size=(3, 32, 32, 3)).astype("float32")
    folds = [keras.models.load_model(d / "best.keras", compile=False) for d in result.fold_dirs]
    got = ensemble.predict_tensors(x)
    for task in got:
        mean = np.mean([np.asarray(m(x, training=False)[task]).reshape(-1) for m in folds], axis=0)
        np.testing.assert_allclose(got[task], mean, atol=1e-5)


def test_resume_refuses_settings_folds_or_grouping_that_differ_from_the_recorded_ones(cv_run, tmp_path):
    from skin_cnn.app.cv_run import CVOptions, run_cv

    tmp, split, _, _ = cv_run
    copy = tmp_path / "cv"
    shutil.copytree(tmp / "cv", copy)
    recorded = (copy / "folds.csv").read_bytes()
    quiet = dict(progress=False, echo=lambda m: None)
    with pytest.raises(ValueError, match=r"image_size 64 \(recorded 32\)") as error:
        run_cv(split, copy, 3, dict(SETTINGS, image_size=64), resume=True, **quiet)
    assert "cv.json: --resume continues" in str(error.value) and "epochs" not in str(error.value)
    with pytest.raises(ValueError, match=r"folds 4 \(recorded 3\)"):
        run_cv(split, copy, 4, SETTINGS, resume=True, **quiet)
    with pytest.raises(ValueError, match=r"group_near_duplicates False \(recorded True\)"):
        run_cv(split, copy, 3, SETTINGS, resume=True, options=CVOptions(group_near_duplicates=False), **quiet)
    assert (copy / "folds.csv").read_bytes() == recorded  # refused before anything was written


def test_cv_command_compares_on_resume_only_what_was_typed(cv_run, tmp_path):
    from click.testing import CliRunner

    from skin_cnn.cli import cli

    tmp, split, _, _ = cv_run
    copy = tmp_path / "cv"
    shutil.copytree(tmp / "cv", copy)
    result = CliRunner().invoke(cli, ["cv", str(split), "-o", str(copy), "--resume", "--image-size", "64",
                                      "--no-group-near-duplicates", "--quiet"])
    assert result.exit_code != 0
    message = result.output.strip().splitlines()[-1]
    assert "image_size 64 (recorded 32)" in message and "group_near_duplicates False (recorded True)" in message
    assert "folds" not in message.split("differ from them:")[1]  # --folds not typed: the recorded 3 stands


def test_resume_refuses_a_source_whose_images_or_labels_changed(cv_run, tmp_path):
    from skin_cnn.app.cv_run import run_cv

    tmp, split, _, _ = cv_run
    copy = tmp_path / "cv"
    shutil.copytree(tmp / "cv", copy)
    frame = pd.read_csv(split)
    fewer, relabelled = split.parent / "fewer.csv", split.parent / "relabelled.csv"  # same relative paths
    frame.iloc[1:].to_csv(fewer, index=False)
    patient = frame["patient_id"] == frame["patient_id"].iloc[0]  # all of one patient's photos, so the
    other = "rosacea" if frame["diagnosis"].iloc[0] != "rosacea" else "acne"  # manifest stays consistent
    frame.assign(diagnosis=frame["diagnosis"].where(~patient, other)).to_csv(relabelled, index=False)
    quiet = dict(progress=False, echo=lambda m: None)
    first = str(frame["image_path"].iloc[0])
    with pytest.raises(ValueError, match=r"1 image\(s\) missing, e\.g\. .*" + first.split("/")[-1]):
        run_cv(fewer, copy, 3, SETTINGS, resume=True, **quiet)
    with pytest.raises(ValueError, match=rf"{int(patient.sum())} image\(s\) with another diagnosis"):
        run_cv(relabelled, copy, 3, SETTINGS, resume=True, **quiet)


def test_resume_after_the_photo_folder_moved_names_both_folders(cv_run, tmp_path):
    from skin_cnn.app.cv_run import run_cv

    tmp, split, _, _ = cv_run
    copy = tmp_path / "cv"
    shutil.copytree(tmp / "cv", copy)
    frame = pd.read_csv(split)
    frame["image_path"] = [str((split.parent / p).resolve()) for p in frame["image_path"]]
    old_root = Path(os.path.commonpath([os.path.dirname(p) for p in frame["image_path"]]))
    new_root = tmp_path / "moved"
    shutil.copytree(old_root, new_root)
    moved = frame.assign(image_path=[str(new_root / Path(p).relative_to(old_root)) for p in frame["image_path"]])
    moved.to_csv(tmp_path / "moved.csv", index=False)
    with pytest.raises(ValueError) as error:
        run_cv(tmp_path / "moved.csv", copy, 3, SETTINGS, resume=True, progress=False, echo=lambda m: None)
    message = str(error.value)
    assert f"its photos are under {new_root}" in message and f"started with them under {old_root}" in message
    assert "image(s) missing" not in message

    one_gone = moved.assign(image_path=[str(old_root / Path(p).relative_to(new_root)) for p in moved["image_path"]])
    one_gone.loc[0, "image_path"] = moved.loc[0, "image_path"]  # one photo elsewhere: not a folder move
    one_gone.to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(ValueError, match=r"1 image\(s\) added.*1 image\(s\) missing"):
        run_cv(tmp_path / "one.csv", copy, 3, SETTINGS, resume=True, progress=False, echo=lambda m: None)


def test_resume_trains_only_the_missing_folds(cv_run, tmp_path):
    from skin_cnn.app.cv_run import CVOptions, run_cv

    tmp, split, result, _ = cv_run
    copy = tmp_path / "cv"
    shutil.copytree(tmp / "cv", copy)
    shutil.rmtree(copy / "fold2")
    with pytest.raises(FileExistsError, match="--resume"):
        run_cv(split, copy, 3, SETTINGS, progress=False, echo=lambda m: None)
    messages = []
    run_cv(split, copy, 3, SETTINGS, resume=True, progress=False, echo=messages.append,
           options=CVOptions(n_bootstrap=50))
    assert [m for m in messages if "finished earlier" in m] == ["fold 1/3: finished earlier",
                                                                 "fold 3/3: finished earlier"]
    assert any(m.startswith("fold 2/3: training") for m in messages)
    assert any("reusing feature cache" in m for m in messages)
    before = pd.read_csv(result.oof_predictions)
    after = pd.read_csv(copy / "oof_predictions.csv")
    same = before["fold"] != 2
    np.testing.assert_allclose(after.loc[same, "y_prob"], before.loc[same, "y_prob"], atol=1e-6)
    np.testing.assert_allclose(after["y_prob"], before["y_prob"], atol=1e-5)  # fold 2 retrained identically


def test_an_ensemble_threshold_of_trained_heads_is_stored_and_shown_as_not_validated(cv_run, tmp_path):
    from skin_cnn.models import read_file_info
    from skin_cnn.inference.predictor import load_predictor
    from skin_cnn.training import resolve_config
    from skin_cnn.training.cv import nested_scores, store_ensemble_thresholds

    tmp, split, result, _ = cv_run
    config = resolve_config(dict(SETTINGS, split=str(split), out=str(tmp_path / "x"), threshold="youden"))
    said = []
    assert nested_scores(config, None, None, None, [], tmp_path, said.append) is None
    assert "not validated for the ensemble" in said[0]
    copy = tmp_path / "ensemble.keras"
    shutil.copy(result.ensemble, copy)
    oof = pd.read_csv(result.oof_predictions)
    store_ensemble_thresholds(config, oof, copy)
    stored = read_file_info(copy)["thresholds"]
    for task, part in oof.groupby("task"):
        entry = stored[task]
        assert "not validated for the ensemble" in entry["rule"] and "single-model" in entry["method"]
        called, y = part["y_prob"] >= entry["value"], part["y_true"] == 1
        assert entry["claims"]["sensitivity"] == pytest.approx((called & y).sum() / y.sum())
    shown = load_predictor(copy).thresholds["acne_vs_rosacea"].describe()
    assert "not validated for the ensemble" in shown and "chosen on validation" not in shown
