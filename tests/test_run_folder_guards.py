"""Outputs written over inputs, two trainings in one run folder, splits no task can learn from."""
import os
import subprocess
import sys
import time

import pandas as pd
import pytest
from click.testing import CliRunner
from test_training import tiny_config, tiny_split

from skin_cnn.cli import cli


@pytest.fixture(scope="module")
def split_csv(tmp_path_factory):
    return tiny_split(tmp_path_factory.mktemp("tiny"), broken=False)


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="skin-cnn")


# ---------------------------------------------------------------------------------------------
# outputs never written over an input


def test_split_onto_its_own_manifest_is_refused_and_the_manifest_kept(tmp_path):
    from model_fixtures import write_manifest

    manifest, _ = write_manifest(tmp_path, n=6)
    before = manifest.read_bytes()
    result = _run("split", manifest, "-o", manifest, "--quiet")
    assert result.exit_code == 2
    assert "would overwrite the input" in result.output and str(manifest) in result.output
    assert manifest.read_bytes() == before


def test_the_same_file_under_another_name_is_recognised(tmp_path):
    from model_fixtures import write_manifest

    manifest, _ = write_manifest(tmp_path, n=6)
    os.link(manifest, tmp_path / "alias.csv")  # a hard link: another path, the same file
    (tmp_path / "sub").mkdir()
    for out in (tmp_path / "alias.csv", tmp_path / "sub" / ".." / manifest.name):
        result = _run("split", manifest, "-o", out, "--quiet")
        assert result.exit_code == 2 and "would overwrite the input" in result.output, out


@pytest.mark.parametrize("name, command", [
    ("manifest.csv", lambda m, f: ["manifest", "check", m, "--report", m, "--quiet"]),
    ("manifest_report.csv", lambda m, f: ["manifest", "check", m, "-o", m.parent, "--quiet"]),
    ("manifest.csv", lambda m, f: ["crop", m, "-o", m.parent, "--quiet"]),
    ("split.csv", lambda m, f: ["train", m, "-o", m.parent]),
    ("folds.csv", lambda m, f: ["cv", m, "-o", m.parent]),
    ("predictions_test.csv", lambda m, f: ["evaluate", "--predictions", m, "-o", m.parent]),
    ("compare.csv", lambda m, f: ["compare", m, f, "-o", m.parent]),
    ("holdout_predictions.csv", lambda m, f: ["cleanse", "train", "--skin", m, "-o", m.parent]),
])
def test_every_command_with_an_output_refuses_to_write_over_its_input(tmp_path, command, name):
    given = tmp_path / name
    given.write_text("image_path,diagnosis,split\na.jpg,acne,train\n")
    other = tmp_path / "other.csv"
    other.write_text("x\n")
    args = command(given, other)
    before = given.read_bytes()
    result = _run(*args)
    assert result.exit_code == 2, result.output
    assert "would overwrite the input" in result.output
    assert given.read_bytes() == before


def test_predict_and_export_refuse_to_write_over_the_model_or_a_photo(tmp_path):
    from model_fixtures import write_photos

    photo = write_photos(tmp_path, 1)[0]
    model = tmp_path / "best.csv"  # an output name predict accepts, given as the model
    model.write_text("")
    assert "would overwrite the input" in _run("predict", model, photo, "-o", model).output
    keras_file = tmp_path / "m.keras"
    keras_file.write_text("")
    result = _run("export", keras_file, "--format", "tflite", "-o", keras_file)
    assert result.exit_code == 2 and "would overwrite the input" in result.output


def test_crop_copies_over_the_photos_themselves_are_refused(tmp_path):
    from model_fixtures import write_photos

    # copies go to OUT/images/<path below the manifest's folder>: with the manifest inside
    # images/ and -o its parent, that is each photo's own path
    photos = write_photos(tmp_path / "images", 2)
    manifest = tmp_path / "images" / "m.csv"
    pd.DataFrame({"image_path": [p.name for p in photos], "patient_id": ["a", "b"],
                  "diagnosis": ["acne", "rosacea"]}).to_csv(manifest, index=False)
    before = photos[0].read_bytes()
    result = _run("crop", manifest, "-o", tmp_path, "--copies", "--quiet", "--sample", "0")
    assert result.exit_code == 2 and "--copies" in result.output, result.output
    assert photos[0].read_bytes() == before


# ---------------------------------------------------------------------------------------------
# one training per run folder


def test_a_second_training_into_a_held_run_folder_stops_with_one_line(split_csv, tmp_path):
    from skin_cnn.app.train_run import train
    from skin_cnn.training.run_folder import RunFolderBusy, run_lock

    out = tmp_path / "run"
    with run_lock(out):
        with pytest.raises(RunFolderBusy, match=f"pid {os.getpid()}"):
            train(tiny_config(split_csv, out), progress=False, echo=lambda m: None)
        assert not (out / "config.json").exists()  # it wrote nothing


@pytest.mark.slow
def test_two_training_processes_into_one_folder_the_second_exits_1(split_csv, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from skin_cnn.training.run_folder import run_lock\n"
         "with run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = _run("train", split_csv, "-o", out, "--epochs", "1", "--image-size", "32", "--weights", "none",
                      "--quiet")
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1
    assert f"pid {holder.pid}" in result.output and "another training" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_the_lock_of_a_killed_training_is_taken_over(tmp_path):
    from skin_cnn.training.run_folder import LOCK_FILE, run_lock

    out = tmp_path / "run"
    dead = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from skin_cnn.training.run_folder import run_lock\n"
         "with run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True,
    )
    assert dead.stdout.readline().strip() == "held"
    dead.kill()  # SIGKILL: no clean-up, the lock file stays with the dead pid in it
    dead.wait()
    assert (out / LOCK_FILE).read_text().strip() == str(dead.pid)
    started = time.monotonic()
    with run_lock(out) as path:
        assert path.read_text().strip() == str(os.getpid())
    assert time.monotonic() - started < 5
    assert not (out / LOCK_FILE).exists()  # released and removed


# ---------------------------------------------------------------------------------------------
# a split no task can learn from


def test_a_split_where_no_task_has_both_classes_in_train_and_val_is_refused(split_csv, tmp_path):
    from skin_cnn.data.split import load_split, write_split
    from skin_cnn.app.train_run import train

    frame = load_split(split_csv)
    one = write_split(frame[frame["diagnosis"].isin(["acne", "eczema"])], tmp_path / "one.csv")
    with pytest.raises(ValueError, match="no task has both of its diseases in train and in val"):
        train(tiny_config(one, tmp_path / "run"), progress=False, echo=lambda m: None)
    assert not (tmp_path / "run" / "best.keras").exists()
    result = _run("train", one, "-o", tmp_path / "run2", "--epochs", "1", "--weights", "none", "--quiet")
    assert result.exit_code == 1 and "train: acne" in result.output and "Traceback" not in result.output


def test_learnable_tasks_needs_both_diseases_in_both_splits():
    from skin_cnn.training.trainer import learnable_tasks

    rows = [("train", "acne"), ("train", "rosacea"), ("val", "acne"), ("val", "rosacea"),
            ("train", "psoriasis"), ("train", "eczema"), ("val", "eczema")]
    frame = pd.DataFrame(rows, columns=["split", "diagnosis"])
    assert learnable_tasks(frame) == ["acne_vs_rosacea"]  # psoriasis is missing from val
    assert learnable_tasks(frame[frame["diagnosis"] != "rosacea"]) == []


def test_a_second_cv_into_a_held_folder_stops_before_writing(split_csv, tmp_path):
    from skin_cnn.app.cv_run import run_cv
    from skin_cnn.training.run_folder import RunFolderBusy, run_lock

    out = tmp_path / "cv"
    with run_lock(out):
        with pytest.raises(RunFolderBusy, match="another training"):
            run_cv(split_csv, out, 2, {"image_size": 32, "epochs": 1, "weights": "none"}, progress=False,
                   echo=lambda m: None)
    assert sorted(p.name for p in out.iterdir()) == []  # nothing written, the lock file removed
