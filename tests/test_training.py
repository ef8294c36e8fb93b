"""skin-cnn train: run-folder contents for every variant, settings precedence, determinism."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from skin_cnn.diseases import TASK_NAMES


def tiny_split(folder, patients=3, broken=True, seed=0):
    """A small synthetic split CSV (demo images, patient-level split) with one unreadable file."""
    from skin_cnn.demo_data import generate_demo_dataset
    from skin_cnn.manifest import load_manifest
    from skin_cnn.split import patient_split, write_split

    manifest = generate_demo_dataset(folder / "data", n_patients_per_disease=patients, images_per_patient=(1, 2),
                                     image_size=(40, 48), seed=seed)
    frame = patient_split(load_manifest(manifest), seed=seed)
    if broken:
        bad = folder / "data" / "images" / "broken.jpg"
        bad.write_bytes(b"this is not a JPEG")
        row = frame.iloc[0].copy()
        row["image_path"], row["patient_id"], row["split"] = str(bad), "demo-broken", "train"
        frame = pd.concat([frame, row.to_frame().T], ignore_index=True)
    return write_split(frame, folder / "split.csv")


def tiny_config(split, out, **settings):
    from skin_cnn.training import resolve_config

    base = dict(split=str(split), out=str(out), image_size=32, epochs=1, batch_size=4, weights="none",
                evaluate=False, cache_views=1, seed=3)
    base.update(settings)
    return resolve_config(base)


@pytest.fixture(scope="module")
def split_csv(tmp_path_factory):
    return tiny_split(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("variant", ["P", "N", "PS", "NS"])
def test_one_epoch_of_each_variant_writes_a_complete_run_folder(split_csv, tmp_path, variant):
    from skin_cnn.predictions import read_predictions
    from skin_cnn.split import load_split
    from skin_cnn.training import train

    out = tmp_path / variant
    messages = []
    result = train(tiny_config(split_csv, out, variant=variant, evaluate=(variant == "P")),
                   progress=False, echo=messages.append)

    for name in ("config.json", "best.keras", "last.keras", "history.csv", "training_curves.png", "split.csv",
                 "val_predictions.csv", "skipped_images.csv", "model_card.md"):
        assert (out / name).is_file(), name
    from skin_cnn.training.trainer import tensorboard_available

    if tensorboard_available():
        assert any((out / "tensorboard").rglob("*tfevents*"))
    config = json.loads((out / "config.json").read_text())
    assert config["preprocessing"]["image_size"] == [32, 32]
    assert config["preprocessing"]["crop"] is True and config["preprocessing"]["resize"] == "stretch"
    assert config["train"]["variant"] == variant
    assert config["resolved"]["feature_cache"] is (variant == "P")
    import hashlib

    assert config["split_sha256"] == hashlib.sha256(split_csv.read_bytes()).hexdigest()
    assert {"tensorflow", "keras", "numpy", "skin_cnn"} <= set(config["versions"])

    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [1]
    assert {"loss", "val_mean_auc"} <= set(history.columns)
    for task in TASK_NAMES:
        assert f"val_{task}_auc" in history.columns

    # the unreadable file is listed, with a reason, and announced; never silently dropped
    skipped = pd.read_csv(out / "skipped_images.csv")
    assert skipped["image_path"].str.endswith("broken.jpg").tolist() == [True]
    assert skipped["split"].tolist() == ["train"] and skipped["reason"].str.len().gt(0).all()
    assert any("1 image(s) could not be read" in m for m in messages)

    # validation predictions: one row per (val image, task it belongs to)
    frame = load_split(split_csv)
    val = frame[frame["split"] == "val"]
    expected_rows = sum({"eczema": 2}.get(d, 1) for d in val["diagnosis"])
    preds = read_predictions(out / "val_predictions.csv")
    assert len(preds) == expected_rows
    card = (out / "model_card.md").read_text()
    assert "not a medical device" in card and "Fitzpatrick" in card
    assert result.summary and str(out) in result.summary
    if variant == "P":
        assert (out / "eval_test" / "metrics.json").is_file()
        assert (out / "eval_test" / "report.md").is_file()


def test_a_settings_file_is_overridden_only_by_flags_the_user_typed(tmp_path, monkeypatch, split_csv):
    from click.testing import CliRunner

    import skin_cnn.training.trainer as trainer
    from skin_cnn.cli.train_cmd import command

    settings = tmp_path / "exp.yaml"
    settings.write_text(yaml.safe_dump({"epochs": 7, "learning-rate": 0.01, "variant": "N", "batch_size": 16}))
    seen = {}
    monkeypatch.setattr(trainer, "train", lambda config, **kw: seen.setdefault("config", config))
    result = CliRunner().invoke(command, [str(split_csv), "-o", str(tmp_path / "run"), "--config", str(settings),
                                          "--epochs", "2", "--batch-size", "64"])
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert config.epochs == 2            # typed flag beats the file
    assert config.batch_size == 64       # typed flag equal to the default still beats the file
    assert config.learning_rate == 0.01  # file beats the default
    assert config.variant == "N"
    assert config.optimizer == "adam"    # neither: the default

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"epochz": 3}))
    result = CliRunner().invoke(command, [str(split_csv), "-o", str(tmp_path / "r2"), "--config", str(bad)])
    assert result.exit_code != 0 and "bad.json" in str(result.exception) and "epochz" in str(result.exception)


def test_an_existing_run_folder_is_not_overwritten(split_csv, tmp_path):
    from skin_cnn.training import train

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config(split_csv, out), progress=False, echo=lambda m: None)


@pytest.mark.parametrize("variant", ["P", "N"])
def test_two_runs_with_the_same_seed_give_the_same_history(split_csv, tmp_path, variant):
    from skin_cnn.training import train

    histories = []
    for name in ("a", "b"):
        train(tiny_config(split_csv, tmp_path / name, variant=variant, epochs=2), progress=False, echo=lambda m: None)
        histories.append(pd.read_csv(tmp_path / name / "history.csv"))
    a, b = (h.drop(columns="epoch_time_s") for h in histories)
    assert list(a.columns) == list(b.columns) and len(a) == 2
    np.testing.assert_allclose(a.to_numpy(dtype=float), b.to_numpy(dtype=float), rtol=1e-6, atol=1e-7)
    # a different seed changes the result (the seed is actually used)
    train(tiny_config(split_csv, tmp_path / "c", variant=variant, epochs=2, seed=4), progress=False,
          echo=lambda m: None)
    c = pd.read_csv(tmp_path / "c" / "history.csv")
    assert not math.isclose(float(a["loss"].iloc[-1]), float(c["loss"].iloc[-1]), rel_tol=1e-6)


def test_epoch_order_depends_only_on_seed_and_epoch():
    from skin_cnn.training.trainer import epoch_order

    first = epoch_order(5, 3, 20)
    assert sorted(first.tolist()) == list(range(20))
    assert np.array_equal(first, epoch_order(5, 3, 20))
    assert not np.array_equal(first, epoch_order(5, 4, 20))
    groups = np.array(["a"] * 6 + ["b"] * 2)
    balanced = epoch_order(0, 0, 8, groups)
    counts = pd.Series(groups[balanced]).value_counts()
    assert counts["a"] == counts["b"] == 6
    assert set(np.flatnonzero(groups == "b")) <= set(balanced.tolist())


@pytest.mark.parametrize("defer_best", [False, True])
def test_best_keras_holds_the_best_epoch_and_last_keras_the_final_one(tmp_path, defer_best):
    import keras

    from skin_cnn.training.callbacks import AtomicCheckpoint, TrainingState, restore_state

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    checkpoint = AtomicCheckpoint(model, tmp_path, defer_best=defer_best)
    state = TrainingState(tmp_path / "backup" / "state.npz", tracked={"checkpoint": checkpoint})
    for cb in (checkpoint, state):
        cb.set_model(model)
    scores = [0.6, 0.9, 0.7]  # the second epoch is the best
    weights_of_epoch = []
    for epoch, score in enumerate(scores):
        model.set_weights([np.full_like(w, epoch + 1) for w in model.get_weights()])
        weights_of_epoch.append(model.get_weights())
        for cb in (checkpoint, state):
            cb.on_epoch_end(epoch, {"val_mean_auc": score})
    assert (tmp_path / "best.keras").is_file() != defer_best  # deferred: nothing written mid-run
    # A run resumed from the saved state still knows the best weights.
    fresh = AtomicCheckpoint(model, tmp_path, defer_best=defer_best)
    resumed = TrainingState(tmp_path / "backup" / "state.npz", tracked={"checkpoint": fresh},
                            restore=restore_state(tmp_path / "backup" / "state.npz", model))
    resumed.on_train_begin()
    assert fresh.best_epoch == 2
    fresh.set_model(model)
    fresh.on_train_end()
    for name, expected in (("best.keras", weights_of_epoch[1]), ("last.keras", weights_of_epoch[2])):
        saved = keras.models.load_model(tmp_path / name, compile=False).get_weights()
        for a, b in zip(saved, expected):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(model.get_weights(), weights_of_epoch[2]):  # the model itself keeps its final weights
        np.testing.assert_array_equal(a, b)
