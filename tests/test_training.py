"""skin-cnn train: run-folder contents for every variant, settings precedence, determinism."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from skin_cnn.core.tasks import TASK_NAMES


def tiny_split(folder, patients=3, broken=True, seed=0):
    """A small synthetic split CSV (demo images, patient-level split) with one unreadable file."""
    from skin_cnn.data.demo_data import generate_demo_dataset
    from skin_cnn.data.manifest import load_manifest
    from skin_cnn.data.split import patient_split, write_split

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
                evaluate=False, cache_views=1, seed=3, precision="float32")  # bfloat16: where asked for
    base.update(settings)
    return resolve_config(base)


@pytest.fixture(scope="module")
def split_csv(tmp_path_factory):
    return tiny_split(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("variant", ["P", "N", "PS", "NS"])
def test_one_epoch_of_each_variant_writes_a_complete_run_folder(split_csv, tmp_path, variant):
    from skin_cnn.core.predictions import read_predictions
    from skin_cnn.data.split import load_split
    from skin_cnn.app.train_run import train

    out = tmp_path / variant
    messages = []
    result = train(tiny_config(split_csv, out, variant=variant, evaluate=(variant == "P")),
                   progress=False, echo=messages.append)

    for name in ("config.json", "best.keras", "history.csv", "training_curves.png", "split.csv",
                 "val_predictions.csv", "skipped_images.csv", "model_card.md", "status.json"):
        assert (out / name).is_file(), name
    # a finished run keeps no resume state and, without --save-last, no second model
    assert not (out / "last.keras").exists() and not (out / "backup").exists()
    import zipfile

    with zipfile.ZipFile(out / "best.keras") as saved:  # no optimizer moments in the saved model
        with saved.open("model.weights.h5") as fh:
            import h5py

            with h5py.File(fh, "r") as weights:
                assert "optimizer" not in weights or not len(weights["optimizer"].get("vars", {}))
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
    method = card.split("### Method")[1].split("## Data")[0]  # heads trained by epochs list how
    assert "- Optimizer: adam, learning rate" in method and "- Epochs: at most 1;" in method
    assert "logistic regression" not in method
    assert result.summary and str(out) in result.summary
    if variant == "P":
        assert (out / "eval_test" / "metrics.json").is_file()
        assert (out / "eval_test" / "report.md").is_file()


def test_a_settings_file_is_overridden_only_by_flags_the_user_typed(tmp_path, monkeypatch, split_csv):
    from click.testing import CliRunner

    import skin_cnn.app.train_run as train_run
    from skin_cnn.cli import cli

    settings = tmp_path / "exp.yaml"
    settings.write_text(yaml.safe_dump({"epochs": 7, "learning-rate": 0.01, "variant": "N", "batch_size": 16}))
    seen = {}
    monkeypatch.setattr(train_run, "train", lambda config, **kw: seen.setdefault("config", config))
    result = CliRunner().invoke(cli, ["train", str(split_csv), "-o", str(tmp_path / "run"), "--config", str(settings),
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
    result = CliRunner().invoke(cli, ["train", str(split_csv), "-o", str(tmp_path / "r2"), "--config", str(bad)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "bad.json" in result.output and "epochz" in result.output  # the one line the user reads


def test_an_existing_run_folder_is_not_overwritten(split_csv, tmp_path):
    from skin_cnn.app.train_run import train

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config(split_csv, out), progress=False, echo=lambda m: None)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("variant", ["P", "N"])
def test_two_runs_with_the_same_seed_give_the_same_history(split_csv, tmp_path, variant, precision):
    from skin_cnn.app.train_run import train

    histories = []
    for name in ("a", "b"):
        train(tiny_config(split_csv, tmp_path / name, variant=variant, epochs=2, precision=precision),
              progress=False, echo=lambda m: None)
        histories.append(pd.read_csv(tmp_path / name / "history.csv"))
    a, b = (h.drop(columns="epoch_time_s") for h in histories)
    assert list(a.columns) == list(b.columns) and len(a) == 2
    np.testing.assert_allclose(a.to_numpy(dtype=float), b.to_numpy(dtype=float), rtol=1e-6, atol=1e-7)
    import keras

    weights = [keras.models.load_model(tmp_path / name / "best.keras", compile=False).get_weights() for name in "ab"]
    assert len(weights[0]) == len(weights[1]) > 0
    for first, second in zip(*weights):
        np.testing.assert_array_equal(first, second)
    # a different seed changes the result (the seed is actually used)
    train(tiny_config(split_csv, tmp_path / "c", variant=variant, epochs=2, seed=4, precision=precision),
          progress=False, echo=lambda m: None)
    c = pd.read_csv(tmp_path / "c" / "history.csv")
    assert not math.isclose(float(a["loss"].iloc[-1]), float(c["loss"].iloc[-1]), rel_tol=1e-6)


def test_training_never_reads_the_test_split(tmp_path, feature_cache_dir):
    """An unreadable test photo is not even noticed: training prepares train and val only."""
    from skin_cnn.data.split import load_split, write_split
    from skin_cnn.app.train_run import train

    split = tiny_split(tmp_path, broken=False)
    frame = load_split(split)
    bad = tmp_path / "data" / "images" / "unreadable-test.jpg"
    bad.write_bytes(b"not an image")
    test_rows = frame.index[frame["split"] == "test"]
    frame.loc[test_rows[0], "image_path"] = str(bad)
    write_split(frame, split)
    for variant in ("N", "P"):
        out = tmp_path / variant
        train(tiny_config(split, out, variant=variant, epochs=1), progress=False, echo=lambda m: None)
        assert pd.read_csv(out / "skipped_images.csv").empty
        assert not (out / "eval_test").exists()  # looking at the test split is a deliberate act
        assert not list(out.glob(".prepared-*"))
    stored = pd.concat([pd.read_csv(f) for f in feature_cache_dir.glob("*/chunks/*/rows.csv")])
    assert set(stored["image_path"]) == set(frame.loc[frame["split"] != "test", "image_path"].astype(str))


def test_resume_of_a_finished_run_keeps_its_model_card_and_summary(split_csv, tmp_path):
    from skin_cnn.app.train_run import train
    from skin_cnn.training import load_resume_config

    out = tmp_path / "run"
    first = train(tiny_config(split_csv, out, variant="P", epochs=3), progress=False, echo=lambda m: None)
    card = (out / "model_card.md").read_text()
    assert first.best_epoch >= 1
    # the tiny split is the demo's drawn images (its synthetic column): card and model file say so
    assert "SYNTHETIC DEMO" in card
    from skin_cnn.models import read_file_info

    assert read_file_info(out / "best.keras")["synthetic"] is True
    messages = []
    again = train(load_resume_config(out), resume=True, progress=False, echo=messages.append)
    assert any("already finished" in m for m in messages)
    assert (again.best_epoch, again.epochs_run) == (first.best_epoch, first.epochs_run)
    assert again.val_aucs == pytest.approx(first.val_aucs, nan_ok=True)
    assert (out / "model_card.md").read_text() == card
    assert f"best epoch {first.best_epoch})" in again.summary


def test_a_run_whose_best_epoch_is_its_last_is_flagged_as_not_converged(split_csv, tmp_path):
    from skin_cnn.reporting.model_card import model_card
    from skin_cnn.training.trainer import RunResult, has_converged

    assert not has_converged(best_epoch=8, epochs_run=8, max_epochs=8)   # still improving at the end
    assert has_converged(best_epoch=5, epochs_run=8, max_epochs=8)       # three epochs without gain
    assert has_converged(best_epoch=4, epochs_run=14, max_epochs=60)     # stopped early
    assert has_converged(best_epoch=1, epochs_run=1, max_epochs=1)       # one epoch: nothing to compare
    from skin_cnn.data.split import load_split

    config = tiny_config(split_csv, tmp_path / "run", epochs=8)
    outcome = RunResult(run_dir=tmp_path / "run", best_epoch=8, epochs_run=8, converged=False)
    card = model_card(config, load_split(split_csv), outcome)
    assert "Not converged" in card and "best epoch 8" in card


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


def test_resume_of_a_run_stopped_after_its_last_epoch_writes_its_outputs(split_csv, tmp_path, monkeypatch):
    """Killed after the last epoch's state was saved but before the outputs: resume completes them."""
    import skin_cnn.training.trainer as trainer
    from skin_cnn.app.train_run import train
    from skin_cnn.training import load_resume_config

    out = tmp_path / "run"
    reference = train(tiny_config(split_csv, tmp_path / "reference", variant="P", epochs=3), progress=False,
                      echo=lambda m: None)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("stopped after the last epoch")

    monkeypatch.setattr(trainer, "write_validation_outputs", crash)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(split_csv, out, variant="P", epochs=3), progress=False, echo=lambda m: None)
    assert (out / "backup" / "state.npz").is_file() and not (out / "status.json").exists()
    monkeypatch.undo()
    messages = []
    resumed = train(load_resume_config(out), resume=True, progress=False, echo=messages.append)
    assert any("after epoch 3" in m for m in messages)
    assert (resumed.best_epoch, resumed.epochs_run) == (reference.best_epoch, reference.epochs_run) != (0, 0)
    assert resumed.val_aucs == pytest.approx(reference.val_aucs, nan_ok=True)
    assert (out / "val_predictions.csv").is_file() and (out / "status.json").is_file()
    assert f"best epoch {reference.best_epoch} by validation" in (out / "model_card.md").read_text()


def test_each_epoch_prints_one_short_plain_line():
    from skin_cnn.training.callbacks import epoch_line

    logs = {"loss": 1.23456, "val_loss": 2.0, "val_psoriasis_vs_eczema_auc": 0.75, "val_acne_vs_rosacea_auc": 1.0,
            "val_ctcl_vs_eczema_auc": float("nan"), "val_mean_auc": 0.875, "acne_vs_rosacea_accuracy": 0.5}
    line = epoch_line(3, 60, logs, 12.4)
    assert line == ("epoch 3/60  loss 1.235  val_loss 2.000  val AUC psor/ecz 0.750  acne/ros 1.000  ctcl/ecz –  "
                    "mean 0.875  12 s")


def test_training_output_is_short_plain_lines_when_not_a_terminal(split_csv, tmp_path, capsys):
    from skin_cnn.app.train_run import train

    messages = []
    train(tiny_config(split_csv, tmp_path / "run", variant="P", epochs=2), progress=True, echo=messages.append)
    captured = capsys.readouterr()
    epoch_lines = [m for m in messages if m.startswith("epoch ")]
    assert [m.split()[1] for m in epoch_lines] == ["1/2", "2/2"]
    for text in messages + captured.out.splitlines():
        assert "\x1b[" not in text and "\r" not in text
    assert max(len(m) for m in epoch_lines) < 140
    assert "acne_vs_rosacea_accuracy" not in captured.out  # no Keras metric dump


def test_summary_says_how_few_test_images_stand_behind_a_test_auc(split_csv, tmp_path):
    from skin_cnn.reporting.model_card import summary_text
    from skin_cnn.training.trainer import RunResult

    config = tiny_config(split_csv, tmp_path / "run")
    tasks = {"acne_vs_rosacea": {"auc": {"value": 1.0}, "n_images": 7, "n_positive": 3, "n_negative": 4},
             "psoriasis_vs_eczema": {"auc": {"value": 0.8}, "n_images": 40, "n_positive": 20, "n_negative": 20}}
    outcome = RunResult(run_dir=tmp_path, epochs_run=2, best_epoch=1, wall_s=1.0,
                        val_aucs={"acne_vs_rosacea": 0.9}, test_metrics={"tasks": tasks})
    text = summary_text(config, outcome)
    acne = next(line for line in text.splitlines() if line.strip().startswith("acne_vs_rosacea"))
    assert "test 1.000 (n=7: 3/4, fewer than 10 per class: not conclusive)" in acne
    pso = next(line for line in text.splitlines() if line.strip().startswith("psoriasis_vs_eczema"))
    assert pso.endswith("test 0.800 (n=40: 20/20)")


def test_deterministic_kernels_are_on_while_training_and_as_before_afterwards(split_csv, tmp_path, monkeypatch):
    from tensorflow.python.framework import config as tf_config

    import skin_cnn.app.train_run as train_run
    from skin_cnn import train

    seen = []
    real_fit = train_run.fit_model

    def recording_fit(*args, **kwargs):
        seen.append(tf_config.is_op_determinism_enabled())
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(train_run, "fit_model", recording_fit)
    before = tf_config.is_op_determinism_enabled()  # as earlier tests left it: restored at the end
    tf_config.disable_op_determinism()
    train(tiny_config(split_csv, tmp_path / "off"), progress=False, echo=lambda m: None)
    assert seen == [True]
    assert not tf_config.is_op_determinism_enabled()  # a notebook gets its TensorFlow back
    tf_config.enable_op_determinism()
    try:
        train(tiny_config(split_csv, tmp_path / "on"), progress=False, echo=lambda m: None)
        assert seen == [True, True] and tf_config.is_op_determinism_enabled()  # switched on by the user: kept
    finally:
        if not before:
            tf_config.disable_op_determinism()
