"""``evaluate`` of a run: an edited split.csv and a model with other outputs are refused before
anything is predicted."""
import json

import pandas as pd
import pytest
from click.testing import CliRunner
from test_training import tiny_config, tiny_split

from skin_cnn.cli import cli
from skin_cnn.core.specs import EvalSettings


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from skin_cnn.app.train_run import train

    folder = tmp_path_factory.mktemp("run")
    split = tiny_split(folder, patients=4, broken=False)
    train(tiny_config(split, folder / "run"), progress=False, echo=lambda m: None)
    return folder / "run"


def _swap_train_and_test(run_dir, target):
    """A copy of ``run_dir`` whose split.csv has train and test swapped."""
    import shutil

    shutil.copytree(run_dir, target)
    frame = pd.read_csv(target / "split.csv", dtype=str, keep_default_na=False)
    frame["split"] = frame["split"].map({"train": "test", "test": "train"}).fillna(frame["split"])
    frame.to_csv(target / "split.csv", index=False)
    return target


def test_training_records_the_hash_of_the_runs_own_split_copy(run):
    from skin_cnn.core.io import sha256_file
    from skin_cnn.app.evaluate_run import split_change

    config = json.loads((run / "config.json").read_text())
    assert config["run_split_sha256"] == sha256_file(run / "split.csv")
    assert split_change(run) is None


def test_an_edited_split_is_refused_before_predicting(run, tmp_path, monkeypatch):
    import skin_cnn.inference.predictor as predict
    from skin_cnn.app.evaluate_run import evaluate_run

    edited = _swap_train_and_test(run, tmp_path / "edited")

    def no_prediction(*args, **kwargs):
        raise AssertionError("predicted before refusing")

    monkeypatch.setattr(predict, "predict_frame", no_prediction)
    with pytest.raises(ValueError, match=r"split\.csv is not the split this model was trained on.*"
                                         r"--allow-changed-split"):
        evaluate_run(edited, settings=EvalSettings(n_bootstrap=20), progress=False)
    result = CliRunner().invoke(cli, ["evaluate", str(edited), "--quiet"])
    assert result.exit_code == 1 and "--allow-changed-split" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (edited / "eval_test").exists()


def test_allow_changed_split_writes_the_difference_into_the_report(run, tmp_path):
    from skin_cnn.app.evaluate_run import RunEvaluationOptions, evaluate_run, split_change

    edited = _swap_train_and_test(run, tmp_path / "edited")
    change = split_change(edited)
    moved = pd.read_csv(run / "split.csv")["split"].isin(["train", "test"]).sum()
    assert len(change["moved"]) == moved  # every train and test image, found from the original
    assert any(line.endswith("train → test") for line in change["moved"])
    evaluate_run(edited, settings=EvalSettings(n_bootstrap=20), progress=False,
                 options=RunEvaluationOptions(allow_changed_split=True))
    report = (edited / "eval_test" / "report.md").read_text(encoding="utf-8")
    assert "Split changed since training" in report and change["found"][:12] in report
    assert change["moved"][0] in report


def test_a_model_with_other_outputs_is_refused_before_predicting(run, tmp_path, monkeypatch):
    import keras

    import skin_cnn.inference.predictor as predict
    from model_fixtures import preprocessing_for, write_run_folder
    from skin_cnn.app.evaluate_run import evaluate_run

    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, {"score": keras.layers.Dense(1, activation="sigmoid", name="score")(pooled)})
    other = write_run_folder(tmp_path / "other", model, preprocessing_for(32),
                             pd.read_csv(run / "split.csv", dtype=str, keep_default_na=False))

    def no_prediction(*args, **kwargs):
        raise AssertionError("predicted before refusing")

    monkeypatch.setattr(predict, "predict_frame", no_prediction)
    with pytest.raises(ValueError, match=r"best\.keras: the model's outputs \(score\) are not skin-cnn tasks"):
        evaluate_run(other, settings=EvalSettings(n_bootstrap=20), progress=False)
    result = CliRunner().invoke(cli, ["evaluate", str(other), "--quiet"])
    assert result.exit_code == 1 and "are not skin-cnn tasks" in result.output
    assert "Traceback" not in result.output and "KeyError" not in result.output


def test_a_run_from_before_the_hash_is_compared_image_by_image_with_its_split_file(run, tmp_path):
    from skin_cnn.app.evaluate_run import split_change

    edited = _swap_train_and_test(run, tmp_path / "old")
    config = json.loads((edited / "config.json").read_text())
    del config["run_split_sha256"]  # as written by earlier versions
    (edited / "config.json").write_text(json.dumps(config))
    change = split_change(edited)
    assert change is not None and any(line.endswith("test → train") for line in change["moved"])
    unchanged = tmp_path / "unchanged"
    import shutil

    shutil.copytree(run, unchanged)
    (unchanged / "config.json").write_text(json.dumps(config))
    assert split_change(unchanged) is None
