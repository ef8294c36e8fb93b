"""Untrusted model files, interrupted commands and odd arguments: one line each, nothing lost."""
import json
import zipfile

import pytest
from click.testing import CliRunner

from skin_cnn.cli import cli


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="skin-cnn")


def _rewrite_archive(source, target, edit_config):
    """Copy a ``.keras`` archive, passing its ``config.json`` through ``edit_config``."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if item.filename == "config.json":
                data = json.dumps(edit_config(json.loads(data))).encode()
            new.writestr(item, data)
    return target


@pytest.fixture(scope="module")
def model_file():
    from model_fixtures import shared_run

    return shared_run() / "best.keras"


def test_a_corrupt_keras_file_is_called_damaged_not_missing(tmp_path, model_file):
    from skin_cnn.inference.predictor import load_predictor

    damaged = tmp_path / "best.keras"
    damaged.write_bytes(model_file.read_bytes()[: 5000])  # truncated: the zip directory is gone
    with pytest.raises(ValueError, match=r"best\.keras: not a Keras \.keras model file") as error:
        load_predictor(damaged)
    assert "not found" not in str(error.value).lower()
    result = _run("predict", damaged, model_file)  # any existing path will do as the photo
    assert result.exit_code == 1 and "not a Keras .keras model file" in result.output
    assert "File not found" not in result.output


def test_an_archive_inflating_beyond_the_cap_is_refused_before_loading(tmp_path, model_file):
    from skin_cnn.models.saving import check_keras_archive

    check_keras_archive(model_file)  # a real model passes at the default cap
    inflated = sum(i.file_size for i in zipfile.ZipFile(model_file).infolist())
    with pytest.raises(ValueError, match=r"refused as a possible zip bomb"):
        check_keras_archive(model_file, max_inflated=inflated - 1)
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.weights.h5", bytes(50_000_000))  # 50 MB of zeros, 49 kB on disk
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(ValueError, match=r"would inflate to 0\.1 GB"):
        check_keras_archive(bomb, max_inflated=10_000_000)


def test_a_bad_stored_threshold_is_refused_in_one_short_line(tmp_path, model_file):
    from skin_cnn.models.info import REGISTERED_NAME
    from skin_cnn.inference.predictor import load_predictor

    def bad_threshold(config):
        for layer in config["config"]["layers"]:
            if layer.get("registered_name") == REGISTERED_NAME:
                layer["config"]["thresholds"] = {"acne_vs_rosacea": {"value": 7, "rule": "youden"}}
        return config

    bad = _rewrite_archive(model_file, tmp_path / "best.keras", bad_threshold)
    with pytest.raises(ValueError) as error:
        load_predictor(bad)
    message = str(error.value)
    assert "threshold of acne_vs_rosacea must lie in [0, 1]; got 7.0" in message
    assert len(message) < 300 and "\n" not in message


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_model_with_non_finite_weights_is_refused_instead_of_answering_the_negative_class(
        tmp_path, model_file, value):
    import keras
    import numpy as np

    from skin_cnn.inference.predictor import load_predictor

    model = keras.models.load_model(model_file, compile=False)
    head = model.get_layer("acne_vs_rosacea")
    weights = head.get_weights()
    weights[0].flat[1] = value  # one weight of one head
    head.set_weights(weights)
    damaged = tmp_path / "best.keras"
    model.save(damaged)
    with pytest.raises(ValueError) as error:
        load_predictor(damaged)
    message = str(error.value)
    assert message.startswith(f"{damaged}: 1 of the {weights[0].size} weights of acne_vs_rosacea/kernel are NaN")
    assert "\n" not in message
    photo = tmp_path / "photo.png"
    keras.utils.save_img(photo, np.full((40, 40, 3), 128, "uint8"))
    result = _run("predict", damaged, photo, "-o", tmp_path / "pred.csv")
    assert result.exit_code == 1 and "NaN or infinite" in result.output
    assert not (tmp_path / "pred.csv").exists()  # no answer written for the photo


def test_a_model_answering_nan_gives_no_answer_rather_than_the_negative_class(model_file):
    import keras
    import numpy as np

    from skin_cnn.inference.predictor import Predictor

    model = keras.models.load_model(model_file, compile=False)  # loaded as is, past the file check
    head = model.get_layer("acne_vs_rosacea")
    head.set_weights([np.full_like(w, np.nan) for w in head.get_weights()])
    size = tuple(model.inputs[0].shape[1:3])
    predictor = Predictor(model, {"image_size": list(size), "crop": False}, name="poisoned")
    photos = np.full((2, *size, 3), 128, "float32")
    with pytest.raises(FloatingPointError, match=r"poisoned: the model answered NaN or infinity for 2 of 2 "
                                                 r"photo\(s\) on acne_vs_rosacea"):
        predictor.predict_tensors(photos)
    with pytest.raises(FloatingPointError, match="acne_vs_rosacea"):  # Grad-CAM's forward pass as well
        predictor.explain(photos)


def test_ctrl_c_during_training_says_how_to_resume(tmp_path, monkeypatch):
    import skin_cnn.app.train_run as train_run

    split = tmp_path / "split.csv"
    split.write_text("image_path,diagnosis,split\n")

    def interrupted_after_an_epoch(config, **kwargs):
        (tmp_path / "run" / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(train_run, "train", interrupted_after_an_epoch)
    (tmp_path / "run").mkdir()
    result = _run("train", split, "-o", tmp_path / "run", "--weights", "none")
    assert result.exit_code == 130
    assert f"skin-cnn train --resume {tmp_path / 'run'}" in result.output
    assert "Aborted" not in result.output

    def interrupted_at_once(config, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_run, "train", interrupted_at_once)
    result = _run("train", split, "-o", tmp_path / "other", "--weights", "none")
    assert result.exit_code == 130 and "before anything was trained" in result.output


def test_a_diverged_training_is_one_line_without_a_traceback_hint(tmp_path, monkeypatch):
    import skin_cnn.app.train_run as train_run
    from skin_cnn.training.callbacks import StopOnNonFinite

    split = tmp_path / "split.csv"
    split.write_text("image_path,diagnosis,split\n")
    guard = StopOnNonFinite(tmp_path / "run")
    guard.on_epoch_begin(2)
    guard.on_train_batch_begin(4)

    def diverged(config, **kwargs):
        guard.on_train_batch_end(4, {"loss": float("nan")})

    monkeypatch.setattr(train_run, "train", diverged)
    result = _run("train", split, "-o", tmp_path / "run", "--weights", "none")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1] == (f"Error: {tmp_path / 'run'}: training diverged in epoch 3, batch 5: the training loss is "
                         "nan. best.keras keeps the best finished epoch; --resume continues from epoch 3, or train "
                         "again with a lower --learning-rate")


def test_demo_with_too_few_patients_is_refused(tmp_path):
    result = _run("demo", "-o", tmp_path / "demo", "--patients", "0", "--quiet")
    assert result.exit_code == 1
    assert "--patients 0: the demo needs at least 3 patients per disease" in result.output
    assert not (tmp_path / "demo" / "data").exists()


def test_fractions_that_leave_val_empty_are_refused_and_an_empty_test_warned(tmp_path):
    from model_fixtures import write_manifest

    manifest, _ = write_manifest(tmp_path, n=10)
    result = _run("split", manifest, "-o", tmp_path / "s.csv", "--fractions", "1", "0", "0", "--quiet",
                  "--no-group-near-duplicates")
    assert result.exit_code == 1 and "the val split is empty (its fraction is 0)" in result.output
    assert not (tmp_path / "s.csv").exists()
    result = _run("split", manifest, "-o", tmp_path / "s.csv", "--fractions", "0.5", "0.5", "0", "--quiet",
                  "--no-group-near-duplicates", "--allow-empty")
    assert "gives the test split 0" in result.output


def test_cells_starting_like_a_formula_are_written_as_text():
    import pandas as pd

    from skin_cnn.data.manifest import spreadsheet_safe

    frame = pd.DataFrame({"text": ["=HYPERLINK(\"http://x\")", "@SUM(A1)", "+1", "-2", "\tx", "ok", None],
                          "row": [1, 2, 3, 4, 5, 6, 7]})
    safe = spreadsheet_safe(frame)
    assert safe["text"].tolist()[:6] == ["'=HYPERLINK(\"http://x\")", "'@SUM(A1)", "'+1", "'-2", "'\tx", "ok"]
    assert pd.isna(safe["text"].iloc[6]) and safe["row"].tolist() == list(range(1, 8))  # numbers untouched
    assert frame["text"].iloc[0].startswith("=")  # the caller's frame is not changed


def test_the_manifest_report_csv_escapes_formulas_and_the_json_keeps_them(tmp_path):
    import pandas as pd

    from skin_cnn.data.manifest import validate_manifest

    manifest = tmp_path / "m.csv"
    pd.DataFrame({"image_path": ["a.jpg"], "patient_id": ["p1"], "diagnosis": ["acne"]}).to_csv(manifest, index=False)
    report = validate_manifest(manifest, progress=False)
    report.problems.loc[0, "message"] = "=1+1"  # whatever a message may one day start with
    csv_path, json_path = report.write(tmp_path / "out")
    written = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    assert written.loc[0, "message"] == "'=1+1" and written.loc[0, "code"] == "missing_file"
    assert json.loads(json_path.read_text())["problems"][0]["message"] == "=1+1"


def test_figure_text_no_font_can_draw_is_reported_in_one_line(tmp_path):
    from skin_cnn.reporting.plots import _figure, _save, missing_glyphs

    fig = _figure(3, 2)
    fig.add_subplot().set_title("皮膚科 clinic")
    if missing_glyphs(["皮膚科"]):  # no CJK font installed: say so, once, naming the characters
        with pytest.warns(UserWarning, match=r"no installed font has '皮膚科'"):
            _save(fig, tmp_path / "f.png")
    else:  # a CJK font is installed: it draws them, nothing to say
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _save(fig, tmp_path / "f.png")
    assert missing_glyphs(["clinic AUC 0.9 – ≥ ±"]) == []


def test_figure_fonts_do_not_depend_on_the_order_of_the_font_list(monkeypatch):
    # A family's files differ in what they can draw (DejaVu Sans ExtraLight has no '≥'), and a
    # rebuilt font list (the tests' own, each session) orders them anew: whichever file comes last
    # must not decide what counts as drawable.
    from matplotlib import font_manager
    from skin_cnn.reporting import plots

    manager = font_manager.fontManager
    original = list(manager.ttflist)
    family = [f for f in original if f.name == "DejaVu Sans"]
    try:
        for last in family:
            monkeypatch.setattr(manager, "ttflist", [f for f in original if f is not last] + [last])
            manager._findfont_cached.cache_clear()
            plots.figure_fonts.cache_clear()
            assert plots.missing_glyphs(["clinic AUC 0.9 – ≥ ±"]) == [], last.fname
    finally:
        monkeypatch.undo()
        manager._findfont_cached.cache_clear()
        plots.figure_fonts.cache_clear()
